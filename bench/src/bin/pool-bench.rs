//! The pool benchmarks: a `gotalk::pool::Pool` spreading requests over responder processes.
//!
//! ```text
//! pool-bench [--seconds S] [--warmup S] [--repeat N] [--parts scaling,slow,cost] [--smoke]
//! ```
//! Every responder is an `echo-server` process and the pool runs in a `load-gen` process
//! (`--proto pool`), both found next to this binary; nothing shares a runtime. Three parts:
//!
//! - **scaling** — throughput with 1, 2 and 4 responders on an I/O-bound operation: `echo`
//!   waits 5 ms, each responder takes 32 requests at a time (`--limit 32`; more get a
//!   RetryResult asking for 5 ms, and the pool moves them), reports that pressure as its
//!   heartbeat load every 100 ms, and the pool keeps 32 × N requests in flight. Target: 4
//!   responders ≥ 3.5× one.
//! - **slow** — four responders, one three times slower (15 ms instead of 5), 64 requests in
//!   flight: the load-aware pool (`least-loaded`) and plain round robin side by side, in
//!   alternating order within each round, against the same four processes.
//! - **cost** — the pool's cost over a bare `Sock` at matrix point (b): 1 connection, 64 in
//!   flight, 16 B echoes answered at once; `load-gen --proto gotalk`, `--proto pool` (a pool
//!   of one, defaults: no deadline) and the same pool with a 30 s deadline on every request,
//!   in an order that turns from round to round, each against a fresh `echo-server`. Target:
//!   the pool within 10 % (ratio ≥ 0.90).
//!
//! Each figure is the median over `--repeat` rounds (default 3) of runs of `--seconds`
//! (default 3) after `--warmup` (0.5). `--smoke` runs one round of 0.2 s per part, to check
//! that everything works, not to measure. Prints markdown tables; exits non-zero if a run
//! failed (not if a target is missed: benchmarks are not tests).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use gotalk_bench::args::{fail, Args};
use gotalk_bench::load::parse_result_line;

type Fields = HashMap<String, String>;

/// Kills the responder when dropped, whatever happened.
struct Responder(Child);

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Bench {
    server: PathBuf,
    load: PathBuf,
    secs: f64,
    warmup: f64,
    repeat: usize,
    failed: bool,
}

fn main() {
    let args = Args::from_env(&["smoke"]);
    let smoke = args.flag("smoke");
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| fail("cannot find this binary's directory"));
    let mut b = Bench {
        server: dir.join("echo-server"),
        load: dir.join("load-gen"),
        secs: args.get("seconds", if smoke { 0.2 } else { 3.0 }),
        warmup: args.get("warmup", if smoke { 0.05 } else { 0.5 }),
        repeat: args.get("repeat", if smoke { 1 } else { 3usize }).max(1),
        failed: false,
    };
    for exe in [&b.server, &b.load] {
        if !exe.exists() {
            fail(&format!(
                "{} not found: build with `cargo build --release -p gotalk-bench --bins`",
                exe.display()
            ));
        }
    }
    let parts = args.text("parts").unwrap_or("scaling,slow,cost").to_owned();
    println!(
        "pool-bench: {} round(s) of {} s runs (+{} s warm-up), medians",
        b.repeat, b.secs, b.warmup
    );
    for part in parts.split(',') {
        match part {
            "scaling" => scaling(&mut b),
            "slow" => slow(&mut b),
            "cost" => cost(&mut b),
            other => fail(&format!("unknown part {other:?} (scaling, slow, cost)")),
        }
    }
    if b.failed {
        std::process::exit(1);
    }
}

