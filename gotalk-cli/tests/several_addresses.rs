//! `gotalk call` and `gotalk bench` given several addresses (separated by commas): the built
//! binary against real servers on loopback, one of them sometimes down.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use gotalk::{Config, Handlers, Limits, Server};
use serde_json::Value;

/// A server whose `echo` answers with its payload and counts, and whose `sum` stream answers
/// with the total size of the parts.
async fn server() -> (Server, String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let mut h = Handlers::new();
    h.handle_buffer("echo", move |_s, _op, p| {
        c.fetch_add(1, Ordering::Relaxed);
        async move { Ok(p) }
    });
    h.handle_stream("sum", |_s, _op, mut input, mut output| async move {
        let mut total = 0usize;
        while let Some(part) = input.recv().await? {
            total += part.len();
        }
        output.write(Bytes::from(total.to_string())).await?;
        Ok(())
    });
    let mut limits = Limits::default();
    limits.stream_requests = 4;
    let config = Config::new().handlers(h).limits(limits);
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().to_string();
    (server, addr, count)
}

/// An address where nothing listens.
fn nobody() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", l.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_goes_to_an_address_that_answers() {
    let (_server, addr, count) = server().await;
    let addrs = format!("{},{addr}", nobody());
    let out = gotalk_async(
        &["call", &addrs, "echo", "--raw", "hi", "--timeout", "10s"],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi");
    assert_eq!(count.load(Ordering::Relaxed), 1);

    // A stream request goes through the pool too.
    let out = gotalk_async(&["call", &addrs, "sum", "--stream"], b"ab\ncde\n").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_every_address_down_says_why_for_each() {
    let (x, y) = (nobody(), nobody());
    let addrs = format!("{x},{y}");
    let out = gotalk_async(&["call", &addrs, "echo", "--timeout", "2s"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no responder"), "{err}");
    assert!(err.contains(&x) && err.contains(&y), "{err}");

    // Nothing but commas is a usage error.
    let out = gotalk_async(&["call", ",", "echo"], b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_spreads_the_load_over_several_addresses() {
    let (_a, addr_a, count_a) = server().await;
    let (_b, addr_b, count_b) = server().await;
    let addrs = format!("{addr_a},{addr_b}");
    let out = gotalk_async(
        &[
            "bench",
            &addrs,
            "--inflight",
            "8",
            "--duration",
            "300ms",
            "--json",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["errors"], 0, "{r}");
    let responders = r["responders"].as_array().expect("responders");
    assert_eq!(responders.len(), 2, "{r}");
    let sent: u64 = responders
        .iter()
        .map(|x| x["requests"].as_u64().unwrap())
        .sum();
    assert!(
        responders.iter().all(|x| x["requests"].as_u64() > Some(0)),
        "{r}"
    );
    let served = (count_a.load(Ordering::Relaxed) + count_b.load(Ordering::Relaxed)) as u64;
    assert!(count_a.load(Ordering::Relaxed) > 0 && count_b.load(Ordering::Relaxed) > 0);
    // Every request counted by the client reached a server (answered or cut off at the end).
    assert!(served >= r["requests"].as_u64().unwrap(), "{served} {r}");
    assert_eq!(sent, served, "{r}");

    // An address that cannot be reached fails the run, naming it.
    let dead = nobody();
    let out = gotalk_async(
        &["bench", &format!("{addr_a},{dead}"), "--duration", "100ms"],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&dead), "{}", text(&out.stderr));
}
