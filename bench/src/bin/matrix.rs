//! Runs the end-to-end benchmark matrix and prints it as a markdown table.
//!
//! ```text
//! matrix [--seconds S] [--warmup S] [--idle N] [--points abcdefg] [--repeat N] [--pin]
//!        [--smoke] [--peers tarpc,jsonrpsee [--peer-dir bench/peers/target/release]]
//!        [--external 'NAME=COMMAND with {addr}']
//! ```
//! Points: (a)–(e) echo loads, (f) server memory per idle connection, (g) the loads of (b) and
//! (e) over WebSocket (compared with the TCP floor: the floor is what the machine can do).
//! Every point runs against the floor and against gotalk, each time with a fresh `echo-server`
//! process and a `load-gen` process (both found next to this binary), so server and client
//! never share a runtime. `--seconds` defaults to `$BENCH_SECONDS` or 3; `--smoke` runs each
//! point once for 0.2 s with 200 idle connections, to check that everything works, not to
//! measure.
//!
//! **Repeats.** Each point runs `--repeat` rounds (default `$BENCH_REPEAT` or 3; 1 with
//! `--smoke`). A round runs every column of the point once, one after the other (floor, gotalk,
//! the peers, and gotalk over WebSocket at (b) and (e) when (g) is asked for; every other round
//! in the reverse order), so that a drift in the machine's load hits all columns alike. The
//! table shows the **median** over the rounds of every figure; the ratio to the floor is
//! computed per round (each run against the floor of its own round) and its median is shown and
//! judged against the target. For the headline metric of each point (the one with a target:
//! p50 at (a), req/s at (b)–(d), MB/s at (e), KiB per connection at (f), and req/s or MB/s at
//! (g)) the column `ratio min–max` gives the range of the per-round ratios.
//!
//! **Pinning.** `--pin` starts every server under `taskset -c 0` and every load generator under
//! `taskset -c 1` (all protocols alike), so that they do not share a core; tokio then sizes its
//! runtimes to the one CPU each may use. It fails if `taskset` is missing or the machine has
//! fewer than 2 CPUs.
//!
//! `--peers` adds a column (absolute figure and ratio to the same round's floor) for each listed
//! peer RPC crate at points (a)–(e), run the same way with `peer-server` and `peer-load` from
//! `--peer-dir` (built from `bench/peers` by `bench/matrix.sh --peers`; the default directory is
//! relative to the repository root, where `bench/matrix.sh` runs this).
//!
//! `--external 'NAME=COMMAND'` adds a column NAME for another gotalk server — the reference Go
//! implementation, say — at points (a)–(f), driven by gotalk's own `load-gen` exactly like the
//! gotalk column. COMMAND is run by `sh -c "exec COMMAND"` with `{addr}` replaced by a free
//! loopback address (`127.0.0.1:PORT`) that the server must listen on with gotalk's protocol
//! over TCP and answer buffer requests `echo` with their payload. The matrix waits until the
//! address accepts connections; the process started is the one whose CPU time and memory are
//! measured, hence the `exec`.
//!
//! Exits non-zero if any run failed (not if a target is missed: benchmarks are not tests).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The results of one column at one point, one per round: `None` where the run failed.
type Runs = Vec<Option<Fields>>;

/// The server and load-generator executables that run one protocol.
struct Exes {
    server: PathBuf,
    load: PathBuf,
}

/// The CPUs that servers and load generators are pinned to with `--pin`.
const SERVER_CPU: usize = 0;
const LOAD_CPU: usize = 1;

/// `--external`: another gotalk server, started by a shell command.
#[derive(Debug, Clone, PartialEq)]
struct External {
    /// Its column's name.
    name: String,
    /// The command, with `{addr}` where the address to listen on goes.
    command: String,
}

impl External {
    /// Parses `NAME=COMMAND`; NAME must not be a column the matrix has already.
    fn parse(spec: &str, taken: &[String]) -> Result<External, String> {
        let (name, command) = spec
            .split_once('=')
            .ok_or("expected NAME=COMMAND, e.g. go='./go-echo -addr {addr}'")?;
        let name = name.trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '|') {
            return Err(format!("bad column name {name:?}"));
        }
        if ["floor", "gotalk", "ws"].contains(&name) || taken.iter().any(|t| t == name) {
            return Err(format!("column name {name:?} is taken"));
        }
        if !command.contains("{addr}") {
            return Err("COMMAND must contain {addr}, the address to listen on".to_owned());
        }
        Ok(External {
            name: name.to_owned(),
            command: command.to_owned(),
        })
    }

    /// The shell command that starts the server on `addr`.
    fn command_for(&self, addr: &str) -> String {
        format!("exec {}", self.command.replace("{addr}", addr))
    }
}

