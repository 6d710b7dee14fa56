//! The router: operation and notification names mapped to handlers, with a fallback.
//!
//! A [`Handlers`] value is built before a connection starts and then shared read-only by every
//! connection that uses it (an `Arc` snapshot), so finding a handler takes no lock.
//!
//! Handler kinds:
//! - **JSON request handlers** ([`Handlers::handle`], [`Handlers::handle_with_sock`]): the payload
//!   is decoded with serde into the input type and the output is encoded back. A payload that does
//!   not decode is answered with ErrorResult `unexpected parameter type`, as the reference does,
//!   followed by serde's reason (`: missing field `name` at line 1 column 2`); the server logs
//!   it at level `debug`.
//! - **Buffer request handlers** ([`Handlers::handle_buffer`]): raw [`Bytes`] in and out.
//! - **Stream request handlers** ([`Handlers::handle_stream`]): a [`StreamReceiver`] of request
//!   parts in, a [`StreamSender`] of result parts out.
//! - **Notification handlers** ([`Handlers::handle_notification`],
//!   [`Handlers::handle_buffer_notification`]): plain (non-async) functions, run in the order the
//!   notifications arrive, on the connection's reader. Spawn a task for slow work.
//!
//! Registering under the empty name `""` sets the fallback for names without a handler of their
//! own. Requests with no handler at all are answered with ErrorResult `unknown operation "OP"`;
//! notifications with no handler are dropped.
//!
//! A request handler that returns `Err` produces an ErrorResult with the error's message (or a
//! RetryResult, see [`HandlerError::retry`]); one that panics fails only its own request.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HandlerError;
use crate::frame::Name;
use crate::sock::Sock;
use crate::stream::{StreamReceiver, StreamSender};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A type-erased buffer request handler: `(sock, op, payload) -> result payload`.
pub type BufferHandler =
    dyn Fn(Sock, Name, Bytes) -> BoxFuture<Result<Bytes, HandlerError>> + Send + Sync;

/// A type-erased stream request handler: `(sock, op, request parts, result parts)`.
pub type StreamHandler = dyn Fn(Sock, Name, StreamReceiver, StreamSender) -> BoxFuture<Result<(), HandlerError>>
    + Send
    + Sync;

/// A type-erased notification handler: `(sock, name, payload)`.
pub type NotificationHandler = dyn Fn(&Sock, &str, Bytes) + Send + Sync;

/// A request handler as stored in [`Handlers`].
#[derive(Clone)]
pub enum RequestHandler {
    /// Handles single-payload requests (`r`).
    Buffer(Arc<BufferHandler>),
    /// Handles streaming requests (`s` + `p`...).
    Stream(Arc<StreamHandler>),
}

impl fmt::Debug for RequestHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestHandler::Buffer(_) => "RequestHandler::Buffer",
            RequestHandler::Stream(_) => "RequestHandler::Stream",
        })
    }
}

/// The payload text of the ErrorResult for a request whose JSON does not decode.
pub const UNEXPECTED_PARAMETER_TYPE: &str = "unexpected parameter type";

/// Operation and notification handlers. Cheap to clone.
///
/// ```
/// use gotalk::{Handlers, HandlerError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct GreetIn { name: String }
/// #[derive(Serialize)]
/// struct GreetOut { greeting: String }
///
/// let mut handlers = Handlers::new();
/// handlers.handle("greet", |input: GreetIn| async move {
///     Ok(GreetOut { greeting: format!("Hello {}", input.name) })
/// });
/// handlers.handle_buffer("echo", |_sock, _op, payload| async move { Ok(payload) });
/// handlers.handle_notification("ping", |v: serde_json::Value| println!("ping {v}"));
/// assert!(handlers.find_request("greet").is_some());
/// assert!(handlers.find_request("nope").is_none());
/// ```
///
/// Registrations chain, and a chain goes straight to [`Config::handlers`](crate::Config::handlers)
/// (which takes a copy); handlers that share state: [`Handlers::with_state`].
///
/// ```
/// use gotalk::{Config, Handlers};
///
/// let config = Config::new().handlers(
///     Handlers::new()
///         .handle("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
///         .handle_buffer("echo", |_sock, _op, payload| async move { Ok(payload) }),
/// );
/// ```
#[derive(Clone, Default)]
pub struct Handlers {
    requests: HashMap<String, RequestHandler, NameHash>,
    /// The fallbacks (op `""`), one of each kind: a catch-all for single requests and one for
    /// stream requests can be registered side by side.
    fallback_buffer: Option<RequestHandler>,
    fallback_stream: Option<RequestHandler>,
    notifications: HashMap<String, Arc<NotificationHandler>, NameHash>,
}

