//! The server side: [`Endpoint`] (an axum router answering WebSocket upgrades and serving
//! `gotalk.js`), [`OriginPolicy`] and [`WsRequest`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri, Request};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::adapter::{CloseCode, Event, WsMessage, WsReader, WsWriter};
use super::messages::{max_message_size, tungstenite_event, READ_BUFFER};
use crate::addr::Addr;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::jslib::JsLib;
use crate::server::options::ServerOptions;
use crate::server::slots::{SlotLimits, Slots};
use crate::sock::Sock;

/// The HTTP request a WebSocket connection was upgraded from. Reach it from a handler with
/// [`Sock::ws_request`].
#[derive(Debug, Clone)]
pub struct WsRequest {
    uri: Uri,
    headers: HeaderMap,
    peer_addr: Option<SocketAddr>,
}

impl WsRequest {
    /// The request URI as the client sent it (path and query; the full path even when the
    /// endpoint's router is nested).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Every request header.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Origin` header: the site of the page that opened the connection (browsers always
    /// send it; other programs usually do not).
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("host")
    }

    /// The client's address, when the server provides axum's `ConnectInfo<SocketAddr>`
    /// ([`serve`](super::serve) and [`crate::Server`] do; with `axum::serve`, use
    /// `into_make_service_with_connect_info::<SocketAddr>()`).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }
}

type OriginCheck = Arc<dyn Fn(&WsRequest) -> bool + Send + Sync>;

/// Which pages may open a WebSocket connection, judged by the request's `Origin` header.
///
/// A browser lets any page open a WebSocket to any server and sends the server's cookies along,
/// so a server that trusts cookies must check where the page came from. Requests without an
/// `Origin` header come from programs, not from a browser's page, and are let through by every
/// policy except [`OriginPolicy::Check`], which sees every request. A refused request gets
/// `403 Forbidden`.
///
/// ```
/// use gotalk::ws::OriginPolicy;
/// let policy = OriginPolicy::allow(["https://example.com", "http://localhost:8080"]);
/// let custom = OriginPolicy::check(|req| req.origin().map_or(true, |o| o.ends_with(".example.com")));
/// # let _ = (policy, custom);
/// ```
#[derive(Clone, Default)]
pub enum OriginPolicy {
    /// Any page, and programs that send no `Origin` (the default; the reference accepts any
    /// origin too, but refuses a request without one with `403`).
    #[default]
    Any,
    /// Only pages served by this same host: the origin's `host[:port]` equals the `Host`
    /// header.
    SameHost,
    /// Only these origins (`scheme://host[:port]`, compared without regard to case).
    Allow(Vec<String>),
    /// A function of the whole request decides.
    Check(OriginCheck),
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::Any => f.write_str("Any"),
            OriginPolicy::SameHost => f.write_str("SameHost"),
            OriginPolicy::Allow(list) => f.debug_tuple("Allow").field(list).finish(),
            OriginPolicy::Check(_) => f.write_str("Check(..)"),
        }
    }
}

impl OriginPolicy {
    /// Only the given origins (e.g. `"https://example.com"`).
    pub fn allow<I, S>(origins: I) -> OriginPolicy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        OriginPolicy::Allow(origins.into_iter().map(Into::into).collect())
    }

    /// Lets `f` decide for every request.
    pub fn check(f: impl Fn(&WsRequest) -> bool + Send + Sync + 'static) -> OriginPolicy {
        OriginPolicy::Check(Arc::new(f))
    }

    /// Whether the policy lets `req` through.
    pub fn allows(&self, req: &WsRequest) -> bool {
        let origin = match self {
            OriginPolicy::Any => return true,
            OriginPolicy::Check(f) => return f(req),
            _ => match req.origin() {
                None => return true,
                Some(o) => o.trim_end_matches('/'),
            },
        };
        match self {
            OriginPolicy::SameHost => {
                let Some((_, authority)) = origin.split_once("://") else {
                    return false; // "null" and other opaque origins
                };
                req.host()
                    .is_some_and(|h| h.eq_ignore_ascii_case(authority))
            }
            OriginPolicy::Allow(list) => list
                .iter()
                .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)),
            OriginPolicy::Any | OriginPolicy::Check(_) => unreachable!("decided above"),
        }
    }
}

