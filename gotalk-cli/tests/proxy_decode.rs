//! `gotalk proxy` between a real client and a real server (decoded output asserted), and
//! `gotalk decode` on the reference conformance transcripts and on corrupted copies of them.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn conformance_dir() -> PathBuf {
    // ../shared/conformance beside the repository (CI lays shared/ out the same way), or
    // where GOTALK_CONFORMANCE_DIR says, as for the gotalk crate's tests.
    if let Ok(d) = std::env::var("GOTALK_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

fn of_dir<'a>(lines: &'a [Value], dir: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["dir"] == dir).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_and_prints_every_message() {
    let (_server, upstream, _rx) = tcp_server().await;
    let proxy = Daemon::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--json",
            "--once",
        ],
        "proxy listening on ",
    );
    let sock = gotalk::connect_with(&proxy.addr, &gotalk::Config::new().heartbeat_interval(None))
        .await
        .unwrap();
    let v: Value = sock
        .request("greet", &serde_json::json!({"name": "proxy"}))
        .await
        .unwrap();
    assert_eq!(v["greeting"], "Hello proxy");
    let err = sock.buffer_request("fail", "x").await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    sock.notify("hello", &serde_json::json!([1, 2]))
        .await
        .unwrap();
    let bin: Vec<u8> = vec![0, 159, 146, 150];
    assert_eq!(
        &sock.buffer_request("echo", bin.clone()).await.unwrap()[..],
        &bin[..]
    );
    sock.close();
    let _ = sock.closed().await;

    let out = proxy.wait_async().await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    let c2s = of_dir(&lines, "c2s");
    let s2c = of_dir(&lines, "s2c");
    // Client to server: version, greet, fail, notification, echo, then the close.
    let types: Vec<&str> = c2s.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(types, ["version", "r", "r", "n", "r"], "{c2s:#?}");
    assert_eq!(c2s[0]["offset"], 0);
    assert_eq!(c2s[1]["offset"], 2);
    assert_eq!(c2s[1]["op"], "greet");
    assert_eq!(c2s[1]["json"]["name"], "proxy");
    assert_eq!(c2s[3]["name"], "hello");
    assert_eq!(c2s[3]["json"], serde_json::json!([1, 2]));
    assert_eq!(c2s[4]["payload_base64"], "AJ+Slg==");
    assert_eq!(c2s.last().unwrap()["event"], "closed");
    // Server to client: version, the greet result, the error, the echo.
    let types: Vec<&str> = s2c.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(types, ["version", "R", "E", "R"], "{s2c:#?}");
    assert_eq!(s2c[1]["id"], c2s[1]["id"]);
    assert_eq!(s2c[1]["json"]["greeting"], "Hello proxy");
    assert_eq!(s2c[2]["payload"], "nope");
    assert_eq!(s2c[2]["kind"], "ErrorResult");
    assert!(lines.iter().any(|l| l["event"] == "connected"));
    assert_eq!(lines.last().unwrap()["event"], "disconnected");
    // Offsets add up: each message starts where the previous one ended.
    let greet_len = 1 + 4 + 3 + "greet".len() + 8 + r#"{"name":"proxy"}"#.len();
    assert_eq!(c2s[2]["offset"], 2 + greet_len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_shows_where_a_peer_breaks_the_protocol_and_still_forwards() {
    let (_server, upstream, _rx) = tcp_server().await;
    let proxy = Daemon::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--once",
        ],
        "proxy listening on ",
    );
    let hp = proxy.addr.trim_start_matches("tcp://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&hp).await.unwrap();
    s.write_all(b"01x1234567890abcdef").await.unwrap();
    let mut got = Vec::new();
    // The server answers with its version and ProtocolError 2, then closes.
    tokio::time::timeout(HANG, s.read_to_end(&mut got))
        .await
        .expect("hung")
        .unwrap();
    assert!(got.starts_with(b"01"), "{got:?}");
    assert!(got.ends_with(b"f00000002"), "{:?}", text(&got));
    drop(s);
    let out = proxy.wait_async().await;
    let printed = text(&out.stdout);
    assert!(
        printed.contains("c→s @2 invalid unknown message type (byte 0x78 'x')"),
        "{printed}"
    );
    assert!(
        printed.contains("s→c @2 f ProtocolError code=2 (invalid protocol message)")
            || printed.contains("f ProtocolError code=2"),
        "{printed}"
    );
}

