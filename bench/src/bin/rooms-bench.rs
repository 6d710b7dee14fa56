//! Rooms benchmarks (see BENCHMARKS.md, "Rooms and broadcast"). Bounded in count and time;
//! nothing here asserts a figure.
//!
//! ```text
//! rooms-bench --mode fanout [--members 1000] [--broadcasts 1000] [--size 64] [--window 16]
//!             [--rounds 3]
//! rooms-bench --mode latency [--redis redis://127.0.0.1:6379] [--count 2000] [--interval-us 1000]
//! ```
//!
//! **fanout**: this process runs a server; a child process (`--mode members`) opens `members`
//! connections to it and counts the notifications they get. The server puts them in one room
//! and sends `broadcasts` notifications (a JSON string of `size` bytes, numbered) to it, never
//! more than `window` broadcasts ahead of what the members have received, three ways: through
//! the hub (`hub.to(room).send`), and by hand, looping over the socks with `Sock::notify` (each
//! encodes its own copy) and with `Sock::buffer_notify` of one pre-encoded payload. Reported:
//! notifications delivered per second (median of `rounds`, the ways in alternating order), and
//! the server's memory per room member: its RSS after joining every connection to the hub and
//! a room (and one broadcast, which builds the member lists) minus before, over `members`.
//!
//! **latency**: a hub in this process and one in a child (`--mode latency-node`) share a Redis
//! (started here on a free loopback port, without persistence, unless `--redis` is given). The
//! child's hub has one member, a client connection of the child; this process broadcasts
//! `count` timestamped notifications to the room, one every `interval-us`; the child reports
//! the time from the broadcast call to the member's handler: p50/p90/p99.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gotalk::rooms::{Hub, RedisAdapter};
use gotalk::{Config, Handlers, Notification, Server, ServerOptions, Sock};
use gotalk_bench::args::{fail, Args};
use gotalk_bench::hist::Histogram;
use gotalk_bench::idle::rss_kib;
use tokio::sync::Notify;

/// Longest any one wait may take before the run is abandoned (a hang guard, not a measure).
const HANG: Duration = Duration::from_secs(120);

fn main() {
    let args = Args::from_env(&[]);
    let rt = gotalk_bench::runtime(&args);
    match args.text("mode").unwrap_or("fanout") {
        "fanout" => rt.block_on(fanout(args)),
        "members" => rt.block_on(members(args)),
        "latency" => rt.block_on(latency(args)),
        "latency-node" => rt.block_on(latency_node(args)),
        other => fail(&format!(
            "unknown --mode {other:?} (fanout, latency; members, latency-node are internal)"
        )),
    }
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| fail(&format!("{what}: no progress within {HANG:?}")))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This binary again, with `args`; its stdout piped.
fn spawn_self(args: &[&str]) -> Child {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")));
    Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawning a child: {e}")))
}

/// Reads `child`'s stdout lines (on a thread) into a channel.
fn lines_of(child: &mut Child) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn wait_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
    within(&format!("waiting for {prefix} from the child"), async {
        loop {
            match rx.recv().await {
                Some(l) if l.starts_with(prefix) => return l,
                Some(_) => {}
                None => fail(&format!("the child exited before printing {prefix}")),
            }
        }
    })
    .await
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---- fan-out --------------------------------------------------------------------------------

/// The members' progress as the child reports it: notifications received in total.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    changed: Notify,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Way {
    Hub,
    Notify,
    BufferNotify,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Hub => "hub",
            Way::Notify => "hand_notify",
            Way::BufferNotify => "hand_buffer_notify",
        }
    }
}

