//! The pool side of the benchmarks: a [`gotalk::pool::Pool`] over one or more `echo-server`
//! processes, driven like the gotalk client of the matrix (`inflight` request loops), so that
//! the pool's cost over a bare `Sock` and the effect of its choice of responder can be
//! measured with the same load generator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gotalk::pool::{Balance, Pool, PoolOptions};
use gotalk::Config;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::load::{drive, payload, Control, Driver, LoadOptions, LoadResult, Tally};

/// How the pool client is set up (`load-gen --proto pool --balance --pool-timeout`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolSetup {
    /// How responders are chosen.
    pub balance: Balance,
    /// The request deadline: `None` keeps the pool's default, `Some(None)` sets none (no
    /// timer per request).
    pub timeout: Option<Option<Duration>>,
}

/// Runs the echo load through a pool over `addrs` (one connection to each) and returns what
/// it measured. `opts.conns` is ignored: the pool keeps one connection per address, and
/// `opts.inflight` requests are in flight over all of them together.
pub async fn load(
    proto: &str,
    addrs: &[String],
    opts: &LoadOptions,
    setup: PoolSetup,
) -> gotalk::Result<LoadResult> {
    let body = payload(opts.size);
    let mut options = PoolOptions::new().balance(setup.balance);
    if let Some(t) = setup.timeout {
        options = options.timeout(t);
    }
    let pool = Pool::open(addrs, Config::new(), options)?;
    let t0 = Instant::now();
    while !pool.stats().iter().all(|s| s.up) {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(gotalk::Error::Unavailable(format!(
                "not every responder came up: {:?}",
                pool.stats()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let res = match opts.driver {
        Driver::Tasks => {
            drive(
                proto,
                std::slice::from_ref(&pool),
                opts.inflight,
                opts,
                |pool, ctl| request_loop(pool, body.clone(), ctl),
            )
            .await
        }
        Driver::Futures => {
            drive(proto, std::slice::from_ref(&pool), 1, opts, |pool, ctl| {
                requests_in_one_task(pool, body.clone(), opts.inflight, ctl)
            })
            .await
        }
    };
    pool.close();
    res
}

async fn request_loop(pool: Pool, body: Bytes, ctl: Arc<Control>) -> gotalk::Result<Tally> {
    let mut tally = Tally::default();
    while !ctl.stopped() {
        let t = Instant::now();
        let out = pool.buffer_request("echo", body.clone()).await?;
        if ctl.recording() {
            tally.hist.record(t.elapsed());
        }
        if out.len() != body.len() {
            tally.bad += 1;
        }
    }
    Ok(tally)
}

/// Keeps `inflight` requests outstanding from this one task.
async fn requests_in_one_task(
    pool: Pool,
    body: Bytes,
    inflight: usize,
    ctl: Arc<Control>,
) -> gotalk::Result<Tally> {
    let one = |pool: &Pool| {
        let (pool, body) = (pool.clone(), body.clone());
        async move {
            let t = Instant::now();
            let out = pool.buffer_request("echo", body).await;
            (t, out)
        }
    };
    let mut running = FuturesUnordered::new();
    for _ in 0..inflight {
        running.push(one(&pool));
    }
    let mut tally = Tally::default();
    while let Some((t, out)) = running.next().await {
        let out = out?;
        if ctl.recording() {
            tally.hist.record(t.elapsed());
        }
        if out.len() != body.len() {
            tally.bad += 1;
        }
        if !ctl.stopped() {
            running.push(one(&pool));
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::{responder_config, Responder};

    #[tokio::test]
    async fn pool_echo_round_trips_over_two_responders() {
        let mut addrs = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..2 {
            let r = Responder {
                delay: Some(Duration::from_millis(1)),
                limit: Some(8),
                ..Responder::default()
            };
            let s = gotalk::Server::bind("127.0.0.1:0", responder_config(&r))
                .await
                .unwrap();
            addrs.push(s.local_addr().to_string());
            servers.push(s);
        }
        let opts = LoadOptions::short(1, 8, 16);
        let r = load("pool", &addrs, &opts, PoolSetup::default())
            .await
            .unwrap();
        assert!(r.tally.hist.count() > 0);
        assert_eq!(r.tally.bad, 0);
    }
}
