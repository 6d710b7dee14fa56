//! Limits, timeouts, protocol errors, closing and shutdown, over real loopback TCP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gotalk::{CloseReason, Config, Error, Handlers, Limits, ProtocolErrorCode, Server, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn slow_handlers(calls: Arc<AtomicUsize>) -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("slow", move |_s, _op, p| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let ms: u64 = std::str::from_utf8(&p)?.parse()?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(p)
        }
    });
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h
}

fn addr(s: &Server) -> String {
    s.local_addr().to_string()
}

#[tokio::test]
async fn request_limit_answers_retry_and_auto_retry_succeeds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limits = Limits::default()
        .buffer_requests(1)
        .retry_wait(Duration::from_millis(30), Duration::from_millis(30));
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new()
            .handlers(slow_handlers(calls.clone()))
            .limits(limits),
    )
    .await
    .unwrap();

    // Without retries the caller sees the RetryResult and its wait.
    let plain = gotalk::connect_with(&addr(&server), &Config::new().auto_retry(0))
        .await
        .unwrap();
    let busy = {
        let p = plain.clone();
        tokio::spawn(async move { p.buffer_request("slow", "300").await })
    };
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = plain.buffer_request("echo", "x").await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_millis(30)), "{e}");
    assert!(e.to_string().contains("request rate limit"));
    busy.await.unwrap().unwrap();

    // With retries (the default) the request goes through once the slot is free.
    let sock = gotalk::connect(&addr(&server)).await.unwrap();
    let busy = {
        let s = sock.clone();
        tokio::spawn(async move { s.buffer_request("slow", "100").await })
    };
    while calls.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(&sock.buffer_request("echo", "y").await.unwrap()[..], b"y");
    busy.await.unwrap().unwrap();

    // Retries are bounded: a peer that always says "retry" ends in Error::Retry.
    let mut h = Handlers::new();
    h.handle_buffer("never", |_s, _op, _p| async move {
        Err(gotalk::HandlerError::retry(
            Duration::from_millis(1),
            "busy",
        ))
    });
    let (a, _b) = gotalk::pipe_with(&Config::new().auto_retry(3), &Config::new().handlers(h))
        .await
        .unwrap();
    let e = a.buffer_request("never", "").await.unwrap_err();
    assert!(
        matches!(&e, Error::Retry { message, .. } if message == "busy"),
        "{e}"
    );
}

#[tokio::test]
async fn oversized_payload_gets_an_error_and_the_connection_stays_usable() {
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new()
            .handlers(slow_handlers(Default::default()))
            .limits(Limits::default().max_payload(1024)),
    )
    .await
    .unwrap();
    let s = gotalk::connect(&addr(&server)).await.unwrap();
    let e = s
        .buffer_request("echo", Bytes::from(vec![1u8; 4096]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Remote(m) if m.starts_with("payload too large (4096 bytes; limit 1024)")),
        "{e}"
    );
    assert_eq!(
        &s.buffer_request("echo", "small").await.unwrap()[..],
        b"small"
    );

    // A result larger than our own limit fails that request only.
    let small = gotalk::connect_with(
        &addr(&server),
        &Config::new().limits(Limits::default().max_payload(8)),
    )
    .await
    .unwrap();
    let e = small
        .buffer_request("echo", "0123456789")
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::PayloadTooLarge { size: 10, limit: 8 }),
        "{e}"
    );
    assert_eq!(
        &small.buffer_request("echo", "tiny").await.unwrap()[..],
        b"tiny"
    );
}

#[tokio::test]
async fn read_timeout_closes_with_code_3_on_both_sides() {
    let server_reason = Arc::new(Mutex::new(None));
    let sr = server_reason.clone();
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new()
            .limits(Limits::default().read_timeout(Some(Duration::from_millis(150))))
            .on_close(move |_s, r| *sr.lock().unwrap() = Some(r.clone())),
    )
    .await
    .unwrap();
    let s = gotalk::connect_with(&addr(&server), &Config::new().heartbeat_interval(None))
        .await
        .unwrap();
    let reason = s.closed().await;
    assert_eq!(
        reason,
        CloseReason::Protocol {
            code: ProtocolErrorCode::TIMEOUT,
            by: Side::Remote,
            detail: String::new()
        }
    );
    let r = server_reason.lock().unwrap().clone().unwrap();
    assert_eq!(r.protocol_error_code(), Some(ProtocolErrorCode::TIMEOUT));
    assert!(matches!(
        r,
        CloseReason::Protocol {
            by: Side::Local,
            ..
        }
    ));
}

#[tokio::test]
async fn a_peer_with_another_version_gets_code_1() {
    // Our client against a server speaking version 2.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        c.write_all(b"02").await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        got
    });
    let e = gotalk::connect(&a).await.unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion(2)), "{e}");
    assert_eq!(peer.await.unwrap(), b"01f00000001");
}

