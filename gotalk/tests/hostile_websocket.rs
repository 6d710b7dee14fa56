//! Hostile WebSocket peers, framed by hand over raw TCP (a real client library would refuse to
//! send most of this): frames announcing enormous lengths, a message grown from fragments past
//! the limit, invalid UTF-8 in a text frame, and a flood of upgrades from a refused origin. Each
//! is refused without buffering, only that connection is closed, and a well-behaved client is
//! served meanwhile.

#![cfg(feature = "websocket")]

mod hostile_support;

use std::time::Duration;

use gotalk::ws::{axum, Endpoint, OriginPolicy};
use gotalk::Config;
use hostile_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use gotalk::server::{DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_WS_MESSAGE_ALLOWANCE};

child_server_test!();

const MIB: usize = 1 << 20;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CONTINUATION: u8 = 0;

/// A raw WebSocket client: the HTTP upgrade by hand, then frames built byte by byte.
struct RawWs {
    s: TcpStream,
    buf: Vec<u8>,
}

/// What the server's side of the upgrade said.
enum Upgrade {
    Ok(RawWs),
    Refused(u16),
}

async fn upgrade(host: &str, path: &str, origin: Option<&str>) -> Upgrade {
    upgrade_from("127.0.0.1", host, path, origin).await
}

/// [`upgrade`] from the loopback address `local`.
async fn upgrade_from(local: &str, host: &str, path: &str, origin: Option<&str>) -> Upgrade {
    let mut s = tcp_from(local, host).await.expect("connect");
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status != 101 {
        return Upgrade::Refused(status);
    }
    Upgrade::Ok(RawWs {
        s,
        buf: buf[end..].to_vec(),
    })
}

/// A client frame: masked, as the protocol requires. `announce` overrides the length field.
fn frame(opcode: u8, fin: bool, payload: &[u8], announce: Option<u64>) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = announce.unwrap_or(payload.len() as u64);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

