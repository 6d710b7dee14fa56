//! Graceful shutdown loses nothing: requests in progress are answered before the connections
//! close, and notifications already sent reach the peer.

mod hostile_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gotalk::{CloseReason, Config, Handlers};
use hostile_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_progress() {
    let server = bind(&ServerSpec::default()).await;
    let addr = server.local_addr().to_string();
    let sock = gotalk::connect_with(&addr, &Config::new().heartbeat_interval(None))
        .await
        .unwrap();
    let mut calls = vec![];
    for _ in 0..20 {
        let s = sock.clone();
        calls.push(tokio::spawn(async move {
            s.buffer_request("sleep", "200").await
        }));
    }
    within("requests in progress", async {
        while server
            .connections()
            .iter()
            .map(|s| s.requests_in_progress())
            .sum::<u32>()
            < 20
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    within("shutdown", server.shutdown(Duration::from_secs(10))).await;
    for c in calls {
        let out = within("answer", c)
            .await
            .unwrap()
            .expect("request lost in shutdown");
        assert_eq!(&out[..], b"slept");
    }
    assert_eq!(
        within("client closed", sock.closed()).await,
        CloseReason::PeerClosed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_notifications_already_sent() {
    const N: usize = 2_000;
    let server = bind(&ServerSpec::default()).await;
    let addr = server.local_addr().to_string();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let mut h = Handlers::new();
    h.handle_buffer_notification("tick", move |_s, _n, p| {
        // In order, none missing.
        let n: usize = std::str::from_utf8(&p).unwrap().parse().unwrap();
        assert_eq!(n, g.fetch_add(1, Ordering::SeqCst));
    });
    let sock = gotalk::connect_with(&addr, &Config::new().handlers(h).heartbeat_interval(None))
        .await
        .unwrap();
    let conn = within("server sees the connection", async {
        loop {
            if let Some(c) = server.connections().pop() {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Sent means queued: the shutdown comes right behind them.
    for i in 0..N {
        conn.buffer_notify("tick", i.to_string()).await.unwrap();
    }
    within("shutdown", server.shutdown(Duration::from_secs(5))).await;
    within("client closed", sock.closed()).await;
    assert_eq!(
        got.load(Ordering::SeqCst),
        N,
        "notifications lost in shutdown"
    );
}