/// How the processes of every run are started.
#[derive(Clone, Copy)]
struct Launch {
    secs: f64,
    warmup: f64,
    /// `--pin`: servers on [`SERVER_CPU`], load generators on [`LOAD_CPU`].
    pin: bool,
}

fn main() {
    let args = Args::from_env(&["smoke", "pin"]);
    let smoke = args.flag("smoke");
    let env = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
    let env_secs: Option<f64> = env("BENCH_SECONDS").map(|s| {
        s.parse()
            .unwrap_or_else(|_| fail(&format!("BENCH_SECONDS: cannot parse {s:?}")))
    });
    let env_repeat: Option<usize> = env("BENCH_REPEAT").map(|s| {
        s.parse()
            .unwrap_or_else(|_| fail(&format!("BENCH_REPEAT: cannot parse {s:?}")))
    });
    let secs: f64 = args.get("seconds", if smoke { 0.2 } else { env_secs.unwrap_or(3.0) });
    let warmup: f64 = args.get("warmup", if smoke { 0.05 } else { 0.5 });
    let idle_n: usize = args.get("idle", if smoke { 200 } else { 10_000 });
    let repeat: usize = args.get("repeat", if smoke { 1 } else { env_repeat.unwrap_or(3) });
    if repeat == 0 {
        fail("--repeat must be at least 1");
    }
    let only = args.text("points").unwrap_or("abcdefg").to_owned();
    let pin = args.flag("pin");
    if pin {
        if let Err(e) = check_pinning() {
            fail(&format!("--pin: {e}"));
        }
    }
    let launch = Launch { secs, warmup, pin };
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
    let external = args.text("external").map(|spec| {
        External::parse(spec, &peers).unwrap_or_else(|e| fail(&format!("--external: {e}")))
    });
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

    let header = header(&launch, repeat, smoke);
    eprintln!("matrix: {header}");
    let mut failures = 0;
    let mut ok = 0;
    let mut measure = |proto: &str, p: &Point| {
        let exes = if peers.iter().any(|x| x == proto) {
            &theirs
        } else {
            &ours
        };
        let ext = external.as_ref().filter(|x| x.name == proto);
        match run(exes, proto, ext, p, launch) {
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
    // (g) runs gotalk over WebSocket in the rounds of (b) and (e), against their floor.
    let ws_bases = if only.contains('g') { "be" } else { "" };
    let mut results: HashMap<(char, String), Runs> = HashMap::new();
    let ext_name = external.as_ref().map(|x| x.name.as_str());
    for p in &points {
        let columns = columns_of(
            p,
            only.contains(p.key),
            ws_bases.contains(p.key),
            &peers,
            ext_name,
        );
        if columns.len() < 2 {
            continue;
        }
        for round in 0..repeat {
            for proto in round_order(&columns, round) {
                eprintln!(
                    "({}) {} — {}{}",
                    p.key,
                    p.what,
                    if proto == "ws" {
                        "gotalk over WebSocket"
                    } else {
                        proto
                    },
                    if repeat > 1 {
                        format!(" [round {}/{repeat}]", round + 1)
                    } else {
                        String::new()
                    }
                );
                let r = measure(proto, p);
                results
                    .entry((p.key, proto.to_owned()))
                    .or_insert_with(|| vec![None; repeat])[round] = r;
            }
        }
    }

    // The columns after gotalk's: the peers, then the external server.
    let extra: Vec<String> = peers
        .iter()
        .cloned()
        .chain(ext_name.map(str::to_owned))
        .collect();
    let none: Runs = Vec::new();
    let get = |key: char, proto: &str| results.get(&(key, proto.to_owned())).unwrap_or(&none);
    let mut rows = Vec::new();
    for p in points.iter().filter(|p| only.contains(p.key)) {
        let measured: Vec<Option<&Runs>> = extra
            .iter()
            .map(|c| (p.idle.is_none() || Some(c.as_str()) == ext_name).then(|| get(p.key, c)))
            .collect();
        let cols = Columns::new(get(p.key, "floor"), get(p.key, "gotalk"), measured);
        rows.extend(table_rows(p.key, &p.what, p.key, &cols));
    }
    for base in ws_bases.chars() {
        let what = format!("({base}) over WebSocket");
        let cols = Columns::new(get(base, "floor"), get(base, "ws"), vec![None; extra.len()]);
        rows.extend(table_rows('g', &what, base, &cols));
    }

    let peer_heads: String = extra
        .iter()
        .map(|p| format!(" {p} | {p} / floor |"))
        .collect();
    let peer_rule = "---:|---:|".repeat(extra.len());
    println!("{header}");
    println!();
    println!(
        "| point | what | metric | floor | gotalk | gotalk / floor | ratio min–max |{peer_heads} \
         target | met |"
    );
    println!("|---|---|---|---:|---:|---:|---:|{peer_rule}---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("matrix: {ok} runs ok, {failures} failed");
    if failures > 0 {
        std::process::exit(1);
    }
}

/// The line that says how the figures were taken (printed above the table).
fn header(l: &Launch, repeat: usize, smoke: bool) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let how = if repeat > 1 {
        format!(
            "median of {repeat} rounds (the columns of a point alternate within each round; \
             ratio min–max: range of the per-round ratios)"
        )
    } else {
        "one round".to_owned()
    };
    let pinned = if l.pin {
        format!(
            "pinned: servers on CPU {SERVER_CPU} (taskset -c {SERVER_CPU}), load generators on \
             CPU {LOAD_CPU} (taskset -c {LOAD_CPU})"
        )
    } else {
        "not pinned".to_owned()
    };
    format!(
        "{} s per run after {} s warm-up, {how}, {cores} cores, {pinned}{}",
        l.secs,
        l.warmup,
        if smoke {
            " (smoke: not a measurement)"
        } else {
            ""
        }
    )
}

/// The columns measured at point `p`: the floor, then gotalk, the peers and the external
/// server if the point itself is asked for (no peers at the idle point: their load generator
/// cannot hold idle connections), then gotalk over WebSocket if `ws`.
fn columns_of<'a>(
    p: &Point,
    asked: bool,
    ws: bool,
    peers: &'a [String],
    external: Option<&'a str>,
) -> Vec<&'a str> {
    let mut cols = vec!["floor"];
    if asked {
        cols.push("gotalk");
        if p.idle.is_none() {
            cols.extend(peers.iter().map(String::as_str));
        }
        cols.extend(external);
    }
    if ws {
        cols.push("ws");
    }
    cols
}

