//! Requests of every kind over real loopback TCP, in both directions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gotalk::handlers::State;
use gotalk::{Config, Error, HandlerError, Handlers, Limits, Server, Sock};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct GreetOut {
    greeting: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Fast,
    Slow,
}

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle("greet", |i: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", i.name),
        })
    });
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle_buffer("len", |_s, _op, p| async move {
        Ok(Bytes::from(p.len().to_string()))
    });
    h.handle("nothing", |_: ()| async move { Ok(()) });
    h.handle("mode", |m: Mode| async move { Ok(m) });
    h.handle_buffer("fail", |_s, _op, _p| async move {
        Err(HandlerError::msg("it failed"))
    });
    h.handle_buffer("panic", |_s, _op, _p| async move {
        if true {
            panic!("boom");
        }
        Ok(Bytes::new())
    });
    h.handle_stream("upper", |_s, _op, mut input, mut output| async move {
        while let Some(p) = input.recv().await? {
            output.write(p.to_ascii_uppercase()).await?;
        }
        Ok(())
    });
    h.handle_stream("count", |_s, _op, mut input, mut output| async move {
        let all = input.collect().await?;
        output.write(all.len().to_string()).await?;
        Ok(())
    });
    // Calls back into the requesting peer while the peer's request is in flight.
    h.handle_with_sock("ask-peer", |sock: Sock, q: String| async move {
        let a: String = sock.request("answer", &q).await?;
        Ok(format!("peer said {a}"))
    });
    h.handle_with_sock("notify-back", |sock: Sock, n: u32| async move {
        for i in 0..n {
            sock.notify("tick", &i).await?;
        }
        Ok(n)
    });
    h
}

async fn server() -> Server {
    let config = Config::new()
        .handlers(handlers())
        .limits(Limits::default().stream_requests(64));
    Server::bind("127.0.0.1:0", config).await.unwrap()
}

async fn client(server: &Server, h: Handlers) -> Sock {
    gotalk::connect_with(&server.local_addr().to_string(), &Config::new().handlers(h))
        .await
        .unwrap()
}

#[tokio::test]
async fn json_and_binary_payloads() {
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    let out: GreetOut = s
        .request("greet", &GreetIn { name: "Ada".into() })
        .await
        .unwrap();
    assert_eq!(out.greeting, "Hello Ada");
    s.request::<_, ()>("nothing", &()).await.unwrap();

    for payload in [
        Bytes::new(),
        Bytes::from_static(b"\x00\x01\x02\xfe\xff\x00"),
        Bytes::from(vec![0xa5u8; 1 << 20]),
    ] {
        let out = s.buffer_request("echo", payload.clone()).await.unwrap();
        assert_eq!(out, payload);
    }
    s.close();
}

