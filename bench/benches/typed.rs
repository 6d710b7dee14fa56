//! What `#[gotalk::service]` costs per request against the same request written by hand:
//! `handlers.handle("greet", ...)` + `sock.request("greet", &input)` versus
//! `GreeterServer` + `GreeterClient::greet`, same JSON both ways, over an in-memory pipe on a
//! current-thread runtime (both ends on one core, no kernel in between, so the difference is
//! the code's own). One request in flight, and 64.
//!
//! ```text
//! cargo bench -p gotalk-bench --bench typed
//! ```
//!
//! Wall-clock figures on a shared machine vary more than the difference sought, so the bench
//! can also run a fixed number of requests for valgrind to count instructions:
//! `GOTALK_TYPED_COUNT="typed 20000"` (or `by_hand`) runs them, one in flight, and exits; the
//! marginal count between two numbers of requests is the cost of one request, both ends.
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use gotalk::{Config, Handlers, Sock};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct GreetOut {
    greeting: String,
}

#[gotalk::service]
trait Greeter {
    async fn greet(&self, input: GreetIn) -> GreetOut;
}

struct Polite;

impl Greeter for Polite {
    async fn greet(&self, input: GreetIn) -> GreetOut {
        greet(input)
    }
}

fn greet(input: GreetIn) -> GreetOut {
    GreetOut {
        greeting: format!("Hello {}", input.name),
    }
}

fn by_hand() -> Handlers {
    let mut h = Handlers::new();
    h.handle("greet", |input: GreetIn| async move { Ok(greet(input)) });
    h
}

fn typed() -> Handlers {
    let mut h = Handlers::new();
    h.service(GreeterServer::new(Polite));
    h
}

async fn pair(handlers: Handlers) -> (Sock, Sock) {
    gotalk::pipe_with(&Config::new(), &Config::new().handlers(handlers))
        .await
        .expect("pipe")
}

/// `inflight` requests at a time, `iters` in all; returns the time taken.
async fn run(client: &Sock, typed: bool, inflight: u64, iters: u64) -> Duration {
    let input = GreetIn {
        name: "Rasmus".into(),
    };
    let greeter = GreeterClient::new(client);
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(inflight);
        left -= n;
        let calls = (0..n).map(|_| {
            let input = input.clone();
            let greeter = &greeter;
            async move {
                let out = if typed {
                    greeter.greet(input).await
                } else {
                    client.request::<_, GreetOut>("greet", &input).await
                };
                assert_eq!(out.expect("answer").greeting.len(), 12);
            }
        });
        futures_util::future::join_all(calls).await;
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (hand_client, _hand_server) = rt.block_on(pair(by_hand()));
    let (typed_client, _typed_server) = rt.block_on(pair(typed()));
    for inflight in [1u64, 64] {
        let mut g = c.benchmark_group(format!("greet_{inflight}_in_flight"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("by_hand", |b| {
            b.iter_custom(|iters| rt.block_on(run(&hand_client, false, inflight, iters)))
        });
        g.bench_function("typed", |b| {
            b.iter_custom(|iters| rt.block_on(run(&typed_client, true, inflight, iters)))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}

fn main() {
    if let Ok(spec) = std::env::var("GOTALK_TYPED_COUNT") {
        let (which, n) = spec
            .split_once(' ')
            .expect("GOTALK_TYPED_COUNT=\"typed|by_hand N\"");
        let typed = which == "typed";
        let n: u64 = n.parse().expect("a number of requests");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, _server) = pair(if typed { self::typed() } else { by_hand() }).await;
            run(&client, typed, 1, n).await;
        });
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