async fn fanout(args: Args) {
    let n: usize = args.get("members", 1000);
    let m: usize = args.get("broadcasts", 1000);
    let size: usize = args.get("size", 64);
    let window: usize = args.get("window", 16).max(1);
    let rounds: usize = args.get("rounds", 3).max(1);

    let opened: Arc<Mutex<Vec<Sock>>> = Arc::default();
    let control: Arc<OnceLock<Sock>> = Arc::default();
    let progress = Arc::new(Progress::default());
    let mut h = Handlers::new();
    let c = control.clone();
    h.handle_with_sock("control", move |sock: Sock, (): ()| {
        let _ = c.set(sock);
        async { Ok::<_, gotalk::HandlerError>(()) }
    });
    let p = progress.clone();
    h.handle_notification("progress", move |v: u64| {
        p.received.fetch_max(v, Ordering::Relaxed);
        p.changed.notify_waiters();
    });
    let o = opened.clone();
    let config = Config::new()
        .handlers(h)
        .on_open(move |s| o.lock().unwrap().push(s.clone()));
    // Every member comes from 127.0.0.1: no per-address share.
    let options = ServerOptions::default()
        .max_connections(n + 16)
        .max_connections_per_address(None);
    let server = Server::bind_with("127.0.0.1:0", config, options)
        .await
        .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let addr = server.local_addr().to_string();
    let mut child = spawn_self(&[
        "--mode",
        "members",
        "--addr",
        &addr,
        "--count",
        &n.to_string(),
        "--threads",
        "1",
    ]);
    let mut out = lines_of(&mut child);
    wait_line(&mut out, "READY").await;
    within("the members' connections", async {
        while opened.lock().unwrap().len() < n + 1 || control.get().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let control = control.get().expect("set").clone();
    let members: Vec<Sock> = opened
        .lock()
        .unwrap()
        .iter()
        .filter(|s| !s.same_as(&control))
        .cloned()
        .collect();
    opened.lock().unwrap().clear();

    // Memory per member: the hub's part only. The connections exist before and after, and
    // have each written a notification before (their write buffers are in use either way).
    let mut expected = 0u64;
    let tiny = Notification::json("m", "warm-up").expect("encodes");
    for _ in 0..2 {
        for s in &members {
            expected += u64::from(s.send_notification(&tiny).await.is_ok());
        }
    }
    wait_for(&progress, &control, expected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = std::process::id();
    let before = rss_kib(pid).unwrap_or(0);
    let hub = Hub::new();
    // On a thread of its own, whose allocations come from a fresh malloc arena: measured in
    // the main one, they would partly reuse memory freed while the connections were set up,
    // and show up as a few bytes. Nothing is sent meanwhile (the writers' buffers would count).
    let after = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                for s in &members {
                    hub.join(s, "bench")
                        .unwrap_or_else(|e| fail(&format!("join: {e}")));
                }
                // The member lists broadcasts walk, built by the first one.
                let _ = (hub.members(Some("bench")), hub.members(None));
                rss_kib(pid).unwrap_or(0)
            })
            .join()
            .expect("join thread")
    });
    let per_member = after.saturating_sub(before) as f64 * 1024.0 / n as f64;

    let pad = "x".repeat(size.saturating_sub(8));
    let mut rates: Vec<(Way, Vec<f64>)> = [Way::Hub, Way::Notify, Way::BufferNotify]
        .into_iter()
        .map(|w| (w, Vec::new()))
        .collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..rates.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let way = rates[i].0;
            let start = Instant::now();
            let (delivered, skipped) = within(
                way.name(),
                run_way(
                    way,
                    &hub,
                    &members,
                    m,
                    &pad,
                    window,
                    &progress,
                    &control,
                    &mut expected,
                ),
            )
            .await;
            let secs = start.elapsed().as_secs_f64();
            if delivered + skipped != (m * members.len()) as u64 {
                fail(&format!(
                    "{}: {delivered} delivered and {skipped} skipped of {} (members closed?)",
                    way.name(),
                    m * members.len()
                ));
            }
            let rate = delivered as f64 / secs;
            say(&format!(
                "# round {round} {}: {delivered} delivered in {secs:.3} s = {rate:.0}/s, {skipped} skipped",
                way.name()
            ));
            rates[i].1.push(rate);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut line = format!(
        "RESULT mode=fanout members={n} broadcasts={m} size={size} window={window} rounds={rounds}"
    );
    for (way, v) in &mut rates {
        line += &format!(" {}_per_s={:.0}", way.name(), med(v));
    }
    line +=
        &format!(" rss_before_kib={before} rss_after_kib={after} bytes_per_member={per_member:.0}");
    say(&line);
    let stats = hub.stats();
    say(&format!(
        "# hub: delivered {} skipped {} closed {}",
        stats.delivered, stats.skipped, stats.closed
    ));
    control.close();
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `m` broadcasts one way; returns (notifications delivered, skipped).
#[allow(clippy::too_many_arguments)]
async fn run_way(
    way: Way,
    hub: &Hub,
    members: &[Sock],
    m: usize,
    pad: &str,
    window: usize,
    progress: &Progress,
    control: &Sock,
    expected: &mut u64,
) -> (u64, u64) {
    let n = members.len() as u64;
    let (mut delivered, mut skipped) = (0u64, 0u64);
    let mut sent_at = std::collections::VecDeque::with_capacity(window + 1);
    for i in 0..m {
        let text = format!("{i:07}{pad}");
        let got = match way {
            Way::Hub => {
                let sent = hub
                    .to("bench")
                    .send(&Notification::json("m", &text).expect("encodes"));
                skipped += sent.full as u64;
                sent.delivered as u64
            }
            Way::Notify => {
                let mut ok = 0;
                for s in members {
                    ok += u64::from(s.notify("m", &text).await.is_ok());
                }
                ok
            }
            Way::BufferNotify => {
                let payload = Bytes::from(serde_json::to_vec(&text).expect("encodes"));
                let mut ok = 0;
                for s in members {
                    ok += u64::from(s.buffer_notify("m", payload.clone()).await.is_ok());
                }
                ok
            }
        };
        delivered += got;
        *expected += got;
        sent_at.push_back(*expected);
        if sent_at.len() > window {
            let target = sent_at.pop_front().expect("not empty");
            wait_for(progress, control, target.saturating_sub(n)).await;
        }
    }
    wait_for(progress, control, *expected).await;
    (delivered, skipped)
}

