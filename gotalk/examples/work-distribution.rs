//! Dividing work among programs: a coordinator and N worker processes. The workers dial in
//! (each through a `KeepAlive`, offering the `job` operation again on every connection), and
//! the coordinator sends every job to the least loaded worker (`Workers`): one worker is three
//! times slower than the others and gets fewer jobs.
//!
//! ```text
//! cargo run --example work-distribution                        # 3 workers, 300 jobs
//! cargo run --example work-distribution -- --workers 4 --jobs 1000
//! cargo run --example work-distribution -- --check             # self-test: kills a worker
//!                                                              # midway; every job must finish
//! ```
//!
//! | direction | kind | name | payload |
//! |---|---|---|---|
//! | worker → coordinator | request | `workers.offer` | `["job"]` → `null` |
//! | coordinator → worker | request | `job` | `{"id", "n", "ms"}` → `{"id", "worker", "sum"}` |
//!
//! A job is safe to repeat (it computes a sum), so one in flight on a worker that dies is sent
//! to another. Workers take at most 16 jobs at a time (more are answered with a RetryResult
//! asking for a short wait, and the coordinator moves the job on) and report their load —
//! jobs in progress against that limit — in a heartbeat every 100 ms.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use gotalk::pool::{KeepAlive, PoolOptions, Workers};
use gotalk::{Config, Handlers, Limits, Server};
use serde::{Deserialize, Serialize};

/// Jobs one worker takes at a time.
const WORKER_LIMIT: u32 = 16;
/// Jobs the coordinator keeps in flight.
const IN_FLIGHT: usize = 24;

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct Job {
    id: u32,
    /// What to compute: the sum of k² mod 1000003 for k in 1..=n.
    n: u64,
    /// How long the job takes on a worker of normal speed.
    ms: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Done {
    id: u32,
    worker: String,
    sum: u64,
}

fn answer(n: u64) -> u64 {
    (1..=n).map(|k| k * k % 1_000_003).sum()
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let res = if let Some(addr) = arg(&args, "--worker") {
        let name = arg(&args, "--name").unwrap_or_else(|| "worker".into());
        let slowdown = arg(&args, "--slowdown")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        worker(&addr, name, slowdown).await
    } else {
        let count = |name, default| {
            arg(&args, name)
                .map(|s| s.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
                .unwrap_or(default)
        };
        let check = args.iter().any(|a| a == "--check");
        let workers = count("--workers", 3usize).max(2);
        let jobs = count("--jobs", if check { 240 } else { 300 }) as u32;
        coordinator(workers, jobs, check).await
    };
    if let Err(e) = res {
        eprintln!("work-distribution: {e}");
        std::process::exit(1);
    }
}

/// A worker process: dials the coordinator (again whenever the connection drops), offers
/// `job`, and does jobs until its standard input closes (its parent is gone).
async fn worker(addr: &str, name: String, slowdown: u64) -> Result<(), String> {
    let mut h = Handlers::new();
    let me = name.clone();
    h.handle("job", move |job: Job| {
        let me = me.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(job.ms * slowdown)).await;
            Ok(Done {
                id: job.id,
                worker: me,
                sum: answer(job.n),
            })
        }
    });
    let config = Config::new()
        .handlers(h)
        .limits(
            Limits::default()
                .buffer_requests(WORKER_LIMIT)
                .retry_wait(Duration::from_millis(20), Duration::from_millis(100)),
        )
        .heartbeat_interval(Some(Duration::from_millis(100)));
    let options = PoolOptions::new()
        .reconnect(Duration::from_millis(50), Duration::from_secs(1))
        .on_connect(|sock| async move { Workers::offer(&sock, &["job"]).await });
    // Our heartbeats report, by default, the jobs in progress against the limit.
    let conn = KeepAlive::open(addr, config, options).map_err(|e| e.to_string())?;
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    })
    .await;
    conn.close();
    Ok(())
}

