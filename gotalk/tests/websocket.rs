//! The WebSocket transport: our client against our server, a raw WebSocket peer that frames the
//! protocol its own way, the served `gotalk.js`, the origin policy and the size limit.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gotalk::ws::{axum, Connector, Endpoint, OriginPolicy};
use gotalk::{Bytes, Config, Handlers, Limits, Server, Sock};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Greet {
    name: String,
}

fn server_handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle("greet", |g: Greet| async move {
        Ok(serde_json::json!({ "greeting": format!("Hello {}", g.name) }))
    });
    // Asks the caller for something and returns the answer.
    h.handle_buffer("call-back", |sock, _op, p| async move {
        Ok(sock.buffer_request("client-op", p).await?)
    });
    // Sends a notification to the caller before answering.
    h.handle_with_sock("notify-me", |sock: Sock, n: u32| async move {
        sock.notify("ping", &serde_json::json!({ "n": n })).await?;
        Ok("ok")
    });
    // What the HTTP upgrade request said.
    h.handle_with_sock("whoami", |sock: Sock, _: ()| async move {
        let req = sock
            .ws_request()
            .ok_or_else(|| gotalk::HandlerError::msg("not a WebSocket"))?;
        Ok(serde_json::json!({
            "path": req.uri().path(),
            "ua": req.header("user-agent"),
            "origin": req.origin(),
            "authorization": req.header("authorization"),
            "cookies": req.headers().get_all("cookie").iter()
                .filter_map(|v| v.to_str().ok()).collect::<Vec<_>>(),
            "peer": req.peer_addr().map(|a| a.ip().to_string()),
            "sock_peer": sock.peer_addr(),
        }))
    });
    h.handle_stream("stream-echo", |_s, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part).await?;
        }
        output.end().await?;
        Ok(())
    });
    h
}

fn server_config() -> Config {
    Config::new()
        .handlers(server_handlers())
        .limits(Limits::default().stream_requests(4))
        .heartbeat_interval(None)
}

async fn ws_server(config: Config) -> Server {
    Server::bind("ws://127.0.0.1:0/gotalk/", config)
        .await
        .expect("bind")
}

fn url(server: &Server) -> String {
    server.local_addr().to_string()
}

