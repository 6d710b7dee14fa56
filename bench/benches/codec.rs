//! Codec micro-benchmarks: encode and decode of 16 B and 1 MiB messages.
//!
//! Each case runs in two groups with the same code: `*_msgs` reports messages/s, `*_bytes`
//! reports bytes/s (whole encoded messages, header included). Small messages are processed
//! 1000 to an iteration, as a reader or writer sees them under load.
//!
//! ```text
//! cargo bench -p gotalk-bench --bench codec
//! ```
//! - encode: the header into a reused buffer plus the payload copied after it, as
//!   [`Message::encode`] does (the connection writer avoids the copy for payloads above 1 KiB by
//!   writing them from their own buffer: `encode_header` only);
//! - decode: [`Decoder::decode`] of buffered messages; payloads are split off, not copied.
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::{Message, Name, RequestId};

const SMALL: usize = 16;
const LARGE: usize = 1 << 20;
const SMALL_BATCH: usize = 1000;

fn request(size: usize) -> Message {
    Message::SingleRequest {
        id: RequestId(*b"0a1Z"),
        op: Name::from_static("echo").expect("short name"),
        payload: Bytes::from(vec![7u8; size]),
    }
}

fn cases() -> [(&'static str, Message, usize); 2] {
    [
        ("16B", request(SMALL), SMALL_BATCH),
        ("1MiB", request(LARGE), 1),
    ]
}

fn encode(c: &mut Criterion) {
    for unit in ["msgs", "bytes"] {
        let mut g = c.benchmark_group(format!("encode_{unit}"));
        for (name, msg, n) in cases() {
            let wire = msg.header_len() + msg.payload().len();
            g.throughput(if unit == "msgs" {
                Throughput::Elements(n as u64)
            } else {
                Throughput::Bytes((n * wire) as u64)
            });
            let mut dst = BytesMut::with_capacity(n * wire);
            g.bench_function(name, |b| {
                b.iter(|| {
                    dst.clear();
                    for _ in 0..n {
                        black_box(&msg).encode(&mut dst);
                    }
                    black_box(dst.len())
                })
            });
            if unit != "msgs" {
                // Its bytes/s would count payload bytes it never touches.
                continue;
            }
            g.bench_function(format!("{name}_header_only"), |b| {
                b.iter(|| {
                    dst.clear();
                    for _ in 0..n {
                        black_box(&msg).encode_header(&mut dst);
                    }
                    black_box(dst.len())
                })
            });
        }
        g.finish();
    }
}

fn decode(c: &mut Criterion) {
    for unit in ["msgs", "bytes"] {
        let mut g = c.benchmark_group(format!("decode_{unit}"));
        for (name, msg, n) in cases() {
            let mut wire = BytesMut::new();
            for _ in 0..n {
                msg.encode(&mut wire);
            }
            let wire = wire.freeze();
            g.throughput(if unit == "msgs" {
                Throughput::Elements(n as u64)
            } else {
                Throughput::Bytes(wire.len() as u64)
            });
            let size = if n == 1 {
                BatchSize::LargeInput
            } else {
                BatchSize::SmallInput
            };
            g.bench_function(name, |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&wire[..]),
                    |buf| {
                        let mut dec = Decoder::without_version(u32::MAX);
                        let mut got = 0;
                        while let Some(d) = dec.decode(buf).expect("valid input") {
                            if let Decoded::Message(m) = d {
                                got += m.payload().len();
                            }
                        }
                        assert_eq!(got, n * msg.payload().len());
                        got
                    },
                    size,
                )
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = encode, decode
}
criterion_main!(benches);
