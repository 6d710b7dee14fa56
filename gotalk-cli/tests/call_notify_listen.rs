//! `gotalk call`, `gotalk notify` and `gotalk listen` against real servers and clients on
//! loopback, over TCP, Unix sockets, TLS and WebSocket; `--help` and exit codes.

mod common;

use std::time::Duration;

use common::*;
use gotalk::transport::tls::{roots_from_pem_file, TlsClientConfig, TlsServerConfig};
use gotalk::{Config, Server};

#[test]
fn help_for_every_subcommand_and_usage_exit_codes() {
    let out = gotalk(&["--help"], b"");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in [
        "call",
        "notify",
        "listen",
        "connect",
        "serve",
        "bench",
        "proxy",
        "decode",
        "completions",
        "man",
    ] {
        assert!(help.contains(sub), "{sub} missing from --help:\n{help}");
        let out = gotalk(&[sub, "--help"], b"");
        assert!(out.status.success(), "{sub} --help failed");
        assert!(text(&out.stdout).contains("Usage: gotalk"), "{sub} --help");
    }
    // Usage errors exit 2.
    assert_eq!(gotalk(&["nope"], b"").status.code(), Some(2));
    assert_eq!(gotalk(&["call"], b"").status.code(), Some(2));
    assert_eq!(
        gotalk(&["call", "ftp://x:1", "op"], b"").status.code(),
        Some(2)
    );
    assert_eq!(
        gotalk(&["bench", "127.0.0.1:1", "--duration", "soon"], b"")
            .status
            .code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_over_tcp_prints_pretty_json_and_raw_bytes() {
    let (_server, addr, _rx) = tcp_server().await;
    let out = gotalk_async(&["call", &addr, "greet", r#"{"name":"Bob"}"#], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\n  \"greeting\": \"Hello Bob\"\n}\n");

    // --raw: bytes in, the same bytes out, nothing added.
    let out = gotalk_async(&["call", &addr, "echo", "--raw", "hello\tworld"], b"").await;
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hello\tworld");

    // Payload from standard input and from a file (binary, with --raw).
    let out = gotalk_async(&["call", &addr, "greet", "-"], br#"{"name":"stdin"}"#).await;
    assert!(
        text(&out.stdout).contains("Hello stdin"),
        "{}",
        text(&out.stderr)
    );
    let dir = temp_dir("call-file");
    let bin: Vec<u8> = (0u8..=255).collect();
    std::fs::write(dir.join("p.bin"), &bin).unwrap();
    let at = format!("@{}", dir.join("p.bin").display());
    let out = gotalk_async(&["call", &addr, "echo", "--raw", &at], b"").await;
    assert_eq!(out.stdout, bin);

    // A non-JSON result without --raw is printed as it is.
    let out = gotalk_async(&["call", &addr, "sleep", "1"], b"").await;
    assert_eq!(text(&out.stdout), "slept");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_errors_go_to_stderr_with_exit_codes() {
    let (_server, addr, _rx) = tcp_server().await;
    // An ErrorResult: exit 1, the peer's message on stderr, nothing on stdout.
    let out = gotalk_async(&["call", &addr, "fail"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    let out = gotalk_async(&["call", &addr, "no-such-op"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown operation \"no-such-op\""));
    // A payload that is not JSON: usage error, nothing sent.
    let out = gotalk_async(&["call", &addr, "echo", "not json"], b"").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--raw"));
    // Timeout.
    let out = gotalk_async(
        &["call", &addr, "sleep", "10000", "--timeout", "200ms"],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = gotalk_async(&["call", &closed, "echo"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_stream_sends_stdin_lines_as_parts() {
    let (_server, addr, _rx) = tcp_server().await;
    let out = gotalk_async(
        &["call", &addr, "stream-echo", "--stream", "first"],
        b"one\ntwo\n\nthree\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "first\none\ntwo\nthree\n");
    // To a pipe: one part per line, JSON compact, --raw parts each ended by a newline.
    let out = gotalk_async(
        &["call", &addr, "stream-echo", "--stream"],
        b"{\"a\": [1, {\"b\": 2}]}\n[1,\t2]\n\"s\"\n",
    )
    .await;
    assert_eq!(text(&out.stdout), "{\"a\":[1,{\"b\":2}]}\n[1,2]\n\"s\"\n");
    let out = gotalk_async(
        &["call", &addr, "stream-echo", "--stream", "--raw"],
        b"[1, 2]\nab\n",
    )
    .await;
    assert_eq!(out.stdout, b"[1, 2]\nab\n");
    // On a terminal: pretty, for people.
    let out = on_terminal(&["call", &addr, "stream-echo", "--stream", "{\"a\":1}"]).await;
    assert!(
        text(&out.stdout).contains("{\r\n  \"a\": 1\r\n}"),
        "{:?}",
        text(&out.stdout)
    );
    // A stream request for an operation without a stream handler fails cleanly.
    let out = gotalk_async(&["call", &addr, "echo", "--stream"], b"x\n").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_over_tcp_and_unix() {
    let (_server, addr, mut rx) = tcp_server().await;
    let out = gotalk_async(&["notify", &addr, "news", r#"{"n":1}"#], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Some(Seen::Notification(name, payload)) =
        tokio::time::timeout(HANG, rx.recv()).await.unwrap()
    else {
        panic!("no notification")
    };
    assert_eq!(name, "news");
    assert_eq!(payload, br#"{"n":1}"#);

    let dir = temp_dir("unix");
    let sock_path = dir.join("g.sock");
    let unix = format!("unix://{}", sock_path.display());
    let (config, mut rx) = test_config();
    let server = Server::bind(&unix, config).await.unwrap();
    let out = gotalk_async(&["notify", &unix, "over-unix", "--raw", "hi"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Some(Seen::Notification(name, payload)) =
        tokio::time::timeout(HANG, rx.recv()).await.unwrap()
    else {
        panic!("no notification")
    };
    assert_eq!(
        (name.as_str(), payload.as_slice()),
        ("over-unix", &b"hi"[..])
    );
    let out = gotalk_async(&["call", &unix, "greet", r#"{"name":"unix"}"#], b"").await;
    assert!(
        text(&out.stdout).contains("Hello unix"),
        "{}",
        text(&out.stderr)
    );
    server.shutdown(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_notify_over_tls() {
    let dir = temp_dir("tls-call");
    write_certs(&dir);
    let (config, mut rx) = test_config();
    let tls = TlsServerConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let server = Server::bind_tls("127.0.0.1:0", config, tls).await.unwrap();
    let addr = format!(
        "tls://localhost:{}",
        port_of(&server.local_addr().to_string())
    );
    let ca = dir.join("ca.pem").display().to_string();

    let out = gotalk_async(
        &["call", &addr, "greet", r#"{"name":"tls"}"#, "--cacert", &ca],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Hello tls"));
    let out = gotalk_async(&["notify", &addr, "secure", "1", "--cacert", &ca], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Some(Seen::Notification(name, _)) = tokio::time::timeout(HANG, rx.recv()).await.unwrap()
    else {
        panic!("no notification")
    };
    assert_eq!(name, "secure");

    // Without our CA the server is not trusted: exit 1 with a clear message.
    let out = gotalk_async(&["call", &addr, "greet", "{}"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("not trusted") && err.contains("--cacert"),
        "{err}"
    );
    server.shutdown(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_notify_over_websocket() {
    let (config, mut rx) = test_config();
    let server = Server::bind("ws://127.0.0.1:0/gotalk/", config)
        .await
        .unwrap();
    let addr = format!(
        "ws://127.0.0.1:{}/gotalk/",
        port_of(&server.local_addr().to_string())
    );
    let out = gotalk_async(&["call", &addr, "greet", r#"{"name":"ws"}"#], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Hello ws"));
    let out = gotalk_async(&["notify", &addr, "over-ws", "[1,2]"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Some(Seen::Notification(name, payload)) =
        tokio::time::timeout(HANG, rx.recv()).await.unwrap()
    else {
        panic!("no notification")
    };
    assert_eq!(
        (name.as_str(), payload.as_slice()),
        ("over-ws", &b"[1,2]"[..])
    );
    server.shutdown(Duration::from_millis(100)).await;
}

/// Drives a `gotalk listen --count 3` from a library client: a --reply rule, --echo, the
/// unknown-operation error and a notification, then checks what it printed.
async fn exercise_listen(
    listen_args: &[&str],
    connect_addr: impl Fn(&str) -> String,
    config: Config,
) {
    let mut args = vec!["listen"];
    args.extend_from_slice(listen_args);
    args.extend_from_slice(&[
        "--reply",
        r#"greet={"greeting":"hi"}"#,
        "--echo",
        "--json",
        "--count",
        "4",
    ]);
    let d = Daemon::start(&args, "listening on ");
    let addr = connect_addr(&d.addr);
    let sock = gotalk::connect_with(&addr, &config).await.unwrap();
    let v: serde_json::Value = sock
        .request("greet", &serde_json::json!({"name": "x"}))
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!({"greeting": "hi"}));
    let echoed = sock.buffer_request("anything", "ping").await.unwrap();
    assert_eq!(&echoed[..], b"ping");
    sock.notify("note", &serde_json::json!({"k": "v"}))
        .await
        .unwrap();
    let big = sock.buffer_request("big", vec![b'z'; 1000]).await.unwrap();
    assert_eq!(big.len(), 1000);
    let out = d.wait_async().await;
    sock.close();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    let find = |k: &str, v: &str| {
        lines
            .iter()
            .find(|l| l[k] == v)
            .unwrap_or_else(|| panic!("no line with {k}={v} in {lines:#?}"))
            .clone()
    };
    assert_eq!(find("event", "connected")["conn"], 1);
    let greet = find("op", "greet");
    assert_eq!(greet["type"], "r");
    assert_eq!(greet["json"]["name"], "x");
    assert_eq!(find("op", "anything")["payload"], "ping");
    let note = find("name", "note");
    assert_eq!(note["type"], "n");
    assert_eq!(note["json"]["k"], "v");
    // Payload previews are cut at --preview (256 bytes by default).
    let big = find("op", "big");
    assert_eq!(big["size"], 1000);
    assert_eq!(big["truncated"], true);
    assert_eq!(big["payload"].as_str().unwrap().len(), 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_over_tcp() {
    exercise_listen(&["127.0.0.1:0"], |a| a.to_owned(), Config::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_over_unix() {
    let dir = temp_dir("listen-unix");
    let path = format!("unix://{}", dir.join("l.sock").display());
    exercise_listen(&[&path], |a| a.to_owned(), Config::new()).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_over_tls() {
    let dir = temp_dir("listen-tls");
    write_certs(&dir);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let tls = TlsClientConfig::new().trust_only(roots_from_pem_file(dir.join("ca.pem")).unwrap());
    exercise_listen(
        &["tls://127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key],
        |a| format!("tls://localhost:{}", port_of(a)),
        Config::new().tls(tls),
    )
    .await;
    // A tls:// address without a certificate is a usage error.
    let out = gotalk_async(&["listen", "tls://127.0.0.1:0"], b"").await;
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_over_websocket() {
    exercise_listen(
        &["ws://127.0.0.1:0/gotalk/"],
        |a| a.to_owned(),
        Config::new(),
    )
    .await;
}

#[test]
fn listen_rejects_bad_reply_rules() {
    let out = gotalk(&["listen", "127.0.0.1:0", "--reply", "greet"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = gotalk(&["listen", "127.0.0.1:0", "--reply", "greet={nope"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not valid JSON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_prints_stream_requests_part_by_part_and_answers_them() {
    let d = Daemon::start(
        &[
            "listen",
            "127.0.0.1:0",
            "--echo",
            "--reply",
            r#"sum={"total":3}"#,
            "--json",
            "--count",
            "2",
        ],
        "listening on ",
    );
    // The real `gotalk call --stream` as the client: --echo sends each part back.
    let out = gotalk_async(&["call", &d.addr, "up", "--stream"], b"one\ntwo\n").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    // A --reply rule is the answer once the parts have ended.
    let sock = gotalk::connect(&d.addr).await.unwrap();
    let (mut tx, mut rx) = sock.stream_request("sum").await.unwrap();
    tx.write("1").await.unwrap();
    tx.write("2").await.unwrap();
    tx.end().await.unwrap();
    let first = tokio::time::timeout(HANG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some(&br#"{"total":3}"#[..]));
    assert_eq!(
        tokio::time::timeout(HANG, rx.recv())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    let out = d.wait_async().await;
    sock.close();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    let of = |op: &str| -> Vec<(String, Option<String>)> {
        lines
            .iter()
            .filter(|l| l["op"] == op)
            .map(|l| {
                (
                    l["kind"].as_str().unwrap().to_owned(),
                    l["payload"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    let part = |p: &str| ("StreamRequestPart".to_owned(), Some(p.to_owned()));
    let start = ("StreamRequest".to_owned(), None);
    assert_eq!(
        of("up"),
        [start.clone(), part("one"), part("two"), part("")],
        "{lines:#?}"
    );
    assert_eq!(of("sum"), [start, part("1"), part("2"), part("")]);

    // Without a rule or --echo, the parts are still shown, then the error comes.
    let d = Daemon::start(&["listen", "127.0.0.1:0", "--count", "1"], "listening on ");
    let out = gotalk_async(&["call", &d.addr, "what", "--stream"], b"x\n").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown operation \"what\""),
        "{}",
        text(&out.stderr)
    );
    let out = d.wait_async().await;
    let shown = text(&out.stdout);
    assert!(
        shown.contains("s StreamRequest op=what")
            && shown.contains("p StreamRequestPart op=what size=1 \"x\""),
        "{shown}"
    );
}
