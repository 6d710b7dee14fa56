//! The load generator of the benchmark matrix, run as its own process.
//!
//! ```text
//! load-gen --proto floor|gotalk|ws --addr ADDRESS [--conns 1] [--inflight 1] [--size 16]
//!          [--duration 3] [--warmup 0.5] [--threads N] [--driver tasks|futures]
//! load-gen --proto floor|gotalk|ws --addr ADDRESS --idle N --server-pid PID
//! ```
//! ADDRESS is what `echo-server` printed (`host:port`, or a `ws://` URL for `ws`).
//! The first form keeps `inflight` echo requests of `size` bytes outstanding on each of
//! `conns` connections and prints one line
//! `RESULT proto=.. rps=.. mbps=.. p50_us=.. p90_us=.. p99_us=.. ...`.
//! The second opens `N` idle connections and prints
//! `RESULT proto=.. idle=N rss_before_kib=.. rss_after_kib=.. kib_per_conn=..`, measured from
//! the server's `/proc/PID/status`.

use gotalk_bench::args::{fail, Args};
use gotalk_bench::idle;
use gotalk_bench::load::LoadOptions;

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
        "gotalk" | "ws" => true,
        other => fail(&format!("unknown --proto {other:?} (floor, gotalk, ws)")),
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
    let res = if gotalk {
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
