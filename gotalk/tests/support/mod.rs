//! Test support: the reference "gopeer" handlers, transcript loading, and a raw protocol peer
//! that reads and writes whole messages over a real socket.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::Message;
use gotalk::{Config, Handlers, Limits, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where the conformance transcripts live: `shared/conformance` beside the repository.
pub fn conformance_dir() -> PathBuf {
    if let Ok(d) = std::env::var("GOTALK_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// One recorded conversation.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub name: String,
    pub server_cmd: String,
    pub client: String,
    pub c2s: Vec<Vec<u8>>,
    pub s2c: Vec<Vec<u8>>,
    /// `(is_c2s, index)` in the observed interleaving.
    pub order: Vec<(bool, usize)>,
    /// Which direction closed first.
    pub first_eof_c2s: bool,
    pub raw: serde_json::Value,
}

fn message_bytes(v: &serde_json::Value) -> Vec<u8> {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Object(o) => base64::engine::general_purpose::STANDARD
            .decode(o["base64"].as_str().expect("base64 field"))
            .expect("valid base64"),
        other => panic!("unexpected message form {other}"),
    }
}

pub fn messages(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(message_bytes)
        .collect()
}

pub fn load(name: &str) -> Transcript {
    let path = conformance_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (shared/ must sit beside the repo)",
            path.display()
        )
    });
    let raw: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let order = raw["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let o = o.as_str().unwrap();
            let c2s = o.starts_with("c2s");
            let i: usize = o[4..o.len() - 1].parse().unwrap();
            (c2s, i)
        })
        .collect();
    let first_eof_c2s = raw["eof"][0]["dir"] == "c2s";
    Transcript {
        name: name.to_owned(),
        server_cmd: raw["server_cmd"].as_str().unwrap_or_default().to_owned(),
        client: raw["client"].as_str().unwrap_or_default().to_owned(),
        c2s: messages(&raw["client_to_server"]),
        s2c: messages(&raw["server_to_client"]),
        order,
        first_eof_c2s,
        raw,
    }
}

/// Every transcript file name (without `.json`) except the WebSocket session.
pub fn all_transcripts() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(conformance_dir())
        .expect("shared/conformance beside the repository")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            let n = n.strip_suffix(".json")?.to_owned();
            (!n.starts_with("websocket")).then_some(n)
        })
        .collect();
    names.sort();
    names
}

/// The handlers of the reference "gopeer" server that recorded the transcripts.
pub fn gopeer_handlers() -> Handlers {
    #[derive(serde::Deserialize)]
    struct GreetIn {
        name: String,
    }
    #[derive(serde::Serialize)]
    struct GreetOut {
        greeting: String,
    }
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle("greet", |i: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", i.name),
        })
    });
    h.handle_buffer("fail", |_s, _op, _p| async move {
        Err(gotalk::HandlerError::msg("nope"))
    });
    h.handle_stream("stream-echo", |_s, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part).await?;
        }
        Ok(())
    });
    h.handle_with_sock(
        "notify-me",
        |sock: gotalk::Sock, _: serde_json::Value| async move {
            sock.notify("ping", &serde_json::json!({"n": 1})).await?;
            Ok("ok")
        },
    );
    h.handle_buffer("call-back", |sock, _op, p| async move {
        Ok(sock.buffer_request("client-op", p).await?)
    });
    h.handle_buffer("sleep", |_s, _op, p| async move {
        let ms: u64 = std::str::from_utf8(&p)?.trim().parse()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Bytes::from_static(b"slept"))
    });
    h
}

/// The handlers of the reference "gopeer" client.
pub fn gopeer_client_handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("client-op", |_s, _op, p| async move {
        let mut v = p.to_vec();
        v.reverse();
        Ok(Bytes::from(v))
    });
    h
}

/// A server configured like the gopeer server of a transcript's `server_cmd`.
pub async fn gopeer_server(server_cmd: &str) -> Server {
    let mut limits = Limits::default().stream_requests(16);
    let mut heartbeat = None;
    let args: Vec<&str> = server_cmd.split_whitespace().collect();
    for w in args.windows(2) {
        match w[0] {
            "--heartbeat" if w[1] != "0" => {
                heartbeat = Some(parse_go_duration(w[1]));
            }
            "--read-timeout" => limits = limits.read_timeout(Some(parse_go_duration(w[1]))),
            "--stream-limit" => limits = limits.stream_requests(w[1].parse().unwrap()),
            _ => {}
        }
    }
    if server_cmd.contains("(the --limited-addr listener)") {
        limits = limits
            .buffer_requests(1)
            .retry_wait(Duration::from_millis(1000), Duration::from_millis(1000));
    }
    let config = Config::new()
        .handlers(gopeer_handlers())
        .limits(limits)
        .heartbeat_interval(heartbeat);
    Server::bind("127.0.0.1:0", config).await.expect("bind")
}

fn parse_go_duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().unwrap())
    } else if let Some(sec) = s.strip_suffix('s') {
        Duration::from_secs(sec.parse().unwrap())
    } else {
        panic!("duration {s}")
    }
}

/// A raw gotalk peer: writes bytes, reads whole messages (decoded and as the exact bytes read).
pub struct RawPeer<S> {
    pub io: S,
    buf: BytesMut,
    dec: Decoder,
    pub timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawPeer<S> {
    pub fn new(io: S) -> Self {
        RawPeer {
            io,
            buf: BytesMut::new(),
            dec: Decoder::new(u32::MAX),
            timeout: Duration::from_secs(5),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    /// The next frame and the exact bytes it was decoded from; `None` at EOF.
    pub async fn next(&mut self) -> Option<(Decoded, Vec<u8>)> {
        loop {
            let before = self.buf.clone();
            match self.dec.decode(&mut self.buf) {
                Ok(Some(d)) => {
                    let used = before.len() - self.buf.len();
                    return Some((d, before[..used].to_vec()));
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "peer sent undecodable bytes: {e}: {:?}",
                    Bytes::from(before)
                ),
            }
            let n = tokio::time::timeout(self.timeout, self.io.read_buf(&mut self.buf))
                .await
                .expect("timed out waiting for a message")
                .expect("read");
            if n == 0 {
                assert!(
                    self.buf.is_empty(),
                    "EOF in the middle of a message: {:?}",
                    self.buf
                );
                return None;
            }
        }
    }

    /// The next message; panics at EOF.
    pub async fn message(&mut self) -> (Message, Vec<u8>) {
        match self.next().await {
            Some((Decoded::Message(m), raw)) => (m, raw),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads everything until EOF, as raw messages.
    pub async fn rest(&mut self) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some((_, raw)) = self.next().await {
            out.push(raw);
        }
        out
    }
}

/// Printable form of bytes for assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Whether `b` is a heartbeat message (`h` + 12 hex digits).
pub fn is_heartbeat(b: &[u8]) -> bool {
    b.len() == 13 && b[0] == b'h' && b[1..].iter().all(|c| c.is_ascii_hexdigit())
}
