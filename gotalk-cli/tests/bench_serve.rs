//! `gotalk bench` for short bounded runs against a real server, and `gotalk serve` (the demo
//! server) as a new user meets it: the page, gotalk.js, the TCP and WebSocket operations, the chat.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_short_run_gives_sane_json() {
    let (_server, addr, _rx) = tcp_server().await;
    let out = gotalk_async(
        &[
            "bench",
            &addr,
            "--conns",
            "2",
            "--inflight",
            "4",
            "--size",
            "64",
            "--duration",
            "300ms",
            "--json",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["conns"], 2);
    assert_eq!(r["inflight"], 4);
    assert_eq!(r["size"], 64);
    assert_eq!(r["errors"], 0);
    let requests = r["requests"].as_u64().unwrap();
    assert!(requests > 0, "{r}");
    let elapsed = r["elapsed_secs"].as_f64().unwrap();
    assert!(elapsed >= 0.3, "{r}");
    let rps = r["requests_per_sec"].as_f64().unwrap();
    assert!(
        (rps - requests as f64 / elapsed).abs() < 1e-6 * rps.max(1.0),
        "{r}"
    );
    // 64 bytes each way per request.
    let mbps = r["mb_per_sec"].as_f64().unwrap();
    assert!(
        (mbps - rps * 128.0 / 1e6).abs() < 1e-6 * mbps.max(1.0),
        "{r}"
    );
    let l = &r["latency_us"];
    let (p50, p90, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p90"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{r}");

    // Text report, a JSON op with --payload.
    let out = gotalk_async(
        &[
            "bench",
            &addr,
            "--op",
            "greet",
            "--payload",
            r#"{"name":"b"}"#,
            "--duration",
            "100ms",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("req/s") && report.contains("p99"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_fails_when_requests_fail() {
    let (_server, addr, _rx) = tcp_server().await;
    let out = gotalk_async(
        &[
            "bench",
            &addr,
            "--op",
            "no-such-op",
            "--duration",
            "100ms",
            "--json",
        ],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["requests"], 0);
    assert!(r["errors"].as_u64().unwrap() > 0);
    assert!(
        text(&out.stderr).contains("unknown operation"),
        "{}",
        text(&out.stderr)
    );
}

/// A plain HTTP/1.1 GET over a TCP socket: (status line, body).
fn http_get(hp: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(hp).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hp}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = text(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_page_tcp_and_websocket() {
    let mut child = Command::new(bin())
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut http, mut ws, mut tcp) = (None, None, None);
    let mut banner = String::new();
    while tcp.is_none() {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("serve exited early: {banner}");
        }
        banner.push_str(&line);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["web", "page", url, ..] => {
                http = Some(
                    url.trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_owned(),
                )
            }
            ["WebSocket", url, ..] => ws = Some(url.to_string()),
            ["TCP", addr, ..] => tcp = Some(addr.to_string()),
            _ => {}
        }
    }
    let (http, ws, tcp) = (http.unwrap(), ws.unwrap(), tcp.unwrap());
    assert!(banner.contains("gotalk demo server"), "{banner}");

    let (status, page) = tokio::task::spawn_blocking({
        let http = http.clone();
        move || http_get(&http, "/")
    })
    .await
    .unwrap();
    assert!(status.contains("200"), "{status}");
    // The hint on the page names the TCP address actually served.
    assert!(page.contains(tcp.trim_start_matches("tcp://")), "{page}");
    assert!(
        page.contains("/gotalk/gotalk.js") && page.contains("chat/send"),
        "{page}"
    );
    let (status, js) = tokio::task::spawn_blocking({
        let http = http.clone();
        move || http_get(&http, "/gotalk/gotalk.js")
    })
    .await
    .unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(js.len() > 1000);

    // The README's "then call it": greet over TCP with the binary.
    let out = gotalk_async(&["call", &tcp, "greet", r#"{"name":"you"}"#], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Hello you"));
    let out = gotalk_async(&["call", &ws, "echo", "--raw", "over ws"], b"").await;
    assert_eq!(out.stdout, b"over ws", "{}", text(&out.stderr));

    // The chat: a WebSocket member hears what a TCP member says.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut h = gotalk::Handlers::new();
    h.handle_notification("chat/msg", move |m: Value| {
        let _ = tx.send(m);
    });
    let member = gotalk::connect_with(&ws, &gotalk::Config::new().handlers(h))
        .await
        .unwrap();
    let out = gotalk_async(
        &[
            "call",
            &tcp,
            "chat/send",
            r#"{"name":"cli","text":"hi all"}"#,
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("no chat message")
        .unwrap();
    assert_eq!(
        (m["name"].as_str(), m["text"].as_str()),
        (Some("cli"), Some("hi all"))
    );
    let history: Vec<Value> = member.request("chat/history", &Value::Null).await.unwrap();
    assert_eq!(history.len(), 1);
    member.close();

    // Stop the server this test started (its own child process).
    let _ = child.kill();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(10)).await;
}