/// Hashes operation names for the handler tables with FNV-1a: names are short, and SipHash's
/// protection against chosen collisions buys nothing here (the peer picks only what is looked
/// up, not what is in the table), while it costs more than the rest of a lookup.
type NameHash = std::hash::BuildHasherDefault<Fnv>;

/// FNV-1a, 64 bits.
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ops: Vec<_> = self.requests.keys().map(String::as_str).collect();
        if self.fallback_buffer.is_some() || self.fallback_stream.is_some() {
            ops.push("");
        }
        ops.sort();
        let mut notes: Vec<_> = self.notifications.keys().collect();
        notes.sort();
        f.debug_struct("Handlers")
            .field("requests", &ops)
            .field("notifications", &notes)
            .finish()
    }
}

/// Decodes a request's JSON input. A payload that does not decode is answered with the
/// reference's text followed by what serde found (`unexpected parameter type: missing field
/// `name` at line 1 column 2`), and logged at level `debug` with the input type.
///
/// The detail travels on the wire, not only in our client's error type, because the caller
/// may be the reference's Go client or a page's gotalk.js, and the ErrorResult text is all
/// they get. No conformance transcript pins this text, and it starts with the reference's, so
/// a check by prefix still matches.
pub(crate) fn decode_json<I: DeserializeOwned>(payload: &[u8]) -> Result<I, HandlerError> {
    decode_request(None, payload)
}

/// [`decode_json`] for a request to `op`, which the log then names.
fn decode_request<I: DeserializeOwned>(
    op: Option<&str>,
    payload: &[u8],
) -> Result<I, HandlerError> {
    json_input(payload).map_err(|detail| {
        let input = std::any::type_name::<I>();
        tracing::debug!(op, input, %detail, "request payload does not decode");
        HandlerError::msg(format!("{UNEXPECTED_PARAMETER_TYPE}: {detail}"))
    })
}

/// Longest explanation of a payload that does not decode: serde quotes the offending value,
/// and a peer's 16 MiB string must not come back to it (or go to the log) whole.
const MAX_DETAIL: usize = 300;

/// Decodes a JSON payload, or says why it does not decode.
fn json_input<I: DeserializeOwned>(payload: &[u8]) -> Result<I, String> {
    // An empty payload means "no parameters": let types that accept null (unit, Option) take it.
    let input = if payload.is_empty() { b"null" } else { payload };
    serde_json::from_slice(input).map_err(|e| {
        let detail = if payload.is_empty() {
            // The position would be in our stand-in `null`, not in anything the peer sent.
            let text = e.to_string();
            let at = format!(" at line {} column {}", e.line(), e.column());
            format!(
                "the payload is empty ({})",
                text.strip_suffix(&at).unwrap_or(&text)
            )
        } else {
            e.to_string()
        };
        printable(&detail, MAX_DETAIL)
    })
}

/// `text` cut after about `max` bytes (on a character boundary, marked with `…`), with control
/// characters escaped: serde quotes unknown field names as the peer wrote them, and they must
/// not start a fake line in a log or drive a terminal.
fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 3);
    for c in text.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn encode_json<O: Serialize>(out: &O) -> Result<Bytes, HandlerError> {
    serde_json::to_vec(out)
        .map(Bytes::from)
        .map_err(|e| HandlerError::msg(format!("failed to encode result: {e}")))
}