/// A gotalk WebSocket endpoint: answers WebSocket upgrades and serves `gotalk.js`. See the
/// [module docs](super).
///
/// The connections it holds are limited as a [`Server`](crate::Server)'s are, with the
/// [`ServerOptions`] defaults unless set here: at most 10 000 at once, 256 from one peer
/// address (known when the server provides axum's `ConnectInfo<SocketAddr>`, as
/// [`serve`](super::serve) does), the idlest one closed to make room when full; an upgrade
/// over a limit gets `503 Service Unavailable`. Clones share their connection count.
///
/// ```
/// use gotalk::ws::{Endpoint, OriginPolicy};
/// use gotalk::Config;
///
/// let endpoint = Endpoint::new(Config::new())
///     .origin(OriginPolicy::SameHost)
///     .max_connections(2_000)
///     .max_connections_per_address(Some(20));
/// let router: gotalk::ws::axum::Router = endpoint.router("/gotalk/");
/// # let _ = router;
/// ```
#[derive(Clone, Debug)]
pub struct Endpoint {
    config: Config,
    origin: OriginPolicy,
    serve_js: bool,
    options: ServerOptions,
    slots: Arc<Slots>,
}

impl Endpoint {
    /// An endpoint that serves every connection with `config`.
    pub fn new(config: Config) -> Endpoint {
        let options = ServerOptions::default();
        Endpoint {
            config,
            origin: OriginPolicy::Any,
            serve_js: true,
            slots: endpoint_slots(&options),
            options,
        }
    }

    /// Takes the connection limits of `options` ([`ServerOptions::max_connections`],
    /// [`max_connections_per_address`](ServerOptions::max_connections_per_address),
    /// [`evict_idle_after`](ServerOptions::evict_idle_after)) and its
    /// [`ws_message_allowance`](ServerOptions::ws_message_allowance). Its HTTP limits belong
    /// to the HTTP server: see [`serve`](super::serve).
    pub fn options(mut self, options: &ServerOptions) -> Endpoint {
        self.options = options.clone();
        self.slots = endpoint_slots(&self.options);
        self
    }

    fn with_options(self, f: impl FnOnce(ServerOptions) -> ServerOptions) -> Endpoint {
        let options = f(self.options.clone());
        self.options(&options)
    }

    /// Which pages may connect (default [`OriginPolicy::Any`]).
    pub fn origin(mut self, policy: OriginPolicy) -> Endpoint {
        self.origin = policy;
        self
    }

    /// Whether to serve `gotalk.js` at `{mount}gotalk.js` (default yes).
    pub fn serve_js(mut self, yes: bool) -> Endpoint {
        self.serve_js = yes;
        self
    }

    /// Most connections served at once (default 10 000; see
    /// [`ServerOptions::max_connections`]).
    pub fn max_connections(self, n: usize) -> Endpoint {
        self.with_options(|o| o.max_connections(n))
    }

    /// Most connections from one peer address (default 256; see
    /// [`ServerOptions::max_connections_per_address`]).
    pub fn max_connections_per_address(self, n: Option<usize>) -> Endpoint {
        self.with_options(|o| o.max_connections_per_address(n))
    }

    /// How idle a connection must be to make room for a new one when the endpoint is full
    /// (default 5 s; see [`ServerOptions::evict_idle_after`]).
    pub fn evict_idle_after(self, idle: Option<std::time::Duration>) -> Endpoint {
        self.with_options(|o| o.evict_idle_after(idle))
    }

    /// Bytes a WebSocket message may carry beyond the payload limit (default 64 KiB; see
    /// [`ServerOptions::ws_message_allowance`]).
    pub fn message_allowance(self, bytes: usize) -> Endpoint {
        self.with_options(|o| o.ws_message_allowance(bytes))
    }

