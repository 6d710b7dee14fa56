//! The HTTP side of a WebSocket server under attack, before any upgrade, with the default
//! [`gotalk::ServerOptions`]: idle connections and a client trickling its headers are closed
//! after the header timeout, and a flood of half-sent requests (from one address, or from
//! several up to the total cap) neither holds more connections than the caps allow nor keeps
//! a well-behaved client from upgrading.

#![cfg(feature = "websocket")]

mod hostile_support;

use std::time::Duration;

use gotalk::server::{DEFAULT_HTTP_HEADER_TIMEOUT, DEFAULT_MAX_HTTP_CONNECTIONS_PER_ADDRESS};
use hostile_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

child_server_test!();

fn ws_spec() -> ServerSpec {
    ServerSpec {
        bind: Some("ws://127.0.0.1:0/gotalk/".into()),
        ..Default::default()
    }
}

/// Reads until the server closes the connection (or resets it); what it sent on the way.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = vec![];
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the child holds at most `most` file descriptors.
async fn fds_down_to(pid: u32, most: usize) {
    within("the server lets go of the connections", async {
        while fd_count(pid) > most {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

const HALF_A_REQUEST: &[u8] =
    b"GET /gotalk/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_http_connections_are_closed_after_the_header_timeout() {
    let server = ChildServer::start(&ws_spec());
    check_well_behaved(&server.addr).await;
    let fds0 = fd_count(server.pid());
    let started = tokio::time::Instant::now();

    // 200 connections that send nothing, from 4 addresses (under the per-address share).
    let mut idle = vec![];
    for i in 0..200 {
        let local = format!("127.0.0.{}", 1 + i % 4);
        idle.push(tcp_from(&local, &server.addr).await.unwrap());
    }
    // One that sends its request head a byte a second: it would need minutes.
    let mut slow = tcp_from("127.0.0.5", &server.addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        let head = b"GET /gotalk/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n";
        let mut sent = 0;
        let (mut r, mut w) = slow.split();
        let mut byte = [0u8; 1];
        for b in head.iter() {
            tokio::select! {
                // Closed by the server.
                _ = r.read(&mut byte) => return sent,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if w.write_all(&[*b]).await.is_err() {
                return sent;
            }
            sent += 1;
        }
        sent
    });

    for s in &mut idle {
        let got = within("an idle connection is closed", until_closed(s)).await;
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{got:?}"
        );
    }
    let sent = within("the trickling connection is closed", trickle)
        .await
        .unwrap();
    eprintln!(
        "idle and trickling connections closed after {:?} (header timeout {DEFAULT_HTTP_HEADER_TIMEOUT:?}); the trickler got {sent} bytes out",
        started.elapsed()
    );
    assert!(
        sent < 60,
        "the trickling client sent its whole head ({sent} bytes)"
    );
    assert!(started.elapsed() >= DEFAULT_HTTP_HEADER_TIMEOUT / 2);
    fds_down_to(server.pid(), fds0 + 2).await;
    check_well_behaved(&server.addr).await;
}

/// Opens `n` connections from `local`, each sending half a request head; returns them.
async fn half_sent(server: &str, local: &str, n: usize) -> Vec<TcpStream> {
    let mut v = vec![];
    for _ in 0..n {
        let mut s = tcp_from(local, server).await.unwrap();
        // The server may already have closed it to make room for a later one.
        let _ = s.write_all(HALF_A_REQUEST).await;
        v.push(s);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_from_one_address_keep_nobody_out() {
    let server = ChildServer::start(&ws_spec());
    check_well_behaved(&server.addr).await;
    let fds0 = fd_count(server.pid());

    let flood = half_sent(&server.addr, "127.0.0.1", 300).await;
    // The address holds its share and no more (the oldest made room for the newer ones;
    // those are closed as soon as the server gets to them).
    fds_down_to(
        server.pid(),
        fds0 + DEFAULT_MAX_HTTP_CONNECTIONS_PER_ADDRESS + 2,
    )
    .await;
    let held = fd_count(server.pid()) - fds0;
    eprintln!("300 half-sent requests from one address: the server holds {held} of them");
    // A well-behaved client from the same address upgrades and is served, while the flood
    // still holds its connections.
    check_well_behaved(&server.addr).await;
    drop(flood);
    fds_down_to(server.pid(), fds0 + 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_up_to_the_total_cap_keep_nobody_out() {
    const MAX: usize = 200;
    let server = ChildServer::start(&ServerSpec {
        max_http_connections: Some(MAX),
        ..ws_spec()
    });
    check_well_behaved(&server.addr).await;
    let fds0 = fd_count(server.pid());

    let mut flood = vec![];
    for a in 2..7 {
        flood.extend(half_sent(&server.addr, &format!("127.0.0.{a}"), 60).await);
    }
    fds_down_to(server.pid(), fds0 + MAX + 2).await;
    let held = fd_count(server.pid()) - fds0;
    eprintln!("300 half-sent requests from 5 addresses: the server holds {held} of them");
    check_well_behaved(&server.addr).await;
    drop(flood);
    fds_down_to(server.pid(), fds0 + 2).await;
}