impl Handlers {
    /// An empty set of handlers.
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Handles operation `op` with JSON input and output.
    pub fn handle<I, O, F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.handle_buffer(op, move |_sock, op, payload| {
            let f = f.clone();
            async move {
                let input = decode_request::<I>(Some(op.as_str()), &payload)?;
                encode_json(&f(input).await?)
            }
        })
    }

    /// Handles operation `op` with JSON input and output; the handler also gets the calling
    /// [`Sock`] (to call back into the peer, or to read its user data).
    pub fn handle_with_sock<I, O, F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(Sock, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.handle_buffer(op, move |sock, op, payload| {
            let f = f.clone();
            async move {
                let input = decode_request::<I>(Some(op.as_str()), &payload)?;
                encode_json(&f(sock, input).await?)
            }
        })
    }

    /// Handles operation `op` with raw payloads: `(sock, op, payload) -> payload`.
    pub fn handle_buffer<F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        F: Fn(Sock, Name, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
    {
        let h: Arc<BufferHandler> = Arc::new(move |s, op, p| Box::pin(f(s, op, p)));
        self.insert(op, RequestHandler::Buffer(h));
        self
    }

    /// Handles streaming operation `op`: read request parts from the [`StreamReceiver`], write
    /// result parts to the [`StreamSender`]. The result stream is ended when the handler returns
    /// `Ok`; an `Err` is sent as an ErrorResult. How many stream requests a peer may have in
    /// progress at once, and how many bytes of their parts wait for handlers, is bounded by
    /// [`crate::Limits::stream_requests`] (8 by default) and [`crate::Limits::stream_buffer`].
    pub fn handle_stream<F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        F: Fn(Sock, Name, StreamReceiver, StreamSender) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let h: Arc<StreamHandler> = Arc::new(move |s, op, rx, tx| Box::pin(f(s, op, rx, tx)));
        self.insert(op, RequestHandler::Stream(h));
        self
    }

    /// Handles notification `name` with a JSON payload. Payloads that do not decode are dropped
    /// (and logged).
    pub fn handle_notification<T, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(T) + Send + Sync + 'static,
    {
        self.handle_notification_with_sock(name, move |_sock, v| f(v))
    }

    /// Handles notification `name` with a JSON payload; the handler also gets the [`Sock`].
    pub fn handle_notification_with_sock<T, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(&Sock, T) + Send + Sync + 'static,
    {
        self.handle_buffer_notification(name, move |sock, name, payload| {
            match json_input::<T>(&payload) {
                Ok(v) => f(sock, v),
                Err(detail) => {
                    tracing::warn!(name, %detail, "notification payload does not decode; dropped")
                }
            }
        })
    }

    /// Handles notification `name` with a raw payload: `(sock, name, payload)`.
    pub fn handle_buffer_notification<F>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(&Sock, &str, Bytes) + Send + Sync + 'static,
    {
        self.notifications.insert(name.to_owned(), Arc::new(f));
        self
    }

    fn insert(&mut self, op: &str, h: RequestHandler) {
        match (op.is_empty(), &h) {
            (true, RequestHandler::Buffer(_)) => self.fallback_buffer = Some(h),
            (true, RequestHandler::Stream(_)) => self.fallback_stream = Some(h),
            (false, _) => {
                self.requests.insert(op.to_owned(), h);
            }
        }
    }

    /// The handler for operation `op`, or a fallback (`""`) if `op` has none (the single-request
    /// one when there are both).
    pub fn find_request(&self, op: &str) -> Option<&RequestHandler> {
        self.requests
            .get(op)
            .or(self.fallback_buffer.as_ref())
            .or(self.fallback_stream.as_ref())
    }

    /// The handler for a single request (`stream` false) or a stream request (`stream` true)
    /// for `op`: its own handler if it is of that kind, else the fallback of that kind.
    ///
    /// ```
    /// use gotalk::handlers::RequestHandler;
    /// use gotalk::Handlers;
    /// let mut h = Handlers::new();
    /// h.handle_buffer("", |_s, _op, p| async move { Ok(p) });
    /// h.handle_stream("", |_s, _op, _parts, _out| async move { Ok(()) });
    /// h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    /// let stream = |op| matches!(h.find_request_for(op, true), Some(RequestHandler::Stream(_)));
    /// let single = |op| matches!(h.find_request_for(op, false), Some(RequestHandler::Buffer(_)));
    /// assert!(single("any") && stream("any"));
    /// assert!(single("echo") && stream("echo"));
    /// assert!(Handlers::new().find_request_for("any", false).is_none());
    /// ```
    pub fn find_request_for(&self, op: &str, stream: bool) -> Option<&RequestHandler> {
        match self.requests.get(op) {
            Some(h) if matches!(h, RequestHandler::Stream(_)) == stream => Some(h),
            _ if stream => self.fallback_stream.as_ref(),
            _ => self.fallback_buffer.as_ref(),
        }
    }

    /// The handler for notification `name`, or the fallback (`""`) if `name` has none.
    pub fn find_notification(&self, name: &str) -> Option<&Arc<NotificationHandler>> {
        self.notifications
            .get(name)
            .or_else(|| self.notifications.get(""))
    }

    /// Adds every handler of `other`, replacing handlers of the same name.
    pub fn merge(&mut self, other: &Handlers) -> &mut Self {
        self.requests
            .extend(other.requests.iter().map(|(k, v)| (k.clone(), v.clone())));
        if other.fallback_buffer.is_some() {
            self.fallback_buffer.clone_from(&other.fallback_buffer);
        }
        if other.fallback_stream.is_some() {
            self.fallback_stream.clone_from(&other.fallback_stream);
        }
        self.notifications.extend(
            other
                .notifications
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        self
    }
}