    /// The configuration every connection gets.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connections open right now.
    pub fn connections(&self) -> Vec<Sock> {
        self.slots.connections()
    }

    /// How many connections are open right now.
    pub fn connection_count(&self) -> usize {
        self.slots.count()
    }

    pub(crate) fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    /// An axum router with the endpoint at `mount` (e.g. `/gotalk/`, which also answers at
    /// `/gotalk`) and, unless disabled, the library at `{mount}gotalk.js`. Merge it into an
    /// application's router with [`Router::merge`].
    pub fn router<S>(&self, mount: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mount = normalize_mount(mount);
        let ep = Arc::new(self.clone());
        let upgrade = {
            let ep = ep.clone();
            move |req: Request| {
                let ep = ep.clone();
                async move { ep.upgrade(req).await }
            }
        };
        let mut router = Router::new().route(&mount, any(upgrade.clone()));
        if mount != "/" {
            router = router.route(mount.trim_end_matches('/'), any(upgrade));
        }
        if self.serve_js {
            let lib = Arc::new(JsLib::new(&mount));
            router = router.route(
                &format!("{mount}gotalk.js"),
                get(move |req: Request| {
                    let lib = lib.clone();
                    async move { lib.respond(req.method(), req.headers()) }
                }),
            );
        }
        router
    }

    async fn upgrade(self: Arc<Self>, req: Request) -> Response {
        let (mut parts, _body) = req.into_parts();
        let info = WsRequest {
            uri: parts
                .extensions
                .get::<OriginalUri>()
                .map_or_else(|| parts.uri.clone(), |o| o.0.clone()),
            headers: parts.headers.clone(),
            peer_addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        };
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(rejection) => {
                let mut res = rejection.into_response();
                if res.status() == StatusCode::BAD_REQUEST {
                    // A plain GET of the endpoint, e.g. someone opened it in a browser tab.
                    *res.status_mut() = StatusCode::UPGRADE_REQUIRED;
                    res.headers_mut().insert(
                        header::UPGRADE,
                        header::HeaderValue::from_static("websocket"),
                    );
                }
                return res;
            }
        };
        if !self.origin.allows(&info) {
            tracing::debug!(origin = ?info.origin(), "WebSocket refused by the origin policy");
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        }
        let slot = match self.slots.admit(info.peer_addr.map(|a| a.ip())) {
            Ok(slot) => slot,
            Err(why) => {
                return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
            }
        };
        let max = max_message_size(&self.config, self.options.ws_message_allowance);
        ws.max_message_size(max)
            .max_frame_size(max)
            .read_buffer_size(READ_BUFFER)
            .on_upgrade(move |socket| async move {
                let peer = info.peer_addr.map(|a| a.to_string());
                let config = self.slots.config_for(slot, &self.config);
                if let Err(e) = adopt(socket, &config, peer, info).await {
                    tracing::debug!("gotalk handshake over WebSocket failed: {e}");
                }
            })
    }
}

fn endpoint_slots(options: &ServerOptions) -> Arc<Slots> {
    let slots = Slots::new(SlotLimits::of(options));
    slots.set_name("WebSocket endpoint".into());
    slots
}

