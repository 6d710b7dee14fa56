//! What a peer sends never drives the terminal: names, error texts and payloads with escape
//! sequences, C1 controls and reordering marks are shown escaped by `call`, `notify`, `listen`,
//! `proxy` and `decode`, while `--raw` output to a pipe stays byte for byte. And no flag value
//! makes the command panic: bad numbers and durations are usage errors (exit 2).

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use gotalk::frame::{Message, Name, RequestId};
use gotalk::{Config, HandlerError, Handlers, Server};

/// A window-title change, a bell, a screen clear, a C1 CSI and a right-to-left override.
const HOSTILE: &str = "x\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{202e}y";

/// Fails if `out` holds anything a terminal would act on (beyond line ends and tabs).
fn assert_clean(out: &[u8], what: &str) {
    let s = String::from_utf8_lossy(out);
    let bad: Vec<char> = s
        .chars()
        .filter(|&c| gotalk_cli::escape::is_unsafe(c) && !matches!(c, '\n' | '\r' | '\t'))
        .collect();
    assert!(bad.is_empty(), "{what}: {bad:?} reached the output:\n{s}");
}

async fn hostile_server() -> (Server, String) {
    let mut h = Handlers::new();
    h.handle_buffer("error", |_s, _op, _p| async move {
        Err::<Bytes, _>(HandlerError::msg(HOSTILE))
    });
    h.handle_buffer(
        "text",
        |_s, _op, _p| async move { Ok(Bytes::from(HOSTILE)) },
    );
    h.handle_buffer("json", |_s, _op, _p| async move {
        Ok(Bytes::from(
            serde_json::json!({ HOSTILE: [HOSTILE] }).to_string(),
        ))
    });
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle_buffer("notify-first", |sock, _op, _p| async move {
        let _ = sock.buffer_notify(HOSTILE, HOSTILE).await;
        Ok(Bytes::from_static(b"{}"))
    });
    h.handle_stream("parts", |_s, _op, _in, mut out| async move {
        out.write(HOSTILE).await?;
        out.write(serde_json::json!([HOSTILE]).to_string()).await?;
        Ok(())
    });
    let config = Config::new()
        .handlers(h)
        .heartbeat_interval(None)
        .limits(gotalk::Limits::default().stream_requests(4));
    let s = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = s.local_addr().to_string();
    (s, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_notify_escape_what_the_peer_sends() {
    let (_server, addr) = hostile_server().await;

    // An error text goes to stderr escaped, whatever stdout is.
    let out = gotalk_async(&["call", &addr, "error"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert_clean(&out.stderr, "call error");
    assert!(
        text(&out.stderr).contains("\\x1b]0;pwned\\x07"),
        "{}",
        text(&out.stderr)
    );

    // A notification arriving during a call is shown on stderr, escaped.
    let out = gotalk_async(&["call", &addr, "notify-first"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_clean(&out.stderr, "notification during call");
    assert!(
        text(&out.stderr).contains("notification x\\x1b"),
        "{}",
        text(&out.stderr)
    );

    // On a terminal, text and JSON results are escaped too.
    for op in ["text", "json", "error"] {
        let out = on_terminal(&["call", &addr, op]).await;
        assert_clean(&out.stdout, op);
        assert!(
            text(&out.stdout).contains("pwned"),
            "{op}: {}",
            text(&out.stdout)
        );
    }
    let out = on_terminal(&["call", &addr, "echo", "--raw", HOSTILE]).await;
    assert_clean(&out.stdout, "--raw on a terminal");
    let out = on_terminal(&["call", &addr, "parts", "--stream"]).await;
    assert_clean(&out.stdout, "stream parts on a terminal");

    // To a pipe, --raw is byte for byte, and JSON keeps its value (escaped the JSON way).
    let out = gotalk_async(&["call", &addr, "echo", "--raw", HOSTILE], b"").await;
    assert_eq!(out.stdout, HOSTILE.as_bytes());
    let out = gotalk_async(&["call", &addr, "text"], b"").await;
    assert_eq!(
        out.stdout,
        HOSTILE.as_bytes(),
        "a non-JSON result to a pipe is as it came"
    );
    let out = gotalk_async(&["call", &addr, "json"], b"").await;
    assert_clean(&out.stdout, "JSON to a pipe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({ HOSTILE: [HOSTILE] }));
}

/// Requests, a stream and a notification with hostile names and payloads, sent by a library
/// client to whatever `addr` is (a `listen`, or a `proxy` in front of a server).
async fn send_hostile(addr: &str) {
    let sock = gotalk::connect_with(addr, &Config::new().heartbeat_interval(None))
        .await
        .unwrap();
    let _ = sock.buffer_request(HOSTILE, HOSTILE).await;
    let _ = sock
        .buffer_request("json", serde_json::json!([HOSTILE]).to_string())
        .await;
    sock.buffer_notify(HOSTILE, HOSTILE).await.unwrap();
    sock.close();
    let _ = tokio::time::timeout(HANG, sock.closed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_proxy_escape_names_and_payloads() {
    let listen = Daemon::start(
        &["listen", "127.0.0.1:0", "--echo", "--count", "3"],
        "listening on ",
    );
    send_hostile(&listen.addr).await;
    let out = listen.wait_async().await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_clean(&out.stdout, "listen");
    let shown = text(&out.stdout);
    assert!(shown.contains("op=x\\x1b]0;pwned\\x07"), "{shown}");
    assert!(shown.contains("\\u009b"), "JSON payload: {shown}");

    let (_server, upstream) = hostile_server().await;
    let proxy = Daemon::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--once",
        ],
        "proxy listening on ",
    );
    send_hostile(&proxy.addr).await;
    let out = proxy.wait_async().await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_clean(&out.stdout, "proxy");
    assert!(
        text(&out.stdout).contains("name=x\\x1b]0;pwned"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn decode_escapes_names_and_payloads() {
    let mut capture = BytesMut::from(&b"01"[..]);
    Message::SingleRequest {
        id: RequestId(*b"0001"),
        op: Name::new(HOSTILE).unwrap(),
        payload: Bytes::from(HOSTILE),
    }
    .encode(&mut capture);
    Message::Notification {
        name: Name::new(HOSTILE).unwrap(),
        payload: Bytes::from(serde_json::json!({ HOSTILE: 1 }).to_string()),
    }
    .encode(&mut capture);
    Message::ErrorResult {
        id: RequestId(*b"\x1b[2J"),
        payload: Bytes::from(HOSTILE),
    }
    .encode(&mut capture);
    for json in [false, true] {
        let args: &[&str] = if json {
            &["decode", "--json"]
        } else {
            &["decode"]
        };
        let out = gotalk(args, &capture);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_clean(&out.stdout, "decode");
        assert_clean(&out.stderr, "decode stderr");
        assert!(text(&out.stdout).contains("pwned"));
    }
}

#[test]
fn numbers_and_durations_out_of_range_are_usage_errors() {
    let huge = "99999999999999999999";
    let cases: &[&[&str]] = &[
        &["call", "127.0.0.1:1", "op", "--timeout", huge],
        &["call", "127.0.0.1:1", "op", "--timeout", "1e300"],
        &["call", "127.0.0.1:1", "op", "--timeout", "-1s"],
        &["call", "127.0.0.1:1", "op", "--timeout", "NaN"],
        &["call", "127.0.0.1:1", "op", "--timeout", "400d"],
        &["notify", "127.0.0.1:1", "n", "--timeout", huge],
        &["bench", "127.0.0.1:1", "--duration", huge],
        &["bench", "127.0.0.1:1", "--conns", huge],
        &["bench", "127.0.0.1:1", "--conns", "0"],
        &["bench", "127.0.0.1:1", "--inflight", "99999999"],
        &["bench", "127.0.0.1:1", "--size", huge],
        &["bench", "127.0.0.1:1", "--size", "4294967295"],
        &[
            "bench",
            "127.0.0.1:1",
            "--conns",
            "10000",
            "--inflight",
            "65536",
        ],
        &["listen", "127.0.0.1:0", "--preview", huge],
        &["listen", "127.0.0.1:0", "--count", "-1"],
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--max-payload",
            huge,
        ],
        &["decode", "--preview", "-5"],
        &["call", "127.0.0.1:1", "op", "--insecure"],
    ];
    for args in cases {
        let out = gotalk(args, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.lines().count() <= 10,
            "{args:?}: a short message, not a dump:\n{err}"
        );
    }
    // The largest values accepted still work as limits rather than crashing anything.
    let out = gotalk(&["call", "127.0.0.1:1", "op", "--timeout", "365d"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_capture_or_peer_never_panics_the_printer() {
    // Payload previews cut in the middle of a character, names at the longest, IDs of any
    // bytes, a RetryResult with the longest wait and a heartbeat at the end of time.
    let mut capture = BytesMut::from(&b"01"[..]);
    Message::SingleResult {
        id: RequestId([0xff, 0, 0x1b, 0x9b]),
        payload: Bytes::from("é".repeat(300)),
    }
    .encode(&mut capture);
    Message::Notification {
        name: Name::new(&"\u{9b}".repeat(2047)).unwrap(),
        payload: Bytes::new(),
    }
    .encode(&mut capture);
    Message::RetryResult {
        id: RequestId(*b"0002"),
        wait_ms: u32::MAX,
        payload: Bytes::from_static(b"\xff\xfe"),
    }
    .encode(&mut capture);
    Message::Heartbeat {
        load: u16::MAX,
        time: u32::MAX,
    }
    .encode(&mut capture);
    for preview in ["0", "1", "255", "100000"] {
        for json in [false, true] {
            let mut args = vec!["decode", "--preview", preview];
            if json {
                args.push("--json");
            }
            let out = gotalk(&args, &capture);
            assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
            assert_clean(&out.stdout, "decode");
        }
    }
    // The same through listen, where the printer runs inside the server.
    let listen = Daemon::start(
        &[
            "listen",
            "127.0.0.1:0",
            "--echo",
            "--preview",
            "1",
            "--count",
            "1",
        ],
        "listening on ",
    );
    let sock = gotalk::connect(&listen.addr).await.unwrap();
    let echoed = tokio::time::timeout(HANG, sock.buffer_request("é", "éé"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed[..], "éé".as_bytes());
    let out = listen.wait_async().await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_clean(&out.stdout, "listen with a cut preview");
}
