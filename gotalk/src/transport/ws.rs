//! WebSocket: gotalk between web pages and servers (cargo feature `websocket`, on by default).
//!
//! - **Serving**: an [`Endpoint`] answers WebSocket upgrades at a mount path (such as
//!   `/gotalk/`) and serves the embedded browser library at `{mount}gotalk.js` (see
//!   [`crate::jslib`]). [`Endpoint::router`] gives an [`axum::Router`] to merge into an
//!   application, which you then serve with [`serve`]; [`crate::Server::bind`] with a
//!   `ws://host:port/path` address runs one on its own (with [`serve`] too). Every accepted
//!   connection gets the endpoint's [`Config`] (handlers, limits, heartbeats, callbacks),
//!   exactly like a TCP connection, and remembers the HTTP request it was upgraded from
//!   ([`Sock::ws_request`]). An [`OriginPolicy`] can refuse pages from other sites.
//! - **Connecting**: [`crate::connect_with`] with a `ws://` or `wss://` URL (or [`connect`]).
//!   For `wss://` the TLS settings of [`Config::tls`] apply (needs the `tls` feature).
//!
//! ## Limits
//! Two layers stand in front of a page's connection, both with the defaults of
//! [`ServerOptions`](crate::ServerOptions):
//! - **the HTTP server** ([`serve`]): a request head must arrive within 10 s, at most 1 024
//!   HTTP connections wait for one (64 per peer address), the longest-waiting making room for
//!   a new one. **Serve an endpoint with [`serve`], not `axum::serve`**: with `axum::serve`, an
//!   HTTP connection may take forever to send its headers and any number of them may wait,
//!   so a few thousand idle or trickling connections use up the server's file descriptors and
//!   no page can upgrade any more; and unless it is given
//!   `into_make_service_with_connect_info::<SocketAddr>()`, the endpoint cannot limit
//!   connections per address.
//! - **the endpoint**: at most 10 000 upgraded connections (256 per peer address), the idlest
//!   closed to make room when full, others refused with 503 (see [`Endpoint`]); a WebSocket
//!   message (and frame) over [`Limits::max_payload`](crate::Limits::max_payload) plus
//!   [`ws_message_allowance`](crate::ServerOptions::ws_message_allowance) (64 KiB) is refused
//!   from its header on, with close status 1009, before it is buffered. A frame is buffered
//!   whole before the connection reads it, so a connection holds at most that many bytes of
//!   an incomplete frame (twice that for a moment while a whole one is handed over), and the
//!   endpoint at most its connection cap times that.
//!
//! ## On the wire
//! The version, every message header and every non-empty payload travel as separate binary
//! WebSocket messages, as the reference server sends them and as the reference `gotalk.js`
//! expects to read them. Incoming messages (binary or text) are read as one byte stream, so a
//! peer may frame the protocol any way it likes. A protocol error closes the WebSocket with
//! status `4000 + code` after the `f` message; a message over the size limit closes it with
//! status 1009 ([`CLOSE_TOO_BIG`]), a text message that is not UTF-8 with 1007
//! ([`CLOSE_INVALID_TEXT`]).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use gotalk::ws::{axum, serve, Endpoint, OriginPolicy};
//! use gotalk::{Config, Handlers};
//!
//! let mut handlers = Handlers::new();
//! handlers.handle("echo", |s: String| async move { Ok(s) });
//! let endpoint = Endpoint::new(Config::new().handlers(handlers)).origin(OriginPolicy::SameHost);
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { axum::response::Html("<script src=/gotalk/gotalk.js></script>") }))
//!     .merge(endpoint.router("/gotalk/"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, app).await
//! # }
//! ```

use std::io;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

use crate::error::{Error, Result};
use crate::sock::{Config, Sock};

mod adapter;
mod endpoint;
mod serve;

pub use adapter::{CLOSE_INVALID_TEXT, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR_BASE, CLOSE_TOO_BIG};
pub(crate) use endpoint::listen;
pub use endpoint::{Endpoint, OriginPolicy, WsRequest};
pub use serve::{serve, Serve};

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

/// Largest WebSocket message accepted under `config`: the payload limit plus `allowance` for
/// the headers of a peer that sends several messages in one WebSocket message.
pub(crate) fn max_message_size(config: &Config, allowance: usize) -> usize {
    (config.get_limits().get_max_payload() as usize).saturating_add(allowance)
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
        tungstenite::Error::Utf8(e) => Ok(Event::InvalidText(format!(
            "WebSocket text message is not UTF-8: {e}"
        ))),
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
            let stream =
                crate::transport::tls::client_handshake(target.authority, tcp, config).await?;
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

/// The WebSocket handshake over a connected stream, then gotalk.
async fn client_over<T>(url: &str, stream: T, config: &Config, peer: Option<String>) -> Result<Sock>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = max_message_size(config, crate::server::DEFAULT_WS_MESSAGE_ALLOWANCE);
    let ws_config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER);
    let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config));
    let (ws, _response) = tokio::time::timeout(config.get_handshake_timeout(), handshake)
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
