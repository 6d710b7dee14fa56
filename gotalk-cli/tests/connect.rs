//! `gotalk connect`: the real binary's stdin and stdout driven line by line against a real
//! server that also sends notifications and requests of its own while the session sits idle.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use gotalk::{Config, HandlerError, Handlers, Limits, Server, Sock};
use serde_json::{json, Value};
use tokio::sync::mpsc as tmpsc;

/// A running `gotalk connect` whose output is read a line at a time.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn start(args: &[&str]) -> Session {
        let mut child = Command::new(bin())
            .arg("connect")
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run gotalk");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line of output, waiting at most [`HANG`].
    fn line(&self) -> String {
        self.lines
            .recv_timeout(HANG)
            .expect("a line of output from gotalk connect")
    }

    fn json(&self) -> Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Ends the input and waits for the exit code.
    fn finish(mut self) -> (Option<i32>, Vec<String>) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(HANG) {
            rest.push(l);
        }
        let status = self.child.wait().unwrap();
        (status.code(), rest)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with `greet` and `sleep`, a `poke` that makes the server ask the client a
/// question (op `ask`) and answer with the client's answer, and the server side of every
/// connection handed to the test so it can talk first.
async fn server() -> (Server, String, tmpsc::UnboundedReceiver<Sock>) {
    let (tx, rx) = tmpsc::unbounded_channel();
    let mut h = Handlers::new();
    h.handle("greet", |v: Value| async move {
        Ok(json!({ "greeting": format!("Hello {}", v["name"].as_str().unwrap_or("?")) }))
    });
    h.handle_buffer("sleep", |_s, _op, p| async move {
        let ms: u64 = String::from_utf8_lossy(&p).parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(p)
    });
    h.handle_buffer("poke", |sock, _op, p| async move {
        sock.buffer_request("ask", p)
            .await
            .map_err(|e| HandlerError::msg(format!("the client said: {e}")))
    });
    h.handle_stream("count", |_s, _op, mut parts, mut out| async move {
        let to: u32 = match parts.recv().await? {
            Some(p) => String::from_utf8_lossy(&p).parse().unwrap_or(0),
            None => 0,
        };
        for i in 1..=to {
            out.write(i.to_string()).await?;
        }
        Ok(())
    });
    let config = Config::new()
        .handlers(h)
        .limits(Limits::default().stream_requests(4))
        .on_open(move |sock| {
            let _ = tx.send(sock.clone());
        });
    let s = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = s.local_addr().to_string();
    (s, addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_session_in_jsonl() {
    let (_server, addr, mut conns) = server().await;
    let mut s = Session::start(&[&addr, "--jsonl", "--reply", r#"ask={"answer":42}"#]);
    let first = tokio::task::block_in_place(|| s.json());
    assert_eq!(first["event"], "connected");
    let peer = tokio::time::timeout(HANG, conns.recv())
        .await
        .unwrap()
        .unwrap();

    tokio::task::block_in_place(|| {
        // One line, one answer, before anything else is typed: it stays connected.
        s.send(r#"call greet {"name":"Bob"}"#);
        let r = s.json();
        assert_eq!(
            (&r["call"], &r["type"], &r["op"]),
            (&json!(1), &json!("R"), &json!("greet"))
        );
        assert_eq!(r["json"]["greeting"], "Hello Bob");
        // Requests run side by side: the slow one answers after the quick one.
        s.send("call sleep 1500");
        s.send("call greet {}");
        let a = s.json();
        let b = s.json();
        assert_eq!((&a["call"], &a["op"]), (&json!(3), &json!("greet")), "{a}");
        assert_eq!(
            (&b["call"], &b["payload"]),
            (&json!(2), &json!("1500")),
            "{b}"
        );
        // Error results and mistakes in the input are lines too, and the session goes on.
        s.send("call nope");
        let e = s.json();
        assert_eq!((&e["kind"], &e["call"]), (&json!("ErrorResult"), &json!(4)));
        assert!(
            e["payload"].as_str().unwrap().contains("unknown operation"),
            "{e}"
        );
        s.send("call greet {oops");
        assert_eq!(s.json()["event"], "input-error");
        s.send("hello");
        assert_eq!(s.json()["event"], "input-error");
    });

    // The server talks first while the session is idle: a notification...
    peer.notify("news", &json!({"n": 1})).await.unwrap();
    let n = tokio::task::block_in_place(|| s.json());
    assert_eq!(
        (&n["type"], &n["name"]),
        (&json!("n"), &json!("news")),
        "{n}"
    );
    assert_eq!(n["json"]["n"], 1);
    // ...and a request, answered from the --reply rule.
    let answer: Value = peer.request("ask", &json!("why")).await.unwrap();
    assert_eq!(answer, json!({"answer": 42}));
    let r = tokio::task::block_in_place(|| s.json());
    assert_eq!((&r["type"], &r["op"]), (&json!("r"), &json!("ask")), "{r}");
    assert_eq!(r["json"], "why");

    // A request of ours that makes the server ask us: both show, in order of arrival.
    tokio::task::block_in_place(|| {
        s.send("call poke \"q\"");
        let asked = s.json();
        assert_eq!(asked["op"], "ask", "{asked}");
        let poked = s.json();
        assert_eq!((&poked["call"], &poked["op"]), (&json!(5), &json!("poke")));
        assert_eq!(poked["json"], json!({"answer": 42}));
        // A stream request: its parts as they come, then the end (a part of size 0).
        s.send("stream count 3");
        let parts: Vec<Value> = (0..4).map(|_| s.json()).collect();
        let shown: Vec<(&Value, &Value, &Value)> = parts
            .iter()
            .map(|p| (&p["call"], &p["kind"], &p["payload"]))
            .collect();
        let part = |p: &'static str| (json!(6), json!("StreamResult"), json!(p));
        let want = [part("1"), part("2"), part("3"), part("")];
        let want: Vec<(&Value, &Value, &Value)> = want.iter().map(|(a, b, c)| (a, b, c)).collect();
        assert_eq!(shown, want);
        s.send("stream greet {}");
        let e = s.json();
        assert_eq!(
            (&e["call"], &e["kind"]),
            (&json!(7), &json!("ErrorResult")),
            "{e}"
        );
        s.send("notify done [1]");
    });
    let (code, rest) = tokio::task::spawn_blocking(move || s.finish())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{rest:?}");
    let last: Value = serde_json::from_str(rest.last().expect("a last line")).unwrap();
    assert_eq!(last["event"], "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_for_people_default_op_and_a_peer_that_hangs_up() {
    let (server, addr, mut conns) = server().await;
    let mut s = Session::start(&[&addr, "--op", "sleep", "--raw", "--echo"]);
    tokio::task::block_in_place(|| {
        assert!(s.line().contains("connected"));
        // Plain lines go to --op, sent as they are with --raw.
        s.send("not json");
        let line = s.line();
        assert!(
            line.contains("[1] R SingleResult op=sleep size=8 \"not json\""),
            "{line}"
        );
        s.send("help");
        assert!(s.line().contains("Type one command per line"));
        while !s.line().contains("unless --raw") {}
    });
    let peer = tokio::time::timeout(HANG, conns.recv())
        .await
        .unwrap()
        .unwrap();
    // An escape sequence from the peer is shown escaped.
    peer.buffer_notify("\x1b[2Jnews", Bytes::from_static(b"\x07"))
        .await
        .unwrap();
    let n = tokio::task::block_in_place(|| s.line());
    assert!(
        n.contains("name=\\x1b[2Jnews") && n.contains("\"\\x07\""),
        "{n}"
    );
    // The peer's requests are echoed with --echo.
    let back = peer.buffer_request("anything", "ping").await.unwrap();
    assert_eq!(&back[..], b"ping");
    let r = tokio::task::block_in_place(|| s.line());
    assert!(r.contains("r SingleRequest op=anything"), "{r}");
    // The server goes away: the session says so and ends by itself, exit 0.
    server.shutdown(Duration::from_millis(100)).await;
    let (code, rest) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(l) = s.lines.recv_timeout(HANG) {
            let done = l.contains("disconnected");
            seen.push(l);
            if done {
                break;
            }
        }
        let status = s.child.wait().unwrap();
        (status.code(), seen)
    })
    .await
    .unwrap();
    assert!(rest.iter().any(|l| l.contains("disconnected")), "{rest:?}");
    assert_eq!(code, Some(0), "{rest:?}");
}

#[test]
fn connect_fails_clearly() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = gotalk(&["connect", &closed], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    let out = gotalk(&["connect", "127.0.0.1:1", "--reply", "x"], b"");
    assert_eq!(out.status.code(), Some(2));
}
