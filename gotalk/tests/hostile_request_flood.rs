//! A flood of requests faster than handlers finish: with a per-connection request limit, the
//! requests over the limit get a RetryResult at once, the server's memory stays bounded, and a
//! well-behaved connection is served meanwhile (limits count per connection).

mod hostile_support;

use std::collections::HashSet;

use gotalk::frame::Message;
use hostile_support::*;
use tokio::io::AsyncWriteExt;

child_server_test!();

const LIMIT: u32 = 16;
const FLOOD: u32 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_limit_get_retry_results() {
    let server = ChildServer::start(&ServerSpec {
        buffer_requests: Some(LIMIT),
        ..Default::default()
    });
    check_well_behaved(&server.addr).await;
    let base = stats(&server.addr).await;

    let attacker = RawPeer::connect(&server.addr).await;
    let (mut rd, mut wr) = attacker.split();
    // Pipeline the whole flood in large writes, without waiting for anything.
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        for i in 0..FLOOD {
            batch.extend(req(rid(i), "hold", b""));
            if batch.len() > 64 * 1024 {
                wr.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        wr.write_all(&batch).await.unwrap();
        wr
    });
    // Every request over the limit is answered with a RetryResult right away.
    let mut retried = HashSet::new();
    while retried.len() < (FLOOD - LIMIT) as usize {
        match within("retry results", rd.next()).await {
            Some(Message::RetryResult { id, payload, .. }) => {
                assert_eq!(&payload[..], b"request rate limit");
                assert!(retried.insert(id), "two answers for {id}");
            }
            other => panic!("expected RetryResult, got {other:?}"),
        }
    }
    let _wr = within("flood written", writer).await.unwrap();

    // Exactly LIMIT are held; another connection is served meanwhile.
    let during = stats(&server.addr).await;
    assert_eq!(during.in_progress, LIMIT);
    check_well_behaved(&server.addr).await;
    let grown = during.rss_kb.saturating_sub(base.rss_kb);
    eprintln!(
        "server RSS {} KiB -> {} KiB (+{grown} KiB) after {FLOOD} pipelined requests",
        base.rss_kb, during.rss_kb
    );
    assert!(grown < 16 * 1024, "server memory grew by {grown} KiB");

    // Released, the held requests complete: none was lost.
    let sock = gotalk::connect(&server.addr).await.unwrap();
    sock.buffer_request("release", "").await.unwrap();
    let mut held = HashSet::new();
    while held.len() < LIMIT as usize {
        match within("held results", rd.next()).await {
            Some(Message::SingleResult { id, payload }) => {
                assert_eq!(&payload[..], b"held");
                assert!(!retried.contains(&id) && held.insert(id));
            }
            other => panic!("expected a result, got {other:?}"),
        }
    }
    sock.close();
}
