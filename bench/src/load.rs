//! What a load run is asked to do, what it measured, and the one-line report the matrix parses.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::hist::Histogram;

/// One load run: `conns` connections, each with `inflight` echo requests of `size` bytes
/// outstanding at all times, for `duration` after a `warmup`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Connections to open.
    pub conns: usize,
    /// Requests in flight per connection.
    pub inflight: usize,
    /// Payload bytes per request (the echo returns as many).
    pub size: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring (connections warm, buffers grown).
    pub warmup: Duration,
    /// The server's process ID, to report the CPU time it spent (`--server-pid`).
    pub server_pid: Option<u32>,
    /// How the gotalk client keeps its requests in flight (`--driver`).
    pub driver: Driver,
}

/// How the gotalk load keeps `inflight` requests outstanding on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// One tokio task per request slot, each awaiting one request at a time (`--driver
    /// tasks`, the default): independent tasks sharing a connection.
    #[default]
    Tasks,
    /// One task per connection polling all its requests (`FuturesUnordered`; `--driver
    /// futures`): no task wake-up per answer, as in the floor's client.
    Futures,
}

impl LoadOptions {
    /// A short run (100 ms after 10 ms of warm-up) of `conns` × `inflight` requests of `size`
    /// bytes with the default driver: what the echo round-trip tests use.
    pub fn short(conns: usize, inflight: usize, size: usize) -> LoadOptions {
        LoadOptions {
            conns,
            inflight,
            size,
            duration: Duration::from_millis(100),
            warmup: Duration::from_millis(10),
            server_pid: None,
            driver: Driver::default(),
        }
    }

    /// From `--conns --inflight --size --duration --warmup` (seconds, fractions allowed).
    pub fn from_args(a: &Args) -> LoadOptions {
        LoadOptions {
            conns: a.get("conns", 1usize).max(1),
            inflight: a.get("inflight", 1usize).max(1),
            size: a.get("size", 16usize),
            duration: Duration::from_secs_f64(a.get("duration", 3.0f64)),
            warmup: Duration::from_secs_f64(a.get("warmup", 0.5f64)),
            server_pid: Some(a.get("server-pid", 0u32)).filter(|&p| p != 0),
            driver: match a.text("driver") {
                None | Some("tasks") => Driver::Tasks,
                Some("futures") => Driver::Futures,
                Some(other) => {
                    crate::args::fail(&format!("unknown --driver {other:?} (tasks, futures)"))
                }
            },
        }
    }
}

/// Tells the request loops whether to count, and when to stop.
#[derive(Debug, Default)]
pub struct Control {
    recording: AtomicBool,
    stop: AtomicBool,
}

impl Control {
    /// Whether results are being counted now.
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Whether the loops should stop sending.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Warms up, measures for `opts.duration`, then tells the loops to stop. Returns the
    /// length of the measured window and the CPU time spent in it.
    pub async fn run(self: &Arc<Self>, opts: &LoadOptions) -> (Duration, CpuUse) {
        tokio::time::sleep(opts.warmup).await;
        let cpu0 = CpuUse::now(opts.server_pid);
        self.recording.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(opts.duration).await;
        self.recording.store(false, Ordering::Relaxed);
        let window = t0.elapsed();
        let cpu = CpuUse::now(opts.server_pid).since(&cpu0);
        self.stop.store(true, Ordering::Relaxed);
        (window, cpu)
    }
}

/// Runs a load: `per_client` request loops on each of `clients`, each a task started with
/// `request_loop(client, control)`, counting what they record for `opts.duration` after
/// `opts.warmup`. Every client library of the matrix (gotalk, the peers) is driven by this.
pub async fn drive<C, E, F, Fut>(
    proto: &str,
    clients: &[C],
    per_client: usize,
    opts: &LoadOptions,
    request_loop: F,
) -> Result<LoadResult, E>
where
    C: Clone,
    F: Fn(C, Arc<Control>) -> Fut,
    Fut: std::future::Future<Output = Result<Tally, E>> + Send + 'static,
    E: Send + 'static,
{
    let ctl = Arc::new(Control::default());
    let tasks: Vec<_> = clients
        .iter()
        .flat_map(|c| (0..per_client).map(move |_| c))
        .map(|c| tokio::spawn(request_loop(c.clone(), ctl.clone())))
        .collect();
    collect(proto, opts, &ctl, tasks).await
}

