//! The load loop behind `gotalk bench`, usable on its own by other crates.
//!
//! [`run`] opens `conns` connections and keeps `inflight` requests outstanding on each for
//! `duration`, recording every request's latency in an HDR histogram. [`Progress`] counts as it
//! goes, so a caller can print a live line; the [`Report`] gives requests/s, MB/s and latency
//! percentiles.
//!
//! Several addresses, separated by commas, spread the load over them: each of the `conns` is
//! then a [`gotalk::pool::Pool`] with one connection to every address, choosing for each request the
//! least loaded (see [`gotalk::pool`]), and the report says how many requests each address
//! answered.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gotalk::Error> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use gotalk_cli::bench::{run, Options, Progress};
//!
//! let opts = Options {
//!     addr: "tcp://127.0.0.1:1234".into(),
//!     duration: Duration::from_secs(2),
//!     ..Options::default()
//! };
//! let report = run(&opts, Arc::new(Progress::default())).await?;
//! println!("{:.0} req/s, p99 {:.1} µs", report.requests_per_sec, report.latency_us.p99);
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gotalk::pool::{Pool, PoolOptions};
use gotalk::{Config, Sock};
use hdrhistogram::Histogram;
use serde::Serialize;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to connect (any address [`gotalk::connect_with`] accepts), or several separated
    /// by commas (see the module docs).
    pub addr: String,
    /// Connection settings (TLS, limits); heartbeats are best left off.
    pub config: Config,
    /// Connections opened.
    pub conns: usize,
    /// Requests kept in flight on each connection.
    pub inflight: usize,
    /// Payload of every request (see [`payload_of_size`]).
    pub payload: Bytes,
    /// How long to send requests.
    pub duration: Duration,
    /// The operation called.
    pub op: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            addr: "tcp://127.0.0.1:1234".into(),
            config: Config::new().heartbeat_interval(None),
            conns: 1,
            inflight: 1,
            payload: payload_of_size(16),
            duration: Duration::from_secs(5),
            op: "echo".into(),
        }
    }
}

/// A payload of `size` bytes that is also valid JSON (a string of `x`), so that JSON handlers
/// accept it too (sizes below 2 give raw `x` bytes).
pub fn payload_of_size(size: usize) -> Bytes {
    if size < 2 {
        return Bytes::from(vec![b'x'; size]);
    }
    let mut v = vec![b'x'; size];
    v[0] = b'"';
    v[size - 1] = b'"';
    Bytes::from(v)
}

/// Counters updated while the benchmark runs, for a live progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests answered with a result.
    pub requests: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
    /// Payload bytes sent and received.
    pub bytes: AtomicU64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The address benchmarked.
    pub addr: String,
    /// The operation called.
    pub op: String,
    /// Connections used.
    pub conns: usize,
    /// Requests in flight per connection.
    pub inflight: usize,
    /// Request payload size in bytes.
    pub size: usize,
    /// Wall time from the first request to the last answer, in seconds.
    pub elapsed_secs: f64,
    /// Requests answered with a result.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Successful requests per second.
    pub requests_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second, both directions together.
    pub mb_per_sec: f64,
    /// Latency of successful requests.
    pub latency_us: Latency,
    /// With several addresses: the requests each one answered (every attempt counts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub responders: Vec<Responder>,
}

/// One of several addresses in a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct Responder {
    /// The address.
    pub addr: String,
    /// Requests sent to it.
    pub requests: u64,
}

/// Where a benchmark's requests go: one connection, or a pool over several addresses.
#[derive(Clone)]
enum Client {
    Sock(Sock),
    Pool(Pool),
}

impl Client {
    async fn request(&self, op: &str, payload: Bytes) -> Result<Bytes, gotalk::Error> {
        match self {
            Client::Sock(s) => s.buffer_request(op, payload).await,
            Client::Pool(p) => p.buffer_request(op, payload).await,
        }
    }

    /// Whether `e` means this client can send nothing more.
    fn is_dead(&self, e: &gotalk::Error) -> bool {
        match self {
            Client::Sock(_) => e.is_closed(),
            // A pool has other connections, and dials lost ones again.
            Client::Pool(_) => matches!(e, gotalk::Error::Unavailable(_)),
        }
    }

    fn close(&self) {
        match self {
            Client::Sock(s) => s.close(),
            Client::Pool(p) => p.close(),
        }
    }
}