/// A payload that does not decode is refused with the reference's text and, after it, what is
/// wrong with it; the server logs the same at level `debug`. The connection stays usable.
#[tokio::test]
async fn a_payload_that_does_not_decode_says_why() {
    let log = Log::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(log.clone())
            .finish(),
    );
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    let long = format!("\"{}\"", "x".repeat(100_000));
    let cases: [(&str, &[u8], &str); 6] = [
        (
            "greet",
            br#"{"nom":"Ada"}"#,
            "missing field `name` at line 1 column 13",
        ),
        (
            "greet",
            br#"{"name":5}"#,
            "invalid type: integer `5`, expected a string at line 1 column 9",
        ),
        (
            "greet",
            b"5",
            "invalid type: integer `5`, expected struct GreetIn at line 1 column 1",
        ),
        (
            "greet",
            b"",
            "the payload is empty (invalid type: null, expected struct GreetIn)",
        ),
        (
            "greet",
            b"{\"name\"",
            "EOF while parsing an object at line 1 column 7",
        ),
        // serde quotes an unknown variant as the peer wrote it: its control characters are
        // escaped.
        (
            "mode",
            br#""\u001b[2J""#,
            "unknown variant `\\u{1b}[2J`, expected `fast` or `slow` at line 1 column 11",
        ),
    ];
    for (op, payload, detail) in cases {
        let e = s.buffer_request(op, payload.to_vec()).await.unwrap_err();
        let want = format!("unexpected parameter type: {detail}");
        assert!(
            matches!(&e, Error::Remote(m) if *m == want),
            "{e:?}, want {want:?}"
        );
    }
    // What serde quotes of the payload is cut short rather than sent back whole.
    let e = s.buffer_request("notify-back", long).await.unwrap_err();
    let Error::Remote(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.starts_with("unexpected parameter type: invalid type: string \"xxx"),
        "{m}"
    );
    assert!(
        m.ends_with("xxx…") && m.len() < 400,
        "{} bytes: {m}",
        m.len()
    );
    assert_eq!(
        &s.buffer_request("echo", "still here").await.unwrap()[..],
        b"still here"
    );

    let logged = log.text();
    assert!(
        logged.contains("request payload does not decode")
            && logged.contains("op=\"greet\"")
            && logged.contains("missing field `name` at line 1 column 13"),
        "{logged}"
    );
    assert!(
        !logged.contains('\x1b'),
        "an escape sequence reached the log: {logged}"
    );
    s.close();
}

/// A chain of registrations goes straight to `Config::handlers`, and the handlers registered
/// through `with_state` (every kind) share one state without a clone moved into each closure.
#[tokio::test]
async fn a_chain_of_handlers_sharing_one_state() {
    #[derive(Default)]
    struct Board {
        notes: Mutex<Vec<String>>,
        seen: AtomicUsize,
    }
    let board = Arc::new(Board::default());
    let config = Config::new().handlers(
        Handlers::new()
            .handle_buffer("echo", |_s, _op, p| async move { Ok(p) })
            .with_state(board.clone())
            .handle("post", |State(b), note: String| async move {
                let mut notes = b.notes.lock().unwrap();
                notes.push(note);
                Ok(notes.len())
            })
            .handle_with_sock("list", |State(b), sock: Sock, (): ()| async move {
                let notes = b.notes.lock().unwrap().clone();
                Ok((notes, sock.requests_in_progress()))
            })
            .handle_buffer("raw", |State(b), _sock, op, p| async move {
                let n = b.notes.lock().unwrap().len();
                Ok(Bytes::from(format!("{op}: {n} notes, {} bytes", p.len())))
            })
            .handle_stream(
                "post-many",
                |State(b), _sock, _op, mut rx, mut tx| async move {
                    while let Some(p) = rx.recv().await? {
                        b.notes
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&p).into_owned());
                    }
                    let n = b.notes.lock().unwrap().len();
                    tx.write(n.to_string()).await?;
                    Ok(())
                },
            )
            .handle_notification("seen", |State(b), n: usize| {
                b.seen.fetch_add(n, Ordering::SeqCst);
            })
            .handle_notification_with_sock("seen-by", |State(b), sock: &Sock, n: usize| {
                if sock.peer_addr().is_some() {
                    b.seen.fetch_add(n * 100, Ordering::SeqCst);
                }
            }),
    );
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let s = client(&server, Handlers::new()).await;

    assert_eq!(s.request::<_, usize>("post", "milk").await.unwrap(), 1);
    let (mut tx, mut rx) = s.stream_request("post-many").await.unwrap();
    tx.write("eggs").await.unwrap();
    tx.write("bread").await.unwrap();
    tx.end().await.unwrap();
    assert_eq!(rx.collect().await.unwrap(), b"3");
    let (notes, in_progress): (Vec<String>, u32) = s.request("list", &()).await.unwrap();
    assert_eq!(
        (notes, in_progress),
        (vec!["milk".into(), "eggs".into(), "bread".into()], 1)
    );
    let raw = s.buffer_request("raw", "abc").await.unwrap();
    assert_eq!(&raw[..], b"raw: 3 notes, 3 bytes");
    s.notify("seen", &2).await.unwrap();
    s.notify("seen-by", &3).await.unwrap();
    // Notifications are handled in order, before the request that follows them.
    assert_eq!(&s.buffer_request("echo", "x").await.unwrap()[..], b"x");
    assert_eq!(board.seen.load(Ordering::SeqCst), 302);
    s.close();
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[tokio::test]
async fn errors_panics_and_unknown_operations_fail_only_their_request() {
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    let e = s.buffer_request("fail", "").await.unwrap_err();
    assert!(matches!(&e, Error::Remote(m) if m == "it failed"), "{e}");
    let e = s.buffer_request("panic", "").await.unwrap_err();
    assert!(matches!(&e, Error::Remote(m) if m.contains("boom")), "{e}");
    let e = s.buffer_request("nope", "").await.unwrap_err();
    assert!(
        matches!(&e, Error::Remote(m) if m == "unknown operation \"nope\""),
        "{e}"
    );
    // The connection is still fine.
    assert_eq!(
        &s.buffer_request("echo", "still here").await.unwrap()[..],
        b"still here"
    );
    assert!(!s.is_closed());
}

