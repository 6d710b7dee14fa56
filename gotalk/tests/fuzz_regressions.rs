//! Inputs that once broke a connection, found by the fuzz targets in `fuzz/` and the property
//! tests: each is fed to a whole connection (a [`Sock`] over an in-memory duplex, as the
//! `connection` fuzz target does), which must answer sensibly and stay usable or close with a
//! protocol error, never panic or hang.

use std::time::Duration;

use bytes::BytesMut;
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::Message;
use gotalk::{Config, Handlers, Sock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Feeds `input` to a server connection and returns everything it answered until it closed or
/// went quiet.
async fn feed(input: &[u8]) -> Vec<Message> {
    let (mut peer, ours) = tokio::io::duplex(1 << 16);
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    let config = Config::new().handlers(h).heartbeat_interval(None).limits(
        gotalk::Limits::default()
            .max_payload(1024)
            .stream_requests(4),
    );
    let server = tokio::spawn(async move { Sock::adopt(ours, &config, None).await });
    peer.write_all(input).await.unwrap();
    let mut out = vec![];
    let mut buf = BytesMut::new();
    let mut dec = Decoder::new(u32::MAX);
    loop {
        match tokio::time::timeout(Duration::from_millis(300), peer.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
        while let Ok(Some(d)) = dec.decode(&mut buf) {
            if let Decoded::Message(m) = d {
                out.push(m);
            }
        }
    }
    if let Ok(Ok(sock)) = server.await {
        sock.close();
    }
    out
}

#[tokio::test]
async fn empty_operation_name_gets_unknown_operation() {
    // Panicked the reader task before frame::message_from_parts learned about empty names.
    let out = feed(b"01r000100000000002hin00000000000r0002004echo00000002ok").await;
    let texts: Vec<String> = out
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
        .collect();
    assert_eq!(texts, vec!["unknown operation \"\"", "ok"], "{out:?}");
}

#[tokio::test]
async fn fuzz_connection_crash_ffde5a36() {
    // Found by the `connection` fuzz target within seconds on the code before the empty-name
    // fix (artifact crash-ffde5a36ca4f15ca88c090faf9bb199965078483): the `s` with an empty
    // name behind a run of requests panicked the reader, which the core turned into
    // ProtocolError 0.
    let input = b"01recho005greet000000058\x00{01recAA00bstream-echo00000000sAAAA00bstream-echo0000000Eb00001r\x00\x00\x00\x00005sleep0000000000000s\"m\"Rasm<\x9a";
    let out = feed(input).await;
    assert!(
        !out.contains(&Message::ProtocolError {
            code: gotalk::ProtocolErrorCode::ABNORMAL
        }),
        "the connection broke down: {out:?}"
    );
}
