//! Soak test: many connections, mixed request kinds, random disconnects from both sides, for a
//! while; then a table of requests sent, answered, failed with an error and lost. Lost must be 0:
//! every request either gets its answer or an error that says why.
//!
//! ```text
//! cargo run --release --example soak -- --duration 60s [--connections 32] [--in-flight 8]
//! ```
//!
//! The server runs in a child process (this same binary with `--server`), so that its memory
//! can be reported at the start and at the end. Exits non-zero if anything was lost or a result
//! was wrong.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gotalk::{Bytes, Config, Error, HandlerError, Handlers, Limits, Server, Sock};
use serde::{Deserialize, Serialize};

// ---- the server (child process) -------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct GreetIn {
    name: String,
}
#[derive(Serialize, Deserialize)]
struct GreetOut {
    greeting: String,
}

fn server_handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle("greet", |i: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", i.name),
        })
    });
    h.handle_buffer("sleep", |_s, _op, p| async move {
        let ms: u64 = std::str::from_utf8(&p)?.parse()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(p)
    });
    h.handle_stream("stream-echo", |_s, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part).await?;
        }
        output.end().await?;
        Ok(())
    });
    // Sends a notification to the caller, then answers: the notification must arrive first.
    h.handle_buffer("notify-me", |sock, _op, p| async move {
        sock.buffer_notify("ping", p.clone()).await?;
        Ok(p)
    });
    // Asks the caller to reverse the payload and returns the caller's answer.
    h.handle_buffer("call-back", |sock, _op, p| async move {
        sock.buffer_request("client-op", p)
            .await
            .map_err(HandlerError::msg)
    });
    // Closes the connection from the server's side a little later.
    h.handle_buffer("disconnect-me", |sock, _op, p| async move {
        let ms: u64 = std::str::from_utf8(&p)?.parse()?;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            sock.close();
        });
        Ok(Bytes::new())
    });
    h
}

async fn run_server() {
    let limits = Limits::default()
        .stream_requests(64)
        .buffer_requests(256)
        .retry_wait(Duration::from_millis(5), Duration::from_millis(20));
    let config = Config::new()
        .handlers(server_handlers())
        .limits(limits)
        .heartbeat_interval(Some(Duration::from_secs(1)));
    let server = Server::bind("127.0.0.1:0", config).await.expect("bind");
    println!("LISTENING {}", server.local_addr());
    // Serve until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await;
    server.shutdown(Duration::from_secs(1)).await;
}

// ---- the clients ----------------------------------------------------------------------------

const KINDS: [&str; 7] = [
    "json",
    "buffer",
    "stream",
    "notify-me",
    "call-back",
    "slow",
    "disconnect",
];

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    wrong: AtomicU64,
}

#[derive(Default)]
struct Tally {
    kinds: [Counts; KINDS.len()],
    notes_expected: AtomicU64,
    notes_received: AtomicU64,
    connections: AtomicU64,
    client_closes: AtomicU64,
    errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Tally {
    fn error(&self, e: &Error) {
        // Group errors by kind, without per-request detail.
        let key = match e {
            Error::Closed(r) => {
                format!("closed: {}", r.to_string().split(':').next().unwrap_or(""))
            }
            Error::Retry { .. } => "retry limit".into(),
            other => other.to_string().chars().take(60).collect(),
        };
        *self.errors.lock().unwrap().entry(key).or_default() += 1;
    }
}

fn client_handlers(tally: Arc<Tally>) -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("client-op", |_s, _op, p| async move {
        let mut v = p.to_vec();
        v.reverse();
        Ok(Bytes::from(v))
    });
    h.handle_buffer_notification("ping", move |_s, _n, _p| {
        tally.notes_received.fetch_add(1, Ordering::Relaxed);
    });
    h
}

fn payload(len: usize) -> Bytes {
    Bytes::from((0..len).map(|_| fastrand::u8(..)).collect::<Vec<u8>>())
}