/// The order of the columns in round `round` (from 0): as listed, reversed in every other
/// round, so that no column always runs first or last.
fn round_order<'a>(columns: &[&'a str], round: usize) -> Vec<&'a str> {
    let mut order = columns.to_vec();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Checks that `--pin` can work: `taskset` runs, and both CPUs are usable by this process.
fn check_pinning() -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Err(format!(
            "needs at least 2 CPUs (server on CPU {SERVER_CPU}, load generator on CPU \
             {LOAD_CPU}); this process may use {cores}"
        ));
    }
    for cpu in [SERVER_CPU, LOAD_CPU] {
        let status = Command::new("taskset")
            .args(["-c", &cpu.to_string(), "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run taskset ({e}); it is in util-linux"))?;
        if !status.success() {
            return Err(format!(
                "`taskset -c {cpu} true` failed ({status}): CPU {cpu} is not available to \
                 this process"
            ));
        }
    }
    Ok(())
}

/// A command that runs `exe`, under `taskset -c CPU` if `cpu` is given.
fn command(exe: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(exe);
            c
        }
        None => Command::new(exe),
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

/// Runs one column at point `p`: starts its server (ours or a peer's from `exes`, or the
/// `external` one), runs the load generator against it and returns its `RESULT` fields.
fn run(
    exes: &Exes,
    proto: &str,
    external: Option<&External>,
    p: &Point,
    l: Launch,
) -> Result<Fields, String> {
    let load_exe = exes.load.display();
    let pin = |cpu| Some(cpu).filter(|_| l.pin);
    let (server, addr) = match external {
        None => start_server(exes, proto, pin(SERVER_CPU))?,
        Some(x) => start_external(x, pin(SERVER_CPU))?,
    };
    // An external server speaks gotalk: gotalk's load generator drives it.
    let load_proto = if external.is_some() { "gotalk" } else { proto };
    let mut cmd = command(&exes.load, pin(LOAD_CPU));
    cmd.args(["--proto", load_proto, "--addr", &addr]);
    match p.idle {
        Some(n) => {
            cmd.args(["--idle", &n.to_string()]);
            cmd.args(["--server-pid", &server.0.id().to_string()]);
        }
        None => {
            cmd.args(["--conns", &p.conns.to_string()]);
            cmd.args(["--inflight", &p.inflight.to_string()]);
            cmd.args(["--size", &p.size.to_string()]);
            cmd.args(["--duration", &l.secs.to_string()]);
            cmd.args(["--warmup", &l.warmup.to_string()]);
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

/// Starts `exes.server --proto PROTO` on a free loopback port; returns it and the address it
/// printed (`LISTENING ADDR`).
fn start_server(
    exes: &Exes,
    proto: &str,
    cpu: Option<usize>,
) -> Result<(ServerProc, String), String> {
    let server_exe = exes.server.display();
    let mut server = ServerProc(
        command(&exes.server, cpu)
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
    Ok((server, addr))
}

/// How long an external server may take to start listening.
const EXTERNAL_START: Duration = Duration::from_secs(10);

/// Starts the external server on a free loopback port and waits until that port accepts
/// connections.
fn start_external(x: &External, cpu: Option<usize>) -> Result<(ServerProc, String), String> {
    // A port the kernel just handed out and nobody holds: the server binds it next.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .to_string();
    let script = x.command_for(&addr);
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "sh", "-c", &script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        }
    };
    let mut server = ServerProc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", x.name))?,
    );
    let t0 = Instant::now();
    loop {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok((server, addr));
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("{} ({script}) exited with {status}", x.name));
        }
        if t0.elapsed() > EXTERNAL_START {
            return Err(format!(
                "{} ({script}) did not listen on {addr} within {EXTERNAL_START:?}",
                x.name
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The values of `key` in the runs that succeeded.
fn values(runs: &Runs, key: &str) -> Vec<f64> {
    runs.iter().filter_map(|f| num(f, key)).collect()
}

/// The ratio `v / floor` of `key` in every round where both runs succeeded.
fn ratios(floor: &Runs, v: &Runs, key: &str) -> Vec<f64> {
    floor
        .iter()
        .zip(v)
        .filter_map(|(f, v)| ratio_to(num(f, key), num(v, key)))
        .collect()
}

fn num(f: &Option<Fields>, key: &str) -> Option<f64> {
    f.as_ref()?.get(key)?.parse().ok()
}

/// The median (the mean of the two middle values for an even count); `None` if empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `min–max` of two or more values; empty for fewer (nothing to show).
fn fmt_range(v: &[f64]) -> String {
    if v.len() < 2 {
        return String::new();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}–{}", fmt_ratio(Some(min)), fmt_ratio(Some(max)))
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The measured columns of one point, every round of each: the floor, gotalk (or gotalk over
/// WebSocket), the peers and the external server, if any were asked for.
struct Columns<'a> {
    floor: &'a Runs,
    gotalk: &'a Runs,
    /// One per `--peers` entry and one for `--external`; `None` where that column was not
    /// run at this point (empty cells).
    peers: Vec<Option<&'a Runs>>,
}

impl<'a> Columns<'a> {
    fn new(floor: &'a Runs, gotalk: &'a Runs, peers: Vec<Option<&'a Runs>>) -> Columns<'a> {
        Columns {
            floor,
            gotalk,
            peers,
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

/// The table rows of point `key`, with the metrics and targets of point `kind`. Every figure
/// is the median over the rounds; ratios are taken per round, then their median. The metric
/// with a target (the headline) also gets the range of its per-round ratios.
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
            let headline = !matches!(target, Target::None);
            let f = median(values(cols.floor, field));
            let g = median(values(cols.gotalk, field));
            let per_round = ratios(cols.floor, cols.gotalk, field);
            let ratio = median(per_round.clone());
            let range = if headline {
                fmt_range(&per_round)
            } else {
                String::new()
            };
            let peer_cells: String = cols
                .peers
                .iter()
                .map(|peer| match peer {
                    None => "  |  |".to_owned(),
                    Some(runs) => {
                        let v = median(values(runs, field));
                        let r = median(ratios(cols.floor, runs, field));
                        format!(" {} | {} |", fmt_num(v), fmt_ratio(r))
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
                "| {} | {} | {label} | {} | {} | {} | {range} |{peer_cells} {tgt} | {met} |",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(pairs: &[(&str, &str)]) -> Option<Fields> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn ranges() {
        assert_eq!(fmt_range(&[]), "");
        assert_eq!(fmt_range(&[1.0]), "");
        assert_eq!(fmt_range(&[1.31, 0.964, 1.0]), "0.96–1.31");
    }

    #[test]
    fn rounds_alternate() {
        let cols = ["floor", "gotalk", "tarpc"];
        assert_eq!(round_order(&cols, 0), ["floor", "gotalk", "tarpc"]);
        assert_eq!(round_order(&cols, 1), ["tarpc", "gotalk", "floor"]);
        assert_eq!(round_order(&cols, 2), ["floor", "gotalk", "tarpc"]);
    }

    #[test]
    fn ratios_per_round_and_their_median() {
        // Round 2's floor failed: its gotalk run has no ratio, but still counts for the median
        // of gotalk's own figure.
        let floor: Runs = vec![
            run_of(&[("p50_us", "20")]),
            None,
            run_of(&[("p50_us", "25")]),
        ];
        let gotalk: Runs = vec![
            run_of(&[("p50_us", "24")]),
            run_of(&[("p50_us", "30")]),
            run_of(&[("p50_us", "25")]),
        ];
        assert_eq!(ratios(&floor, &gotalk, "p50_us"), [1.2, 1.0]);
        let rows = table_rows('a', "x", 'a', &Columns::new(&floor, &gotalk, vec![]));
        // p50: floor median 22.5, gotalk 25, ratio median 1.10 (of 1.2 and 1.0), range shown.
        assert_eq!(
            rows[1],
            "|  |  | p50 µs | 22.5 | 25.0 | 1.10 | 1.00–1.20 | ≤ 1.30× | yes |"
        );
        // req/s has no figures here and is not the headline: no range.
        assert_eq!(rows[0], "| a | x | req/s | — | — | — |  |  |  |");
    }

    #[test]
    fn peer_columns() {
        let floor: Runs = vec![run_of(&[("rps", "100")]), run_of(&[("rps", "200")])];
        let gotalk: Runs = vec![run_of(&[("rps", "30")]), run_of(&[("rps", "40")])];
        let tarpc: Runs = vec![run_of(&[("rps", "10")]), None];
        // tarpc and jsonrpsee asked for, jsonrpsee not run at this point: empty cells.
        let cols = Columns::new(&floor, &gotalk, vec![Some(&tarpc), None]);
        let rows = table_rows('b', "x", 'b', &cols);
        assert_eq!(
            rows[0],
            "| b | x | req/s | 150 | 35.0 | 0.25 | 0.20–0.30 | 10.0 | 0.10 |  |  | ≥ 0.25× | yes |"
        );
    }

    #[test]
    fn external_spec() {
        let peers = ["tarpc".to_owned()];
        let x = External::parse("go=./go-echo -addr {addr} -x=1", &peers).unwrap();
        assert_eq!(x.name, "go");
        assert_eq!(
            x.command_for("127.0.0.1:9"),
            "exec ./go-echo -addr 127.0.0.1:9 -x=1"
        );
        assert!(External::parse("go ./go-echo", &peers).is_err());
        assert!(External::parse("go=./go-echo", &peers).is_err());
        assert!(External::parse("tarpc=x {addr}", &peers).is_err());
        assert!(External::parse("gotalk=x {addr}", &peers).is_err());
        assert!(External::parse("=x {addr}", &peers).is_err());
    }

    #[test]
    fn external_column_at_the_idle_point_too() {
        let idle = Point {
            key: 'f',
            what: String::new(),
            conns: 10,
            inflight: 0,
            size: 0,
            idle: Some(10),
        };
        let peers = ["tarpc".to_owned()];
        assert_eq!(
            columns_of(&idle, true, false, &peers, Some("go")),
            ["floor", "gotalk", "go"]
        );
        let b = point('b', "", 1, 64, 16);
        assert_eq!(
            columns_of(&b, true, true, &peers, Some("go")),
            ["floor", "gotalk", "tarpc", "go", "ws"]
        );
        assert_eq!(
            columns_of(&b, false, true, &peers, Some("go")),
            ["floor", "ws"]
        );
    }
}
