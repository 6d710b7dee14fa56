//! The incremental decoder fed arbitrary bytes in arbitrary pieces.
//!
//! Input layout: byte 0 picks the payload limit, byte 1 the piece size, the rest is the byte
//! stream (with or without the leading version). Checks, besides "never panics":
//! - feeding in pieces gives the same frames (and the same error, if any) as feeding it whole;
//! - after decoding all it can, the decoder never leaves more than one header plus the payload
//!   limit in the buffer: a reader never has to hold more than that;
//! - no decoded payload exceeds the limit.
#![no_main]

use bytes::BytesMut;
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::MAX_HEADER_LEN;
use libfuzzer_sys::fuzz_target;

fn run(dec: &mut Decoder, data: &[u8], piece: usize) -> (Vec<Decoded>, bool) {
    let limit = dec.max_payload() as usize;
    let mut buf = BytesMut::new();
    let mut out = vec![];
    for chunk in data.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(d)) => {
                    if let Decoded::Message(m) = &d {
                        assert!(m.payload().len() <= limit, "payload over the limit");
                    }
                    out.push(d);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(
            buf.len() < MAX_HEADER_LEN + limit,
            "{} bytes buffered with a limit of {limit}",
            buf.len()
        );
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = match data[0] % 4 {
        0 => 0,
        1 => u32::from(data[0]),
        2 => 4096,
        _ => u32::MAX,
    };
    let piece = usize::from(data[1]) + 1;
    let with_version = data[0] & 0x80 != 0;
    let bytes = &data[2..];
    let new = || {
        if with_version {
            Decoder::new(limit)
        } else {
            Decoder::without_version(limit)
        }
    };
    let whole = run(&mut new(), bytes, bytes.len());
    let pieces = run(&mut new(), bytes, piece);
    if !whole.1 && !pieces.1 {
        assert_eq!(whole.0, pieces.0, "splitting changed the frames");
    } else {
        // An error ends decoding; the frames before it are the same either way.
        let n = whole.0.len().min(pieces.0.len());
        assert_eq!(whole.0[..n], pieces.0[..n]);
    }
});
