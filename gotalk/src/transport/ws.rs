//! WebSocket: gotalk between web pages and servers (cargo feature `websocket`, on by default).
//!
//! - **Serving**: an [`Endpoint`] answers WebSocket upgrades at a mount path (such as
//!   `/gotalk/`) and serves the embedded browser library at `{mount}gotalk.js` (see
//!   [`crate::jslib`]). [`Endpoint::router`] gives an [`axum::Router`] to merge into an
//!   application; [`crate::Server::bind`] with a `ws://host:port/path` address runs one on its
//!   own. Every accepted connection gets the endpoint's [`Config`] (handlers, limits, heartbeats,
//!   callbacks), exactly like a TCP connection, and remembers the HTTP request it was upgraded
//!   from ([`Sock::ws_request`]). An [`OriginPolicy`] can refuse pages from other sites.
//! - **Connecting**: [`crate::connect_with`] with a `ws://` or `wss://` URL (or [`connect`]).
//!   For `wss://` the TLS settings of [`Config::tls`] apply (needs the `tls` feature).
//!
//! ## On the wire
//! The version, every message header and every non-empty payload travel as separate binary
//! WebSocket messages, as the reference server sends them and as the reference `gotalk.js`
//! expects to read them. Incoming messages (binary or text) are read as one byte stream, so a
//! peer may frame the protocol any way it likes. A protocol error closes the WebSocket with
//! status `4000 + code` after the `f` message; a WebSocket message over the size limit
//! (the payload limit, [`Limits::max_payload`](crate::Limits::max_payload), plus room for
//! headers) closes it with status 1009.
//!
//! ```no_run
//! # async fn run() -> gotalk::Result<()> {
//! use gotalk::ws::{axum, Endpoint, OriginPolicy};
//! use gotalk::{Config, Handlers};
//!
//! let mut handlers = Handlers::new();
//! handlers.handle("echo", |s: String| async move { Ok(s) });
//! let endpoint = Endpoint::new(Config::new().handlers(handlers)).origin(OriginPolicy::SameHost);
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { axum::response::Html("<script src=/gotalk/gotalk.js></script>") }))
//!     .merge(endpoint.router("/gotalk/"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

use std::io;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::sock::Sock;

mod adapter;
mod endpoint;

pub use adapter::{CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR_BASE, CLOSE_TOO_BIG};
pub(crate) use endpoint::listen;
pub use endpoint::{Endpoint, OriginPolicy, WsRequest};

/// The axum crate the endpoint is built on, re-exported so that applications use the same
/// version.
pub use axum;

use self::adapter::{CloseCode, Event, WsMessage, WsReader, WsWriter};

/// Most bytes tungstenite reads from the socket at a time (its `read_buffer_size`; the default
/// is 128 KiB). tungstenite zero-fills this much of its read buffer before every read, however
/// few bytes arrive, and an idle connection keeps it: at 128 KiB the zeroing was the largest
/// single cost of small messages and every connection held 148 KiB. Large messages still go
/// into one buffer sized for the whole frame, 16 KiB per read.
pub(crate) const READ_BUFFER: usize = 16 * 1024;

/// Largest WebSocket message accepted under `config`: the payload limit plus room for the
/// headers of a peer that sends several messages in one WebSocket message.
pub(crate) fn max_message_size(config: &Config) -> usize {
    (config.limits.max_payload as usize).saturating_add(64 * 1024)
}

impl WsMessage for tungstenite::Message {
    fn binary(data: bytes::Bytes) -> Self {
        tungstenite::Message::Binary(data)
    }

    fn close(code: u16, reason: &'static str) -> Self {
        tungstenite::Message::Close(Some(tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }))
    }

    fn event(self) -> Event {
        match self {
            m @ (tungstenite::Message::Binary(_) | tungstenite::Message::Text(_)) => {
                Event::Data(m.into_data())
            }
            tungstenite::Message::Close(_) => Event::Close,
            _ => Event::Skip,
        }
    }
}

/// What a tungstenite error means to the reader.
pub(crate) fn tungstenite_event(e: tungstenite::Error) -> io::Result<Event> {
    match e {
        tungstenite::Error::Capacity(c) => Ok(Event::TooBig(format!("WebSocket message: {c}"))),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Ok(Event::Close)
        }
        tungstenite::Error::Io(e) => Err(e),
        other => Err(io::Error::other(other)),
    }
}

fn client_event(
    r: std::result::Result<tungstenite::Message, tungstenite::Error>,
) -> io::Result<Event> {
    match r {
        Ok(m) => Ok(m.event()),
        Err(e) => tungstenite_event(e),
    }
}

