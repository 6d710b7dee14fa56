//! Property tests of the codec: encode → decode gives back every message; any split of the
//! input gives the same messages; arbitrary bytes never panic; the bytes a reader must buffer
//! never exceed one header plus the payload limit.

use bytes::{Bytes, BytesMut};
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::{Message, Name, RequestId, MAX_HEADER_LEN};
use gotalk::ProtocolErrorCode;
use proptest::prelude::*;

fn id() -> impl Strategy<Value = RequestId> {
    any::<[u8; 4]>().prop_map(RequestId)
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        "[a-z/._-]{0,24}",
        "\\PC{0,40}",
        Just("x".repeat(gotalk::frame::MAX_NAME_LEN)),
    ]
    .prop_map(|s| Name::new(&s).unwrap())
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Bytes::from),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (id(), name(), payload()).prop_map(|(id, op, payload)| Message::SingleRequest {
            id,
            op,
            payload
        }),
        (id(), name(), payload()).prop_map(|(id, op, payload)| Message::StreamRequest {
            id,
            op,
            payload
        }),
        (id(), payload()).prop_map(|(id, payload)| Message::StreamRequestPart { id, payload }),
        (id(), payload()).prop_map(|(id, payload)| Message::SingleResult { id, payload }),
        (id(), payload()).prop_map(|(id, payload)| Message::StreamResult { id, payload }),
        (id(), payload()).prop_map(|(id, payload)| Message::ErrorResult { id, payload }),
        (id(), any::<u32>(), payload()).prop_map(|(id, wait_ms, payload)| {
            Message::RetryResult {
                id,
                wait_ms,
                payload,
            }
        }),
        (name(), payload()).prop_map(|(name, payload)| Message::Notification { name, payload }),
        (any::<u16>(), any::<u32>()).prop_map(|(load, time)| Message::Heartbeat { load, time }),
        any::<u32>().prop_map(|c| Message::ProtocolError {
            code: ProtocolErrorCode(c)
        }),
    ]
}

/// Decodes everything in `chunks` fed one after another, as a reader would.
fn decode_chunks(dec: &mut Decoder, chunks: &[&[u8]]) -> Result<Vec<Decoded>, String> {
    let mut buf = BytesMut::new();
    let mut out = vec![];
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes left over", buf.len()));
    }
    Ok(out)
}

fn encode_all(msgs: &[Message]) -> Vec<u8> {
    let mut buf = BytesMut::from(&b"01"[..]);
    for m in msgs {
        m.encode(&mut buf);
    }
    buf.to_vec()
}

fn as_decoded(msgs: Vec<Message>) -> Vec<Decoded> {
    std::iter::once(Decoded::Version(1))
        .chain(msgs.into_iter().map(Decoded::Message))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_gives_the_messages_back(msgs in proptest::collection::vec(message(), 0..12)) {
        let bytes = encode_all(&msgs);
        let got = decode_chunks(&mut Decoder::new(u32::MAX), &[&bytes]).unwrap();
        prop_assert_eq!(got, as_decoded(msgs));
    }

    #[test]
    fn any_split_gives_the_same_messages(
        msgs in proptest::collection::vec(message(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let bytes = encode_all(&msgs);
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut chunks = vec![];
        let mut from = 0;
        for &a in &at {
            chunks.push(&bytes[from..a]);
            from = a;
        }
        chunks.push(&bytes[from..]);
        let got = decode_chunks(&mut Decoder::new(u32::MAX), &chunks).unwrap();
        prop_assert_eq!(got, as_decoded(msgs));
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_messages(msgs in proptest::collection::vec(message(), 1..4)) {
        let bytes = encode_all(&msgs);
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let got = decode_chunks(&mut Decoder::new(u32::MAX), &chunks).unwrap();
        prop_assert_eq!(got, as_decoded(msgs));
    }

    /// Arbitrary bytes (raw, or mutations of valid streams) never panic, and whatever the
    /// decoder leaves in the buffer after decoding all it can stays below one header plus the
    /// payload limit: a reader never has to hold more than that for one message.
    #[test]
    fn arbitrary_bytes_never_panic_and_buffering_is_bounded(
        input in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4096),
            (proptest::collection::vec(message(), 1..6), proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8))
                .prop_map(|(msgs, flips)| {
                    let mut b = encode_all(&msgs);
                    for (i, v) in flips { let n = b.len(); b[i.index(n)] = v; }
                    b
                }),
        ],
        max_payload in prop_oneof![Just(0u32), 1u32..64, Just(1024), Just(u32::MAX)],
        chunk in 1usize..512,
    ) {
        for mut dec in [Decoder::new(max_payload), Decoder::without_version(max_payload)] {
            let mut buf = BytesMut::new();
            'feed: for c in input.chunks(chunk) {
                buf.extend_from_slice(c);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(Decoded::Message(m))) => {
                            prop_assert!(m.payload().len() as u64 <= u64::from(max_payload));
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                prop_assert!(
                    (buf.len() as u64) < MAX_HEADER_LEN as u64 + u64::from(max_payload),
                    "{} bytes buffered with a limit of {}", buf.len(), max_payload
                );
            }
        }
    }

    /// Headers announcing any size up to 0xFFFFFFFF above the limit are reported as oversized
    /// at once, and their payload is skipped as it arrives.
    #[test]
    fn oversized_payloads_are_skipped(size in 65u32.., junk in 0usize..300, next in message()) {
        let mut dec = Decoder::without_version(64);
        let mut buf = BytesMut::from(format!("r0001004echo{size:08x}").as_bytes());
        match dec.decode(&mut buf).unwrap() {
            Some(Decoded::Oversized(o)) => prop_assert_eq!(o.size, size),
            other => prop_assert!(false, "{:?}", other),
        }
        let junk = junk.min(size as usize);
        buf.extend(std::iter::repeat_n(b'j', junk));
        prop_assert!(dec.decode(&mut buf).unwrap().is_none());
        prop_assert!(buf.is_empty());
        if junk as u32 == size {
            next.encode(&mut buf);
            let got = dec.decode(&mut buf).unwrap();
            if next.payload().len() <= 64 {
                prop_assert_eq!(got, Some(Decoded::Message(next)));
            }
        } else {
            prop_assert!(dec.is_discarding());
        }
    }
}

/// Found by `encode_then_decode_gives_the_messages_back`: a request or notification with an
/// empty name panicked the decoder (the name was sliced out of header bytes it had not kept).
#[test]
fn empty_names_decode() {
    let mut dec = Decoder::without_version(1024);
    let mut buf = BytesMut::from(&b"n00000000000r000100000000002hi"[..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Decoded::Message(Message::Notification {
            name: Name::new("").unwrap(),
            payload: Bytes::new()
        }))
    );
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Decoded::Message(Message::SingleRequest {
            id: RequestId(*b"0001"),
            op: Name::new("").unwrap(),
            payload: Bytes::from_static(b"hi")
        }))
    );
}