impl Bench {
    /// Starts an `echo-server` with `extra` arguments; returns it and its address.
    fn responder(&self, extra: &[&str]) -> Result<(Responder, String), String> {
        let exe = self.server.display();
        let mut child = Responder(
            Command::new(&self.server)
                .args(["--proto", "gotalk", "--addr", "127.0.0.1:0"])
                .args(extra)
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting {exe}: {e}"))?,
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| format!("reading {exe}: {e}"))?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("{exe} said {line:?}"))?
            .to_owned();
        Ok((child, addr))
    }

    /// Runs `load-gen` with `args`; returns its `RESULT` fields.
    fn load(&self, args: &[String]) -> Result<Fields, String> {
        let exe = self.load.display();
        let out = Command::new(&self.load)
            .args(args)
            .args(["--duration", &self.secs.to_string()])
            .args(["--warmup", &self.warmup.to_string()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("starting {exe}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{exe} exited with {}: {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        eprintln!("  {}", stdout.trim());
        let fields = stdout
            .lines()
            .find_map(parse_result_line)
            .ok_or_else(|| format!("{exe} printed no RESULT line: {stdout}"))?;
        Ok(fields.into_iter().collect())
    }

    /// Records a failed run (the run's figures are left out).
    fn check<T>(&mut self, what: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| {
            eprintln!("FAILED {what}: {e}");
            self.failed = true;
        })
        .ok()
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn num(f: &Fields, key: &str) -> Option<f64> {
    f.get(key)?.parse().ok()
}

/// The median of the values of `key` (the mean of the two middle ones for an even count).
fn median(runs: &[Fields], key: &str) -> Option<f64> {
    let mut v: Vec<f64> = runs.iter().filter_map(|f| num(f, key)).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Milliseconds, from a field in microseconds.
fn ms(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |us| format!("{:.2}", us / 1000.0))
}

const DELAY: &str = "5";
const PER_RESPONDER: usize = 32;

fn scaling(b: &mut Bench) {
    println!(
        "\n### Throughput with 1, 2 and 4 responders (echo waits 5 ms, 32 in progress each)\n"
    );
    println!(
        "| responders | in flight | req/s | × one responder | ideal req/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut one = None;
    for n in [1usize, 2, 4] {
        let mut runs = Vec::new();
        for round in 0..b.repeat {
            let started: Result<Vec<_>, String> = (0..n)
                .map(|_| {
                    b.responder(&[
                        "--delay-ms",
                        DELAY,
                        "--limit",
                        "32",
                        "--heartbeat-ms",
                        "100",
                        "--retry-ms",
                        "5",
                    ])
                })
                .collect();
            let Some(responders) = b.check(&format!("scaling {n} round {round}"), started) else {
                continue;
            };
            let addrs: Vec<&str> = responders.iter().map(|(_, a)| a.as_str()).collect();
            let inflight = (PER_RESPONDER * n).to_string();
            let a = args(&[
                "--proto",
                "pool",
                "--addr",
                &addrs.join(","),
                "--inflight",
                &inflight,
            ]);
            let r = b.load(&a);
            if let Some(f) = b.check(&format!("scaling {n} round {round}"), r) {
                runs.push(f);
            }
        }
        let rps = median(&runs, "rps");
        if n == 1 {
            one = rps;
        }
        let ratio = match (rps, one) {
            (Some(r), Some(o)) if o > 0.0 => format!("{:.2}", r / o),
            _ => "—".into(),
        };
        let ideal = (PER_RESPONDER * n) as f64 * 1000.0 / 5.0;
        println!(
            "| {n} | {} | {} | {ratio} | {ideal:.0} | {} | {} |",
            PER_RESPONDER * n,
            fmt(rps),
            ms(median(&runs, "p50_us")),
            ms(median(&runs, "p99_us")),
        );
    }
}

fn slow(b: &mut Bench) {
    println!("\n### One of four responders 3× slower (5 ms, 5 ms, 5 ms, 15 ms), 64 in flight\n");
    let mut runs: HashMap<&str, Vec<Fields>> = HashMap::new();
    let balances = ["least-loaded", "round-robin"];
    for round in 0..b.repeat {
        let started: Result<Vec<_>, String> = ["5", "5", "5", "15"]
            .iter()
            .map(|d| {
                b.responder(&[
                    "--delay-ms",
                    d,
                    "--limit",
                    "32",
                    "--heartbeat-ms",
                    "100",
                    "--retry-ms",
                    "5",
                ])
            })
            .collect();
        let Some(responders) = b.check(&format!("slow round {round}"), started) else {
            continue;
        };
        let addrs: Vec<&str> = responders.iter().map(|(_, a)| a.as_str()).collect();
        let mut order = balances.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for balance in order {
            let a = args(&[
                "--proto",
                "pool",
                "--addr",
                &addrs.join(","),
                "--inflight",
                "64",
                "--balance",
                balance,
            ]);
            let r = b.load(&a);
            if let Some(f) = b.check(&format!("slow {balance} round {round}"), r) {
                runs.entry(balance).or_default().push(f);
            }
        }
    }
    println!("| balance | req/s | p50 ms | p90 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for balance in balances {
        let r = runs.get(balance).map(Vec::as_slice).unwrap_or_default();
        println!(
            "| {balance} | {} | {} | {} | {} |",
            fmt(median(r, "rps")),
            ms(median(r, "p50_us")),
            ms(median(r, "p90_us")),
            ms(median(r, "p99_us")),
        );
    }
}

fn cost(b: &mut Bench) {
    println!(
        "\n### The pool's cost over a bare Sock at matrix point (b): 1 conn, 64 in flight, 16 B\n"
    );
    let mut runs: HashMap<&str, Vec<Fields>> = HashMap::new();
    let mut ratios = Vec::new();
    // (label, load-gen arguments)
    let clients = [
        ("bare Sock", &["--proto", "gotalk"][..]),
        ("Pool of one", &["--proto", "pool"][..]),
        (
            "Pool of one, 30 s deadline",
            &["--proto", "pool", "--pool-timeout", "30"][..],
        ),
    ];
    for round in 0..b.repeat {
        let mut order = clients.to_vec();
        order.rotate_left(round % clients.len());
        let mut this_round = HashMap::new();
        for (label, client) in order {
            let Some((server, addr)) = b.check("cost: responder", b.responder(&[])) else {
                continue;
            };
            let pid = server.0.id().to_string();
            let mut a = args(client);
            a.extend(args(&[
                "--addr",
                &addr,
                "--conns",
                "1",
                "--inflight",
                "64",
                "--size",
                "16",
                "--server-pid",
                &pid,
            ]));
            let r = b.load(&a);
            drop(server);
            if let Some(f) = b.check(&format!("cost {label} round {round}"), r) {
                this_round.insert(label, num(&f, "rps"));
                runs.entry(label).or_default().push(f);
            }
        }
        let rps = |label| this_round.get(label).copied().flatten();
        if let (Some(s), Some(p)) = (rps("bare Sock"), rps("Pool of one")) {
            ratios.push(p / s);
        }
    }
    println!("| client | req/s | p50 µs | p99 µs | client CPU µs/req |");
    println!("|---|---|---|---|---|");
    for (label, _) in clients {
        let r = runs.get(label).map(Vec::as_slice).unwrap_or_default();
        println!(
            "| {label} | {} | {} | {} | {} |",
            fmt(median(r, "rps")),
            fmt(median(r, "p50_us")),
            fmt(median(r, "p99_us")),
            fmt(median(r, "client_cpu_us")),
        );
    }
    ratios.sort_by(f64::total_cmp);
    let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let mid = match ratios.len() {
        0 => None,
        n if n % 2 == 1 => Some(ratios[n / 2]),
        n => Some((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
    };
    println!(
        "\npool / bare Sock req/s, per round: {} (median {}; target ≥ 0.90)",
        list.join(", "),
        fmt(mid)
    );
}
