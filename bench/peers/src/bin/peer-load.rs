//! The load generator for a peer RPC crate, run as its own process by the benchmark matrix.
//!
//! ```text
//! peer-load --proto tarpc|jsonrpsee --addr ADDRESS [--conns 1] [--inflight 1] [--size 16]
//!           [--duration 3] [--warmup 0.5] [--server-pid PID]
//! ```
//! ADDRESS is what `peer-server` printed. Keeps `inflight` echo requests of `size` bytes
//! outstanding on each of `conns` connections and prints the same one line as `load-gen`:
//! `RESULT proto=.. rps=.. mbps=.. p50_us=.. p90_us=.. p99_us=.. ...`. Exits non-zero if any
//! answer's length was not the request's.

use gotalk_bench::args::{fail, Args};
use gotalk_bench::load::LoadOptions;
use gotalk_bench_peers::{jsonrpsee_echo, tarpc_echo};

#[tokio::main]
async fn main() {
    let args = Args::from_env(&[]);
    let proto = args.text("proto").unwrap_or("tarpc").to_owned();
    let addr = args
        .text("addr")
        .unwrap_or_else(|| fail("--addr is required"))
        .to_owned();
    if args.text("idle").is_some() {
        fail("peer-load does not measure idle connections (--idle)");
    }
    let opts = LoadOptions::from_args(&args);
    let res = match proto.as_str() {
        "tarpc" => tarpc_echo::load(&addr, &opts).await,
        "jsonrpsee" => jsonrpsee_echo::load(&addr, &opts).await,
        other => fail(&format!("unknown --proto {other:?} (tarpc, jsonrpsee)")),
    }
    .unwrap_or_else(|e| fail(&format!("load: {e}")));
    println!("{res}");
    if res.tally.bad > 0 {
        fail(&format!(
            "{} answers did not match their request",
            res.tally.bad
        ));
    }
}