impl RawWs {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await
    }

    /// Reads server frames until a close frame (its status code) or the end of the stream
    /// (`None`); data frames on the way are returned too.
    async fn until_close(&mut self) -> (Vec<Vec<u8>>, Option<u16>) {
        let mut data = vec![];
        loop {
            while let Some((op, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                match op {
                    8 => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        return (data, code);
                    }
                    1 | 2 => data.push(payload),
                    _ => {}
                }
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk).await {
                Ok(0) | Err(_) => return (data, None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// One unmasked server frame from the front of `b`: (opcode, payload, bytes used).
fn parse_server_frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let op = b[0] & 0x0f;
    let (len, at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (
            u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (b.len() >= at + len).then(|| (op, b[at..at + len].to_vec(), at + len))
}

fn ws_spec() -> ServerSpec {
    ServerSpec {
        max_payload: Some(64 * 1024),
        bind: Some("ws://127.0.0.1:0/gotalk/".into()),
        ..Default::default()
    }
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn connect_ws(url: &str) -> RawWs {
    match upgrade(&host_of(url), "/gotalk/", None).await {
        Upgrade::Ok(mut ws) => {
            ws.send(&frame(BINARY, true, b"01", None)).await.unwrap();
            ws
        }
        Upgrade::Refused(s) => panic!("upgrade refused with {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announcing_huge_lengths_are_refused_without_buffering() {
    let server = ChildServer::start(&ws_spec());
    check_well_behaved(&server.addr).await;
    let base = stats(&server.addr).await;

    let mut peers = vec![];
    for _ in 0..16 {
        let mut ws = connect_ws(&server.addr).await;
        // A binary frame announcing 2^63 - 1 bytes (the largest length the format allows).
        ws.send(&frame(BINARY, true, b"", Some(u64::MAX >> 1)))
            .await
            .unwrap();
        peers.push(ws);
    }
    // One of them keeps sending: the server must not be buffering it.
    let junk = vec![0u8; 64 * 1024];
    for _ in 0..(8 * MIB / junk.len()) {
        if peers[0].send(&junk).await.is_err() {
            break; // the server hung up, as it should
        }
    }
    for ws in &mut peers {
        let (_, code) = within("closed", ws.until_close()).await;
        assert!(
            matches!(code, Some(1009) | None),
            "expected close 1009 (message too big) or a hang-up, got {code:?}"
        );
    }
    check_well_behaved(&server.addr).await;
    let after = stats(&server.addr).await;
    let grown = after.rss_kb.saturating_sub(base.rss_kb);
    eprintln!(
        "server RSS {} KiB -> {} KiB (+{grown} KiB) after 16 frames announcing 2^63 bytes",
        base.rss_kb, after.rss_kb
    );
    assert!(grown < 16 * 1024, "server memory grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_grown_from_fragments_past_the_limit_is_refused() {
    let server = ChildServer::start(&ws_spec());
    let base = stats(&server.addr).await;
    let mut ws = connect_ws(&server.addr).await;
    // 16 KiB fragments, never a final one: the message passes the 128 KiB limit after 9.
    let part = vec![b'f'; 16 * 1024];
    ws.send(&frame(BINARY, false, &part, None)).await.unwrap();
    let mut sent = part.len();
    while sent < 4 * MIB {
        if ws
            .send(&frame(CONTINUATION, false, &part, None))
            .await
            .is_err()
        {
            break;
        }
        sent += part.len();
    }
    let (_, code) = within("closed", ws.until_close()).await;
    assert!(
        matches!(code, Some(1009) | None),
        "expected close 1009 or a hang-up, got {code:?}"
    );
    check_well_behaved(&server.addr).await;
    let after = stats(&server.addr).await;
    let grown = after.rss_kb.saturating_sub(base.rss_kb);
    eprintln!("server RSS +{grown} KiB after a fragmented message of up to 4 MiB");
    assert!(grown < 16 * 1024, "server memory grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_closes_only_that_connection() {
    let server = ChildServer::start(&ws_spec());
    let mut bad = connect_ws(&server.addr).await;
    let mut good = connect_ws(&server.addr).await;
    // gotalk.js sends string payloads as text frames; this one is not UTF-8.
    bad.send(&frame(TEXT, true, b"r0001004echo00000002\xff\xfe", None))
        .await
        .unwrap();
    let (data, code) = within("bad peer closed", bad.until_close()).await;
    // RFC 6455: 1007, invalid payload data.
    assert_eq!(
        code,
        Some(1007),
        "expected close 1007 (invalid payload data) after {data:?}"
    );
    assert!(
        !data.iter().any(|d| d.starts_with(b"R0001")),
        "the invalid frame was answered"
    );
    // The other connection on the same server is unaffected.
    good.send(&frame(BINARY, true, &req(rid(7), "echo", b"fine"), None))
        .await
        .unwrap();
    let mut got = vec![];
    within("good peer answered", async {
        while got.len() < 3 {
            let (d, code) = good.until_close_or_data().await;
            assert!(code.is_none(), "the good peer was closed");
            got.extend(d);
        }
    })
    .await;
    assert_eq!(got[1..], [b"R000700000004".to_vec(), b"fine".to_vec()]);
    check_well_behaved(&server.addr).await;
}

impl RawWs {
    /// The next data frames, or a close code.
    async fn until_close_or_data(&mut self) -> (Vec<Vec<u8>>, Option<u16>) {
        loop {
            let mut data = vec![];
            while let Some((op, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                match op {
                    8 => return (data, Some(1000)),
                    1 | 2 => data.push(payload),
                    _ => {}
                }
            }
            if !data.is_empty() {
                return (data, None);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk).await {
                Ok(0) | Err(_) => return (data, Some(1006)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_from_a_refused_origin_leave_nothing_behind() {
    let mut h = gotalk::Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    let endpoint = Endpoint::new(Config::new().handlers(h).heartbeat_interval(None))
        .origin(OriginPolicy::SameHost);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().merge(endpoint.router("/gotalk/"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let url = format!("ws://{host}/gotalk/");
    check_well_behaved(&url).await;
    let fds0 = fd_count(std::process::id());

    for i in 0..500 {
        match upgrade(&host, "/gotalk/", Some("http://evil.example")).await {
            Upgrade::Refused(status) => assert_eq!(status, 403),
            Upgrade::Ok(_) => panic!("a foreign origin was let in"),
        }
        if i % 100 == 0 {
            check_well_behaved(&url).await;
        }
    }
    // The same host is let in.
    match upgrade(&host, "/gotalk/", Some(&format!("http://{host}"))).await {
        Upgrade::Ok(_) => {}
        Upgrade::Refused(s) => panic!("same-host origin refused with {s}"),
    }
    within("fds back to the baseline", async {
        while fd_count(std::process::id()) > fds0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_beyond_the_per_address_share_get_503_while_another_address_gets_in() {
    let share = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
    let server = ChildServer::start(&ServerSpec {
        bind: Some("ws://127.0.0.1:0/gotalk/".into()),
        ..Default::default()
    });
    let host = host_of(&server.addr);
    let mut held = vec![];
    for _ in 0..share {
        match upgrade_from("127.0.0.1", &host, "/gotalk/", None).await {
            Upgrade::Ok(mut ws) => {
                ws.send(&frame(BINARY, true, b"01", None)).await.unwrap();
                held.push(ws);
            }
            Upgrade::Refused(s) => panic!("upgrade {} refused with {s}", held.len()),
        }
    }
    for _ in 0..10 {
        match upgrade_from("127.0.0.1", &host, "/gotalk/", None).await {
            Upgrade::Refused(status) => assert_eq!(status, 503),
            Upgrade::Ok(_) => panic!("an address got more than its share"),
        }
    }
    match upgrade_from("127.0.0.2", &host, "/gotalk/", None).await {
        Upgrade::Ok(mut ws) => {
            ws.send(&frame(BINARY, true, b"01", None)).await.unwrap();
            ws.send(&frame(BINARY, true, &req(rid(1), "echo", b"in"), None))
                .await
                .unwrap();
            let mut got = vec![];
            within("echo from another address", async {
                while got.len() < 3 {
                    let (d, code) = ws.until_close_or_data().await;
                    assert!(code.is_none(), "closed");
                    got.extend(d);
                }
            })
            .await;
            assert_eq!(got[1..], [b"R000100000002".to_vec(), b"in".to_vec()]);
        }
        Upgrade::Refused(s) => panic!("another address was refused with {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_frames_stays_within_the_documented_bound() {
    // SECURITY.md: a WebSocket connection holds at most max_payload + ws_message_allowance
    // bytes of a frame that is not whole yet, and twice that for a moment while a whole one is
    // handed to the connection's reader.
    const CONNS: usize = 40;
    let max_payload = MIB;
    let frame_max = max_payload + DEFAULT_WS_MESSAGE_ALLOWANCE;
    let server = ChildServer::start(&ServerSpec {
        max_payload: Some(max_payload as u32),
        bind: Some("ws://127.0.0.1:0/gotalk/".into()),
        ..Default::default()
    });
    check_well_behaved(&server.addr).await;
    let base = stats(&server.addr).await;

    // Every connection sends all of a frame of the largest size allowed but its last byte.
    let body = vec![b'x'; frame_max];
    let mut peers = vec![];
    for _ in 0..CONNS {
        let mut ws = connect_ws(&server.addr).await;
        let f = frame(BINARY, true, &body, None);
        ws.send(&f[..f.len() - 1]).await.unwrap();
        peers.push(ws);
    }
    // Measured once the server has read what was sent.
    let mut grown = 0;
    within("the frames arrive", async {
        loop {
            let now = stats(&server.addr).await;
            let g = now.rss_kb.saturating_sub(base.rss_kb);
            // Settled: within 2% of the last look.
            if g > 0 && g.abs_diff(grown) * 50 <= g {
                grown = grown.max(g);
                break;
            }
            grown = g;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let bound_kb = (CONNS * frame_max / 1024) as u64 + 16 * 1024;
    eprintln!(
        "{CONNS} connections each holding a frame of {frame_max} bytes but one: server RSS +{grown} KiB (bound {bound_kb} KiB)"
    );
    assert!(grown <= bound_kb, "server memory grew by {grown} KiB");
    check_well_behaved(&server.addr).await;
}