/// One request of kind `k`; `Ok(true)` = answered correctly, `Ok(false)` = answered wrongly.
async fn one_request(sock: &Sock, k: usize, tally: &Tally) -> Result<bool, Error> {
    match KINDS[k] {
        "json" => {
            let name = format!("n{}", fastrand::u32(..));
            let out: GreetOut = sock
                .request("greet", &GreetIn { name: name.clone() })
                .await?;
            Ok(out.greeting == format!("Hello {name}"))
        }
        "buffer" => {
            let len = if fastrand::u8(..) < 8 {
                fastrand::usize(..256 * 1024)
            } else {
                fastrand::usize(..512)
            };
            let p = payload(len);
            Ok(sock.buffer_request("echo", p.clone()).await? == p)
        }
        "stream" => {
            let (mut tx, mut rx) = sock.stream_request("stream-echo").await?;
            let parts: Vec<Bytes> = (0..fastrand::usize(1..6))
                .map(|_| payload(fastrand::usize(1..2048)))
                .collect();
            let want: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
            let send = async {
                for p in &parts {
                    tx.write(p.clone()).await?;
                }
                tx.end().await
            };
            let (sent, got) = tokio::join!(send, rx.collect());
            sent?;
            Ok(got? == want)
        }
        "notify-me" => {
            let p = payload(16);
            tally.notes_expected.fetch_add(1, Ordering::Relaxed);
            match sock.buffer_request("notify-me", p.clone()).await {
                Ok(out) => Ok(out == p),
                Err(e) => {
                    // The notification may or may not have been sent before the failure.
                    tally.notes_expected.fetch_sub(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        }
        "call-back" => {
            let p = payload(fastrand::usize(1..64));
            let mut want = p.to_vec();
            want.reverse();
            Ok(sock.buffer_request("call-back", p).await? == want)
        }
        "slow" => {
            let ms = fastrand::u64(1..50).to_string();
            Ok(sock.buffer_request("sleep", ms.clone()).await? == ms.as_bytes())
        }
        _ => {
            // The server closes this connection a little later; what is in flight then fails.
            let ms = fastrand::u64(0..30).to_string();
            Ok(sock.buffer_request("disconnect-me", ms).await?.is_empty())
        }
    }
}

async fn worker(addr: String, deadline: Instant, in_flight: usize, tally: Arc<Tally>) {
    let config = Config::new()
        .handlers(client_handlers(tally.clone()))
        .heartbeat_interval(Some(Duration::from_secs(1)))
        .auto_retry(3);
    while Instant::now() < deadline {
        let sock = match gotalk::connect_with(&addr, &config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("connect failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let rounds = fastrand::usize(1..40);
        for _ in 0..rounds {
            if Instant::now() >= deadline || sock.is_closed() {
                break;
            }
            let mut batch = Vec::new();
            for _ in 0..fastrand::usize(1..=in_flight) {
                // Disconnect requests are rare; the other kinds are equally likely.
                let k = if fastrand::u8(..) < 3 {
                    KINDS.len() - 1
                } else {
                    fastrand::usize(..KINDS.len() - 1)
                };
                let sock = sock.clone();
                let tally = tally.clone();
                tally.kinds[k].sent.fetch_add(1, Ordering::Relaxed);
                batch.push(tokio::spawn(async move {
                    let c = &tally.kinds[k];
                    match one_request(&sock, k, &tally).await {
                        Ok(true) => c.answered.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => {
                            c.answered.fetch_add(1, Ordering::Relaxed);
                            c.wrong.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            tally.error(&e);
                            c.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }));
            }
            // Now and then the client walks away with requests in flight.
            if fastrand::u8(..) < 4 {
                tokio::time::sleep(Duration::from_micros(fastrand::u64(0..2000))).await;
                tally.client_closes.fetch_add(1, Ordering::Relaxed);
                sock.close();
            }
            for t in batch {
                let _ = t.await;
            }
        }
        sock.close();
        sock.closed().await;
    }
}

// ---- main -----------------------------------------------------------------------------------

fn parse_duration(s: &str) -> Duration {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().expect("--duration: a number with s, ms or m");
    Duration::from_secs_f64(match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        u => panic!("--duration: unknown unit {u:?} (use ms, s or m)"),
    })
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--server") {
        return run_server().await;
    }
    // `--name value` or `--name=value`.
    let arg = |name: &str| {
        let eq = format!("{name}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == name {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&eq).map(str::to_owned)
            }
        })
    };
    let duration = parse_duration(&arg("--duration").unwrap_or_else(|| "60s".into()));
    let connections: usize = arg("--connections").map_or(32, |s| s.parse().unwrap());
    let in_flight: usize = arg("--in-flight").map_or(8, |s| s.parse().unwrap());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let pid = child.id();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .expect("server address")
        .to_owned();
    let rss_start = rss_kb(pid);
    println!(
        "soak: {connections} connections, up to {in_flight} requests in flight each, for {duration:?} against {addr} (server pid {pid})"
    );

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(addr.clone(), deadline, in_flight, tally.clone())))
        .collect();
    let mut peak = rss_start;
    let all = async {
        for w in workers {
            let _ = w.await;
        }
    };
    tokio::pin!(all);
    let stuck = loop {
        tokio::select! {
            _ = &mut all => break false,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                peak = peak.max(rss_kb(pid));
                if Instant::now() > deadline + Duration::from_secs(30) {
                    break true;
                }
            }
        }
    };
    let elapsed = started.elapsed();
    // Let the server notice the last disconnects before its memory is read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = rss_kb(pid);

    println!();
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "kind", "sent", "answered", "failed", "lost", "wrong"
    );
    let (mut ts, mut ta, mut tf, mut tw) = (0, 0, 0, 0);
    for (k, c) in tally.kinds.iter().enumerate() {
        let (s, a, f, w) = (
            c.sent.load(Ordering::Relaxed),
            c.answered.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.wrong.load(Ordering::Relaxed),
        );
        println!(
            "{:<12} {s:>10} {a:>10} {f:>10} {:>8} {w:>8}",
            KINDS[k],
            s as i64 - a as i64 - f as i64
        );
        ts += s;
        ta += a;
        tf += f;
        tw += w;
    }
    let lost = ts as i64 - ta as i64 - tf as i64;
    println!(
        "{:<12} {ts:>10} {ta:>10} {tf:>10} {lost:>8} {tw:>8}",
        "total"
    );
    let (ne, nr) = (
        tally.notes_expected.load(Ordering::Relaxed),
        tally.notes_received.load(Ordering::Relaxed),
    );
    println!();
    println!(
        "server->client notifications: {nr} received, {ne} owed by answered notify-me requests"
    );
    println!(
        "connections opened: {}; closed by the client with requests in flight: {}",
        tally.connections.load(Ordering::Relaxed),
        tally.client_closes.load(Ordering::Relaxed)
    );
    println!("failures by cause:");
    for (k, n) in tally.errors.lock().unwrap().iter() {
        println!("  {n:>8}  {k}");
    }
    println!(
        "{:.0} requests/s over {elapsed:.1?}",
        ts as f64 / elapsed.as_secs_f64()
    );
    println!("server memory: {rss_start} KiB at start, {peak} KiB peak, {rss_end} KiB at the end");

    drop(child.stdin.take());
    let _ = child.wait();
    let notes_lost = nr < ne;
    if stuck || lost != 0 || tw != 0 || notes_lost {
        println!(
            "FAILED: stuck={stuck} lost={lost} wrong={tw} notifications missing={}",
            ne.saturating_sub(nr)
        );
        std::process::exit(1);
    }
    println!("OK: nothing lost");
}