/// Waits until the members have received `target` notifications in total.
async fn wait_for(progress: &Progress, control: &Sock, target: u64) {
    while progress.received.load(Ordering::Relaxed) < target {
        let changed = progress.changed.notified();
        if progress.received.load(Ordering::Relaxed) >= target {
            break;
        }
        // The child reports every `members` notifications; ask it for the rest.
        if tokio::time::timeout(Duration::from_millis(5), changed)
            .await
            .is_err()
        {
            let count: u64 = within("the members' count", control.request("count", &()))
                .await
                .unwrap_or_else(|e| fail(&format!("count: {e}")));
            progress.received.fetch_max(count, Ordering::Relaxed);
        }
    }
}

/// The child of `fanout`: `count` member connections counting what they get, and a control
/// connection reporting it.
async fn members(args: Args) {
    let addr = args
        .text("addr")
        .unwrap_or_else(|| fail("--addr is required"))
        .to_owned();
    let n: u64 = args.get("count", 1000);
    let received = Arc::new(AtomicU64::new(0));
    let control: Arc<OnceLock<Sock>> = Arc::default();

    let mut ch = Handlers::new();
    let r = received.clone();
    ch.handle("count", move |(): ()| {
        let r = r.clone();
        async move { Ok::<_, gotalk::HandlerError>(r.load(Ordering::Relaxed)) }
    });
    // Heartbeats on (the default), as any client: the server closes a connection that sends
    // nothing for its read timeout.
    let c = gotalk::connect_with(&addr, &Config::new().handlers(ch))
        .await
        .unwrap_or_else(|e| fail(&format!("control connection: {e}")));
    c.request::<_, ()>("control", &())
        .await
        .unwrap_or_else(|e| fail(&format!("control: {e}")));
    let _ = control.set(c.clone());

    let mut mh = Handlers::new();
    let (r, ctl) = (received.clone(), control.clone());
    mh.handle_buffer_notification("m", move |_, _, _| {
        let total = r.fetch_add(1, Ordering::Relaxed) + 1;
        if total % n == 0 {
            if let Some(c) = ctl.get() {
                if let Ok(note) = Notification::json("progress", &total) {
                    let _ = c.try_notify(&note);
                }
            }
        }
    });
    let config = Config::new().handlers(mh);
    let mut socks = Vec::with_capacity(n as usize);
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0;
    while (socks.len() as u64) < n {
        while started < n && set.len() < 128 {
            let (addr, config) = (addr.clone(), config.clone());
            set.spawn(async move { gotalk::connect_with(&addr, &config).await });
            started += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(s))) => socks.push(s),
            Some(Ok(Err(e))) => fail(&format!("member connection: {e}")),
            Some(Err(e)) => fail(&format!("connect task: {e}")),
            None => break,
        }
    }
    say("READY");
    // Until the parent closes the control connection (or dies).
    c.closed().await;
}