#[tokio::test]
async fn a_thousand_concurrent_requests_on_one_connection() {
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("request {i} {}", "x".repeat((i % 97) as usize));
            let out = s.buffer_request("echo", body.clone()).await.unwrap();
            assert_eq!(out, body.as_bytes());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.requests_pending(), 0);
}

#[tokio::test]
async fn streams_interleave_with_single_requests() {
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    let (mut tx, mut rx) = s.stream_request("upper").await.unwrap();
    let (mut tx2, mut rx2) = s.stream_request("count").await.unwrap();
    for i in 0..20 {
        tx.write(format!("part{i}")).await.unwrap();
        tx2.write(vec![b'z'; 10]).await.unwrap();
        // A single request between stream parts is answered without waiting for the streams.
        assert_eq!(&s.buffer_request("len", "abc").await.unwrap()[..], b"3");
        assert_eq!(
            rx.recv().await.unwrap().unwrap(),
            format!("PART{i}").as_bytes()
        );
    }
    tx.end().await.unwrap();
    tx2.end().await.unwrap();
    assert!(rx.recv().await.unwrap().is_none());
    assert_eq!(rx2.collect().await.unwrap(), b"200");
}

#[tokio::test]
async fn stream_requests_to_a_peer_without_streams_get_an_error() {
    let config = Config::new()
        .handlers(handlers())
        .limits(Limits::default().stream_requests(0));
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let s = client(&server, Handlers::new()).await;
    let (mut tx, mut rx) = s.stream_request("upper").await.unwrap();
    tx.write("a").await.unwrap();
    tx.end().await.unwrap();
    let e = rx.recv().await.unwrap_err();
    assert!(
        matches!(&e, Error::Remote(m) if m == "stream requests not supported"),
        "{e}"
    );
    // The parts that followed the refused request did not upset the connection.
    assert_eq!(&s.buffer_request("echo", "ok").await.unwrap()[..], b"ok");
}

#[tokio::test]
async fn server_calls_the_client_during_the_clients_request() {
    let server = server().await;
    let mut h = Handlers::new();
    h.handle("answer", |q: String| async move { Ok(format!("{q}!")) });
    let s = client(&server, h).await;
    let out: String = s.request("ask-peer", "hi").await.unwrap();
    assert_eq!(out, "peer said hi!");
}

