//! The client side: [`connect`] and [`Connector`], which sets the headers of the upgrade
//! request (`Origin` first of all).

use std::io;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};

use super::adapter::{CloseCode, Event, WsMessage, WsReader, WsWriter};
use super::messages::{max_message_size, tungstenite_event, READ_BUFFER};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::options::DEFAULT_WS_MESSAGE_ALLOWANCE;
use crate::sock::Sock;

/// Connects to a gotalk WebSocket endpoint at `url` (`ws://host:port/path` or
/// `wss://host:port/path`) and starts serving the connection with `config`, sending an
/// `Origin` made from the URL. The same as [`crate::connect_with`] with a WebSocket URL, and
/// as [`Connector::new`]`.connect(url, config)`.
///
/// For `wss://`, the certificate is checked with the settings of [`Config::tls`] (by default
/// against the Mozilla roots); pass a private CA there. A server that refuses the upgrade
/// (e.g. for its origin policy) yields an [`Error::Io`] naming the HTTP status.
pub async fn connect(url: &str, config: &Config) -> Result<Sock> {
    Connector::new().connect(url, config).await
}

/// What the upgrade request says about the page.
#[derive(Debug, Clone, Default)]
enum Origin {
    /// `http://host:port` for `ws://`, `https://host:port` for `wss://`.
    #[default]
    FromUrl,
    Given(HeaderValue),
    Without,
}

/// How a WebSocket client connects: the `Origin` its upgrade request carries and any other
/// headers (an `Authorization` token, a `Cookie`).
///
/// By default the `Origin` is made from the URL (`http://host:port` for `ws://`,
/// `https://host:port` for `wss://`), as a page served by that same host would send it:
/// servers that refuse upgrades without an `Origin` (the reference Go server answers `403`)
/// accept it, and so does [`OriginPolicy::SameHost`](super::OriginPolicy::SameHost).
///
/// ```no_run
/// # async fn run() -> gotalk::Result<()> {
/// use gotalk::ws::Connector;
/// use gotalk::Config;
///
/// let sock = Connector::new()
///     .origin("https://app.example.com")?
///     .header("Authorization", "Bearer 0123456789")?
///     .header("Cookie", "session=abc")?
///     .connect("wss://api.example.com:443/gotalk/", &Config::new())
///     .await?;
/// # let _ = sock; Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Connector {
    origin: Origin,
    headers: HeaderMap,
}

/// Headers the WebSocket handshake itself writes.
const HANDSHAKE_HEADERS: [&str; 6] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

fn bad_header(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: {e}"),
    ))
}

impl Connector {
    /// An `Origin` made from the URL, no other headers.
    pub fn new() -> Connector {
        Connector::default()
    }

    /// Sends `origin` (e.g. `https://app.example.com`) as the `Origin` header instead of the
    /// one made from the URL. Fails if it is not a valid header value.
    pub fn origin(mut self, origin: &str) -> Result<Connector> {
        let value = HeaderValue::from_str(origin)
            .map_err(|e| bad_header(&format!("Origin {origin:?}"), e))?;
        self.origin = Origin::Given(value);
        Ok(self)
    }

    /// Sends no `Origin` header at all, as a program that does not pose as a page.
    pub fn without_origin(mut self) -> Connector {
        self.origin = Origin::Without;
        self
    }

    /// Adds a header to the upgrade request (again for several values). Fails for an invalid
    /// name or value, and for the headers the handshake writes itself (`Host`, `Connection`,
    /// `Upgrade`, `Sec-WebSocket-Key`, `-Version`, `-Extensions`); use
    /// [`Connector::origin`] for `Origin`.
    pub fn header(mut self, name: &str, value: &str) -> Result<Connector> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad_header("header name", e))?;
        if HANDSHAKE_HEADERS.contains(&name.as_str()) {
            return Err(bad_header(
                &format!("header {name}"),
                "written by the WebSocket handshake itself",
            ));
        }
        if name == tungstenite::http::header::ORIGIN {
            return Err(bad_header("header origin", "use Connector::origin"));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|e| bad_header(&format!("value of header {name}"), e))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Connects to a gotalk WebSocket endpoint at `url` (`ws://host:port/path` or
    /// `wss://host:port/path`) with these headers, and starts serving the connection with
    /// `config`. See [`connect`].
    pub async fn connect(&self, url: &str, config: &Config) -> Result<Sock> {
        let target = parse_url(url)?;
        let mut request = url
            .into_client_request()
            .map_err(|e| Error::InvalidAddress {
                addr: url.to_owned(),
                reason: e.to_string(),
            })?;
        let headers = request.headers_mut();
        match &self.origin {
            Origin::FromUrl => {
                let scheme = if target.secure { "https" } else { "http" };
                let origin = format!("{scheme}://{}", target.authority);
                let value = HeaderValue::from_str(&origin)
                    .map_err(|e| bad_header(&format!("Origin {origin:?}"), e))?;
                headers.insert(tungstenite::http::header::ORIGIN, value);
            }
            Origin::Given(value) => {
                headers.insert(tungstenite::http::header::ORIGIN, value.clone());
            }
            Origin::Without => {}
        }
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }

        let tcp = TcpStream::connect(target.authority).await?;
        tcp.set_nodelay(true)?;
        let peer = tcp.peer_addr().ok().map(|a| a.to_string());
        let peer = peer.or_else(|| Some(url.to_owned()));
        if target.secure {
            #[cfg(feature = "tls")]
            {
                let stream =
                    crate::transport::tls::connect::client_handshake(target.authority, tcp, config)
                        .await?;
                return upgrade(url, request, stream, config, peer).await;
            }
            #[cfg(not(feature = "tls"))]
            return Err(Error::InvalidAddress {
                addr: url.to_owned(),
                reason: "wss:// needs the \"tls\" feature of gotalk".into(),
            });
        }
        upgrade(url, request, tcp, config, peer).await
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

/// The WebSocket handshake over a connected stream, then gotalk.
async fn upgrade<T>(
    url: &str,
    request: tungstenite::handshake::client::Request,
    stream: T,
    config: &Config,
    peer: Option<String>,
) -> Result<Sock>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = max_message_size(config, DEFAULT_WS_MESSAGE_ALLOWANCE);
    let ws_config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER);
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config));
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
    Sock::adopt_split(reader, writer, config, peer).await
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

    #[test]
    fn headers_the_handshake_writes_are_refused() {
        assert!(Connector::new().header("Host", "x").is_err());
        assert!(Connector::new().header("sec-websocket-key", "x").is_err());
        assert!(Connector::new().header("Origin", "x").is_err());
        assert!(Connector::new().header("bad name", "x").is_err());
        assert!(Connector::new().header("x-token", "a\nb").is_err());
        assert!(Connector::new().origin("http://a\r\n").is_err());
        let c = Connector::new()
            .header("Cookie", "a=1")
            .unwrap()
            .header("cookie", "b=2")
            .unwrap();
        assert_eq!(c.headers.get_all("cookie").iter().count(), 2);
    }
}
