//! # gotalk
//!
//! Two programs — or a program and a web page — talking to each other as equals over one
//! connection. Either side exposes operations and either side calls them; requests, streams,
//! notifications and heartbeats share the connection without blocking each other.
//!
//! This crate speaks gotalk protocol version 1 byte for byte as the reference Go implementation
//! and its browser library `gotalk.js` do.
//!
//! ## Quick start
//!
//! ```
//! use gotalk::{Config, Handlers, Server};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct GreetIn { name: String }
//! #[derive(Serialize, Deserialize)]
//! struct GreetOut { greeting: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> gotalk::Result<()> {
//! let mut handlers = Handlers::new();
//! handlers.handle("greet", |input: GreetIn| async move {
//!     Ok(GreetOut { greeting: format!("Hello {}", input.name) })
//! });
//! let server = Server::bind("127.0.0.1:0", Config::new().handlers(handlers)).await?;
//!
//! let sock = gotalk::connect(&server.local_addr().to_string()).await?;
//! let out: GreetOut = sock.request("greet", &GreetIn { name: "Rasmus".into() }).await?;
//! assert_eq!(out.greeting, "Hello Rasmus");
//! sock.close();
//! # Ok(()) }
//! ```
//!
//! ## Typed services
//!
//! Define the operations of a peer once, as a trait, and let [`service`](macro@service)
//! (feature `macros`, default) generate the server side, a typed client and, with
//! `#[gotalk::service(typescript)]`, the page's TypeScript ([`typescript`]). The wire does not
//! change: the same op names and JSON as the handlers and calls above.
//!
//! ```
//! use gotalk::{Config, Handlers, Server};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct GreetIn { name: String }
//! #[derive(Serialize, Deserialize)]
//! struct GreetOut { greeting: String }
//!
//! #[gotalk::service]
//! trait Greeter {
//!     /// Greets by name.
//!     async fn greet(&self, input: GreetIn) -> GreetOut;
//! }
//!
//! struct Polite;
//!
//! impl Greeter for Polite {
//!     async fn greet(&self, input: GreetIn) -> GreetOut {
//!         GreetOut { greeting: format!("Hello {}", input.name) }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> gotalk::Result<()> {
//! let mut handlers = Handlers::new();
//! handlers.service(GreeterServer::new(Polite));
//! let server = Server::bind("127.0.0.1:0", Config::new().handlers(handlers)).await?;
//!
//! let sock = gotalk::connect(&server.local_addr().to_string()).await?;
//! let out = GreeterClient::new(&sock).greet(GreetIn { name: "Rasmus".into() }).await?;
//! assert_eq!(out.greeting, "Hello Rasmus");
//! // The same request, untyped:
//! let out: GreetOut = sock.request("greet", &GreetIn { name: "Bob".into() }).await?;
//! assert_eq!(out.greeting, "Hello Bob");
//! sock.close();
//! # Ok(()) }
//! ```
//!
//! Notifications, typed errors and streams of parts: see [`service`](mod@service).
//!
//! ## The protocol
//!
//! ```text
//! conversation    = ProtocolVersion Message*
//! SingleRequest   = "r" requestID operation payload
//! StreamRequest   = "s" requestID operation payload StreamReqPart*
//! StreamReqPart   = "p" requestID payload
//! SingleResult    = "R" requestID payload
//! StreamResult    = "S" requestID payload StreamResult*
//! ErrorResult     = "E" requestID payload
//! RetryResult     = "e" requestID wait payload
//! Notification    = "n" name payload
//! Heartbeat       = "h" load time
//! ProtocolError   = "f" code
//! ```
//! Sizes, waits, codes, loads and times are fixed-width lowercase hex; request IDs are 4 opaque
//! bytes; names carry a 3-hex-digit length. `r0001004echo00000005hello` is a request for `echo`.
//!
//! ## You want / use
//!
//! | you want | use |
//! |---|---|
//! | JSON in, JSON out | [`Handlers::handle`]`(op, |in: T| async move { Ok(out) })`, [`Sock::request`]`(op, &in)` |
//! | raw bytes | [`Handlers::handle_buffer`], [`Sock::buffer_request`] |
//! | a stream of parts (on by default, bounded by [`Limits::stream_requests`] and [`Limits::stream_buffer`]) | [`Handlers::handle_stream`], [`Sock::stream_request`] |
//! | one-way messages | [`Handlers::handle_notification`], [`Sock::notify`] |
//! | one message to many connections | [`rooms::Hub`] (across processes: `rooms::RedisAdapter`, feature `redis`); [`Notification`] + [`Sock::try_notify`] by hand |
//! | typed operations, both ways, with TypeScript for pages | [`macro@service`], [`typescript`] |
//! | anything not handled | register under the empty name `""` (the fallback) |
//! | process-wide handlers | [`handle`], [`handle_buffer`], … used by sockets given no handlers of their own |
//! | limits | [`Limits`] (per connection, in bytes where memory is at stake), [`ServerOptions`] (connections, the HTTP port) |
//! | retries, deadlines | [`Config::auto_retry`], [`Config::on_retry`]; wrap a call in `tokio::time::timeout` (see [`Sock::buffer_request`]); through a pool, [`pool::RequestOptions`] |
//! | a connection that reconnects | [`pool::KeepAlive`] (back-off with jitter, a hook on every connection) |
//! | work spread over several servers, by load | [`pool::Pool`]; workers that dial in to you: [`pool::Workers`] |
//! | heartbeats and load | [`Config::heartbeat_interval`], [`Sock::heartbeat_load`], [`Sock::peer_load`], [`Config::on_heartbeat`] |
//! | state per connection | [`Sock::insert_data`] / [`Sock::data`] |
//! | to stop work nobody waits for | [`Sock::closing`] in a handler given the [`Sock`] ([`Handlers::handle_with_sock`]) |
//! | transports | `tcp://`, `unix://`, `tls://` ([`transport::tls`]), `ws://`/`wss://` ([`ws`]), in-memory [`pipe`], or [`Sock::adopt`] any `AsyncRead + AsyncWrite` |
//! | logs | the crate emits [`tracing`](https://docs.rs/tracing) events (connections closing, refusals, panics in handlers): install a subscriber, e.g. `tracing_subscriber::fmt().with_env_filter("gotalk=debug")` |
//!
//! ## Layout
//!
//! From the bytes up; each layer uses only the ones above it (but for the handle and its
//! handlers, which name each other), and `tests/layout.rs` checks that the files have no other
//! import circle. Modules in *italics* are internal (not public); the others are public for
//! their further items, the main types being re-exported at the root.
//!
//! | module | what lives there |
//! |---|---|
//! | [`frame`] | message types ([`frame::Message`], [`ProtocolErrorCode`], …) and their encoding — pure |
//! | `header` | parsing a message header from bytes — pure (hidden: for the `gotalk` command and the fuzzers) |
//! | [`codec`] | the incremental decoder over `BytesMut`; the payload size limit is enforced here |
//! | *limits* | [`Limits`]: every limit of a connection, its default and why; the counters of requests in progress |
//! | *error* | [`Error`], [`CloseReason`], [`HandlerError`] |
//! | *pending*, *incoming*, *parts* | state without I/O: our requests waiting for replies; the peer's streams; stream parts and their byte budget |
//! | *decide* | **what an incoming message does**: one decoded message + the connection's state → one action. Pure, unit-tested |
//! | *outbox* | the bytes waiting to be written (bounded in bytes) and who writes them |
//! | [`handlers`] | **the router**: op/name → handler, fallback, JSON, raw and stream handlers |
//! | *sock* | [`Sock`], the handle; `sock/open.rs` starts a connection, `reader.rs` carries out what `decide` says, `writer.rs` writes and sends heartbeats, `buffers.rs` the read buffers, `requests.rs` our requests |
//! | *stream* | [`StreamSender`] / [`StreamReceiver`] |
//! | *config*, *notification* | [`Config`]; [`Notification`], encoded once for many connections |
//! | [`transport`] | **where a transport plugs in**: TCP, TLS ([`transport::tls`]), Unix sockets, in-memory [`pipe`]; [`connect`] |
//! | [`ws`] | WebSocket: the axum [`ws::Endpoint`] serving [`jslib`] (`gotalk.js`), [`ws::serve`] with the HTTP port's limits, the `ws://`/`wss://` client |
//! | [`server`] | [`Server`], [`ServerOptions`]: accept loop, connection slots, graceful shutdown |
//! | [`pool`] | **where a responder is chosen** (`pool/choose.rs`): [`pool::KeepAlive`] (reconnects), [`pool::Pool`] (load-aware choice among responders), [`pool::Workers`] (workers that dial in); per-request deadlines |
//! | [`rooms`] | **where a broadcast fans out**: [`rooms::Hub`], the [`rooms::Adapter`] trait, Redis |
//! | [`service`](mod@service), [`typescript`] | typed services: what [`macro@service`] generates code against; TypeScript for pages |
//!
//! ## Differences from the reference, on purpose
//! - The default limits bound every connection in bytes (see [`Limits`] and SECURITY.md):
//!   payloads over [`Limits::max_payload`] (1 MiB by default) are refused with an ErrorResult
//!   before anything is allocated, and the connection stays usable; requests in progress, queued
//!   output and stream parts are bounded per connection.
//! - Stream requests are accepted by default (8 per connection); the reference refuses them.
//! - A peer speaking another protocol version gets ProtocolError 1 (`f00000001`), as the spec says.
//! - A stream request ID reused after its stream ended is fine; a part for a stream that never
//!   existed gets ProtocolError 2.
//! - Request limits count per connection, so one peer cannot use up another's share.
//! - Automatic retries are bounded ([`Config::auto_retry`], [`Config::max_retry_wait`]).
//! - Protocol v1 has no way to cancel a request: a caller that gives up (drops the future) frees
//!   its side, and the handler on the other side learns only if the connection closes
//!   ([`Sock::closing`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod addr;
pub mod codec;
mod config;
mod decide;
mod error;
pub mod frame;
pub mod handlers;
#[doc(hidden)]
pub mod header;
mod incoming;
#[cfg(feature = "websocket")]
pub mod jslib;
mod limits;
mod notification;
mod outbox;
mod parts;
mod pending;
pub mod pool;
pub mod rooms;
pub mod server;
pub mod service;
mod sock;
mod stream;
pub mod transport;
#[cfg(feature = "typescript")]
pub mod typescript;

pub use addr::Addr;
pub use bytes::Bytes;
pub use config::Config;
pub use error::{CloseReason, Error, HandlerError, Result, Side};
pub use frame::ProtocolErrorCode;
#[cfg(feature = "macros")]
pub use gotalk_macros::service;
pub use handlers::{
    default_handlers, handle, handle_buffer, handle_buffer_notification, handle_notification,
    handle_stream, Handlers,
};
pub use limits::Limits;
pub use notification::Notification;
pub use server::{Server, ServerOptions};
pub use sock::Sock;
pub use stream::{StreamReceiver, StreamSender};
#[cfg(feature = "websocket")]
pub use transport::ws;
pub use transport::{connect, connect_with, pipe, pipe_with};
#[cfg(feature = "typescript")]
pub use ts_rs;
