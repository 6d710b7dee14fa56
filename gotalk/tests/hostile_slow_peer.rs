//! Peers that hold a connection open without completing messages: one sends a header and then
//! nothing, one trickles a byte at a time, one never sends its protocol version. The read
//! timeout (300 ms here) closes each with ProtocolError 3, and a well-behaved peer is served
//! throughout.

mod hostile_support;

use std::time::Duration;

use gotalk::frame::Message;
use gotalk::ProtocolErrorCode;
use hostile_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn spec() -> ServerSpec {
    ServerSpec {
        read_timeout_ms: Some(300),
        ..Default::default()
    }
}

/// What a closed attacker saw: must end with ProtocolError 3 and nothing else.
fn assert_timed_out(seen: Vec<Message>) {
    assert_eq!(
        seen,
        vec![Message::ProtocolError {
            code: ProtocolErrorCode::TIMEOUT
        }],
        "the server should have closed the slow peer with ProtocolError 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_then_silence_is_closed_by_the_read_timeout() {
    let server = bind(&spec()).await;
    let addr = server.local_addr().to_string();
    let mut silent = RawPeer::connect(&addr).await;
    silent.send(b"r0001004echo00000010abc").await.unwrap();
    let mut half_header = RawPeer::connect(&addr).await;
    half_header.send(b"r0001004ec").await.unwrap();

    // Meanwhile a well-behaved client is served (its requests complete well within 300 ms).
    check_well_behaved(&addr).await;
    assert_timed_out(within("silent peer closed", silent.until_closed()).await);
    assert_timed_out(within("half-header peer closed", half_header.until_closed()).await);
    check_well_behaved(&addr).await;
    within("connections released", async {
        while server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_at_a_time_is_closed_by_the_read_timeout() {
    let server = bind(&spec()).await;
    let addr = server.local_addr().to_string();
    let mut trickle = RawPeer::connect(&addr).await;
    // A byte every 50 ms keeps the socket busy but never completes a message within 300 ms:
    // the timeout counts from the last complete message, not the last byte.
    let msg = req(rid(1), "echo", &[b'x'; 64]);
    let mut sent = 0;
    let closed = within("trickling peer closed", async {
        for b in &msg {
            if trickle.send(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Stop as soon as the server has hung up.
            let mut probe = [0u8; 64];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::ZERO, trickle.stream.peek(&mut probe)).await
            {
                if n > 0 {
                    break;
                }
            }
        }
        trickle.until_closed().await
    })
    .await;
    assert!(
        sent < msg.len(),
        "the whole message trickled through before the server closed the connection"
    );
    assert_timed_out(closed);
    check_well_behaved(&addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_sends_its_version_is_dropped() {
    // The handshake wait is bounded too (Config::handshake_timeout, 10 s by default); with a
    // 300 ms read timeout it is the read timeout that ends the connection first.
    let server = bind(&spec()).await;
    let addr = server.local_addr().to_string();
    let mut s = tokio::net::TcpStream::connect(&addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let mut got = Vec::new();
    within("mute peer dropped", s.read_to_end(&mut got))
        .await
        .ok();
    // The server sends its version and, when it gives up, a timeout protocol error.
    assert_eq!(
        String::from_utf8_lossy(&got),
        "01f00000003",
        "the server should send its version, then ProtocolError 3, then close"
    );
    check_well_behaved(&addr).await;
    let _ = s.shutdown().await;
}