/// `/gotalk` and `gotalk/` become `/gotalk/`.
fn normalize_mount(mount: &str) -> String {
    let trimmed = mount.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

impl WsMessage for Message {
    fn binary(data: bytes::Bytes) -> Self {
        Message::Binary(data)
    }

    fn close(code: u16, reason: &'static str) -> Self {
        Message::Close(Some(axum::extract::ws::CloseFrame {
            code,
            reason: reason.into(),
        }))
    }

    fn event(self) -> Event {
        match self {
            m @ (Message::Binary(_) | Message::Text(_)) => Event::Data(m.into_data()),
            Message::Close(_) => Event::Close,
            _ => Event::Skip,
        }
    }
}

fn server_event(r: std::result::Result<Message, axum::Error>) -> std::io::Result<Event> {
    match r {
        Ok(m) => Ok(m.event()),
        Err(e) => match e
            .into_inner()
            .downcast::<tokio_tungstenite::tungstenite::Error>()
        {
            Ok(e) => tungstenite_event(*e),
            Err(other) => Err(std::io::Error::other(other)),
        },
    }
}

/// Serves gotalk over an accepted WebSocket.
async fn adopt(
    socket: WebSocket,
    config: &Config,
    peer: Option<String>,
    info: WsRequest,
) -> Result<Sock> {
    let close = CloseCode::default();
    let (sink, stream) = socket.split();
    let reader = WsReader::new(stream.map(server_event as fn(_) -> _), close.clone());
    let writer = WsWriter::<_, Message>::new(sink, close);
    Sock::adopt_split_with_info(reader, writer, config, peer, Some(Arc::new(info))).await
}

/// Runs an endpoint on its own for [`crate::Server`]: binds `url`'s `host:port` and serves the
/// endpoint at `url`'s path with [`serve`](super::serve) and the HTTP limits of `options`
/// until `stop` turns true; then sets `done` once its HTTP connections have closed. Returns
/// the address bound (with the real port).
pub(crate) async fn listen(
    url: &str,
    endpoint: Endpoint,
    options: &ServerOptions,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) -> Result<Addr> {
    let Some(rest) = url.strip_prefix("ws://") else {
        return Err(Error::InvalidAddress {
            addr: url.to_owned(),
            reason: "Server::bind serves ws:// URLs; for wss://, put a TLS-terminating proxy \
                     in front or serve Endpoint::router with your own TLS listener"
                .into(),
        });
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (
            &rest[..i],
            rest[i..].split(['?', '#']).next().unwrap_or("/"),
        ),
        None => (rest, "/"),
    };
    let mount = normalize_mount(path);
    let listener = tokio::net::TcpListener::bind(authority).await?;
    let local = listener.local_addr()?;
    let router: Router = endpoint.router(&mount);
    let serve = super::serve::serve(listener, router)
        .options(options)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::warn!("WebSocket server stopped: {e}");
        }
        done.send_replace(true);
    });
    Ok(Addr::WebSocket(format!("ws://{local}{mount}")))
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

    fn req(origin: Option<&'static str>, host: &'static str) -> WsRequest {
        let mut headers = HeaderMap::new();
        headers.insert("host", host.parse().unwrap());
        if let Some(o) = origin {
            headers.insert("origin", o.parse().unwrap());
        }
        WsRequest {
            uri: Uri::from_static("/gotalk/"),
            headers,
            peer_addr: None,
        }
    }

    #[test]
    fn origin_policies() {
        let same = OriginPolicy::SameHost;
        assert!(same.allows(&req(Some("http://example.com:8080"), "example.com:8080")));
        assert!(same.allows(&req(Some("HTTPS://Example.com"), "example.com")));
        assert!(!same.allows(&req(Some("http://evil.com"), "example.com")));
        assert!(!same.allows(&req(Some("null"), "example.com")));
        assert!(same.allows(&req(None, "example.com")));

        let list = OriginPolicy::allow(["https://a.example/", "http://b.example:81"]);
        assert!(list.allows(&req(Some("https://a.example"), "x")));
        assert!(list.allows(&req(Some("http://B.example:81"), "x")));
        assert!(!list.allows(&req(Some("http://a.example"), "x")));
        assert!(list.allows(&req(None, "x")));

        let strict = OriginPolicy::check(|r| r.origin().is_some());
        assert!(!strict.allows(&req(None, "x")));
        assert!(OriginPolicy::Any.allows(&req(Some("null"), "x")));
    }

    #[test]
    fn mounts() {
        assert_eq!(normalize_mount("/gotalk/"), "/gotalk/");
        assert_eq!(normalize_mount("gotalk"), "/gotalk/");
        assert_eq!(normalize_mount("/a/b"), "/a/b/");
        assert_eq!(normalize_mount(""), "/");
        assert_eq!(normalize_mount("/"), "/");
    }
}
