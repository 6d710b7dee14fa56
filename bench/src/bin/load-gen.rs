//! The load generator of the benchmark matrix, run as its own process.
//!
//! ```text
//! load-gen --proto floor|gotalk|ws --addr ADDRESS [--conns 1] [--inflight 1] [--size 16]
//!          [--duration 3] [--warmup 0.5] [--threads N] [--driver tasks|futures]
//! load-gen --proto pool --addr ADDRESS[,ADDRESS...] [--balance least-loaded|round-robin]
//!          [--pool-timeout SECONDS|none] [--inflight 1] [--size 16] [...]
//! load-gen --proto floor|gotalk|ws --addr ADDRESS --idle N --server-pid PID
//! ```
//! ADDRESS is what `echo-server` printed (`host:port`, or a `ws://` URL for `ws`). `pool`
//! sends the same echo requests through a `gotalk::pool::Pool` over every ADDRESS (one connection
//! each, `--inflight` requests in flight over all of them; `--conns` is ignored).
//! The first form keeps `inflight` echo requests of `size` bytes outstanding on each of
//! `conns` connections and prints one line
//! `RESULT proto=.. rps=.. mbps=.. p50_us=.. p90_us=.. p99_us=.. ...`.
//! The second opens `N` idle connections and prints
//! `RESULT proto=.. idle=N rss_before_kib=.. rss_after_kib=.. kib_per_conn=..`, measured from
//! the server's `/proc/PID/status`.

use std::time::Duration;

use gotalk::pool::Balance;
use gotalk_bench::args::{fail, Args};
use gotalk_bench::idle;
use gotalk_bench::load::LoadOptions;
use gotalk_bench::pool::PoolSetup;

fn main() {
    let args = Args::from_env(&[]);
    gotalk_bench::runtime(&args).block_on(run(args));
}

async fn run(args: Args) {
    let proto = args.text("proto").unwrap_or("gotalk").to_owned();
    let addr = args
        .text("addr")
        .unwrap_or_else(|| fail("--addr is required"))
        .to_owned();
    let gotalk = match proto.as_str() {
        "floor" => false,
        "gotalk" | "ws" | "pool" => true,
        other => fail(&format!(
            "unknown --proto {other:?} (floor, gotalk, ws, pool)"
        )),
    };
    let idle_n: usize = args.get("idle", 0);
    if idle_n > 0 {
        let pid: u32 = args.get("server-pid", 0);
        if pid == 0 {
            fail("--idle needs --server-pid");
        }
        let before = idle::rss_kib(pid).unwrap_or_else(|e| fail(&format!("rss: {e}")));
        let held = idle::open(&addr, idle_n, gotalk)
            .await
            .unwrap_or_else(|e| fail(&format!("opening idle connections: {e}")));
        let after = idle::rss_kib(pid).unwrap_or_else(|e| fail(&format!("rss: {e}")));
        let per = after.saturating_sub(before) as f64 / held.len() as f64;
        println!(
            "RESULT proto={proto} idle={} rss_before_kib={before} rss_after_kib={after} \
             kib_per_conn={per:.2}",
            held.len()
        );
        drop(held);
        return;
    }
    let opts = LoadOptions::from_args(&args);
    let res = if proto == "pool" {
        let addrs: Vec<String> = addr.split(',').map(str::to_owned).collect();
        let setup = PoolSetup {
            balance: match args.text("balance") {
                None | Some("least-loaded") => Balance::LeastLoaded,
                Some("round-robin") => Balance::RoundRobin,
                Some(other) => fail(&format!(
                    "unknown --balance {other:?} (least-loaded, round-robin)"
                )),
            },
            timeout: match args.text("pool-timeout") {
                None => None,
                Some("none") => Some(None),
                Some(_) => Some(Some(Duration::from_secs_f64(args.get("pool-timeout", 0.0)))),
            },
        };
        gotalk_bench::pool::load(&proto, &addrs, &opts, setup)
            .await
            .unwrap_or_else(|e| fail(&format!("load: {e}")))
    } else if gotalk {
        gotalk_bench::echo::load(&proto, &addr, &opts)
            .await
            .unwrap_or_else(|e| fail(&format!("load: {e}")))
    } else {
        gotalk_bench::floor::load(&addr, &opts)
            .await
            .unwrap_or_else(|e| fail(&format!("load: {e}")))
    };
    println!("{res}");
    if res.tally.bad > 0 {
        fail(&format!(
            "{} answers did not match their request",
            res.tally.bad
        ));
    }
}