#[tokio::test]
async fn garbage_gets_code_2_and_a_close() {
    let reason = Arc::new(Mutex::new(None));
    let r = reason.clone();
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new().on_close(move |_s, why| *r.lock().unwrap() = Some(why.clone())),
    )
    .await
    .unwrap();
    let mut c = TcpStream::connect(addr(&server).trim_start_matches("tcp://"))
        .await
        .unwrap();
    c.write_all(b"01R0001zzzzzzzz").await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"01f00000002");
    let r = reason.lock().unwrap().clone().unwrap();
    assert_eq!(
        r.protocol_error_code(),
        Some(ProtocolErrorCode::INVALID_MSG)
    );
    assert!(
        r.to_string().contains("payload size must be 8 hex digits"),
        "{r}"
    );
}

#[tokio::test]
async fn server_dying_mid_request_fails_pending_requests_at_once() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        c.write_all(b"01").await.unwrap();
        // Read the handshake and some of the requests, then vanish.
        let mut buf = [0u8; 64];
        let _ = c.read(&mut buf).await;
        drop(c);
    });
    let s = gotalk::connect(&a).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        pending.push(tokio::spawn(async move {
            s.buffer_request("anything", format!("{i}")).await
        }));
    }
    for p in pending {
        let e = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("pending request resolved promptly")
            .unwrap()
            .unwrap_err();
        assert!(e.is_closed(), "{e}");
    }
    assert!(s.is_closed());
    // New requests fail at once with the reason.
    let e = s.buffer_request("x", "").await.unwrap_err();
    assert!(e.is_closed(), "{e}");
}

#[tokio::test]
async fn closing_fails_our_pending_requests_and_streams() {
    let mut h = Handlers::new();
    h.handle_buffer("hang", |_s, _op, _p| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Bytes::new())
    });
    let (a, b) = gotalk::pipe_with(
        &Config::new(),
        &Config::new()
            .handlers(h)
            .limits(Limits::default().stream_requests(1)),
    )
    .await
    .unwrap();
    let req = {
        let a = a.clone();
        tokio::spawn(async move { a.buffer_request("hang", "").await })
    };
    let (_tx, mut rx) = a.stream_request("nothing").await.unwrap();
    while a.requests_pending() < 2 {
        tokio::task::yield_now().await;
    }
    a.close();
    assert!(matches!(
        req.await.unwrap(),
        Err(Error::Closed(CloseReason::Local))
    ));
    assert!(rx.recv().await.unwrap_err().is_closed());
    assert_eq!(b.closed().await, CloseReason::PeerClosed);
}

/// A server, a client, and a `slow` request of `ms` milliseconds in progress on the server.
async fn server_with_request_in_progress(
    ms: &'static str,
) -> (
    Server,
    gotalk::Sock,
    tokio::task::JoinHandle<gotalk::Result<Bytes>>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new().handlers(slow_handlers(calls.clone())),
    )
    .await
    .unwrap();
    let s = gotalk::connect(&addr(&server)).await.unwrap();
    let inflight = {
        let s = s.clone();
        tokio::spawn(async move { s.buffer_request("slow", ms).await })
    };
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (server, s, inflight)
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_progress() {
    let (server, s, inflight) = server_with_request_in_progress("200").await;
    server.shutdown(Duration::from_secs(10)).await;
    assert_eq!(&inflight.await.unwrap().unwrap()[..], b"200");
    assert_eq!(s.closed().await, CloseReason::PeerClosed);
    assert_eq!(server.connection_count(), 0);
    assert!(gotalk::connect(&addr(&server)).await.is_err());
}

#[tokio::test]
async fn shutdown_grace_is_bounded() {
    let (server, _s, inflight) = server_with_request_in_progress("60000").await;
    server.shutdown(Duration::from_millis(50)).await;
    let e = inflight.await.unwrap().unwrap_err();
    assert!(e.is_closed(), "{e}");
}

#[tokio::test]
async fn a_panicking_callback_closes_only_its_connection_with_a_reason() {
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new()
            .handlers(slow_handlers(Default::default()))
            .on_heartbeat(|_s, load, _t| {
                if load == 666 {
                    panic!("callback bug");
                }
            }),
    )
    .await
    .unwrap();
    let victim = gotalk::connect(&addr(&server)).await.unwrap();
    let other = gotalk::connect(&addr(&server)).await.unwrap();
    let pending = {
        let v = victim.clone();
        tokio::spawn(async move { v.buffer_request("slow", "5000").await })
    };
    victim.send_heartbeat(666).await.unwrap();
    let reason = victim.closed().await;
    assert_eq!(
        reason.protocol_error_code(),
        Some(ProtocolErrorCode::ABNORMAL),
        "{reason}"
    );
    assert!(pending.await.unwrap().unwrap_err().is_closed());
    assert_eq!(
        &other.buffer_request("echo", "fine").await.unwrap()[..],
        b"fine"
    );
}