/// Lets a chain of registrations go straight to [`Config::handlers`](crate::Config::handlers):
/// `Config::new().handlers(Handlers::new().handle(..).handle(..))`. The handlers are copied
/// (a few `Arc`s each), so the `Handlers` can still be added to and used again.
impl From<&mut Handlers> for Arc<Handlers> {
    fn from(h: &mut Handlers) -> Arc<Handlers> {
        Arc::new(h.clone())
    }
}

/// A copy of the handlers, for [`Config::handlers`](crate::Config::handlers).
impl From<&Handlers> for Arc<Handlers> {
    fn from(h: &Handlers) -> Arc<Handlers> {
        Arc::new(h.clone())
    }
}

/// State shared by the handlers registered through [`Handlers::with_state`]: each call gets
/// its own clone, taken apart with a pattern (`|State(db), key: String| ...`) as with axum's
/// `State`. Wrap state that is not cheap to clone in an `Arc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State<S>(pub S);

impl<S> std::ops::Deref for State<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S> std::ops::DerefMut for State<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.0
    }
}

/// Registers handlers that are each given a clone of one state as their first argument
/// ([`State`]); made by [`Handlers::with_state`]. Each method registers in the [`Handlers`]
/// it came from, as the method of the same name there does.
pub struct WithState<'a, S> {
    handlers: &'a mut Handlers,
    state: S,
}

impl<S> fmt::Debug for WithState<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithState")
            .field("handlers", &self.handlers)
            .field("state", &std::any::type_name::<S>())
            .finish()
    }
}

impl Handlers {
    /// Registers handlers that share `state`: each handler registered through the returned
    /// [`WithState`] gets a clone of it as a [`State`], so no clone has to be moved into each
    /// closure by hand.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use gotalk::handlers::State;
    /// use gotalk::{Config, Handlers};
    ///
    /// #[derive(Default)]
    /// struct Counter { total: AtomicU64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// let counter = Arc::new(Counter::default());
    /// let config = Config::new().handlers(
    ///     Handlers::new()
    ///         .with_state(counter.clone())
    ///         .handle("add", |State(c), n: u64| async move {
    ///             Ok(c.total.fetch_add(n, Ordering::Relaxed) + n)
    ///         })
    ///         .handle_notification("reset", |State(c), (): ()| c.total.store(0, Ordering::Relaxed)),
    /// );
    /// let (server, client) = gotalk::pipe_with(&config, &Config::new()).await?;
    /// assert_eq!(client.request::<_, u64>("add", &2).await?, 2);
    /// assert_eq!(client.request::<_, u64>("add", &3).await?, 5);
    /// assert_eq!(counter.total.load(Ordering::Relaxed), 5);
    /// # server.close();
    /// # Ok(()) }
    /// ```
    pub fn with_state<S>(&mut self, state: S) -> WithState<'_, S>
    where
        S: Clone + Send + Sync + 'static,
    {
        WithState {
            handlers: self,
            state,
        }
    }
}

impl<S: Clone + Send + Sync + 'static> WithState<'_, S> {
    /// Handles operation `op` with JSON input and output (see [`Handlers::handle`]).
    pub fn handle<I, O, F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(State<S>, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.handlers
            .handle(op, move |input| f(State(state.clone()), input));
        self
    }

