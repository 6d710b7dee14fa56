//! The gotalk side of the matrix: a server with a buffer handler `echo`, and a client that
//! keeps `inflight` echo requests outstanding on each connection through the public API
//! ([`gotalk::Sock::buffer_request`]), one task per request slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gotalk::{Config, Handlers, Sock};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::load::{drive, payload, Control, Driver, LoadOptions, LoadResult, Tally};

/// The server's configuration: defaults (limits, heartbeats) plus the `echo` operation.
pub fn server_config() -> Config {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_sock, _op, p| async move { Ok(p) });
    Config::new().handlers(h)
}

/// How a responder of the pool benchmarks behaves (`echo-server --delay-ms --limit
/// --heartbeat-ms --retry-ms`).
#[derive(Debug, Clone, Default)]
pub struct Responder {
    /// How long `echo` waits before answering: an I/O-bound operation.
    pub delay: Option<Duration>,
    /// Requests in progress per connection; more are answered with a RetryResult.
    pub limit: Option<u32>,
    /// Heartbeat interval (the default 20 s if not set).
    pub heartbeat: Option<Duration>,
    /// The wait a RetryResult asks for (the default 0.5–5 s if not set).
    pub retry: Option<Duration>,
}

/// The server's configuration for a pool benchmark responder (see [`Responder`]).
pub fn responder_config(r: &Responder) -> Config {
    let mut h = Handlers::new();
    match r.delay {
        Some(d) => h.handle_buffer("echo", move |_sock, _op, p| async move {
            tokio::time::sleep(d).await;
            Ok(p)
        }),
        None => h.handle_buffer("echo", |_sock, _op, p| async move { Ok(p) }),
    };
    let mut limits = gotalk::Limits::default();
    if let Some(n) = r.limit {
        limits = limits.buffer_requests(n);
    }
    if let Some(w) = r.retry {
        limits = limits.retry_wait(w, w);
    }
    let mut config = Config::new().handlers(h).limits(limits);
    if let Some(every) = r.heartbeat {
        config = config.heartbeat_interval(Some(every));
    }
    config
}

/// Runs the gotalk load against `addr` (any address [`gotalk::connect`] takes) and returns
/// what it measured; `proto` names the result.
pub async fn load(proto: &str, addr: &str, opts: &LoadOptions) -> gotalk::Result<LoadResult> {
    let body = payload(opts.size);
    let mut socks = Vec::new();
    for _ in 0..opts.conns {
        socks.push(gotalk::connect(addr).await?);
    }
    let res = match opts.driver {
        Driver::Tasks => {
            drive(proto, &socks, opts.inflight, opts, |sock, ctl| {
                request_loop(sock, body.clone(), ctl)
            })
            .await
        }
        Driver::Futures => {
            drive(proto, &socks, 1, opts, |sock, ctl| {
                requests_in_one_task(sock, body.clone(), opts.inflight, ctl)
            })
            .await
        }
    };
    for s in &socks {
        s.close();
    }
    res
}

async fn request_loop(sock: Sock, body: Bytes, ctl: Arc<Control>) -> gotalk::Result<Tally> {
    let mut tally = Tally::default();
    while !ctl.stopped() {
        let t = Instant::now();
        let out = sock.buffer_request("echo", body.clone()).await?;
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
    sock: Sock,
    body: Bytes,
    inflight: usize,
    ctl: Arc<Control>,
) -> gotalk::Result<Tally> {
    let one = |sock: &Sock| {
        let (sock, body) = (sock.clone(), body.clone());
        async move {
            let t = Instant::now();
            let out = sock.buffer_request("echo", body).await;
            (t, out)
        }
    };
    let mut running = FuturesUnordered::new();
    for _ in 0..inflight {
        running.push(one(&sock));
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
            running.push(one(&sock));
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gotalk_echo_round_trips() {
        let server = gotalk::Server::bind("127.0.0.1:0", server_config())
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let opts = LoadOptions::short(2, 4, 3000);
        let r = load("gotalk", &addr, &opts).await.unwrap();
        assert!(r.tally.hist.count() > 0);
        assert_eq!(r.tally.bad, 0);
    }
}
