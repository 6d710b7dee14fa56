//! A peer that announces payloads up to 0xFFFFFFFF bytes: the server refuses each with an
//! ErrorResult as soon as the header arrives, skips the payload as it streams in without
//! buffering it, keeps the connection usable, and keeps serving everyone else. The server runs
//! in a child process so that its resident memory can be measured.

mod hostile_support;

use gotalk::frame::Message;
use hostile_support::*;

child_server_test!();

const MIB: usize = 1 << 20;

/// Sends `total` bytes of junk in 64 KiB writes.
async fn pour(peer: &mut RawPeer, total: usize) {
    let chunk = vec![b'z'; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        peer.send(&chunk[..n])
            .await
            .expect("server stopped reading");
        left -= n;
    }
}

fn expect_too_large(m: Option<Message>, id: u32, size: u32) {
    match m {
        Some(Message::ErrorResult { id: got, payload }) => {
            assert_eq!(got, rid(id));
            let text = String::from_utf8_lossy(&payload);
            assert!(
                text.starts_with(&format!("payload too large ({size} bytes")),
                "unexpected error text {text:?}"
            );
        }
        other => panic!("expected ErrorResult for an oversized request, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_4gib_payloads_are_refused_without_allocating() {
    let limit = MIB as u32;
    let server = ChildServer::start(&ServerSpec {
        max_payload: Some(limit),
        ..Default::default()
    });
    check_well_behaved(&server.addr).await;
    let base_rss = stats(&server.addr).await.rss_kb;

    // Many connections each announce a 4 GiB payload; one of them really sends 64 MiB of it.
    let mut peers = vec![];
    for _ in 0..32 {
        let mut p = RawPeer::connect(&server.addr).await;
        p.send(b"r0001004echoffffffff").await.unwrap();
        peers.push(p);
    }
    for p in &mut peers {
        expect_too_large(within("error result", p.next()).await, 1, u32::MAX);
    }
    pour(&mut peers[0], 64 * MIB).await;
    // Other sizes just over the limit, on the way: each refused, none buffered.
    for size in [limit + 1, 0x7fff_ffff, 0x8000_0000] {
        let mut p = RawPeer::connect(&server.addr).await;
        p.send(format!("r0002004echo{size:08x}").as_bytes())
            .await
            .unwrap();
        expect_too_large(within("error result", p.next()).await, 2, size);
        // No more than announced: what follows the payload is read as the next message.
        pour(&mut p, (2 * MIB).min(size as usize)).await;
        peers.push(p);
    }

    // Everyone else is served meanwhile, and at the limit itself payloads still get through.
    check_well_behaved(&server.addr).await;
    let sock = gotalk::connect(&server.addr).await.unwrap();
    let at_limit = vec![7u8; limit as usize];
    let out = within(
        "echo at the limit",
        sock.buffer_request("echo", at_limit.clone()),
    )
    .await
    .unwrap();
    assert_eq!(out.len(), at_limit.len());
    match sock
        .buffer_request("echo", vec![0u8; limit as usize + 1])
        .await
    {
        Err(gotalk::Error::Remote(text)) => assert!(text.starts_with("payload too large")),
        other => panic!("expected a refusal over the limit, got {other:?}"),
    }
    sock.close();

    let after = stats(&server.addr).await;
    let grown_kb = after.rss_kb.saturating_sub(base_rss);
    eprintln!(
        "server RSS: {base_rss} KiB before, {} KiB after 32 x 4 GiB announcements \
         and 70 MiB poured (+{grown_kb} KiB)",
        after.rss_kb
    );
    // 64 MiB were streamed at the server; with a 1 MiB limit it may hold a few MiB of buffers
    // (the one at-limit echo, socket buffers), never the payload.
    assert!(
        grown_kb < 24 * 1024,
        "server memory grew by {grown_kb} KiB while discarding oversized payloads"
    );

    drop(peers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_is_usable_after_an_oversized_payload_is_skipped() {
    let server = ChildServer::start(&ServerSpec {
        max_payload: Some(1000),
        ..Default::default()
    });
    let mut p = RawPeer::connect(&server.addr).await;
    // An oversized request, its full payload, then a normal request, all in one write.
    let mut bytes = b"r0001004echo00001000".to_vec();
    bytes.extend(std::iter::repeat(b'q').take(0x1000));
    bytes.extend(req(rid(2), "echo", b"still here"));
    p.send(&bytes).await.unwrap();
    expect_too_large(within("error", p.next()).await, 1, 0x1000);
    match within("echo", p.next()).await {
        Some(Message::SingleResult { id, payload }) => {
            assert_eq!(id, rid(2));
            assert_eq!(&payload[..], b"still here");
        }
        other => panic!("expected the echo result, got {other:?}"),
    }
    // Oversized notifications, stream requests and results are skipped too.
    let mut bytes = b"n004ping00002000".to_vec();
    bytes.extend(std::iter::repeat(b'n').take(0x2000));
    bytes.extend(b"R9999ffffffff");
    p.send(&bytes).await.unwrap();
    // The server keeps reading (and discarding) 4 MiB of the announced 4 GiB: if it stopped,
    // these writes would block once the socket buffers are full.
    within("server keeps discarding", pour(&mut p, 4 * MIB)).await;
    check_well_behaved(&server.addr).await;
}
