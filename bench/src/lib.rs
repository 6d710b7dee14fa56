//! # gotalk-bench
//!
//! Benchmarks of gotalk-rs (see `BENCHMARKS.md` at the repository root for how to run them and
//! what they measured):
//!
//! - `benches/codec.rs`: criterion micro-benchmarks of the frame codec (encode and decode of 16 B
//!   and 1 MiB messages, in messages/s and bytes/s);
//! - the end-to-end echo matrix: [`echo-server`](../src/bin/echo-server.rs) and
//!   [`load-gen`](../src/bin/load-gen.rs) run as separate processes on loopback, and
//!   [`matrix`](../src/bin/matrix.rs) (started by `bench/matrix.sh`) runs every point against
//!   gotalk and against the *floor* and prints a markdown table with ratios;
//! - [`rooms-bench`](../src/bin/rooms-bench.rs): rooms and broadcast — fan-out to 1,000 and
//!   10,000 connections through `gotalk::rooms::Hub` against hand-written loops, memory per
//!   room member, and cross-process latency through a local Redis.
//!
//! The **floor** ([`floor`]) is the least any RPC over one TCP connection can cost: a minimal
//! tokio echo of length-prefixed frames (4-byte big-endian length, then the payload), pipelined
//! exactly like the gotalk load (N requests in flight per connection; each answer lets the next
//! request go). It does no routing, no request IDs and no allocation per message.
//!
//! ## Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`args`] | the tiny `--flag value` parser the binaries share |
//! | [`hist`] | a log-linear latency histogram (1.6 % resolution) |
//! | [`load`] | load options, results and the `RESULT key=value` line the matrix parses |
//! | [`floor`] | the floor: raw length-prefixed echo server and pipelined client |
//! | [`echo`] | the gotalk echo server and pipelined client |
//! | [`idle`] | idle connections and server RSS from `/proc` |
//! | [`pool`] | the pool client: a `gotalk::pool::Pool` over one or more echo servers (`pool-bench`) |
#![forbid(unsafe_code)]

pub mod args;
pub mod echo;
pub mod floor;
pub mod hist;
pub mod idle;
pub mod load;
pub mod pool;

/// The tokio runtime the benchmark binaries run on: multi-threaded with one worker per core
/// (what `#[tokio::main]` gives), or `--threads N` workers (`--threads 0`: a current-thread
/// runtime).
pub fn runtime(args: &args::Args) -> tokio::runtime::Runtime {
    let threads: usize = args.get("threads", usize::MAX);
    let mut b = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if threads != 0 && threads != usize::MAX {
        b.worker_threads(threads);
    }
    b.enable_all().build().expect("tokio runtime")
}
