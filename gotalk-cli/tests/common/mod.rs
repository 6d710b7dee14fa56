//! Shared helpers for the CLI tests: run the built `gotalk` binary with a hang guard, start
//! real servers on loopback, make TLS certificates.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gotalk::{Config, HandlerError, Handlers, Limits, Server};
use tokio::sync::mpsc;

/// Longest any single command may take before the test is declared hung (not a timing
/// assertion: a guard against hanging forever).
pub const HANG: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gotalk")
}

/// Runs `gotalk ARGS` with `stdin`, waiting at most [`HANG`].
pub fn gotalk(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gotalk");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = wait_output(child, args);
    let _ = feeder.join();
    out
}

/// Async wrapper: runs the binary on a blocking thread so in-process servers keep running.
pub async fn gotalk_async(args: &[&str], stdin: &[u8]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        gotalk(&refs, &stdin)
    })
    .await
    .expect("join")
}

/// Waits for a child with the hang guard, collecting its output.
pub fn wait_output(mut child: Child, what: &[&str]) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gotalk {what:?} hung for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A long-running `gotalk` (listen, proxy, serve) whose stderr announces its address.
pub struct Daemon {
    pub child: Option<Child>,
    pub addr: String,
    stderr: Option<BufReader<ChildStderr>>,
}

impl Daemon {
    /// Starts `gotalk ARGS` and waits for a stderr (or stdout, for `from_stdout`) line
    /// containing `marker`; the address is the first word after it.
    pub fn start(args: &[&str], marker: &str) -> Daemon {
        let mut child = Command::new(bin())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gotalk");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        let wanted = marker.to_owned();
        let t = std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                    let _ = tx.send(None);
                    return stderr;
                }
                if let Some(rest) = line.split(&wanted).nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_end_matches(',');
                    let _ = tx.send(Some(addr.to_owned()));
                    return stderr;
                }
            }
        });
        let addr = match rx.recv_timeout(HANG) {
            Ok(Some(a)) => a,
            other => {
                let _ = child.kill();
                let out = wait_output(child, args);
                panic!(
                    "gotalk {args:?} did not announce {marker:?} ({other:?}); stderr: {}",
                    text(&out.stderr)
                );
            }
        };
        let stderr = t.join().ok();
        Daemon {
            child: Some(child),
            addr,
            stderr,
        }
    }

    /// Waits for the process to exit by itself and returns its output.
    pub fn wait(mut self) -> Output {
        let child = self.child.take().expect("child");
        let mut out = wait_output(child, &["daemon"]);
        if let Some(mut e) = self.stderr.take() {
            let mut rest = Vec::new();
            let _ = e.read_to_end(&mut rest);
            out.stderr.extend(rest);
        }
        out
    }

    pub async fn wait_async(self) -> Output {
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .expect("join")
    }

    /// Stops the process (it was started by this test) and returns its output.
    pub fn stop(mut self) -> Output {
        let mut child = self.child.take().expect("child");
        let _ = child.kill();
        wait_output(child, &["daemon"])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the test server saw.
#[derive(Debug)]
pub enum Seen {
    Notification(String, Vec<u8>),
}

/// The ops of the test server: echo (raw), greet (JSON), fail (error "nope"), sleep (payload =
/// ms), stream-echo; notifications are reported on the channel.
pub fn test_config() -> (Config, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle("greet", |v: serde_json::Value| async move {
        let name = v["name"].as_str().unwrap_or("?").to_owned();
        Ok(serde_json::json!({ "greeting": format!("Hello {name}") }))
    });
    h.handle_buffer("fail", |_s, _op, _p| async move {
        Err::<bytes::Bytes, _>(HandlerError::msg("nope"))
    });
    h.handle_buffer("sleep", |_s, _op, p| async move {
        let ms: u64 = String::from_utf8_lossy(&p).parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(bytes::Bytes::from_static(b"slept"))
    });
    h.handle_stream("stream-echo", |_s, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part).await?;
        }
        Ok(())
    });
    h.handle_buffer_notification("", move |_s, name, payload| {
        let _ = tx.send(Seen::Notification(name.to_owned(), payload.to_vec()));
    });
    let config = Config::new()
        .handlers(h)
        .heartbeat_interval(None)
        .limits(Limits::default().stream_requests(16));
    (config, rx)
}

pub async fn tcp_server() -> (Server, String, mpsc::UnboundedReceiver<Seen>) {
    let (config, rx) = test_config();
    let s = Server::bind("127.0.0.1:0", config).await.expect("bind");
    let addr = s.local_addr().to_string();
    (s, addr, rx)
}

/// A fresh temporary directory for this test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gotalk-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A CA and a server certificate for localhost/127.0.0.1, written as PEM files into `dir`:
/// ca.pem, cert.pem, key.pem.
pub fn write_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gotalk-cli test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// The JSON lines of an output.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    text(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The port of an address such as `tcp://127.0.0.1:4567`.
pub fn port_of(addr: &str) -> u16 {
    addr.trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// Runs `gotalk ARGS` with its stdout on a terminal (a pseudo-terminal from `script`).
pub async fn on_terminal(args: &[&str]) -> std::process::Output {
    let quoted: Vec<String> = std::iter::once(bin())
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let cmd = quoted.join(" ");
    tokio::task::spawn_blocking(move || {
        let child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs a command on a pseudo-terminal");
        wait_output(child, &["script"])
    })
    .await
    .unwrap()
}
