//! The echo server of the benchmark matrix, run as its own process.
//!
//! ```text
//! echo-server --proto floor|gotalk|ws [--addr 127.0.0.1:0] [--threads N]
//!             [--delay-ms MS] [--limit N] [--heartbeat-ms MS] [--retry-ms MS]
//! ```
//! Prints `LISTENING <address>` once it accepts connections (`host:port`, or for `ws` the
//! `ws://host:port/gotalk/` URL), then serves until killed. `gotalk` serves a buffer operation
//! `echo` over TCP with default limits and heartbeats, `ws` the same over WebSocket; `floor`
//! serves the raw length-prefixed echo (see `gotalk_bench::floor`).
//!
//! For the pool benchmarks (`pool-bench`), a gotalk responder can wait `--delay-ms` before
//! answering (an I/O-bound operation), take at most `--limit` requests at a time per
//! connection (more get a RetryResult asking for `--retry-ms`), and send heartbeats every
//! `--heartbeat-ms` (carrying, by default, its load: requests in progress against the limit).

use std::io::Write;
use std::time::Duration;

use gotalk_bench::args::{fail, Args};
use gotalk_bench::echo::{responder_config, Responder};

fn main() {
    let args = Args::from_env(&[]);
    gotalk_bench::runtime(&args).block_on(run(args));
}

async fn run(args: Args) {
    let proto = args.text("proto").unwrap_or("gotalk").to_owned();
    let addr = args.text("addr").unwrap_or("127.0.0.1:0").to_owned();
    match proto.as_str() {
        "floor" => {
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .unwrap_or_else(|e| fail(&format!("bind {addr}: {e}")));
            announce(&l.local_addr().expect("local addr").to_string());
            if let Err(e) = gotalk_bench::floor::serve(l).await {
                fail(&format!("accept: {e}"));
            }
        }
        "gotalk" | "ws" => {
            let addr = if proto == "ws" {
                format!("ws://{addr}/gotalk/")
            } else {
                addr
            };
            let ms = |name| {
                Some(args.get(name, 0u64))
                    .filter(|&ms| ms > 0)
                    .map(Duration::from_millis)
            };
            let responder = Responder {
                delay: ms("delay-ms"),
                limit: Some(args.get("limit", 0u32)).filter(|&n| n > 0),
                heartbeat: ms("heartbeat-ms"),
                retry: ms("retry-ms"),
            };
            let server = gotalk::Server::bind(&addr, responder_config(&responder))
                .await
                .unwrap_or_else(|e| fail(&format!("bind {addr}: {e}")));
            let a = server.local_addr().to_string();
            announce(a.strip_prefix("tcp://").unwrap_or(&a));
            std::future::pending::<()>().await;
        }
        other => fail(&format!("unknown --proto {other:?} (floor, gotalk, ws)")),
    }
}

fn announce(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LISTENING {addr}");
    let _ = out.flush();
}
