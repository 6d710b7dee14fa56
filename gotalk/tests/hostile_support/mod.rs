//! Shared helpers for the hostile-peer and fault tests: raw protocol peers over real TCP, frame
//! builders, and a server running in a child process so that its memory and file descriptors can
//! be measured without the noise of the test process itself.
//!
//! The child server is this same test binary started again with one `#[ignore]`d test selected
//! (`child_server`), which calls [`child_main`]. Every test file that uses [`ChildServer`] declares
//! that test (see [`child_server_test!`]).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::{Message, Name, RequestId};
use gotalk::{Config, HandlerError, Handlers, Limits, Server, ServerOptions};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on how long any single wait in a test may take before the test is declared hung.
/// Never a performance assertion: only a guard against hanging forever.
pub const HANG: Duration = Duration::from_secs(20);

/// Awaits `f`, failing the test if it takes longer than [`HANG`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(HANG, f).await {
        Ok(v) => v,
        Err(_) => panic!("hung: {what} did not finish within {HANG:?}"),
    }
}

// ---- frames ---------------------------------------------------------------------------------

/// A request ID from a number, as 4 printable bytes.
pub fn rid(n: u32) -> RequestId {
    RequestId::from_counter(n)
}

/// The encoded bytes of `m`.
pub fn bytes_of(m: &Message) -> Vec<u8> {
    m.to_bytes().to_vec()
}

