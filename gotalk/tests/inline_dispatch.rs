//! The reader runs a buffer handler until it first waits: handlers that finish at once are
//! answered together after each read, handlers that wait go on in a task of their own. Both
//! paths, panics on both, and an idle connection (whose read buffer is given back) over TCP.

use std::time::Duration;

use gotalk::{Bytes, Config, Error, Handlers, Server};

async fn server() -> Server {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle_buffer("later", |_s, _op, p| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(p)
    });
    h.handle_buffer("panic-now", |_s, _op, _p| async move {
        if true {
            panic!("at once");
        }
        Ok(Bytes::new())
    });
    h.handle_buffer("panic-later", |_s, _op, _p| async move {
        tokio::task::yield_now().await;
        if true {
            panic!("after a wait");
        }
        Ok(Bytes::new())
    });
    Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_waiting_handlers_answer_their_own_requests() {
    let server = server().await;
    let sock = gotalk::connect(&server.local_addr().to_string())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let sock = sock.clone();
        tasks.push(tokio::spawn(async move {
            let op = if i % 3 == 0 { "later" } else { "echo" };
            let body = Bytes::from(format!("{op}-{i}"));
            let out = sock.buffer_request(op, body.clone()).await.unwrap();
            assert_eq!(out, body);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sock.requests_pending(), 0);
}

#[tokio::test]
async fn panics_fail_only_their_request() {
    let server = server().await;
    let sock = gotalk::connect(&server.local_addr().to_string())
        .await
        .unwrap();
    for (op, text) in [("panic-now", "at once"), ("panic-later", "after a wait")] {
        match sock.buffer_request(op, "x").await {
            Err(Error::Remote(msg)) => assert!(msg.contains(text), "{msg}"),
            other => panic!("{op}: {other:?}"),
        }
    }
    assert_eq!(
        &sock.buffer_request("echo", "still here").await.unwrap()[..],
        b"still here"
    );
}

#[tokio::test]
async fn idle_connection_reads_large_messages_again() {
    let server = server().await;
    let sock = gotalk::connect(&server.local_addr().to_string())
        .await
        .unwrap();
    for size in [1, 511, 512, 513, 4096, 100_000, 3] {
        // Idle between requests, so that each one arrives on a connection without a buffer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let body = Bytes::from(vec![b'z'; size]);
        assert_eq!(
            sock.buffer_request("echo", body.clone()).await.unwrap(),
            body
        );
    }
}