/// The coordinator: starts `n` worker processes (the last one three times slower), hands
/// out `jobs` jobs by load, checks every answer, and prints who did what. With `check`, kills
/// the first worker a third of the way in and fails unless every job still finishes.
async fn coordinator(n: usize, jobs: u32, check: bool) -> Result<(), String> {
    let workers = Workers::new(
        PoolOptions::new()
            .safe_to_repeat(["job"])
            .timeout(Some(Duration::from_secs(30)))
            .max_attempts(8),
    );
    let mut h = Handlers::new();
    workers.install(&mut h);
    let config = Config::new()
        .handlers(h)
        .heartbeat_interval(Some(Duration::from_secs(1)));
    let server = Server::bind("127.0.0.1:0", config)
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().to_string();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for i in 0..n {
        let slowdown = if i == n - 1 { "3" } else { "1" };
        let child = tokio::process::Command::new(&exe)
            .args(["--worker", &addr, "--name", &format!("w{i}")])
            .args(["--slowdown", slowdown])
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting a worker: {e}"))?;
        children.push(child);
    }
    workers
        .wait_for("job", n, Duration::from_secs(20))
        .await
        .map_err(|e| format!("workers did not join: {e}"))?;
    println!(
        "coordinator on {addr}: {n} workers joined (w{} is 3x slower)",
        n - 1
    );

    let t0 = Instant::now();
    let mut done: BTreeMap<String, u32> = BTreeMap::new();
    let mut at_kill: Option<BTreeMap<String, u32>> = None;
    let mut failed = Vec::new();
    let send = |id: u32| {
        let workers = workers.clone();
        let job = Job {
            id,
            n: 1000 + u64::from(id),
            ms: 10,
        };
        async move { (job, workers.request::<_, Done>("job", &job).await) }
    };
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    while next < jobs.min(IN_FLIGHT as u32) {
        running.push(send(next));
        next += 1;
    }
    let mut finished = 0;
    while let Some((job, res)) = running.next().await {
        finished += 1;
        match res {
            Ok(d) if d.id == job.id && d.sum == answer(job.n) => {
                *done.entry(d.worker).or_default() += 1;
            }
            Ok(d) => failed.push(format!("job {}: wrong answer {d:?}", job.id)),
            Err(e) => failed.push(format!("job {}: {e}", job.id)),
        }
        if check && at_kill.is_none() && finished >= jobs / 3 {
            println!("killing w0 (SIGKILL) after {finished} jobs");
            children[0]
                .start_kill()
                .map_err(|e| format!("killing w0: {e}"))?;
            let _ = children[0].wait().await;
            at_kill = Some(done.clone());
        }
        if next < jobs {
            running.push(send(next));
            next += 1;
        }
    }
    let took = t0.elapsed();

    println!("{jobs} jobs in {took:.2?}:");
    for (w, count) in &done {
        let before = at_kill.as_ref().map(|k| k.get(w).copied().unwrap_or(0));
        match before {
            Some(b) => println!("  {w}: {count:4} jobs ({b} before the kill)"),
            None => println!("  {w}: {count:4} jobs"),
        }
    }
    for f in &failed {
        eprintln!("  FAILED {f}");
    }
    let total: u32 = done.values().sum();
    drop(children);
    server.shutdown(Duration::from_millis(100)).await;
    if !failed.is_empty() || total != jobs {
        return Err(format!("{} of {jobs} jobs failed", jobs - total));
    }
    if check {
        let before = at_kill.ok_or("no worker was killed")?;
        let survivors_after: u32 = done
            .iter()
            .filter(|(w, _)| *w != "w0")
            .map(|(w, c)| c - before.get(w).copied().unwrap_or(0))
            .sum();
        if survivors_after == 0 {
            return Err("the surviving workers did no job after the kill".into());
        }
        println!("check passed: every job finished, the survivors took over after the kill");
    }
    Ok(())
}