/// `r` request.
pub fn req(id: RequestId, op: &str, payload: &[u8]) -> Vec<u8> {
    bytes_of(&Message::SingleRequest {
        id,
        op: Name::new(op).unwrap(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// `s` stream request.
pub fn sreq(id: RequestId, op: &str, payload: &[u8]) -> Vec<u8> {
    bytes_of(&Message::StreamRequest {
        id,
        op: Name::new(op).unwrap(),
        payload: Bytes::copy_from_slice(payload),
    })
}

// ---- raw peer -------------------------------------------------------------------------------

/// A peer that speaks the protocol by hand over TCP: it sends whatever bytes a test wants and
/// decodes what comes back.
pub struct RawPeer {
    pub stream: TcpStream,
    buf: BytesMut,
    dec: Decoder,
}

/// A TCP connection to `addr` from the loopback address `local` (any of 127.0.0.0/8), so that
/// one test can be several peer addresses.
pub async fn tcp_from(local: &str, addr: &str) -> std::io::Result<TcpStream> {
    let hp = addr
        .trim_start_matches("tcp://")
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{local}:0").parse().expect("local address"))?;
    socket
        .connect(hp.parse().expect("a numeric host:port"))
        .await
}

impl RawPeer {
    /// Connects and exchanges protocol versions.
    pub async fn connect(addr: &str) -> RawPeer {
        RawPeer::connect_from("127.0.0.1", addr).await
    }

    /// Connects from the loopback address `local` and exchanges protocol versions.
    pub async fn connect_from(local: &str, addr: &str) -> RawPeer {
        let stream = tcp_from(local, addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut p = RawPeer {
            stream,
            buf: BytesMut::new(),
            dec: Decoder::new(u32::MAX),
        };
        p.stream.write_all(b"01").await.unwrap();
        match p.next_decoded().await {
            Some(Decoded::Version(1)) => {}
            other => panic!("expected version, got {other:?}"),
        }
        p
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn next_decoded(&mut self) -> Option<Decoded> {
        loop {
            if let Some(d) = self.dec.decode(&mut self.buf).expect("server sent garbage") {
                return Some(d);
            }
            let n = self.stream.read_buf(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// The next message other than a heartbeat, or `None` at end of stream (or on a reset).
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            match self.next_decoded().await? {
                Decoded::Message(Message::Heartbeat { .. }) => continue,
                Decoded::Message(m) => return Some(m),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Splits into a reader and a writer half, so that one task writes while another reads.
    pub fn split(self) -> (RawReader, tokio::net::tcp::OwnedWriteHalf) {
        let (r, w) = self.stream.into_split();
        (
            RawReader {
                r,
                buf: self.buf,
                dec: self.dec,
            },
            w,
        )
    }

    /// Reads until the server closes the connection; returns the messages seen on the way.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        let mut out = vec![];
        while let Some(m) = self.next().await {
            out.push(m);
        }
        out
    }
}

/// The reading half of a split [`RawPeer`].
pub struct RawReader {
    r: tokio::net::tcp::OwnedReadHalf,
    buf: BytesMut,
    dec: Decoder,
}

impl RawReader {
    /// The next message other than a heartbeat, or `None` at end of stream (or on a reset).
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            match self.dec.decode(&mut self.buf).expect("server sent garbage") {
                Some(Decoded::Message(Message::Heartbeat { .. })) => continue,
                Some(Decoded::Message(m)) => return Some(m),
                Some(other) => panic!("unexpected {other:?}"),
                None => {}
            }
            if self.r.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }
}

// ---- measurements ---------------------------------------------------------------------------

/// Resident memory of process `pid` in KiB (Linux `/proc`).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What the child server reports about itself (`stats` operation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub connections: usize,
    pub fds: usize,
    pub rss_kb: u64,
    pub tasks: usize,
    pub in_progress: u32,
}

// ---- the server under attack ----------------------------------------------------------------

/// Limits for a test server, from the environment of the child (or given directly in-process).
#[derive(Debug, Clone, Default)]
pub struct ServerSpec {
    pub max_payload: Option<u32>,
    pub buffer_requests: Option<u32>,
    pub stream_requests: Option<u32>,
    pub read_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub write_buffer: Option<usize>,
    pub stream_idle_timeout_ms: Option<u64>,
    /// The server's heartbeat interval; `None` sends none (most tests read raw messages and
    /// want none), `Some(0)` keeps [`Config`]'s default.
    pub heartbeat_ms: Option<u64>,
    /// Address to bind in the child (default `127.0.0.1:0`), e.g. `ws://127.0.0.1:0/gotalk/`.
    pub bind: Option<String>,
    /// [`ServerOptions`] fields; `None` keeps the default.
    pub max_connections: Option<usize>,
    /// `Some(0)` lifts the per-address limit (`None` in [`ServerOptions`]).
    pub max_connections_per_address: Option<usize>,
    pub max_http_connections: Option<usize>,
    /// `Some(0)` lifts the per-address limit.
    pub max_http_connections_per_address: Option<usize>,
}

impl ServerSpec {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![];
        let mut put = |k, x: Option<String>| {
            if let Some(x) = x {
                v.push((k, x));
            }
        };
        put("GT_MAX_PAYLOAD", self.max_payload.map(|x| x.to_string()));
        put(
            "GT_BUFFER_REQUESTS",
            self.buffer_requests.map(|x| x.to_string()),
        );
        put(
            "GT_STREAM_REQUESTS",
            self.stream_requests.map(|x| x.to_string()),
        );
        put(
            "GT_READ_TIMEOUT_MS",
            self.read_timeout_ms.map(|x| x.to_string()),
        );
        put(
            "GT_WRITE_TIMEOUT_MS",
            self.write_timeout_ms.map(|x| x.to_string()),
        );
        put("GT_WRITE_BUFFER", self.write_buffer.map(|x| x.to_string()));
        put(
            "GT_STREAM_IDLE_MS",
            self.stream_idle_timeout_ms.map(|x| x.to_string()),
        );
        put("GT_HEARTBEAT_MS", self.heartbeat_ms.map(|x| x.to_string()));
        put("GT_BIND", self.bind.clone());
        put(
            "GT_MAX_CONNECTIONS",
            self.max_connections.map(|x| x.to_string()),
        );
        put(
            "GT_MAX_CONNECTIONS_PER_ADDRESS",
            self.max_connections_per_address.map(|x| x.to_string()),
        );
        put(
            "GT_MAX_HTTP_CONNECTIONS",
            self.max_http_connections.map(|x| x.to_string()),
        );
        put(
            "GT_MAX_HTTP_CONNECTIONS_PER_ADDRESS",
            self.max_http_connections_per_address.map(|x| x.to_string()),
        );
        v
    }

    fn from_env() -> ServerSpec {
        fn get<T: std::str::FromStr>(k: &str) -> Option<T> {
            std::env::var(k).ok().and_then(|v| v.parse().ok())
        }
        ServerSpec {
            max_payload: get("GT_MAX_PAYLOAD"),
            buffer_requests: get("GT_BUFFER_REQUESTS"),
            stream_requests: get("GT_STREAM_REQUESTS"),
            read_timeout_ms: get("GT_READ_TIMEOUT_MS"),
            write_timeout_ms: get("GT_WRITE_TIMEOUT_MS"),
            write_buffer: get("GT_WRITE_BUFFER"),
            stream_idle_timeout_ms: get("GT_STREAM_IDLE_MS"),
            heartbeat_ms: get("GT_HEARTBEAT_MS"),
            bind: get("GT_BIND"),
            max_connections: get("GT_MAX_CONNECTIONS"),
            max_connections_per_address: get("GT_MAX_CONNECTIONS_PER_ADDRESS"),
            max_http_connections: get("GT_MAX_HTTP_CONNECTIONS"),
            max_http_connections_per_address: get("GT_MAX_HTTP_CONNECTIONS_PER_ADDRESS"),
        }
    }

    /// The server options this spec describes (the defaults where it says nothing).
    pub fn options(&self) -> ServerOptions {
        let some = |n: usize| (n > 0).then_some(n);
        let mut o = ServerOptions::default();
        if let Some(x) = self.max_connections {
            o = o.max_connections(x);
        }
        if let Some(x) = self.max_connections_per_address {
            o = o.max_connections_per_address(some(x));
        }
        if let Some(x) = self.max_http_connections {
            o = o.max_http_connections(x);
        }
        if let Some(x) = self.max_http_connections_per_address {
            o = o.max_http_connections_per_address(some(x));
        }
        o
    }

    /// The limits this spec describes; retry waits are short so tests stay quick.
    pub fn limits(&self) -> Limits {
        let mut l =
            Limits::default().retry_wait(Duration::from_millis(10), Duration::from_millis(20));
        if let Some(x) = self.max_payload {
            l = l.max_payload(x);
        }
        if let Some(x) = self.buffer_requests {
            l = l.buffer_requests(x);
        }
        if let Some(x) = self.stream_requests {
            l = l.stream_requests(x);
        }
        if let Some(x) = self.read_timeout_ms {
            l = l.read_timeout(Some(Duration::from_millis(x)));
        }
        if let Some(x) = self.write_timeout_ms {
            l = l.write_timeout(Some(Duration::from_millis(x)));
        }
        if let Some(x) = self.write_buffer {
            l = l.write_buffer(x);
        }
        if let Some(x) = self.stream_idle_timeout_ms {
            l = l.stream_idle_timeout(Some(Duration::from_millis(x)));
        }
        l
    }
}

/// The operations every test server offers:
/// - `echo` (buffer): returns its input;
/// - `sleep` (buffer): payload = decimal milliseconds; sleeps, returns `slept`;
/// - `big` (buffer): payload = decimal N; returns N bytes;
/// - `hold` (buffer): waits until `release` is called (on any connection), returns `held`;
/// - `release` (buffer): lets every `hold` (past and future) return;
/// - `sink` (stream): reads parts until the end, returns their total size;
/// - `stall` (stream): never reads its parts, never ends (until the connection does);
/// - `stats` (JSON): the server's connections, fds, memory and tasks, see [`Stats`].
pub fn handlers(server: std::sync::Arc<std::sync::OnceLock<Server>>) -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle_buffer("sleep", |_s, _op, p| async move {
        let ms: u64 = std::str::from_utf8(&p)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HandlerError::msg("sleep wants decimal milliseconds"))?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Bytes::from_static(b"slept"))
    });
    h.handle_buffer("big", |_s, _op, p| async move {
        let n: usize = std::str::from_utf8(&p)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HandlerError::msg("big wants a decimal size"))?;
        Ok(Bytes::from(vec![b'x'; n]))
    });
    let gate = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
    let g = gate.clone();
    h.handle_buffer("hold", move |_s, _op, _p| {
        let mut open = g.subscribe();
        async move {
            let _ = open.wait_for(|o| *o).await;
            Ok(Bytes::from_static(b"held"))
        }
    });
    h.handle_buffer("release", move |_s, _op, _p| {
        gate.send_replace(true);
        async move { Ok(Bytes::new()) }
    });
    h.handle_stream("sink", |_s, _op, mut input, mut output| async move {
        let mut total = 0usize;
        while let Some(part) = input.recv().await? {
            total += part.len();
        }
        output.write(total.to_string()).await?;
        output.end().await?;
        Ok(())
    });
    h.handle_stream("stall", |sock, _op, input, output| async move {
        // Holds its input (unread parts keep their share of the budget) and its output.
        let _held = (input, output);
        sock.closing().await;
        Ok(())
    });
    h.handle_with_sock("stats", move |sock, (): ()| {
        let server = server.clone();
        async move {
            let pid = std::process::id();
            let rt = tokio::runtime::Handle::current();
            let srv = server
                .get()
                .ok_or_else(|| HandlerError::msg("stats: no server in this process"))?;
            Ok(Stats {
                connections: srv.connection_count(),
                fds: fd_count(pid),
                rss_kb: rss_kb(pid),
                tasks: rt.metrics().num_alive_tasks(),
                in_progress: srv
                    .connections()
                    .iter()
                    .filter(|s| !s.same_as(&sock))
                    .map(|s| s.requests_in_progress())
                    .sum(),
            })
        }
    });
    h
}

/// Binds a test server on a loopback port in this process (its `stats` operation answers with
/// an error: use the [`Server`] directly).
pub async fn bind(spec: &ServerSpec) -> Server {
    let cell = std::sync::Arc::new(std::sync::OnceLock::new());
    let config = Config::new()
        .handlers(handlers(cell.clone()))
        .limits(spec.limits())
        .heartbeat_interval(None);
    Server::bind_with("127.0.0.1:0", config, spec.options())
        .await
        .expect("bind")
}

/// The body of the child server process: binds, prints `LISTENING <addr>`, serves until its
/// stdin closes (the parent went away), then exits.
pub fn child_main() {
    if std::env::var("GT_CHILD").is_err() {
        // Selected by hand without the parent's environment: nothing to serve.
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let spec = ServerSpec::from_env();
        let cell = std::sync::Arc::new(std::sync::OnceLock::new());
        let heartbeat = match spec.heartbeat_ms {
            None => None,
            Some(0) => Some(Config::DEFAULT_HEARTBEAT_INTERVAL),
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        let config = Config::new()
            .handlers(handlers(cell.clone()))
            .limits(spec.limits())
            .heartbeat_interval(heartbeat);
        let bind = std::env::var("GT_BIND").unwrap_or_else(|_| "127.0.0.1:0".into());
        let server = Server::bind_with(&bind, config, spec.options())
            .await
            .expect("bind");
        // The server is in the cell before the parent learns the address: a `stats` request
        // arriving at once must find it.
        let addr = server.local_addr().to_string();
        let _ = cell.set(server);
        println!("LISTENING {addr}");
        // Serve until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await;
    });
    std::process::exit(0);
}

/// Declares the `#[ignore]`d `child_server` test that [`ChildServer::start`] runs in a child
/// process. Use once in every test file that starts a [`ChildServer`].
#[macro_export]
macro_rules! child_server_test {
    () => {
        /// Not a test: the body of the child server process (see `hostile_support::child_main`).
        #[test]
        #[ignore = "runs only as the child server process of another test"]
        fn child_server() {
            hostile_support::child_main();
        }
    };
}

/// A test server running in a child process (this test binary, re-run with `child_server`
/// selected). Killed when dropped.
pub struct ChildServer {
    pub child: Child,
    pub addr: String,
    _stdin: Option<ChildStdin>,
}

impl ChildServer {
    /// Starts the child and waits until it listens.
    pub fn start(spec: &ServerSpec) -> ChildServer {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args([
                "child_server",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("GT_CHILD", "1")
            .envs(spec.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("child server exited before listening")
                .expect("read child stdout");
            // The test harness may print "test child_server ... " on the same line.
            if let Some((_, a)) = line.split_once("LISTENING ") {
                break a.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let stdin = child.stdin.take();
        ChildServer {
            child,
            addr,
            _stdin: stdin,
        }
    }

    /// The child's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A well-behaved client: connects and checks that `echo` answers correctly.
pub async fn check_well_behaved(addr: &str) {
    let sock = within(
        "well-behaved connect",
        gotalk::connect_with(addr, &Config::new().heartbeat_interval(None)),
    )
    .await
    .expect("well-behaved client cannot connect");
    for i in 0..10 {
        let payload = format!("hello {i}");
        let out = within(
            "well-behaved echo",
            sock.buffer_request("echo", payload.clone()),
        )
        .await
        .expect("echo failed for a well-behaved client");
        assert_eq!(&out[..], payload.as_bytes());
    }
    sock.close();
}

/// Asks the server for its [`Stats`] over a fresh connection.
pub async fn stats(addr: &str) -> Stats {
    let sock = gotalk::connect_with(addr, &Config::new().heartbeat_interval(None))
        .await
        .expect("stats connect");
    let s: Stats = within("stats", sock.request("stats", &()))
        .await
        .expect("stats");
    sock.close();
    s
}

/// The most memory one connection can make a server hold, by the formula of SECURITY.md ("What
/// a connection can cost"), for limits `l` and handlers whose largest answer is `answer` bytes.
pub fn connection_bound(l: &Limits, answer: usize) -> u64 {
    let p = l.max_payload as u64;
    let answer = answer as u64;
    let state = 8 << 10;
    let read = p + (64 << 10);
    let kept = (4 * (p + (64 << 10))).min(16 << 20);
    let requests = l.request_bytes as u64 + p + u64::from(l.buffer_requests) * answer;
    let output = l.write_buffer as u64 + answer.max(64 << 10);
    let streams = l.stream_buffer as u64 + p;
    state + read + kept + requests + output + streams
}

/// What a process may grow by beyond the connections' own memory in an attack: the allocator's
/// arenas of the runtime's threads, the tasks and buffers of the test's own connections.
pub const PROCESS_SLACK: u64 = 24 << 20;
