//! WebSocket: gotalk between web pages and servers (cargo feature `websocket`, on by default).
//!
//! - **Serving**: an [`Endpoint`] answers WebSocket upgrades at a mount path (such as
//!   `/gotalk/`) and serves the embedded browser library at `{mount}gotalk.js` (see
//!   [`crate::jslib`]). [`Endpoint::router`] gives an [`axum::Router`] to merge into an
//!   application, which you then serve with [`serve`]; [`crate::Server::bind`] with a
//!   `ws://host:port/path` address runs one on its own (with [`serve`] too). Every accepted
//!   connection gets the endpoint's [`Config`](crate::Config) (handlers, limits, heartbeats, callbacks),
//!   exactly like a TCP connection, and remembers the HTTP request it was upgraded from
//!   ([`Sock::ws_request`](crate::Sock::ws_request)). An [`OriginPolicy`] can refuse pages from other sites.
//! - **Connecting**: [`crate::connect_with`] with a `ws://` or `wss://` URL (or [`connect`]);
//!   the upgrade request carries an `Origin` made from the URL (`http://host:port` for
//!   `ws://`, `https://host:port` for `wss://`), which servers such as the reference one
//!   require. [`Connector`] sets another `Origin` or none, and adds headers (a token, a
//!   cookie). For `wss://` the TLS settings of [`Config::tls`](crate::Config::tls) apply (needs the `tls` feature).
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

mod adapter;
mod client;
mod endpoint;
mod messages;
mod serve;

pub use adapter::{CLOSE_INVALID_TEXT, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR_BASE, CLOSE_TOO_BIG};
pub use client::{connect, Connector};
pub(crate) use endpoint::listen;
pub use endpoint::{Endpoint, OriginPolicy, WsRequest};
pub use serve::{serve, Serve};

/// The axum crate the endpoint is built on, re-exported so that applications use the same
/// version.
pub use axum;