/// Opens a pool over `addrs` and waits until every address is connected; fails as soon as
/// one cannot be (or, if dials hang, after 10 s).
async fn open_pool(addrs: &[&str], config: &Config) -> Result<Pool, gotalk::Error> {
    let pool = Pool::open(addrs, config.clone(), PoolOptions::new())?;
    let t0 = Instant::now();
    loop {
        let stats = pool.stats();
        if stats.iter().all(|s| s.up) {
            return Ok(pool);
        }
        let failed = stats.iter().find(|s| s.last_error.is_some());
        if failed.is_some() || t0.elapsed() > Duration::from_secs(10) {
            pool.close();
            let why = match failed {
                Some(s) => format!("{}: {}", s.addr, s.last_error.as_deref().unwrap_or("")),
                None => "not every address connected within 10s".into(),
            };
            return Err(gotalk::Error::Unavailable(why));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Shared {
    hist: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

fn new_hist() -> Histogram<u64> {
    // Nanoseconds from 1 ns to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs the benchmark; fails only if a connection cannot be opened (request errors are counted
/// in the report).
pub async fn run(opts: &Options, progress: Arc<Progress>) -> Result<Report, gotalk::Error> {
    let conns = opts.conns.max(1);
    let inflight = opts.inflight.max(1);
    let mut clients: Vec<Client> = Vec::with_capacity(conns);
    for _ in 0..conns {
        let client = match crate::util::several_addrs(&opts.addr) {
            Some(addrs) => open_pool(&addrs, &opts.config).await.map(Client::Pool),
            None => gotalk::connect_with(&opts.addr, &opts.config)
                .await
                .map(Client::Sock),
        };
        match client {
            Ok(c) => clients.push(c),
            Err(e) => {
                clients.iter().for_each(Client::close);
                return Err(e);
            }
        }
    }
    let shared = Arc::new(Shared {
        hist: Mutex::new(new_hist()),
        first_error: Mutex::new(None),
    });
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut tasks = Vec::with_capacity(conns * inflight);
    for client in &clients {
        for _ in 0..inflight {
            let client = client.clone();
            let op = opts.op.clone();
            let payload = opts.payload.clone();
            let progress = progress.clone();
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = new_hist();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match client.request(&op, payload.clone()).await {
                        Ok(out) => {
                            let ns = t0.elapsed().as_nanos().max(1) as u64;
                            let _ = hist.record(ns.min(hist.high()));
                            progress.requests.fetch_add(1, Ordering::Relaxed);
                            progress
                                .bytes
                                .fetch_add((payload.len() + out.len()) as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            {
                                let mut first =
                                    shared.first_error.lock().unwrap_or_else(|p| p.into_inner());
                                if first.is_none() {
                                    *first = Some(e.to_string());
                                }
                            }
                            if client.is_dead(&e) {
                                break;
                            }
                            // An error answer comes back fast: do not spin on a wrong op.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                let _ = shared
                    .hist
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(&hist);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let mut responders: Vec<Responder> = Vec::new();
    for c in &clients {
        if let Client::Pool(p) = c {
            for s in p.stats() {
                match responders.iter_mut().find(|r| r.addr == s.addr) {
                    Some(r) => r.requests += s.requests,
                    None => responders.push(Responder {
                        addr: s.addr,
                        requests: s.requests,
                    }),
                }
            }
        }
        c.close();
    }
    let hist = shared.hist.lock().unwrap_or_else(|p| p.into_inner());
    let requests = progress.requests.load(Ordering::Relaxed);
    let us = |ns: u64| ns as f64 / 1000.0;
    let latency = if hist.is_empty() {
        Latency::default()
    } else {
        Latency {
            mean: hist.mean() / 1000.0,
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            max: us(hist.max()),
        }
    };
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Report {
        addr: opts.addr.clone(),
        op: opts.op.clone(),
        conns,
        inflight,
        size: opts.payload.len(),
        elapsed_secs: elapsed,
        requests,
        errors: progress.errors.load(Ordering::Relaxed),
        first_error,
        requests_per_sec: requests as f64 / elapsed,
        mb_per_sec: progress.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
        latency_us: latency,
        responders,
    })
}

impl Report {
    /// The human summary printed at the end of `gotalk bench`.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let over = match self.responders.len() {
            0 => format!("{} connection(s)", self.conns),
            n => format!("{} pool(s) of {n} addresses", self.conns),
        };
        let mut s = format!(
            "{} requests in {:.2}s over {over} × {} in flight, {}-byte payloads\n\
             {:>12.0} req/s\n{:>12.2} MB/s (payload, both directions)\n\
             latency µs  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (mean {:.1})",
            self.requests,
            self.elapsed_secs,
            self.inflight,
            self.size,
            self.requests_per_sec,
            self.mb_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            l.mean,
        );
        for r in &self.responders {
            s.push_str(&format!(
                "\n{:>12} requests to {}",
                r.requests,
                crate::escape::line(&r.addr)
            ));
        }
        if self.errors > 0 {
            s.push_str(&format!(
                "\n{} request(s) failed; first error: {}",
                self.errors,
                crate::escape::line(self.first_error.as_deref().unwrap_or("?"))
            ));
        }
        s
    }
}