#[tokio::test]
async fn client_and_server_talk_both_ways() {
    let server = ws_server(server_config()).await;
    let pings = Arc::new(Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    h.handle_buffer("client-op", |_s, _op, p: Bytes| async move {
        Ok(Bytes::from(p.iter().rev().copied().collect::<Vec<u8>>()))
    });
    let got = pings.clone();
    h.handle_notification("ping", move |v: serde_json::Value| {
        got.lock().unwrap().push(v);
    });
    let config = Config::new().handlers(h).heartbeat_interval(None);
    let sock = gotalk::connect_with(&url(&server), &config).await.unwrap();

    let out: serde_json::Value = sock
        .request(
            "greet",
            &Greet {
                name: "Rust".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(out["greeting"], "Hello Rust");
    let echoed = sock.buffer_request("echo", "hello ✓").await.unwrap();
    assert_eq!(&echoed[..], "hello ✓".as_bytes());
    let empty = sock.buffer_request("echo", Bytes::new()).await.unwrap();
    assert!(empty.is_empty());
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = sock.buffer_request("echo", big.clone()).await.unwrap();
    assert_eq!(&echoed[..], &big[..]);

    // Server -> client request, in the middle of a client -> server request.
    let reversed = sock.buffer_request("call-back", "abc").await.unwrap();
    assert_eq!(&reversed[..], b"cba");

    // Server -> client notification.
    let ok: String = sock.request("notify-me", &7).await.unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(
        pings.lock().unwrap().as_slice(),
        &[serde_json::json!({"n": 7})]
    );

    // Client -> server notification reaches the server's handler (none here: dropped, but
    // the connection stays usable).
    sock.notify("nobody-listens", &1).await.unwrap();

    // A stream request.
    let (mut tx, mut rx) = sock.stream_request("stream-echo").await.unwrap();
    for part in ["one", "two", "three"] {
        tx.write(part).await.unwrap();
    }
    tx.end().await.unwrap();
    let mut parts = Vec::new();
    while let Some(p) = rx.recv().await.unwrap() {
        parts.push(String::from_utf8(p.to_vec()).unwrap());
    }
    assert_eq!(parts, ["one", "two", "three"]);

    // Unknown operation: an error result, the connection stays.
    let err = sock.buffer_request("nope", "x").await.unwrap_err();
    assert!(
        err.to_string().contains("unknown operation \"nope\""),
        "{err}"
    );

    // The upgrade request is reachable from the server's socket.
    let who: serde_json::Value = sock.request("whoami", &()).await.unwrap();
    assert_eq!(who["path"], "/gotalk/");
    assert_eq!(who["peer"], "127.0.0.1");
    assert!(who["sock_peer"].as_str().unwrap().starts_with("127.0.0.1:"));

    assert_eq!(server.connection_count(), 1);
    sock.close();
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_shutdown_closes_clients() {
    let server = ws_server(server_config()).await;
    let sock = gotalk::connect_with(&url(&server), &Config::new().heartbeat_interval(None))
        .await
        .unwrap();
    let _: serde_json::Value = sock
        .request("greet", &Greet { name: "x".into() })
        .await
        .unwrap();
    server.shutdown(Duration::from_secs(1)).await;
    let reason = tokio::time::timeout(WAIT, sock.closed()).await.unwrap();
    assert!(
        matches!(reason, gotalk::CloseReason::PeerClosed),
        "{reason:?}"
    );
    // The listener is gone too.
    assert!(gotalk::connect(&url(&server)).await.is_err());
}

// ---- a raw WebSocket peer ------------------------------------------------------------------

type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn raw_connect(url: &str) -> RawWs {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("raw connect")
        .0
}

/// The next data message (binary or text) as bytes, skipping pings.
async fn next_data(ws: &mut RawWs) -> Message {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("no error");
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

async fn expect_binary(ws: &mut RawWs, want: &[u8]) {
    match next_data(ws).await {
        Message::Binary(b) => assert_eq!(
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(want),
            "one WebSocket message per version, header and payload"
        ),
        other => panic!(
            "expected binary {:?}, got {other:?}",
            String::from_utf8_lossy(want)
        ),
    }
}

fn bin(b: &'static [u8]) -> Message {
    Message::Binary(Bytes::from_static(b))
}

#[tokio::test]
async fn any_framing_in_separate_messages_out() {
    let server = ws_server(server_config()).await;
    let mut ws = raw_connect(&url(&server)).await;

    // The version, then a request whose header is split over three messages and whose payload
    // over two; one of them a text message.
    for m in [
        bin(b"0"),
        bin(b"1r00"),
        Message::Text("01004ec".into()),
        bin(b"ho000"),
        bin(b"00005he"),
        bin(b"llo"),
    ] {
        ws.send(m).await.unwrap();
    }
    expect_binary(&mut ws, b"01").await;
    expect_binary(&mut ws, b"R000100000005").await;
    expect_binary(&mut ws, b"hello").await;

    // Three requests (one with an empty payload) in one WebSocket message.
    ws.send(bin(
        b"r0002004echo00000003abcr0003004echo00000000r0004004echo00000001z",
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        match next_data(&mut ws).await {
            Message::Binary(b) => got.push(String::from_utf8(b.to_vec()).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    // Requests run concurrently, so answers may come in any order; each header is followed by
    // its payload, and an empty payload has no message of its own.
    let mut answers = Vec::new();
    let mut i = 0;
    while i < got.len() {
        let size = usize::from_str_radix(&got[i][5..13], 16).unwrap();
        if size > 0 {
            answers.push(format!("{}+{}", got[i], got[i + 1]));
            i += 2;
        } else {
            answers.push(got[i].clone());
            i += 1;
        }
    }
    answers.sort();
    assert_eq!(
        answers,
        ["R000200000003+abc", "R000300000000", "R000400000001+z"]
    );

    // A text payload is as good as a binary one.
    ws.send(bin(b"r0005004echo00000004")).await.unwrap();
    ws.send(Message::Text("text".into())).await.unwrap();
    expect_binary(&mut ws, b"R000500000004").await;
    expect_binary(&mut ws, b"text").await;

    ws.close(None).await.unwrap();
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn protocol_error_closes_with_4000_plus_code() {
    let server = ws_server(server_config()).await;
    let mut ws = raw_connect(&url(&server)).await;
    ws.send(bin(b"01")).await.unwrap();
    expect_binary(&mut ws, b"01").await;
    ws.send(bin(b"zzzz")).await.unwrap();
    expect_binary(&mut ws, b"f00000002").await;
    match next_data(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4002),
        other => panic!("expected close 4002, got {other:?}"),
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_version_gets_protocol_error_1() {
    let server = ws_server(server_config()).await;
    let mut ws = raw_connect(&url(&server)).await;
    ws.send(bin(b"02")).await.unwrap();
    expect_binary(&mut ws, b"01").await;
    expect_binary(&mut ws, b"f00000001").await;
    match next_data(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected close 4001, got {other:?}"),
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn oversized_websocket_message_closes_with_1009() {
    let config = server_config().limits(Limits::default().max_payload(1024));
    let server = ws_server(config).await;
    let mut ws = raw_connect(&url(&server)).await;
    ws.send(bin(b"01")).await.unwrap();
    expect_binary(&mut ws, b"01").await;

    // Over the payload limit but within the WebSocket message limit: an error result, and the
    // connection stays.
    ws.send(bin(b"r0001004echo00000800")).await.unwrap();
    ws.send(Message::Binary(Bytes::from(vec![b'x'; 0x800])))
        .await
        .unwrap();
    expect_binary(&mut ws, b"E00010000002a").await;
    expect_binary(&mut ws, b"payload too large (2048 bytes; limit 1024)").await;

    // One WebSocket message far over the limit closes the connection with 1009.
    let huge = vec![b'x'; 1024 + 64 * 1024 + 1];
    let _ = ws.send(Message::Binary(Bytes::from(huge))).await;
    match next_data(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    server.shutdown(Duration::from_secs(1)).await;
}

// ---- origin policy ---------------------------------------------------------------------

async fn app_server(endpoint: Endpoint) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "index" }))
        .merge(endpoint.router("/gotalk/"));
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("127.0.0.1:{}", addr.port()), task)
}

async fn raw_connect_with_origin(
    url: &str,
    origin: &str,
) -> Result<RawWs, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn origin_policy_refuses_other_sites() {
    let endpoint = Endpoint::new(server_config()).origin(OriginPolicy::SameHost);
    let (host, task) = app_server(endpoint).await;
    let url = format!("ws://{host}/gotalk/");

    match raw_connect_with_origin(&url, "http://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403)
        }
        Err(e) => panic!("expected HTTP 403, got {e}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    let mut ws = raw_connect_with_origin(&url, &format!("http://{host}"))
        .await
        .expect("same host is allowed");
    ws.send(bin(b"01")).await.unwrap();
    expect_binary(&mut ws, b"01").await;

    // Our client sends the origin of the URL it connects to: the same host, let through.
    let sock = gotalk::connect(&url).await.unwrap();
    let echoed = sock.buffer_request("echo", "hi").await.unwrap();
    assert_eq!(&echoed[..], b"hi");

    // A strict policy refuses it; our client reports the HTTP status.
    let strict = Endpoint::new(server_config()).origin(OriginPolicy::check(|r| {
        r.origin() == Some("https://app.example")
    }));
    let (host2, task2) = app_server(strict).await;
    let err = gotalk::connect(&format!("ws://{host2}/gotalk/"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // The mount also answers without the trailing slash, and the app's own route still works.
    let (status, _, body) = http_get(&host, "/", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"index"[..]));
    let sock = gotalk::connect(&format!("ws://{host}/gotalk"))
        .await
        .unwrap();
    assert_eq!(&sock.buffer_request("echo", "x").await.unwrap()[..], b"x");
    task.abort();
    task2.abort();
}

/// A server that refuses upgrades without an `Origin`, as the reference Go server does (403),
/// served the recommended way.
async fn origin_requiring_server() -> (String, tokio::task::JoinHandle<()>) {
    let endpoint =
        Endpoint::new(server_config()).origin(OriginPolicy::check(|r| r.origin().is_some()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().merge(endpoint.router("/gotalk/"));
    let task = tokio::spawn(async move { gotalk::ws::serve(listener, app).await.unwrap() });
    (host, task)
}

#[tokio::test]
async fn client_sends_an_origin_from_the_url_and_the_headers_it_is_given() {
    let (host, task) = origin_requiring_server().await;
    let url = format!("ws://{host}/gotalk/");

    // By default: the origin of the URL, which such a server lets in.
    let sock = gotalk::connect(&url)
        .await
        .expect("refused with the default origin");
    let who: serde_json::Value = sock.request("whoami", &()).await.unwrap();
    assert_eq!(who["origin"], format!("http://{host}"));
    assert_eq!(who["authorization"], serde_json::Value::Null);
    sock.close();

    // Without one: 403, reported as such.
    let err = Connector::new()
        .without_origin()
        .connect(&url, &server_config())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // A chosen origin, a token and two cookies.
    let sock = Connector::new()
        .origin("https://app.example")
        .unwrap()
        .header("Authorization", "Bearer 0123")
        .unwrap()
        .header("Cookie", "a=1")
        .unwrap()
        .header("Cookie", "b=2")
        .unwrap()
        .connect(&url, &Config::new().heartbeat_interval(None))
        .await
        .unwrap();
    let who: serde_json::Value = sock.request("whoami", &()).await.unwrap();
    assert_eq!(who["origin"], "https://app.example");
    assert_eq!(who["authorization"], "Bearer 0123");
    assert_eq!(who["cookies"], serde_json::json!(["a=1", "b=2"]));
    assert_eq!(
        who["peer"], "127.0.0.1",
        "serve gives the endpoint the peer's address"
    );
    sock.close();

    // Headers the handshake writes itself cannot be set.
    assert!(Connector::new().header("Sec-WebSocket-Key", "x").is_err());
    task.abort();
}

// ---- gotalk.js -------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET: status, lower-cased headers, body.
async fn http_get(
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(host).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn serves_gotalk_js_with_etag_304_and_gzip() {
    let server = ws_server(server_config()).await;
    let host = url(&server)
        .trim_start_matches("ws://")
        .trim_end_matches("/gotalk/")
        .to_owned();

    let (status, headers, body) = http_get(&host, "/gotalk/gotalk.js", &[]).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("application/javascript"));
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(
        header(&headers, "content-length").unwrap(),
        body.len().to_string()
    );
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.ends_with(gotalk::jslib::GOTALK_JS));
    assert!(text.contains("gotalkResponderAt={ws:\"/gotalk/\"}"));
    let etag = header(&headers, "etag").unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );

    // Revalidation.
    let (status, headers, body) =
        http_get(&host, "/gotalk/gotalk.js", &[("If-None-Match", &etag)]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    let (status, _, _) = http_get(
        &host,
        "/gotalk/gotalk.js",
        &[("If-None-Match", "\"stale\"")],
    )
    .await;
    assert_eq!(status, 200);

    // Gzip, when accepted.
    let (status, headers, gz) = http_get(
        &host,
        "/gotalk/gotalk.js",
        &[("Accept-Encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    assert!(gz.len() < text.len() / 2);
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, text);

    // A plain GET of the endpoint itself is not a WebSocket upgrade.
    let (status, _, _) = http_get(&host, "/gotalk/", &[]).await;
    assert_eq!(status, 426);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn endpoint_without_js() {
    let (host, task) = app_server(Endpoint::new(server_config()).serve_js(false)).await;
    let (status, _, _) = http_get(&host, "/gotalk/gotalk.js", &[]).await;
    assert_eq!(status, 404);
    task.abort();
}

#[tokio::test]
async fn max_connections_refuses_with_503() {
    let endpoint = Endpoint::new(server_config()).max_connections(1);
    let (host, task) = app_server(endpoint).await;
    let url = format!("ws://{host}/gotalk/");
    let first = gotalk::connect(&url).await.unwrap();
    let err = gotalk::connect(&url).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    first.close();
    first.closed().await;
    // The slot is given back once the first connection has closed on the server too.
    let mut ok = None;
    for _ in 0..100 {
        if let Ok(s) = gotalk::connect(&url).await {
            ok = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok.is_some(), "slot not released");
    task.abort();
}

// ---- wss:// ------------------------------------------------------------------------------

#[cfg(feature = "tls")]
mod wss {
    use super::*;
    use gotalk::transport::tls::{roots_from_pem, TlsClientConfig, TlsServerConfig};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use std::net::SocketAddr;

    /// An axum listener that does the TLS handshake of every accepted connection.
    struct TlsListener {
        tcp: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    }

    impl axum::serve::Listener for TlsListener {
        type Io = tokio_rustls::server::TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let Ok((tcp, addr)) = self.tcp.accept().await else {
                    continue;
                };
                if let Ok(tls) = self.acceptor.accept(tcp).await {
                    return (tls, addr);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.tcp.local_addr()
        }
    }

    /// A CA (PEM) and a leaf certificate for localhost signed by it (cert PEM, key PEM).
    fn certs() -> (String, String, String) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        (ca_pem, leaf.pem(), leaf_key.serialize_pem())
    }

    #[tokio::test]
    async fn wss_client_with_a_private_ca() {
        let (ca, cert, key) = certs();
        let server_tls = TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let listener = TlsListener {
            tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: tokio_rustls::TlsAcceptor::from(server_tls),
        };
        let port = listener.tcp.local_addr().unwrap().port();
        let app: axum::Router = Endpoint::new(server_config()).router("/gotalk/");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let url = format!("wss://localhost:{port}/gotalk/");

        // Trusting only the private CA: works.
        let tls = TlsClientConfig::new().trust_only(roots_from_pem(ca.as_bytes()).unwrap());
        let config = Config::new().tls(tls).heartbeat_interval(None);
        let sock = gotalk::connect_with(&url, &config).await.unwrap();
        let out: serde_json::Value = sock
            .request("greet", &Greet { name: "tls".into() })
            .await
            .unwrap();
        assert_eq!(out["greeting"], "Hello tls");
        let who: serde_json::Value = sock.request("whoami", &()).await.unwrap();
        assert_eq!(who["origin"], format!("https://localhost:{port}"));
        let big = vec![7u8; 300_000];
        assert_eq!(sock.buffer_request("echo", big.clone()).await.unwrap(), big);
        sock.close();

        // Headers go over wss:// too.
        let sock = Connector::new()
            .header("Authorization", "Bearer tls")
            .unwrap()
            .connect(&url, &config)
            .await
            .unwrap();
        let who: serde_json::Value = sock.request("whoami", &()).await.unwrap();
        assert_eq!(who["authorization"], "Bearer tls");
        sock.close();

        // The default roots do not know the private CA: a TLS error, not a hang.
        let err = gotalk::connect(&url).await.unwrap_err();
        assert!(matches!(err, gotalk::Error::Tls(_)), "{err}");
        task.abort();
    }
}
