//! `gotalk serve` (the demo) as an attacker and as a developer meet it: which pages may open a
//! WebSocket, what it logs, the chat's `chat/typing`, the page without TCP, a chat whose
//! members do not read, and two demos sharing the chat through a real redis-server.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, gotalk_async, text, HANG};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A `gotalk serve` started by a test (killed when dropped), with its addresses from the
/// banner and everything it wrote to stderr so far.
struct Demo {
    child: Child,
    /// `127.0.0.1:PORT` of the web page and the WebSocket endpoint.
    http: String,
    /// `tcp://127.0.0.1:PORT`, unless `--tcp off`.
    tcp: Option<String>,
    banner: String,
    log: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `gotalk serve --http 127.0.0.1:0 ARGS` (with `--tcp 127.0.0.1:0` unless ARGS
    /// say otherwise) with `RUST_LOG` set to `log`, or unset.
    fn start(args: &[&str], log: Option<&str>) -> Demo {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--http", "127.0.0.1:0"]);
        if !args.contains(&"--tcp") {
            cmd.args(["--tcp", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(l) = log {
            cmd.env("RUST_LOG", l);
        }
        let mut child = cmd.spawn().expect("run gotalk serve");
        // Drained all along: a server blocked on a full stderr pipe would stop serving.
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut http, mut tcp, mut banner) = (None, None, String::new());
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("serve exited early: {banner}{}", log.lock().unwrap());
            }
            banner.push_str(&line);
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["web", "page", url, ..] => {
                    http = Some(
                        url.trim_start_matches("http://")
                            .trim_end_matches('/')
                            .to_owned(),
                    )
                }
                ["TCP", addr, ..] => tcp = Some(addr.to_string()),
                ["Ctrl-C", ..] => break,
                _ => {}
            }
        }
        // The rest of stdout is not expected, but must not fill up either.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Demo {
            child,
            http: http.expect("the banner names the web page"),
            tcp,
            banner,
            log,
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/gotalk/", self.http)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most [`HANG`]) until stderr holds `n` lines containing `what`.
    async fn wait_log(&self, what: &str, n: usize) -> String {
        let deadline = Instant::now() + HANG;
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(what)).count() >= n {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {n} × {what:?} in the log: {log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's resident memory (VmRSS), in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS");
        kb * 1024
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // The server this test started (its own child process).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The opening lines of a WebSocket upgrade of `/gotalk/` with these `Host` and `Origin`
/// headers.
fn upgrade_request(host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET /gotalk/ HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// Sends an upgrade request to the demo at `http`; returns the status code and the connection
/// (the response head read, nothing after it).
async fn upgrade(http: &str, host: &str, origin: Option<&str>) -> (u16, TcpStream) {
    upgrade_on(TcpStream::connect(http).await.unwrap(), host, origin).await
}

async fn upgrade_on(mut s: TcpStream, host: &str, origin: Option<&str>) -> (u16, TcpStream) {
    s.write_all(upgrade_request(host, origin).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(HANG, s.read(&mut byte))
            .await
            .expect("no response to the upgrade")
            .unwrap();
        assert!(n == 1 && head.len() < 8192, "bad response: {}", text(&head));
        head.push(byte[0]);
    }
    let status = text(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {}", text(&head)));
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_are_refused_unless_allowed() {
    let demo = Demo::start(&[], None);
    let http = demo.http.as_str();
    let port = http.rsplit(':').next().unwrap();
    let own = format!("http://{http}");
    // The demo's own page, under either loopback name, and programs (no Origin).
    assert_eq!(upgrade(http, http, Some(&own)).await.0, 101);
    let localhost = format!("localhost:{port}");
    assert_eq!(
        upgrade(http, &localhost, Some(&format!("http://{localhost}")))
            .await
            .0,
        101
    );
    assert_eq!(upgrade(http, http, None).await.0, 101);
    // A page of another site, and one whose name was rebound to 127.0.0.1 (its Origin
    // matches the Host it sends).
    assert_eq!(
        upgrade(http, http, Some("https://evil.example")).await.0,
        403
    );
    let rebound = format!("evil.example:{port}");
    assert_eq!(
        upgrade(http, &rebound, Some(&format!("http://{rebound}")))
            .await
            .0,
        403
    );
    assert_eq!(upgrade(http, http, Some("null")).await.0, 403);
    let log = demo.wait_log("WebSocket refused", 3).await;
    assert!(log.contains(r#"origin="https://evil.example""#), "{log}");
    assert!(log.contains("DNS rebinding"), "{log}");
    assert!(log.contains("--allow-origin"), "{log}");

    // A page that works: the chat over a same-origin WebSocket, with the Rust client.
    let member = guard(gotalk::connect(&demo.ws_url())).await.unwrap();
    let history: Vec<Value> = guard(member.request("chat/history", &Value::Null))
        .await
        .unwrap();
    assert!(history.is_empty());
    member.close();

    let allowed = Demo::start(
        &[
            "--allow-origin",
            "http://app.example:3000/",
            "--allow-origin",
            "https://b.example",
        ],
        None,
    );
    let http = allowed.http.as_str();
    for ok in ["http://app.example:3000", "https://b.example"] {
        assert_eq!(upgrade(http, http, Some(ok)).await.0, 101, "{ok}");
    }
    assert_eq!(
        upgrade(http, http, Some("https://evil.example")).await.0,
        403
    );

    let any = Demo::start(&["--allow-any-origin"], None);
    assert_eq!(
        upgrade(&any.http, &any.http, Some("https://evil.example"))
            .await
            .0,
        101
    );

    let out = gotalk_async(&["serve", "--allow-origin", "example.com"], b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("scheme://host"),
        "{}",
        text(&out.stderr)
    );
    let out = gotalk_async(
        &[
            "serve",
            "--allow-any-origin",
            "--allow-origin",
            "http://a.example",
        ],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_what_it_listens_on_and_what_it_refuses_filtered_by_rust_log() {
    let demo = Demo::start(&[], None);
    let tcp = demo.tcp.clone().unwrap();
    let log = demo.wait_log("listening", 2).await;
    assert!(log.contains(&format!("http://{}/", demo.http)), "{log}");
    assert!(log.contains(&demo.ws_url()), "{log}");
    assert!(log.contains(&tcp), "{log}");
    assert!(log.contains(" INFO "), "{log}");

    // A connection error: a peer speaking something else than gotalk.
    let mut s = TcpStream::connect(tcp.trim_start_matches("tcp://"))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(HANG, s.read_to_end(&mut sink)).await;
    demo.wait_log("connection ended with an error", 1).await;

    // RUST_LOG=warn: refusals only.
    let quiet = Demo::start(&[], Some("warn"));
    let http = quiet.http.clone();
    assert_eq!(
        upgrade(&http, &http, Some("https://evil.example")).await.0,
        403
    );
    let log = quiet.wait_log("WebSocket refused", 1).await;
    assert!(!log.contains("listening"), "{log}");
    assert!(!log.contains(" INFO "), "{log}");

    // A filter that does not parse falls back to info, and says so.
    let bad = Demo::start(&[], Some("=^="));
    bad.wait_log("listening", 2).await;
    bad.wait_log("RUST_LOG", 1).await;

    let out = gotalk_async(&["serve", "--help"], b"").await;
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("RUST_LOG"), "{help}");
    assert!(
        help.contains("--allow-origin") && help.contains("--allow-any-origin"),
        "{help}"
    );
}

/// A WebSocket member answering nothing and reporting every notification.
async fn member(
    url: &str,
) -> (
    gotalk::Sock,
    tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut h = gotalk::Handlers::new();
    h.handle_buffer_notification("", move |_sock, name, payload| {
        let v = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        let _ = tx.send((name.to_owned(), v));
    });
    let sock = guard(gotalk::connect_with(
        url,
        &gotalk::Config::new().handlers(h),
    ))
    .await
    .unwrap();
    (sock, rx)
}

/// Awaits `f`, failing the test instead of hanging.
async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f).await.expect("hung")
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("no notification")
        .expect("member gone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_others_as_the_readme_says() {
    let demo = Demo::start(&["--tcp", "off"], Some("info,gotalk::cmd::serve=debug"));
    let url = demo.ws_url();
    let (alice, mut alice_rx) = member(&url).await;
    let (bob, mut bob_rx) = member(&url).await;
    demo.wait_log("connection opened", 2).await;

    // The README's command, against this server.
    let out = gotalk_async(&["notify", &url, "chat/typing", r#"{"name":"Bob"}"#], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        next(&mut alice_rx).await,
        ("chat/typing".into(), json!({"name": "Bob"}))
    );
    assert_eq!(
        next(&mut bob_rx).await,
        ("chat/typing".into(), json!({"name": "Bob"}))
    );

    // Not to the typist itself: Alice's next notification is her own message.
    guard(alice.notify("chat/typing", &json!({"name": " Alice\u{1b}[2J "})))
        .await
        .unwrap();
    let (name, v) = next(&mut bob_rx).await;
    assert_eq!(
        (name.as_str(), &v),
        ("chat/typing", &json!({"name": "Alice[2J"}))
    );
    let _: String = guard(alice.request("chat/send", &json!({"name": "Alice", "text": "hi"})))
        .await
        .unwrap();
    let (name, v) = next(&mut alice_rx).await;
    assert_eq!(name, "chat/msg", "{v}");
    assert_eq!(
        (v["id"].as_u64(), v["text"].as_str()),
        (Some(1), Some("hi"))
    );
    alice.close();
    bob.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tcp_the_page_does_not_advertise_it() {
    let demo = Demo::start(&["--tcp", "off"], None);
    assert!(demo.tcp.is_none(), "{}", demo.banner);
    assert!(!demo.banner.contains("tcp://"), "{}", demo.banner);
    assert!(demo.banner.contains(&demo.ws_url()), "{}", demo.banner);
    let http = demo.http.clone();
    let (head, page) = tokio::task::spawn_blocking(move || http_get(&http, "/"))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!page.contains("1234") && !page.contains("{{"), "{page}");
    assert!(page.contains(r#"<span class="cli-addr"></span>"#), "{page}");
    // The icon the page declares is served (no 404 in the browser's console).
    assert!(
        page.contains(r#"<link rel="icon" href="/favicon.svg""#),
        "{page}"
    );
    for path in ["/favicon.svg", "/favicon.ico"] {
        let http = demo.http.clone();
        let (head, body) = tokio::task::spawn_blocking(move || http_get(&http, path))
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: image/svg+xml"),
            "{head}"
        );
        assert!(body.starts_with("<svg"), "{body}");
    }

    // With TCP, the page names it.
    let demo = Demo::start(&[], None);
    let http = demo.http.clone();
    let (_, page) = tokio::task::spawn_blocking(move || http_get(&http, "/"))
        .await
        .unwrap();
    let tcp = demo.tcp.clone().unwrap();
    let hp = tcp.trim_start_matches("tcp://");
    assert!(
        page.contains(&format!(r#"<span class="cli-addr">{hp}</span>"#)),
        "{page}"
    );
}

/// A plain HTTP/1.1 GET: (head, body).
fn http_get(hp: &str, path: &str) -> (String, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(hp).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hp}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = text(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.to_owned(), body.to_owned())
}

/// Members that never read; posts; the fan-out.
const SILENT: usize = 50;
const POSTS: usize = 10_000;
/// Chat text per post: the largest that needs no escaping (the demo's MAX_TEXT).
const TEXT: usize = 2_000;
/// Requests the poster keeps in flight.
const IN_FLIGHT: usize = 16;

/// The server's memory bound for this attack, from the demo's settings (serve/chat.rs):
///
/// - a `chat/msg` of this test is at most `MSG` = 2,200 bytes on the wire (2,000 bytes of
///   text, the name, id, time and header);
/// - a member that does not read misses messages once `WRITE_BUFFER` = 128 KiB wait for it
///   (queued or being written; one message may go over): further messages skip it. It holds
///   that, the WebSocket layer's copy of the batch being written, and the WebSocket library's
///   write buffer (128 KiB): 2 × (128 KiB + 2,200 B) + 128 KiB ≈ 0.38 MiB;
/// - for 50 members: ≈ 19 MiB, plus 24 MiB for everything else that moves in a flood
///   (allocator arenas of the runtime's threads, the reader's and writer's buffers, the
///   history), measured at about 10 MiB.
///
/// Before the fan-out was bounded (a task per recipient per post) this attack grew the server
/// by about 290 MiB.
const BOUND: u64 = SILENT as u64 * (2 * ((128 << 10) + 2_200) + (128 << 10)) + (24 << 20);

/// A WebSocket member that joins the chat (upgrade, protocol version) and then never reads;
/// its receive buffer is made small so that the server's queue for it fills soon.
async fn silent_member(http: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(http.parse().unwrap()).await.unwrap();
    let (status, mut s) = upgrade_on(s, http, Some(&format!("http://{http}"))).await;
    assert_eq!(status, 101);
    // Our protocol version "01" in a masked binary frame (mask 0: the bytes as they are).
    s.write_all(&[0x82, 0x82, 0, 0, 0, 0, b'0', b'1'])
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_do_not_read_cost_bounded_memory_and_others_are_served() {
    let demo = Demo::start(&[], Some("info,gotalk::cmd::serve=debug"));
    let tcp = demo.tcp.clone().unwrap();
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(silent_member(&demo.http).await);
    }
    let (reader, mut reader_rx) = member(&demo.ws_url()).await;
    let poster = guard(gotalk::connect(&tcp)).await.unwrap();
    demo.wait_log("connection opened", SILENT + 2).await;
    let before = demo.rss();

    // Memory sampled all along, until the reader has had every post.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = demo.child.id();
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let kb = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    peak = peak.max(kb * 1024);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };

    let started = Instant::now();
    let mut posters = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT {
        let poster = poster.clone();
        posters.spawn(async move {
            for i in (w..POSTS).step_by(IN_FLIGHT) {
                let text = format!("{i:05} {}", "x".repeat(TEXT - 6));
                let ok: String = poster
                    .request("chat/send", &json!({"name": "poster", "text": text}))
                    .await
                    .unwrap_or_else(|e| panic!("post {i}: {e}"));
                assert_eq!(ok, "ok");
            }
        });
    }
    let posting = async {
        while let Some(r) = posters.join_next().await {
            r.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), posting)
        .await
        .expect("the posts were held up");
    let posted_in = started.elapsed();

    // The reading member gets messages, in order (it may have missed some of the flood while
    // it was not scheduled): a message posted after the flood reaches it.
    let mut last = 0;
    let mut got = 0;
    let deadline = Instant::now() + HANG;
    let mut marker_at = Instant::now();
    let _: String =
        guard(poster.request("chat/send", &json!({"name": "poster", "text": "marker"})))
            .await
            .unwrap();
    loop {
        let wait = tokio::time::timeout(Duration::from_millis(500), reader_rx.recv()).await;
        assert!(
            Instant::now() < deadline,
            "the reader got {got} posts, not the marker (closed: {:?})",
            reader.close_reason()
        );
        let Ok(Some((name, v))) = wait else {
            // Its queue was full when the marker went out: post another.
            if marker_at.elapsed() > Duration::from_millis(500) {
                let _: String = guard(
                    poster.request("chat/send", &json!({"name": "poster", "text": "marker"})),
                )
                .await
                .unwrap();
                marker_at = Instant::now();
            }
            continue;
        };
        assert_eq!(name, "chat/msg", "{v}");
        let id = v["id"].as_u64().expect("id");
        assert!(id > last, "{id} after {last}");
        last = id;
        if v["text"] == "marker" {
            break;
        }
        got += 1;
    }
    assert!(!reader.is_closed());
    let after = demo.rss();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap().max(after);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{POSTS} posts of {TEXT} B to {SILENT} silent members + 1 reader in {posted_in:?} \
         (the reader got {got}): RSS {} -> peak {} KiB (+{} KiB; bound {} KiB)",
        before >> 10,
        peak >> 10,
        growth >> 10,
        BOUND >> 10
    );
    assert!(
        growth <= BOUND,
        "the server grew by {} KiB (bound {} KiB)",
        growth >> 10,
        BOUND >> 10
    );
    // Every silent member was found out, and logged once.
    let log = demo.wait_log("chat member does not read", SILENT).await;
    let silent_peers: Vec<String> = silent
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    for peer in &silent_peers {
        let lines = log
            .lines()
            .filter(|l| l.contains("does not read") && l.contains(&format!("\"{peer}\"")))
            .count();
        assert_eq!(lines, 1, "{peer}: {log}");
    }
    reader.close();
    poster.close();
    drop(silent);
}

// ---- several processes, one chat (--redis) --------------------------------------------------

/// A `redis-server` on a free loopback port without persistence, killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    async fn start_on(port: u16) -> Redis {
        let child = Command::new(std::env::var("REDIS_SERVER").unwrap_or("redis-server".into()))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; scripts/test does)");
        guard(async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Redis { port, child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts numbered `text`s on `poster` until `rx` gets one (the processes connect to Redis, and
/// again after it restarts, in the background); returns the `chat/msg` that arrived.
async fn post_until_heard(
    poster: &gotalk::Sock,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    text: &str,
) -> Value {
    guard(async {
        for i in 0.. {
            let t = format!("{text} {i}");
            let _: Value = poster
                .request("chat/send", &json!({"name": "poster", "text": t}))
                .await
                .unwrap();
            let wait = tokio::time::sleep(Duration::from_millis(200));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    got = rx.recv() => {
                        let (name, v) = got.expect("member gone");
                        if name == "chat/msg" && v["text"].as_str().is_some_and(|s| s.starts_with(text)) {
                            return v;
                        }
                    }
                }
            }
        }
        unreachable!()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_share_one_chat_through_redis_and_go_on_alone_while_it_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = Redis::start_on(port).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let a = Demo::start(&["--redis", &url], None);
    let b = Demo::start(&["--redis", &url], None);
    assert!(a.banner.contains(&url), "{}", a.banner);
    let (on_a, mut a_rx) = member(&a.ws_url()).await;
    let (on_b, mut b_rx) = member(&b.ws_url()).await;

    // A message posted on A reaches B's member, naming A's process and A's id.
    let v = post_until_heard(&on_a, &mut b_rx, "hello from A").await;
    let node_a = v["node"].as_str().unwrap().to_owned();
    assert_eq!(node_a.len(), 16, "{v}");
    let (_, mine) = guard(async {
        loop {
            let (name, v) = next(&mut a_rx).await;
            let text = v["text"].as_str().unwrap_or_default();
            if name == "chat/msg" && text.starts_with("hello from A") {
                return (name, v);
            }
        }
    })
    .await;
    assert_eq!(mine["node"], node_a);
    // B's history has it too (with B's own posts, by their own node).
    let _: Value = guard(on_b.request("chat/send", &json!({"name": "b", "text": "from B"})))
        .await
        .unwrap();
    let history: Vec<Value> = guard(on_b.request("chat/history", &Value::Null))
        .await
        .unwrap();
    assert!(history.iter().any(|m| m["node"] == node_a), "{history:?}");
    assert!(history
        .iter()
        .any(|m| m["text"] == "from B" && m["node"] != node_a));

    // Redis goes away: each process's chat goes on alone, and says so in its log.
    drop(redis);
    a.wait_log("Redis unreachable", 1).await;
    let _: Value = guard(on_a.request("chat/send", &json!({"name": "a", "text": "A alone"})))
        .await
        .unwrap();
    guard(async {
        loop {
            let (name, v) = next(&mut a_rx).await;
            if name == "chat/msg" && v["text"] == "A alone" {
                break;
            }
        }
    })
    .await;
    // Back on the same port: the processes chat across again (and log it).
    let _redis = Redis::start_on(port).await;
    post_until_heard(&on_a, &mut b_rx, "after the restart").await;
    a.wait_log("connected to Redis again", 1).await;
    let history: Vec<Value> = guard(on_b.request("chat/history", &Value::Null))
        .await
        .unwrap();
    assert!(
        !history.iter().any(|m| m["text"] == "A alone"),
        "{history:?}"
    );
    on_a.close();
    on_b.close();
}
