//! Runs the end-to-end benchmark matrix and prints it as a markdown table.
//!
//! ```text
//! matrix [--seconds S] [--warmup S] [--idle N] [--points abcdef] [--smoke]
//!        [--peers tarpc,jsonrpsee [--peer-dir bench/peers/target/release]]
//! ```
//! Points: (a)–(e) echo loads, (f) server memory per idle connection, (g) the loads of (b) and
//! (e) over WebSocket (compared with the TCP floor: the floor is what the machine can do).
//! Every point runs twice, against the floor and against gotalk, each time with a fresh
//! `echo-server` process and a `load-gen` process (both found next to this binary), so server
//! and client never share a runtime. Figures are absolute and as a ratio gotalk / floor from
//! the same run. `--seconds` defaults to `$BENCH_SECONDS` or 3; `--smoke` runs each point for
//! 0.2 s with 200 idle connections, to check that everything works, not to measure.
//!
//! `--peers` adds a column (absolute figure and ratio to the same run's floor) for each listed
//! peer RPC crate at points (a)–(e), run the same way with `peer-server` and `peer-load` from
//! `--peer-dir` (built from `bench/peers` by `bench/matrix.sh --peers`; the default directory is
//! relative to the repository root, where `bench/matrix.sh` runs this).
//!
//! Exits non-zero if any run failed (not if a target is missed: benchmarks are not tests).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use gotalk_bench::args::{fail, Args};
use gotalk_bench::load::parse_result_line;

/// One point of the matrix.
struct Point {
    key: char,
    what: String,
    conns: usize,
    inflight: usize,
    size: usize,
    /// `Some(n)`: the idle-memory point with `n` connections.
    idle: Option<usize>,
}

type Fields = HashMap<String, String>;

/// The server and load-generator executables that run one protocol.
struct Exes {
    server: PathBuf,
    load: PathBuf,
}

fn main() {
    let args = Args::from_env(&["smoke"]);
    let smoke = args.flag("smoke");
    let env_secs = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let secs: f64 = args.get("seconds", if smoke { 0.2 } else { env_secs.unwrap_or(3.0) });
    let warmup: f64 = args.get("warmup", if smoke { 0.05 } else { 0.5 });
    let idle_n: usize = args.get("idle", if smoke { 200 } else { 10_000 });
    let only = args.text("points").unwrap_or("abcdefg").to_owned();
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| fail("cannot find the directory of this binary"));
    let peers: Vec<String> = args
        .text("peers")
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let peer_dir = PathBuf::from(
        args.text("peer-dir")
            .unwrap_or("bench/peers/target/release"),
    );
    let ours = Exes {
        server: bin_dir.join("echo-server"),
        load: bin_dir.join("load-gen"),
    };
    let theirs = Exes {
        server: peer_dir.join("peer-server"),
        load: peer_dir.join("peer-load"),
    };

    let mib = 1 << 20;
    let points = [
        point('a', "1 conn × 1 in flight, 16 B", 1, 1, 16),
        point('b', "1 conn × 64 in flight, 16 B", 1, 64, 16),
        point('c', "1 conn × 256 in flight, 16 B", 1, 256, 16),
        point('d', "16 conns × 16 in flight, 16 B", 16, 16, 16),
        point('e', "1 conn × 8 in flight, 1 MiB", 1, 8, mib),
        Point {
            key: 'f',
            what: format!("{idle_n} idle conns: server RSS"),
            conns: idle_n,
            inflight: 0,
            size: 0,
            idle: Some(idle_n),
        },
    ];

    eprintln!(
        "matrix: {secs} s per run after {warmup} s warm-up, {} cores{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if smoke {
            " (smoke: not a measurement)"
        } else {
            ""
        }
    );
    let mut rows = Vec::new();
    let mut failures = 0;
    let mut ok = 0;
    let mut floors: HashMap<char, Option<Fields>> = HashMap::new();
    let mut measure = |proto: &str, p: &Point| {
        let exes = if peers.iter().any(|x| x == proto) {
            &theirs
        } else {
            &ours
        };
        match run(exes, proto, p, secs, warmup) {
            Ok(f) => {
                ok += 1;
                Some(f)
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                failures += 1;
                None
            }
        }
    };
    for p in points.iter().filter(|p| only.contains(p.key)) {
        eprintln!("({}) {} — floor", p.key, p.what);
        let floor = measure("floor", p);
        eprintln!("({}) {} — gotalk", p.key, p.what);
        let gotalk = measure("gotalk", p);
        let mut others = Vec::new();
        if p.idle.is_none() {
            for peer in &peers {
                eprintln!("({}) {} — {peer}", p.key, p.what);
                others.push(measure(peer, p));
            }
        }
        let cols = Columns::new(&floor, &gotalk, &peers, &others);
        rows.extend(table_rows(p.key, &p.what, p.key, &cols));
        floors.insert(p.key, floor);
    }
    if only.contains('g') {
        // The same echo over WebSocket, against the TCP floor of (b) and (e).
        for base in ['b', 'e'] {
            let p = points.iter().find(|p| p.key == base).expect("listed");
            let floor = match floors.remove(&base) {
                Some(f) => f,
                None => {
                    eprintln!("({base}) {} — floor", p.what);
                    measure("floor", p)
                }
            };
            eprintln!("(g) {} — gotalk over WebSocket", p.what);
            let ws = measure("ws", p);
            let what = format!("({base}) over WebSocket");
            let cols = Columns::new(&floor, &ws, &peers, &[]);
            rows.extend(table_rows('g', &what, base, &cols));
        }
    }

    let peer_heads: String = peers
        .iter()
        .map(|p| format!(" {p} | {p} / floor |"))
        .collect();
    let peer_rule = "---:|---:|".repeat(peers.len());
    println!(
        "| point | what | metric | floor | gotalk | gotalk / floor |{peer_heads} target | met |"
    );
    println!("|---|---|---|---:|---:|---:|{peer_rule}---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("matrix: {ok} runs ok, {failures} failed");
    if failures > 0 {
        std::process::exit(1);
    }
}

