//! The echo server of a peer RPC crate, run as its own process by the benchmark matrix.
//!
//! ```text
//! peer-server --proto tarpc|jsonrpsee [--addr 127.0.0.1:0]
//! ```
//! Prints `LISTENING <address>` once it accepts connections (`host:port` for tarpc, the
//! `ws://host:port` URL for jsonrpsee), then serves until killed, like `echo-server`.

use std::io::Write;

use gotalk_bench::args::{fail, Args};
use gotalk_bench_peers::{jsonrpsee_echo, tarpc_echo};

#[tokio::main]
async fn main() {
    let args = Args::from_env(&[]);
    let proto = args.text("proto").unwrap_or("tarpc").to_owned();
    let addr = args.text("addr").unwrap_or("127.0.0.1:0").to_owned();
    let served = match proto.as_str() {
        "tarpc" => tarpc_echo::serve(&addr, announce).await,
        "jsonrpsee" => jsonrpsee_echo::serve(&addr, announce).await,
        other => fail(&format!("unknown --proto {other:?} (tarpc, jsonrpsee)")),
    };
    if let Err(e) = served {
        fail(&format!("{proto} server on {addr}: {e}"));
    }
}

fn announce(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LISTENING {addr}");
    let _ = out.flush();
}