    /// Handles operation `op` with JSON input and output, given the calling [`Sock`] too (see
    /// [`Handlers::handle_with_sock`]).
    pub fn handle_with_sock<I, O, F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(State<S>, Sock, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.handlers
            .handle_with_sock(op, move |sock, input| f(State(state.clone()), sock, input));
        self
    }

    /// Handles operation `op` with raw payloads (see [`Handlers::handle_buffer`]).
    pub fn handle_buffer<F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        F: Fn(State<S>, Sock, Name, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.handlers
            .handle_buffer(op, move |sock, op, p| f(State(state.clone()), sock, op, p));
        self
    }

    /// Handles streaming operation `op` (see [`Handlers::handle_stream`]).
    pub fn handle_stream<F, Fut>(&mut self, op: &str, f: F) -> &mut Self
    where
        F: Fn(State<S>, Sock, Name, StreamReceiver, StreamSender) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.handlers.handle_stream(op, move |sock, op, rx, tx| {
            f(State(state.clone()), sock, op, rx, tx)
        });
        self
    }

    /// Handles notification `name` with a JSON payload (see [`Handlers::handle_notification`]).
    pub fn handle_notification<T, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(State<S>, T) + Send + Sync + 'static,
    {
        let state = self.state.clone();
        self.handlers
            .handle_notification(name, move |v| f(State(state.clone()), v));
        self
    }

    /// Handles notification `name` with a JSON payload, given the [`Sock`] too (see
    /// [`Handlers::handle_notification_with_sock`]).
    pub fn handle_notification_with_sock<T, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(State<S>, &Sock, T) + Send + Sync + 'static,
    {
        let state = self.state.clone();
        self.handlers
            .handle_notification_with_sock(name, move |sock, v| f(State(state.clone()), sock, v));
        self
    }
}

/// Lets a chain that starts with [`Handlers::with_state`] go straight to
/// [`Config::handlers`](crate::Config::handlers) (a copy, as for `&mut Handlers`).
impl<S> From<&mut WithState<'_, S>> for Arc<Handlers> {
    fn from(w: &mut WithState<'_, S>) -> Arc<Handlers> {
        Arc::new(w.handlers.clone())
    }
}

fn defaults() -> &'static RwLock<Handlers> {
    static DEFAULT: OnceLock<RwLock<Handlers>> = OnceLock::new();
    DEFAULT.get_or_init(Default::default)
}

fn with_defaults(f: impl FnOnce(&mut Handlers)) {
    let mut h = defaults().write().unwrap_or_else(|e| e.into_inner());
    f(&mut h);
}

/// A snapshot of the process-wide default handlers, used by sockets and servers that are not
/// given handlers of their own. Register defaults with [`handle`], [`handle_buffer`], ... before
/// connecting or serving: each socket takes its snapshot when it opens.
pub fn default_handlers() -> Arc<Handlers> {
    Arc::new(defaults().read().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Registers a JSON request handler in the default handlers (see [`Handlers::handle`]).
pub fn handle<I, O, F, Fut>(op: &str, f: F)
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
{
    with_defaults(|h| {
        h.handle(op, f);
    })
}

/// Registers a buffer request handler in the default handlers (see [`Handlers::handle_buffer`]).
pub fn handle_buffer<F, Fut>(op: &str, f: F)
where
    F: Fn(Sock, Name, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    with_defaults(|h| {
        h.handle_buffer(op, f);
    })
}

/// Registers a stream request handler in the default handlers (see [`Handlers::handle_stream`]).
pub fn handle_stream<F, Fut>(op: &str, f: F)
where
    F: Fn(Sock, Name, StreamReceiver, StreamSender) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    with_defaults(|h| {
        h.handle_stream(op, f);
    })
}

/// Registers a JSON notification handler in the default handlers (see
/// [`Handlers::handle_notification`]).
pub fn handle_notification<T, F>(name: &str, f: F)
where
    T: DeserializeOwned,
    F: Fn(T) + Send + Sync + 'static,
{
    with_defaults(|h| {
        h.handle_notification(name, f);
    })
}

/// Registers a raw notification handler in the default handlers (see
/// [`Handlers::handle_buffer_notification`]).
pub fn handle_buffer_notification<F>(name: &str, f: F)
where
    F: Fn(&Sock, &str, Bytes) + Send + Sync + 'static,
{
    with_defaults(|h| {
        h.handle_buffer_notification(name, f);
    })
}
