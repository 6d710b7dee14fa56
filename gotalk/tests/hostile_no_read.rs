//! A peer that sends requests but never reads the responses: the server's writes back up into
//! the bounded write queue, the write timeout (300 ms here) closes the slow peer, the server's
//! memory stays bounded meanwhile, and other connections are served throughout.

mod hostile_support;

use std::time::Duration;

use hostile_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

child_server_test!();

const RESULT_SIZE: usize = 1 << 20;
const REQUESTS: u32 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_closed_and_others_are_served() {
    never_reads(REQUESTS as usize).await;
}

/// A burst: every request in one write, so that many arrive in one read and their handlers
/// finish while the reader runs them. Before the fix the answers of one read all kept their
/// results (about 2 GiB here) whatever the request limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_cannot_pile_up_answers() {
    never_reads(1).await;
}

/// Sends the requests in `writes` writes (1 ms apart) and reads nothing.
async fn never_reads(writes: usize) {
    let server = ChildServer::start(&ServerSpec {
        write_timeout_ms: Some(300),
        write_buffer: Some(16 << 10),
        buffer_requests: Some(8),
        ..Default::default()
    });
    check_well_behaved(&server.addr).await;
    let base = stats(&server.addr).await;

    // Ask for 2000 results of 1 MiB each (2 GiB in all) and read none of them.
    let mut attacker = RawPeer::connect(&server.addr).await;
    let mut flood = vec![];
    for i in 0..REQUESTS {
        flood.extend(req(rid(i), "big", RESULT_SIZE.to_string().as_bytes()));
    }
    // Spread over 2000 writes, each handler finishes before the next request arrives and the
    // request limit alone never turns one away: what bounds the server then is that a finished
    // handler keeps its request slot until its answer fits in the write queue (before that
    // fix, this grew the server by ~1 MiB per request). The server may stop reading once it
    // is blocked on us; the writes end when it hangs up.
    let writer = tokio::spawn(async move {
        for one in flood.chunks(flood.len().div_ceil(writes)) {
            if attacker.stream.write_all(one).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        attacker
    });

    // The server closes the connection on its own (the attacker has not read a byte), and a
    // well-behaved connection is served while that happens.
    let mut peak_rss = 0;
    within("server closes the non-reading peer", async {
        loop {
            check_well_behaved(&server.addr).await;
            let s = stats(&server.addr).await;
            peak_rss = peak_rss.max(s.rss_kb);
            // The stats connection itself is the only one left once the attacker is gone.
            if s.connections <= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let grown = peak_rss.saturating_sub(base.rss_kb);
    eprintln!(
        "server RSS {} KiB, peak {peak_rss} KiB (+{grown} KiB) while a peer did not read \
         {REQUESTS} x 1 MiB results",
        base.rss_kb
    );
    // Bounded by (request limit + write queue) results plus socket buffers: tens of MiB, not
    // the 2 GiB asked for.
    assert!(grown < 96 * 1024, "server memory grew by {grown} KiB");

    // What the attacker can still read is a fraction of what it asked for, then the end.
    let mut attacker = within("attacker write ends", writer).await.unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    within("attacker reads to the end", async {
        while let Ok(n) = attacker.stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got += n;
        }
    })
    .await;
    assert!(
        got < (REQUESTS as usize) * RESULT_SIZE / 4,
        "the server kept writing to a peer that did not read ({got} bytes)"
    );
    check_well_behaved(&server.addr).await;
}