fn point(key: char, what: &str, conns: usize, inflight: usize, size: usize) -> Point {
    Point {
        key,
        what: what.to_owned(),
        conns,
        inflight,
        size,
        idle: None,
    }
}

/// Kills the server when dropped, whatever happened.
struct ServerProc(Child);

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(exes: &Exes, proto: &str, p: &Point, secs: f64, warmup: f64) -> Result<Fields, String> {
    let (server_exe, load_exe) = (exes.server.display(), exes.load.display());
    let mut server = ServerProc(
        Command::new(&exes.server)
            .args(["--proto", proto, "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {server_exe}: {e}"))?,
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| format!("reading {server_exe}: {e}"))?;
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .ok_or_else(|| format!("{server_exe} said {line:?}"))?
        .to_owned();
    let mut cmd = Command::new(&exes.load);
    cmd.args(["--proto", proto, "--addr", &addr]);
    match p.idle {
        Some(n) => {
            cmd.args(["--idle", &n.to_string()]);
            cmd.args(["--server-pid", &server.0.id().to_string()]);
        }
        None => {
            cmd.args(["--conns", &p.conns.to_string()]);
            cmd.args(["--inflight", &p.inflight.to_string()]);
            cmd.args(["--size", &p.size.to_string()]);
            cmd.args(["--duration", &secs.to_string()]);
            cmd.args(["--warmup", &warmup.to_string()]);
            cmd.args(["--server-pid", &server.0.id().to_string()]);
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {load_exe}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{load_exe} exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let fields = stdout
        .lines()
        .find_map(parse_result_line)
        .ok_or_else(|| format!("{load_exe} printed no RESULT line: {stdout}"))?;
    eprintln!("  {}", stdout.trim());
    drop(server);
    Ok(fields.into_iter().collect())
}

fn num(f: &Option<Fields>, key: &str) -> Option<f64> {
    f.as_ref()?.get(key)?.parse().ok()
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The measured columns of one point: the floor, gotalk (or gotalk over WebSocket) and the
/// peers, if any were asked for.
struct Columns<'a> {
    floor: &'a Option<Fields>,
    gotalk: &'a Option<Fields>,
    /// One per `--peers` entry; `None` where the peer was not run at this point (empty
    /// cells), `Some(None)` where its run failed (—).
    peers: Vec<Option<&'a Option<Fields>>>,
}

impl<'a> Columns<'a> {
    /// `measured` holds the peers' results in the order of `peers`, or nothing where the
    /// point does not run them.
    fn new(
        floor: &'a Option<Fields>,
        gotalk: &'a Option<Fields>,
        peers: &[String],
        measured: &'a [Option<Fields>],
    ) -> Columns<'a> {
        Columns {
            floor,
            gotalk,
            peers: (0..peers.len()).map(|i| measured.get(i)).collect(),
        }
    }
}

/// What a metric must achieve, as a ratio gotalk / floor (or an absolute bound for memory).
enum Target {
    None,
    RatioAtLeast(f64),
    RatioAtMost(f64),
    AbsAtMost(f64, &'static str),
}

/// The table rows of point `key`, with the metrics and targets of point `kind`.
fn table_rows(key: char, what: &str, kind: char, cols: &Columns) -> Vec<String> {
    let metrics: Vec<(&str, &str, Target)> = match kind {
        'a' => vec![
            ("req/s", "rps", Target::None),
            ("p50 µs", "p50_us", Target::RatioAtMost(1.3)),
            ("p99 µs", "p99_us", Target::None),
            ("server CPU µs/req", "server_cpu_us", Target::None),
        ],
        'b' => vec![
            ("req/s", "rps", Target::RatioAtLeast(0.25)),
            ("p50 µs", "p50_us", Target::None),
            ("server CPU µs/req", "server_cpu_us", Target::None),
            ("client CPU µs/req", "client_cpu_us", Target::None),
        ],
        'c' => vec![
            ("req/s", "rps", Target::RatioAtLeast(0.15)),
            ("p50 µs", "p50_us", Target::None),
            ("server CPU µs/req", "server_cpu_us", Target::None),
            ("client CPU µs/req", "client_cpu_us", Target::None),
        ],
        'd' => vec![
            ("req/s", "rps", Target::RatioAtLeast(0.35)),
            ("p50 µs", "p50_us", Target::None),
            ("server CPU µs/req", "server_cpu_us", Target::None),
            ("client CPU µs/req", "client_cpu_us", Target::None),
        ],
        'e' => vec![
            ("MB/s", "mbps", Target::RatioAtLeast(0.70)),
            ("p50 µs", "p50_us", Target::None),
            ("server CPU µs/req", "server_cpu_us", Target::None),
            ("client CPU µs/req", "client_cpu_us", Target::None),
        ],
        _ => vec![("KiB / conn", "kib_per_conn", Target::AbsAtMost(6.0, "KiB"))],
    };
    metrics
        .into_iter()
        .enumerate()
        .map(|(i, (label, field, target))| {
            let (f, g) = (num(cols.floor, field), num(cols.gotalk, field));
            let ratio = ratio_to(f, g);
            let peer_cells: String = cols
                .peers
                .iter()
                .map(|peer| match peer {
                    None => "  |  |".to_owned(),
                    Some(fields) => {
                        let v = num(fields, field);
                        format!(" {} | {} |", fmt_num(v), fmt_ratio(ratio_to(f, v)))
                    }
                })
                .collect();
            let target = if key == 'g' { Target::None } else { target };
            let (tgt, met) = match target {
                Target::None => (String::new(), String::new()),
                Target::RatioAtLeast(t) => (format!("≥ {t:.2}×"), yes_no(ratio.map(|r| r >= t))),
                Target::RatioAtMost(t) => (format!("≤ {t:.2}×"), yes_no(ratio.map(|r| r <= t))),
                Target::AbsAtMost(t, unit) => (format!("≤ {t} {unit}"), yes_no(g.map(|g| g <= t))),
            };
            format!(
                "| {} | {} | {label} | {} | {} | {} |{peer_cells} {tgt} | {met} |",
                if i == 0 {
                    key.to_string()
                } else {
                    String::new()
                },
                if i == 0 { what } else { "" },
                fmt_num(f),
                fmt_num(g),
                fmt_ratio(ratio),
            )
        })
        .collect()
}

/// `v / floor`, where both are known and the floor is not 0.
fn ratio_to(floor: Option<f64>, v: Option<f64>) -> Option<f64> {
    match (floor, v) {
        (Some(f), Some(v)) if f > 0.0 => Some(v / f),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".to_owned(), |r| format!("{r:.2}"))
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "**no**".into(),
        None => "—".into(),
    }
}