/// Expected result of decoding one direction of a transcript, from its own `decoded` notes:
/// the frame types up to the first unframed or incomplete entry, and whether there is one.
fn expected(decoded: &[Value], raw_starts_with_01: bool) -> (Vec<String>, bool) {
    let mut types = vec![];
    for e in decoded {
        let t = e["type"].as_str().unwrap_or("?");
        let bad =
            t == "unframed" || e["incomplete"] == true || (t == "version" && !raw_starts_with_01);
        if bad {
            return (types, true);
        }
        types.push(t.to_owned());
    }
    (types, false)
}

#[test]
fn decode_every_conformance_transcript() {
    let dir = conformance_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().contains("websocket"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "only {} transcripts in {}",
        files.len(),
        dir.display()
    );
    let mut invalid_seen = 0;
    for f in &files {
        let t: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let out = gotalk(&["decode", "--json", &f.display().to_string()], b"");
        let lines = json_lines(&out.stdout);
        let mut any_bad = false;
        for (dir_key, code) in [("client_to_server", "c2s"), ("server_to_client", "s2c")] {
            let raw_first = &t[dir_key][0];
            let starts_01 = raw_first.as_str().is_some_and(|s| s.starts_with("01"));
            let (want_types, want_bad) =
                expected(t["decoded"][dir_key].as_array().unwrap(), starts_01);
            let got: Vec<&Value> = of_dir(&lines, code);
            let got_types: Vec<String> = got
                .iter()
                .filter_map(|l| l["type"].as_str())
                .map(str::to_owned)
                .collect();
            assert_eq!(got_types, want_types, "{} {code}: {got:#?}", f.display());
            let got_bad = got.iter().any(|l| l["event"] == "invalid");
            assert_eq!(got_bad, want_bad, "{} {code}: {got:#?}", f.display());
            any_bad |= want_bad;
        }
        let want_code = if any_bad { 1 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(want_code),
            "{}: {}",
            f.display(),
            text(&out.stderr)
        );
        invalid_seen += usize::from(any_bad);
    }
    // bad-version, garbage-hex, garbage-nonhex, huge-size-header, truncated-payload.
    assert_eq!(invalid_seen, 5);
}

#[test]
fn decode_reports_where_a_corrupted_capture_breaks() {
    let json = std::fs::read(conformance_dir().join("greet.json")).unwrap();
    let (bytes, _) = gotalk_cli::wire::transcript_streams(&json).unwrap();
    // Intact: two frames, exit 0 (text output this time).
    let dir = temp_dir("decode");
    std::fs::write(dir.join("ok.bin"), &bytes).unwrap();
    let out = gotalk(&["decode", &dir.join("ok.bin").display().to_string()], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("@2 r SingleRequest"),
        "{}",
        text(&out.stdout)
    );

    // The first size digit (byte 2 + 13) replaced by 'z'.
    let mut bad = bytes.clone();
    bad[15] = b'z';
    std::fs::write(dir.join("bad.bin"), &bad).unwrap();
    let out = gotalk(
        &[
            "decode",
            "--json",
            &dir.join("bad.bin").display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out.stdout);
    let inv = lines
        .iter()
        .find(|l| l["event"] == "invalid")
        .expect("invalid event");
    assert_eq!(inv["offset"], 15, "{inv}");
    assert!(
        inv["detail"].as_str().unwrap().contains("0x7a 'z'"),
        "{inv}"
    );
    assert!(
        text(&out.stderr).contains("at byte 15"),
        "{}",
        text(&out.stderr)
    );

    // Cut short: the message at byte 2 is unfinished.
    let cut = &bytes[..bytes.len() - 3];
    let out = gotalk(&["decode"], cut);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("at byte 2") && stderr.contains("only"),
        "{stderr}"
    );

    // A transcript with a broken payload encoding is a usage error.
    std::fs::write(
        dir.join("t.json"),
        r#"{"client_to_server":[{"base64":"!!"}],"server_to_client":[]}"#,
    )
    .unwrap();
    let out = gotalk(&["decode", &dir.join("t.json").display().to_string()], b"");
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}