/// Measures for `opts.duration` after `opts.warmup` (see [`Control::run`]) while `tasks`, the
/// load's request loops, run under `ctl`; then adds up what they counted.
pub async fn collect<E>(
    proto: &str,
    opts: &LoadOptions,
    ctl: &Arc<Control>,
    tasks: Vec<tokio::task::JoinHandle<Result<Tally, E>>>,
) -> Result<LoadResult, E> {
    let (window, cpu) = ctl.run(opts).await;
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(&t.await.expect("load task")?);
    }
    Ok(LoadResult {
        proto: proto.into(),
        opts: opts.clone(),
        window,
        tally,
        cpu,
    })
}

/// CPU time (on all threads) of the server and of this load process.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuUse {
    /// The server's, if its process ID is known.
    pub server: Option<Duration>,
    /// This process's.
    pub client: Option<Duration>,
}

impl CpuUse {
    fn now(server_pid: Option<u32>) -> CpuUse {
        CpuUse {
            server: server_pid.and_then(|p| cpu_time(&p.to_string())),
            client: cpu_time("self"),
        }
    }

    fn since(&self, earlier: &CpuUse) -> CpuUse {
        let d = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        CpuUse {
            server: d(self.server, earlier.server),
            client: d(self.client, earlier.client),
        }
    }
}

/// Time on CPU of every thread of process `pid`, from `/proc/PID/task/*/schedstat` (ns).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

impl Control {}

/// What one request loop measured.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Latencies of the requests completed while recording.
    pub hist: Histogram,
    /// Answers whose payload was not the request's (must stay 0).
    pub bad: u64,
}

impl Tally {
    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.hist.merge(&other.hist);
        self.bad += other.bad;
    }
}

/// The outcome of a load run.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// `floor`, `gotalk` or `ws`.
    pub proto: String,
    /// The options it ran with.
    pub opts: LoadOptions,
    /// Length of the measured window.
    pub window: Duration,
    /// Everything counted in the window.
    pub tally: Tally,
    /// CPU time spent in the window.
    pub cpu: CpuUse,
}

impl LoadResult {
    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        self.tally.hist.count() as f64 / self.window.as_secs_f64()
    }

    /// Echoed payload megabytes (10^6 bytes) per second, one direction.
    pub fn mbps(&self) -> f64 {
        self.rps() * self.opts.size as f64 / 1e6
    }

    /// CPU microseconds per request: (server, client); 0 where unknown.
    pub fn cpu_per_request_us(&self) -> (f64, f64) {
        let n = self.tally.hist.count().max(1) as f64;
        let per = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e6 / n);
        (per(self.cpu.server), per(self.cpu.client))
    }
}

impl fmt::Display for LoadResult {
    /// `RESULT proto=.. conns=.. inflight=.. size=.. secs=.. requests=.. rps=.. mbps=..
    /// p50_us=.. p90_us=.. p99_us=.. bad=..`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |q| self.tally.hist.quantile(q).as_secs_f64() * 1e6;
        write!(
            f,
            "RESULT proto={} conns={} inflight={} size={} secs={:.3} requests={} rps={:.0} \
             mbps={:.1} p50_us={:.1} p90_us={:.1} p99_us={:.1} server_cpu_us={:.3} \
             client_cpu_us={:.3} bad={}",
            self.proto,
            self.opts.conns,
            self.opts.inflight,
            self.opts.size,
            self.window.as_secs_f64(),
            self.tally.hist.count(),
            self.rps(),
            self.mbps(),
            us(0.5),
            us(0.9),
            us(0.99),
            self.cpu_per_request_us().0,
            self.cpu_per_request_us().1,
            self.tally.bad,
        )
    }
}

/// A payload of `size` bytes with a recognisable pattern.
pub fn payload(size: usize) -> bytes::Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// Parses the `key=value` fields of a `RESULT` line.
pub fn parse_result_line(line: &str) -> Option<Vec<(String, String)>> {
    let rest = line.trim().strip_prefix("RESULT ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trips() {
        let mut tally = Tally::default();
        for _ in 0..10 {
            tally.hist.record(Duration::from_micros(20));
        }
        let r = LoadResult {
            proto: "floor".into(),
            opts: LoadOptions {
                conns: 1,
                inflight: 4,
                size: 1000,
                duration: Duration::from_secs(1),
                warmup: Duration::ZERO,
                server_pid: None,
                driver: Driver::Tasks,
            },
            window: Duration::from_secs(2),
            tally,
            cpu: CpuUse::default(),
        };
        let kv = parse_result_line(&r.to_string()).unwrap();
        let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).unwrap().1.clone();
        assert_eq!(get("rps"), "5");
        assert_eq!(get("requests"), "10");
        assert_eq!(get("mbps"), "0.0");
        assert!(get("p50_us").starts_with("20."));
    }
}
