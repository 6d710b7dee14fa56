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
//! ## Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`frame`] | message types; header parse and encode — pure functions, no I/O |
//! | [`codec`] | incremental decoder over `BytesMut`; the payload size limit is enforced here |
//! | [`limits`] | every limit (payload size, requests, streams, timeouts, queues) and its checks |
//! | `conn` | connection state without I/O: request IDs, pending requests, incoming streams |
//! | [`handlers`] | the router: op/name → handler, fallback, JSON and raw handlers |
//! | [`sock`] | [`Sock`], the reader and writer tasks that drive a connection; [`Config`] |
//! | `outbox` | the bytes waiting to be written (bounded, encoded by the senders) and who writes them: the writer task or a sender directly |
//! | [`stream`] | [`StreamSender`] / [`StreamReceiver`] for streaming requests and results |
//! | [`service`](mod@service) | typed services: what [`service`](macro@service) generates code against ([`service::Caller`], [`service::Parts`], [`service::CallError`]) |
//! | [`typescript`] | the TypeScript module of typed services (feature `typescript`), types by [`ts_rs`] |
//! | [`server`] | [`Server`] and [`ServerOptions`]: accept loop, connection slots (per-address share, the idlest making room), graceful shutdown |
//! | [`pool`] | many peers: [`KeepAlive`] (reconnects), [`Pool`] (load-aware choice among responders, in `pool/choose.rs`), [`Workers`] (workers that dial in); request deadlines |
//! | [`rooms`] | [`rooms::Hub`]: rooms and broadcast, one encoding for every member; the [`rooms::Adapter`] trait and `RedisAdapter` (feature `redis`) across processes |
//! | [`transport`] | TCP, TLS ([`transport::tls`], feature `tls`), Unix sockets, in-memory [`pipe`]; [`connect`] |
//! | [`ws`] | WebSocket: an axum endpoint for pages, serving [`jslib`] (`gotalk.js`); [`ws::serve`], the HTTP server for it; the `ws://`/`wss://` client ([`ws::Connector`]) |
//! | [`addr`] | address parsing (`tcp://`, `unix://`, `tls://`, `ws://`, `wss://`) |
//! | [`error`] | [`Error`], [`CloseReason`], [`ProtocolErrorCode`], [`HandlerError`] |
//!
//! ## Differences from the reference, on purpose
//! - Payloads larger than [`Limits::max_payload`] (16 MiB by default) are refused with an
//!   ErrorResult before anything is allocated; the connection stays usable.
//! - A peer speaking another protocol version gets ProtocolError 1 (`f00000001`), as the spec says.
//! - A stream request ID reused after its stream ended is fine; a part for a stream that never
//!   existed gets ProtocolError 2.
//! - Request limits count per connection, so one peer cannot use up another's share.
//! - Automatic retries are bounded ([`Config::auto_retry`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod addr;
pub mod codec;
pub mod config;
mod decide;
pub mod error;
pub mod frame;
pub mod handlers;
#[doc(hidden)]
pub mod header;
mod incoming;
#[cfg(feature = "websocket")]
pub mod jslib;
pub mod limits;
mod notification;
mod outbox;
mod parts;
mod pending;
pub mod pool;
pub mod rooms;
pub mod server;
pub mod service;
pub mod sock;
pub mod stream;
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
pub use pool::{KeepAlive, Pool, Workers};
pub use server::{Server, ServerOptions};
pub use sock::Sock;
pub use stream::{StreamReceiver, StreamSender};
#[cfg(feature = "websocket")]
pub use transport::ws;
pub use transport::{connect, connect_with, pipe, pipe_with};
#[cfg(feature = "typescript")]
pub use ts_rs;
