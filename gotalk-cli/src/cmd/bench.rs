//! `gotalk bench`: a load generator (the loop itself is `gotalk_cli::bench`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use gotalk::{Config, Limits};
use gotalk_cli::bench::{payload_of_size, run as run_bench, Options, Progress};
use gotalk_cli::escape;
use gotalk_cli::util::{parse_bounded, read_payload_arg};

use super::dial::describe;
use super::{duration_arg, fail, out_line, parse_addr, usage, ClientTls, CmdResult};

pub const HELP: &str = "\
Examples:
  gotalk serve &   # a server with an echo operation on 127.0.0.1:1234
  gotalk bench 127.0.0.1:1234 --conns 4 --inflight 16 --duration 5s
  gotalk bench 127.0.0.1:1234 --size 1048576 --inflight 8 --json

Each connection keeps --inflight requests outstanding for --duration. The payload is --size
bytes (a JSON string, so JSON handlers accept it too) unless --payload is given. MB/s counts
payload bytes in both directions. Exit code 1 if any request failed.";

/// Arguments of `gotalk bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Where to connect (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT, ws://...)
    pub addr: String,
    /// Connections to open (1 to 10000)
    #[arg(long, value_name = "N", default_value = "1", value_parser = conns_arg)]
    pub conns: usize,
    /// Requests kept in flight on each connection (1 to 65536)
    #[arg(long, value_name = "N", default_value = "1", value_parser = inflight_arg)]
    pub inflight: usize,
    /// Request payload size in bytes (at most the client's payload limit)
    #[arg(long, value_name = "BYTES", default_value = "16", value_parser = size_arg)]
    pub size: usize,
    /// Use this payload instead (text, @FILE or -)
    #[arg(long, value_name = "PAYLOAD", conflicts_with = "size")]
    pub payload: Option<String>,
    /// How long to send requests (e.g. 300ms, 10s)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration_arg)]
    pub duration: Duration,
    /// The operation to call
    #[arg(long, default_value = "echo")]
    pub op: String,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// More connections than a server accepts by default (10,000) only measures refusals.
const MAX_CONNS: u64 = 10_000;
const MAX_INFLIGHT: u64 = 65_536;
/// Every request in flight is a task: past this many the run measures the scheduler.
const MAX_REQUESTS_IN_FLIGHT: usize = 1_000_000;

fn conns_arg(s: &str) -> Result<usize, String> {
    parse_bounded(s, 1, MAX_CONNS).map(|n| n as usize)
}

fn inflight_arg(s: &str) -> Result<usize, String> {
    parse_bounded(s, 1, MAX_INFLIGHT).map(|n| n as usize)
}

/// The payload is made before anything is sent, so a size the client would refuse to send is
/// refused here, before it is allocated.
fn size_arg(s: &str) -> Result<usize, String> {
    let max = Limits::default().max_payload;
    parse_bounded(s, 0, max.into())
        .map(|n| n as usize)
        .map_err(|e| format!("{e} (the client's payload limit)"))
}

pub async fn run(a: BenchArgs) -> CmdResult {
    parse_addr(&a.addr)?;
    a.tls.check(&a.addr)?;
    if a.conns.saturating_mul(a.inflight) > MAX_REQUESTS_IN_FLIGHT {
        return Err(usage(format!(
            "--conns × --inflight is {}; at most {MAX_REQUESTS_IN_FLIGHT} requests can be in flight",
            a.conns.saturating_mul(a.inflight)
        )));
    }
    let payload = match &a.payload {
        Some(p) => Bytes::from(read_payload_arg(p).map_err(|e| usage(format!("--payload: {e}")))?),
        None => payload_of_size(a.size),
    };
    let opts = Options {
        addr: a.addr.clone(),
        config: a.tls.apply(Config::new().heartbeat_interval(None))?,
        conns: a.conns,
        inflight: a.inflight,
        payload,
        duration: a.duration,
        op: a.op.clone(),
    };
    let progress = Arc::new(Progress::default());
    let live = std::io::stderr().is_terminal();
    let ticker = live.then(|| {
        let progress = progress.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(250));
            loop {
                t.tick().await;
                let secs = start.elapsed().as_secs_f64();
                let n = progress.requests.load(Ordering::Relaxed);
                let errs = progress.errors.load(Ordering::Relaxed);
                eprint!(
                    "\r\x1b[2K{secs:6.1}s  {n:>10} requests  {:>10.0} req/s  {errs} errors",
                    n as f64 / secs.max(1e-9)
                );
                let _ = std::io::stderr().flush();
            }
        })
    });
    let res = run_bench(&opts, progress).await;
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[2K");
    }
    let report =
        res.map_err(|e| fail(format!("cannot connect to {}: {}", a.addr, describe(&e))))?;
    if a.json {
        out_line(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        out_line(&report.text());
    }
    if report.errors > 0 {
        if !a.json {
            // The text report has said how many failed and why: once is enough.
            return Ok(ExitCode::from(1));
        }
        return Err(fail(format!(
            "{} of {} requests failed: {}",
            report.errors,
            report.errors + report.requests,
            escape::line(report.first_error.as_deref().unwrap_or("?"))
        )));
    }
    if report.requests == 0 {
        return Err(fail(format!(
            "no request was answered within {:?}",
            a.duration
        )));
    }
    Ok(ExitCode::SUCCESS)
}