// ---- cross-process latency ------------------------------------------------------------------

/// A `redis-server` on a free loopback port without persistence, killed when dropped.
struct RedisChild(Child, String);

impl RedisChild {
    fn start() -> RedisChild {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| fail(&format!("a free port: {e}")));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("redis-server: {e} (apt-get install redis-server)")));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                fail("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisChild(child, format!("redis://127.0.0.1:{port}"))
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_hub(url: &str) -> Hub {
    let adapter = RedisAdapter::new(url).unwrap_or_else(|e| fail(&format!("{e}")));
    Hub::builder()
        .adapter(adapter)
        .build()
        .unwrap_or_else(|e| fail(&format!("hub: {e}")))
}

async fn connected(hub: &Hub) {
    within("connecting to Redis", async {
        while !hub.stats().adapter.is_some_and(|a| a.connected) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn latency(args: Args) {
    let count: u64 = args.get("count", 2000);
    let every = Duration::from_micros(args.get("interval-us", 1000));
    let own_redis = args.text("redis").is_none().then(RedisChild::start);
    let url = args
        .text("redis")
        .map(str::to_owned)
        .or_else(|| own_redis.as_ref().map(|r| r.1.clone()))
        .expect("a Redis");
    let hub = redis_hub(&url);
    connected(&hub).await;
    let mut child = spawn_self(&[
        "--mode",
        "latency-node",
        "--redis",
        &url,
        "--count",
        &count.to_string(),
    ]);
    let mut out = lines_of(&mut child);
    wait_line(&mut out, "READY").await;
    let mut tick = tokio::time::interval(every);
    for _ in 0..count {
        tick.tick().await;
        hub.to("latency")
            .notify("t", &now_ns())
            .unwrap_or_else(|e| fail(&format!("broadcast: {e}")));
    }
    // After the last one (in order per sender): the child reports even if some were lost.
    hub.to("latency")
        .notify("stop", &())
        .unwrap_or_else(|e| fail(&format!("broadcast: {e}")));
    let result = wait_line(&mut out, "RESULT").await;
    say(&format!("{result} redis={url}"));
    let _ = child.wait();
}

/// The child of `latency`: a hub on the same Redis with one member, a client connection of
/// this process, which records how long each broadcast took to reach it.
async fn latency_node(args: Args) {
    let url = args
        .text("redis")
        .unwrap_or_else(|| fail("--redis is required"))
        .to_owned();
    let count: u64 = args.get("count", 2000);
    let hub = redis_hub(&url);
    let h = hub.clone();
    let config = Config::new().on_open(move |s| {
        let _ = h.join(s, "latency");
    });
    let server = Server::bind("127.0.0.1:0", config)
        .await
        .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let hist = Arc::new(Mutex::new(Histogram::new()));
    let done = Arc::new(Notify::new());
    let mut mh = Handlers::new();
    let d = done.clone();
    mh.handle_notification("stop", move |(): ()| d.notify_one());
    let (hh, d) = (hist.clone(), done.clone());
    mh.handle_notification("t", move |sent: u64| {
        let mut hist = hh.lock().unwrap();
        hist.record(Duration::from_nanos(now_ns().saturating_sub(sent)));
        if hist.count() == count {
            d.notify_one();
        }
    });
    let _member = gotalk::connect_with(
        &server.local_addr().to_string(),
        &Config::new().handlers(mh),
    )
    .await
    .unwrap_or_else(|e| fail(&format!("member: {e}")));
    connected(&hub).await;
    within("the member joining", async {
        while hub.member_count(Some("latency")) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    say("READY");
    // Broadcasts lost on the way (at most once) show as a count below `count`.
    let _ = tokio::time::timeout(HANG, done.notified()).await;
    let hist = hist.lock().unwrap();
    let us = |q: f64| hist.quantile(q).as_secs_f64() * 1e6;
    say(&format!(
        "RESULT mode=latency count={} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} missed={}",
        hist.count(),
        us(0.5),
        us(0.9),
        us(0.99),
        us(1.0),
        hub.stats().missed
    ));
}