/// The parts of a `ws://` or `wss://` URL a client needs.
struct Target<'a> {
    secure: bool,
    /// `host:port`.
    authority: &'a str,
}

fn parse_url(url: &str) -> Result<Target<'_>> {
    let bad = |reason: &str| Error::InvalidAddress {
        addr: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (secure, rest) = if let Some(rest) = url.strip_prefix("ws://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("wss://") {
        (true, rest)
    } else {
        return Err(bad("expected a ws:// or wss:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("missing host"));
    }
    if !authority.contains(':') || authority.ends_with(']') {
        return Err(bad("expected host:port"));
    }
    Ok(Target { secure, authority })
}

/// Connects to a gotalk WebSocket endpoint at `url` (`ws://host:port/path` or
/// `wss://host:port/path`) and starts serving the connection with `config`.
///
/// The same as [`crate::connect_with`] with a WebSocket URL. For `wss://`, the certificate is
/// checked with the settings of [`Config::tls`] (by default against the Mozilla roots); pass a
/// private CA there. A server that refuses the upgrade (e.g. for its origin policy) yields an
/// [`Error::Io`] naming the HTTP status.
pub async fn connect(url: &str, config: &Config) -> Result<Sock> {
    let target = parse_url(url)?;
    let tcp = TcpStream::connect(target.authority).await?;
    tcp.set_nodelay(true)?;
    let peer = tcp.peer_addr().ok().map(|a| a.to_string());
    if target.secure {
        #[cfg(feature = "tls")]
        {
            let stream = tls_handshake(target.authority, tcp, config).await?;
            return client_over(url, stream, config, peer).await;
        }
        #[cfg(not(feature = "tls"))]
        return Err(Error::InvalidAddress {
            addr: url.to_owned(),
            reason: "wss:// needs the \"tls\" feature of gotalk".into(),
        });
    }
    client_over(url, tcp, config, peer).await
}

/// The TLS handshake of a `wss://` connection, with the settings of [`Config::tls`]; the
/// certificate is checked against the URL's host.
#[cfg(feature = "tls")]
async fn tls_handshake(
    authority: &str,
    tcp: TcpStream,
    config: &Config,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let tls = config.tls.as_ref().cloned().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(host.clone())
        .map_err(|e| Error::Tls(format!("{host:?} is not a valid TLS server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(tls.build()?);
    tokio::time::timeout(config.limits.handshake_wait(), connector.connect(name, tcp))
        .await
        .map_err(|_| Error::Timeout("TLS handshake"))?
        .map_err(|e| Error::Tls(format!("TLS handshake with {authority} failed: {e}")))
}

/// The WebSocket handshake over a connected stream, then gotalk.
async fn client_over<T>(url: &str, stream: T, config: &Config, peer: Option<String>) -> Result<Sock>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = max_message_size(config);
    let ws_config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER);
    let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config));
    let (ws, _response) = tokio::time::timeout(config.limits.handshake_wait(), handshake)
        .await
        .map_err(|_| Error::Timeout("WebSocket handshake"))?
        .map_err(|e| match e {
            tungstenite::Error::Http(res) => Error::Io(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "{url} refused the WebSocket upgrade with HTTP {}",
                    res.status()
                ),
            )),
            tungstenite::Error::Io(e) => Error::Io(e),
            other => Error::Io(io::Error::other(format!(
                "WebSocket handshake with {url} failed: {other}"
            ))),
        })?;
    let close = CloseCode::default();
    let (sink, stream) = ws.split();
    let reader = WsReader::new(stream.map(client_event as fn(_) -> _), close.clone());
    let writer = WsWriter::<_, tungstenite::Message>::new(sink, close);
    Sock::adopt_split(
        reader,
        writer,
        config,
        peer.or_else(|| Some(url.to_owned())),
    )
    .await
}

impl Sock {
    /// For a connection accepted by a WebSocket [`Endpoint`]: the HTTP request it was upgraded
    /// from (URI, headers such as `Origin`, `Cookie` or `User-Agent`, and the peer's address).
    /// `None` for other connections.
    pub fn ws_request(&self) -> Option<&WsRequest> {
        self.transport_info::<WsRequest>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:80/gotalk/").unwrap();
        assert!(!t.secure);
        assert_eq!(t.authority, "127.0.0.1:80");
        let t = parse_url("wss://[::1]:8443?x=1").unwrap();
        assert!(t.secure);
        assert_eq!(t.authority, "[::1]:8443");
        assert!(parse_url("ws://host/path").is_err());
        assert!(parse_url("http://host:1/").is_err());
        assert!(parse_url("ws:///x").is_err());
    }
}
