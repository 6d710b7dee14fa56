//! Faults without loss: when the server process is killed, or the connection is cut in the
//! middle of a message, every request still waiting on the client fails at once with an error
//! that says why; nothing waits for a timeout and nothing is dropped silently.

mod hostile_support;

use std::time::Duration;

use gotalk::{CloseReason, Config, Error};
use hostile_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

child_server_test!();

const PENDING: usize = 50;

fn client_config() -> Config {
    // No heartbeats and the default 30 s read timeout: if a pending request were only
    // resolved by a timeout, the test's 20 s hang guard would fire first.
    Config::new().heartbeat_interval(None).auto_retry(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_fails_every_pending_request_at_once() {
    let mut server = ChildServer::start(&ServerSpec {
        stream_requests: Some(4),
        ..Default::default()
    });
    let sock = gotalk::connect_with(&server.addr, &client_config())
        .await
        .unwrap();
    let mut pending = vec![];
    for _ in 0..PENDING {
        let s = sock.clone();
        pending.push(tokio::spawn(
            async move { s.buffer_request("hold", "").await },
        ));
    }
    // A stream request in progress too: its receiver must learn about the loss as well.
    let (mut tx, mut rx) = sock.stream_request("sink").await.unwrap();
    tx.write("part").await.unwrap();
    // Wait until the server is really handling all of them.
    within("requests reach the server", async {
        while stats(&server.addr).await.in_progress < PENDING as u32 + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(sock.requests_pending(), PENDING + 1);

    server.kill9();

    for p in pending {
        match within("pending request resolved", p).await.unwrap() {
            Err(Error::Closed(reason)) => assert!(
                matches!(reason, CloseReason::PeerClosed | CloseReason::Io { .. }),
                "unexpected reason {reason:?}"
            ),
            other => panic!("expected Error::Closed, got {other:?}"),
        }
    }
    match within("stream resolved", rx.recv()).await {
        Err(Error::Closed(_)) => {}
        other => panic!("expected Error::Closed from the stream, got {other:?}"),
    }
    let reason = within("closed", sock.closed()).await;
    eprintln!("client saw: {reason}");
    assert_eq!(sock.requests_pending(), 0);
    // New requests fail at once too.
    assert!(matches!(
        sock.buffer_request("echo", "x").await,
        Err(Error::Closed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_message_fails_every_pending_request() {
    // A scripted server: takes the requests, starts answering the first one, and is cut off
    // after a few bytes of its payload.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let script = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"01").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        // Read until all the requests are in (each is "r" + id + "004echo00000001x").
        while seen.len() < 2 + PENDING * 21 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        let first_id = &seen[3..7];
        let mut answer = b"R".to_vec();
        answer.extend_from_slice(first_id);
        answer.extend_from_slice(b"0000000aabc");
        s.write_all(&answer).await.unwrap();
        // Cut: the process goes away, the socket is closed under the client.
    });
    let sock = gotalk::connect_with(&addr, &client_config()).await.unwrap();
    let mut pending = vec![];
    for _ in 0..PENDING {
        let s = sock.clone();
        pending.push(tokio::spawn(
            async move { s.buffer_request("echo", "x").await },
        ));
    }
    within("script", script).await.unwrap();
    for p in pending {
        match within("pending request resolved", p).await.unwrap() {
            Err(Error::Closed(CloseReason::Io { message: text, .. })) => assert!(
                text.contains("middle of a message"),
                "unexpected reason {text:?}"
            ),
            other => panic!("expected Error::Closed(Io), got {other:?}"),
        }
    }
    assert_eq!(sock.requests_pending(), 0);
}