#[tokio::test]
async fn notifications_both_ways_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server_seen = Arc::new(AtomicUsize::new(0));
    let mut sh = handlers();
    let ss = server_seen.clone();
    sh.handle_notification("hello", move |_: String| {
        ss.fetch_add(1, Ordering::SeqCst);
    });
    let server = Server::bind("127.0.0.1:0", Config::new().handlers(sh))
        .await
        .unwrap();
    let mut ch = Handlers::new();
    let sn = seen.clone();
    ch.handle_notification("tick", move |i: u32| sn.lock().unwrap().push(i));
    let s = client(&server, ch).await;
    let n: u32 = s.request("notify-back", &50u32).await.unwrap();
    assert_eq!(n, 50);
    // Notifications sent before the result arrive before it, in order.
    assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<_>>());
    for _ in 0..10 {
        s.notify("hello", "there").await.unwrap();
    }
    // Requests are answered in order after earlier notifications were handled.
    s.buffer_request("echo", "sync").await.unwrap();
    assert_eq!(server_seen.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn fallback_handlers_take_unknown_names() {
    let mut h = Handlers::new();
    h.handle_buffer("", |_s, op, p| async move {
        Ok(Bytes::from(format!("{op}:{}", String::from_utf8_lossy(&p))))
    });
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    h.handle_buffer_notification("", move |_s, name, p| {
        g.lock()
            .unwrap()
            .push(format!("{name}={}", String::from_utf8_lossy(&p)));
    });
    let (a, b) = gotalk::pipe_with(&Config::new(), &Config::new().handlers(h))
        .await
        .unwrap();
    assert_eq!(
        &a.buffer_request("anything", "x").await.unwrap()[..],
        b"anything:x"
    );
    a.buffer_notify("whatever", "y").await.unwrap();
    a.buffer_request("sync", "").await.unwrap();
    assert_eq!(*got.lock().unwrap(), vec!["whatever=y".to_owned()]);
    b.close();
}

#[tokio::test]
async fn unix_socket_server_and_client() {
    let dir = std::env::temp_dir().join(format!("gotalk-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let addr = format!("unix://{}", path.display());
    let server = Server::bind(&addr, Config::new().handlers(handlers()))
        .await
        .unwrap();
    let s = gotalk::connect(&addr).await.unwrap();
    let out: GreetOut = s
        .request(
            "greet",
            &GreetIn {
                name: "Unix".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(out.greeting, "Hello Unix");
    server.shutdown(Duration::from_secs(1)).await;
    assert!(!path.exists(), "shutdown removes the socket file");
}

#[tokio::test]
async fn user_data_peer_address_and_heartbeats() {
    let beats = Arc::new(AtomicUsize::new(0));
    let b = beats.clone();
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new()
            .handlers(handlers())
            .on_open(|s| s.insert_data(String::from("session-1")))
            .on_heartbeat(move |_s, load, _t| {
                if load == 7 {
                    b.fetch_add(1, Ordering::SeqCst);
                }
            }),
    )
    .await
    .unwrap();
    let s = gotalk::connect_with(
        &server.local_addr().to_string(),
        &Config::new().heartbeat_interval(Some(Duration::from_millis(20))),
    )
    .await
    .unwrap();
    s.set_heartbeat_load(Some(7));
    s.send_heartbeat(7).await.unwrap();
    assert!(s.peer_addr().unwrap().starts_with("127.0.0.1:"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while beats.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(beats.load(Ordering::SeqCst) >= 3);
    let conns = server.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(
        conns[0].data::<String>().as_deref().map(String::as_str),
        Some("session-1")
    );
}

#[tokio::test]
async fn process_wide_default_handlers_serve_sockets_without_handlers() {
    gotalk::handle("default-greet", |name: String| async move {
        Ok(format!("hi {name}"))
    });
    gotalk::handle_buffer("default-echo", |_s, _op, p| async move { Ok(p) });
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    gotalk::handle_notification("default-note", move |_: serde_json::Value| {
        s2.fetch_add(1, Ordering::SeqCst);
    });
    // Sockets take a snapshot of the defaults when they open.
    let (a, b) = gotalk::pipe().await.unwrap();
    let out: String = a.request("default-greet", "you").await.unwrap();
    assert_eq!(out, "hi you");
    assert_eq!(
        &b.buffer_request("default-echo", "x").await.unwrap()[..],
        b"x"
    );
    a.notify("default-note", &1).await.unwrap();
    a.buffer_request("default-echo", "sync").await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn abandoned_requests_leave_nothing_pending() {
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    // A stream request dropped before it was sent, and one dropped mid-way.
    let (tx, rx) = s.stream_request("upper").await.unwrap();
    drop((tx, rx));
    let (mut tx, mut rx) = s.stream_request("upper").await.unwrap();
    tx.write("a").await.unwrap();
    assert_eq!(&rx.recv().await.unwrap().unwrap()[..], b"A");
    drop(rx);
    tx.end().await.unwrap();
    // A request abandoned by its caller's timeout.
    let r = tokio::time::timeout(Duration::from_millis(1), async {
        loop {
            s.buffer_request("echo", "x").await.unwrap();
        }
    })
    .await;
    assert!(r.is_err());
    assert_eq!(
        &s.buffer_request("echo", "sync").await.unwrap()[..],
        b"sync"
    );
    assert_eq!(s.requests_pending(), 0);
}

/// A notification encoded once goes out on several connections; `try_notify` refuses at once,
/// instead of waiting, when a connection's peer does not read.
#[tokio::test]
async fn an_encoded_notification_reaches_every_peer_and_a_full_one_is_refused_at_once() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    let g = got.clone();
    h.handle_notification("news", move |s: String| g.lock().unwrap().push(s));
    let server = Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let a = gotalk::connect(&addr).await.unwrap();
    let b = gotalk::connect(&addr).await.unwrap();
    let n = gotalk::Notification::json("news", "hello").unwrap();
    assert_eq!(n.name(), "news");
    assert_eq!(n.wire_len(), "n004news00000007\"hello\"".len());
    a.try_notify(&n).unwrap();
    b.send_notification(&n).await.unwrap();
    for _ in 0..200 {
        if got.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*got.lock().unwrap(), vec!["hello", "hello"]);

    // A peer that never reads: a raw TCP connection that only sent its version.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_addr = listener.local_addr().unwrap().to_string();
    let raw = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"01")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    let config = Config::new().limits(Limits::default().write_buffer(4 << 10));
    let sock = gotalk::connect_with(&raw_addr, &config).await.unwrap();
    let big = gotalk::Notification::new("news", vec![b'x'; 1 << 20]).unwrap();
    let mut sent = 0;
    let full = loop {
        match sock.try_notify(&big) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10_000, "never refused");
    };
    assert!(matches!(full, Error::Full), "{full:?}");
    sock.close();
    assert!(matches!(sock.try_notify(&big), Err(Error::Closed(_))));
    raw.abort();
}

/// A payload whose size a header cannot carry (over 4 GiB) is refused before anything is
/// written, instead of going out with a clamped size that would corrupt the connection.
#[tokio::test]
async fn payloads_over_u32_max_are_refused_before_anything_is_written() {
    let server = server().await;
    let s = client(&server, Handlers::new()).await;
    // Zeroed pages are not touched: this costs address space, not memory.
    let huge = Bytes::from(vec![0u8; u32::MAX as usize + 1]);
    for res in [
        s.buffer_request("echo", huge.clone()).await.map(|_| ()),
        s.buffer_notify("tick", huge.clone()).await,
        gotalk::Notification::new("tick", huge.clone()).map(|_| ()),
    ] {
        match res {
            Err(Error::PayloadTooLarge { size, limit }) => {
                assert_eq!((size, limit), (huge.len(), u32::MAX as usize));
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
    }
    let (mut tx, _rx) = s.stream_request("upper").await.unwrap();
    assert!(matches!(
        tx.write(huge.clone()).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    drop(huge);
    // Nothing was written: the connection is fine.
    assert_eq!(&s.buffer_request("echo", "ok").await.unwrap()[..], b"ok");
}
