//! A peer that opens thousands of stream requests and never ends them: past the stream limit
//! each gets a RetryResult at once, the server holds at most the limit's worth of open streams
//! (memory bounded per connection), and a well-behaved connection is served meanwhile.

mod hostile_support;

use std::collections::HashSet;

use gotalk::frame::{Message, RequestId};
use hostile_support::*;
use tokio::io::AsyncWriteExt;

child_server_test!();

const STREAMS: u32 = 8;
const FLOOD: u32 = 5_000;
const ATTACKERS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_get_retry_results() {
    let server = ChildServer::start(&ServerSpec {
        stream_requests: Some(STREAMS),
        ..Default::default()
    });
    check_well_behaved(&server.addr).await;
    let base = stats(&server.addr).await;

    let mut conns = vec![];
    for _ in 0..ATTACKERS {
        let (mut rd, mut wr) = RawPeer::connect(&server.addr).await.split();
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            for i in 0..FLOOD {
                // Each stream starts with a part, and gets one more, but never its end.
                batch.extend(sreq(rid(i), "sink", b"first part"));
                if batch.len() > 64 * 1024 {
                    wr.write_all(&batch).await.unwrap();
                    batch.clear();
                }
            }
            wr.write_all(&batch).await.unwrap();
            wr
        });
        let mut retried = HashSet::new();
        while retried.len() < (FLOOD - STREAMS) as usize {
            match within("retry results", rd.next()).await {
                Some(Message::RetryResult { id, payload, .. }) => {
                    assert_eq!(&payload[..], b"request rate limit");
                    assert!(retried.insert(id), "two answers for {id}");
                }
                other => panic!("expected RetryResult, got {other:?}"),
            }
        }
        let wr = within("flood written", writer).await.unwrap();
        let open: Vec<RequestId> = (0..FLOOD)
            .map(rid)
            .filter(|id| !retried.contains(id))
            .collect();
        assert_eq!(open.len(), STREAMS as usize);
        conns.push((rd, wr, open));
    }

    let during = stats(&server.addr).await;
    assert_eq!(during.in_progress, STREAMS * ATTACKERS, "open streams");
    check_well_behaved(&server.addr).await;
    let grown = during.rss_kb.saturating_sub(base.rss_kb);
    eprintln!(
        "server RSS {} KiB -> {} KiB (+{grown} KiB) with {} stream requests opened",
        base.rss_kb,
        during.rss_kb,
        FLOOD * ATTACKERS
    );
    assert!(grown < 16 * 1024, "server memory grew by {grown} KiB");

    // The streams that were let in still work: more parts, then the end, then their results.
    for (rd, wr, open) in &mut conns {
        let mut bytes = vec![];
        for id in open.iter() {
            bytes.extend(bytes_of(&Message::StreamRequestPart {
                id: *id,
                payload: bytes::Bytes::from_static(b"12345"),
            }));
            bytes.extend(bytes_of(&Message::StreamRequestPart {
                id: *id,
                payload: bytes::Bytes::new(),
            }));
        }
        wr.write_all(&bytes).await.unwrap();
        let mut ended = HashSet::new();
        while ended.len() < open.len() {
            match within("stream results", rd.next()).await {
                Some(Message::StreamResult { id, payload }) if payload.is_empty() => {
                    assert!(ended.insert(id));
                }
                Some(Message::StreamResult { id, payload }) => {
                    assert!(open.contains(&id));
                    assert_eq!(&payload[..], b"15", "first part (10) + 5 bytes");
                }
                other => panic!("expected stream results, got {other:?}"),
            }
        }
    }
    let after = stats(&server.addr).await;
    assert_eq!(after.in_progress, 0);
}
