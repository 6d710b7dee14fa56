//! [`Sock`]: one connection to a peer, and the tasks that drive it.
//!
//! Each connection runs two tasks around one lock-protected state (our pending requests and
//! the outbox of bytes to write, see `outbox`):
//! - the **reader** owns the read half and a `BytesMut`; it decodes every whole message the
//!   buffer holds before reading again, hands the results of our requests to their tasks
//!   (all of one read under one lock), runs notification handlers in order, and runs each
//!   incoming request's handler until it first waits (answers of handlers that finish at once
//!   are queued together after each read, and the reader writes them itself when nobody else
//!   is writing; a handler that waits goes on in a task of its own); an idle connection holds
//!   no read buffer;
//! - the **writer** writes what senders queued whenever it cannot be written at once: under
//!   load (many small messages gathered into one vectored write, large payloads written from
//!   their own buffers, never copied) and whenever the peer is slow to read (with the write
//!   timeout); it also sends heartbeats.
//!
//! A request is registered and encoded into the outbox in one step; its task then waits in
//! its pending entry, where the reader stores the reply.
//!
//! When the connection ends for any reason, `Sock::shutdown` marks it closed under the lock,
//! fails every waiting request with the reason, and tells both tasks to stop; the writer
//! flushes what was queued (including a final `f` message if there is one) before shutting
//! the transport down.

use std::any::Any;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::codec::{DecodeError, Decoded, Decoder, Oversized};
use crate::conn::{fail_stream, Completed, IncomingStreams, PartTarget, Pending, Reply, Waiter};
use crate::error::{CloseReason, Error, ProtocolErrorCode, Result, Side};
use crate::frame::{
    encode_version, Message, MsgType, Name, NameTooLong, RequestId, MAX_NAME_LEN, PROTOCOL_VERSION,
};
use crate::handlers::{default_handlers, Handlers, RequestHandler};
use crate::limits::{Admit, Counters, Limits};
use crate::outbox::{poll_write_batch, Batch, Next, Outbox, Written};
use crate::stream::{PartResult, StreamReceiver, StreamSender};

type SockCallback = Arc<dyn Fn(&Sock) + Send + Sync>;
type CloseCallback = Arc<dyn Fn(&Sock, &CloseReason) + Send + Sync>;
type HeartbeatCallback = Arc<dyn Fn(&Sock, u16, SystemTime) + Send + Sync>;

/// Default interval between automatic heartbeats (as in the reference).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(20);

/// How a connection behaves: handlers, limits, heartbeats, retries and callbacks. Used by
/// [`crate::connect_with`], [`crate::Server`] (every accepted connection gets a copy) and
/// [`Sock::adopt`].
///
/// ```
/// use std::time::Duration;
/// use gotalk::{Config, Handlers, Limits};
///
/// let mut handlers = Handlers::new();
/// handlers.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
/// let config = Config::new()
///     .handlers(handlers)
///     .limits(Limits::default().buffer_requests(100))
///     .heartbeat_interval(Some(Duration::from_secs(5)))
///     .auto_retry(3)
///     .on_close(|_sock, reason| eprintln!("closed: {reason}"));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct Config {
    handlers: Option<Arc<Handlers>>,
    limits: Limits,
    heartbeat_interval: Option<Duration>,
    auto_retry: u32,
    handshake_timeout: Duration,
    on_open: Option<SockCallback>,
    on_close: Option<CloseCallback>,
    on_heartbeat: Option<HeartbeatCallback>,
    #[cfg(feature = "tls")]
    tls: Option<crate::transport::tls::TlsClientConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            handlers: None,
            limits: Limits::default(),
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            auto_retry: 5,
            handshake_timeout: Duration::from_secs(10),
            on_open: None,
            on_close: None,
            on_heartbeat: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("handlers", &self.handlers)
            .field("limits", &self.limits)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("auto_retry", &self.auto_retry)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults: process-wide default handlers, [`Limits::default`], heartbeats every 20 s,
    /// up to 5 automatic retries, 10 s handshake timeout.
    pub fn new() -> Config {
        Config::default()
    }

    /// Handlers for requests and notifications from the peer. Without this, a snapshot of the
    /// process-wide [`default_handlers`] is taken when the connection opens.
    pub fn handlers(mut self, h: impl Into<Arc<Handlers>>) -> Config {
        self.handlers = Some(h.into());
        self
    }

    /// Resource limits (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Config {
        self.limits = limits;
        self
    }

    /// Send a heartbeat this often (the first one right after the handshake); `None` disables
    /// automatic heartbeats.
    pub fn heartbeat_interval(mut self, every: Option<Duration>) -> Config {
        self.heartbeat_interval = every.filter(|d| !d.is_zero());
        self
    }

    /// How many times a request answered with RetryResult is sent again (after the wait the
    /// peer asked for) before [`Error::Retry`] is returned. 0 disables automatic retries.
    pub fn auto_retry(mut self, max_retries: u32) -> Config {
        self.auto_retry = max_retries;
        self
    }

    /// Longest wait for the peer's protocol version when the connection opens.
    pub fn handshake_timeout(mut self, t: Duration) -> Config {
        self.handshake_timeout = t;
        self
    }

    /// Called once the handshake is done, before any message from the peer is handled.
    pub fn on_open(mut self, f: impl Fn(&Sock) + Send + Sync + 'static) -> Config {
        self.on_open = Some(Arc::new(f));
        self
    }

    /// Called once when the connection closes, with the reason (see
    /// [`CloseReason::protocol_error_code`]).
    pub fn on_close(mut self, f: impl Fn(&Sock, &CloseReason) + Send + Sync + 'static) -> Config {
        self.on_close = Some(Arc::new(f));
        self
    }

    /// Called for every heartbeat received, with the peer's load and time.
    pub fn on_heartbeat(
        mut self,
        f: impl Fn(&Sock, u16, SystemTime) + Send + Sync + 'static,
    ) -> Config {
        self.on_heartbeat = Some(Arc::new(f));
        self
    }

    /// The limits in force.
    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }

    /// TLS settings for connecting to `tls://` addresses (see [`crate::transport::tls`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::transport::tls::TlsClientConfig) -> Config {
        self.tls = Some(tls);
        self
    }

    /// The TLS settings for `tls://` addresses, if set.
    #[cfg(feature = "tls")]
    pub fn get_tls(&self) -> Option<&crate::transport::tls::TlsClientConfig> {
        self.tls.as_ref()
    }

    /// The handshake timeout in force.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    pub(crate) fn on_open_callback(&self) -> Option<SockCallback> {
        self.on_open.clone()
    }

    pub(crate) fn on_close_callback(&self) -> Option<CloseCallback> {
        self.on_close.clone()
    }
}

/// A notification encoded once, to be sent on many connections (a broadcast) without being
/// encoded again for each: every connection writes the same header and payload bytes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> gotalk::Result<()> {
/// let (a, _b) = gotalk::pipe().await?;
/// let n = gotalk::Notification::json("chat/message", &"hello")?;
/// a.try_notify(&n)?; // fails at once, instead of waiting, if `a`'s peer does not read
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Notification {
    header: Bytes,
    payload: Bytes,
    name_len: usize,
}

impl Notification {
    /// Notification `name` with a raw payload.
    pub fn new(name: &str, payload: impl Into<Bytes>) -> Result<Notification> {
        let payload = payload.into();
        check_payload_len(payload.len())?;
        let msg = Message::Notification {
            name: Name::new(name)?,
            payload,
        };
        let mut header = BytesMut::with_capacity(msg.header_len());
        msg.encode_header(&mut header);
        let Message::Notification { payload, .. } = msg else {
            unreachable!("built above")
        };
        Ok(Notification {
            header: header.freeze(),
            payload,
            name_len: name.len(),
        })
    }

    /// Notification `name` with `value` encoded as JSON.
    pub fn json<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Notification> {
        Notification::new(name, serde_json::to_vec(value)?)
    }

    /// The notification's name.
    pub fn name(&self) -> &str {
        // The header is `n`, a 3-digit name length, then the name (valid UTF-8: it came from a
        // `&str`).
        std::str::from_utf8(&self.header[4..4 + self.name_len]).unwrap_or_default()
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Bytes the notification takes on the wire.
    pub fn wire_len(&self) -> usize {
        self.header.len() + self.payload.len()
    }
}

/// Refuses a payload whose size cannot be written in a message header.
fn check_payload_len(len: usize) -> Result<()> {
    if u32::try_from(len).is_err() {
        return Err(Error::PayloadTooLarge {
            size: len,
            limit: u32::MAX as usize,
        });
    }
    Ok(())
}

/// What the writer does when the connection closes.
#[derive(Debug, Clone, Default)]
struct Closing {
    /// A last message to send (a protocol error) after what is already queued.
    last: Option<Message>,
}

/// What senders, the reader and the writer share, under one lock: our requests waiting for
/// results, and the bytes waiting to be written. One lock, so that a request is registered
/// and queued in one step, and the answers and results of one read are handed over in one.
struct Shared {
    pending: Pending,
    out: Outbox,
}

/// The write half of the transport. Only whoever the outbox names as writing uses it, so the
/// lock is never contended; it is held only while polling, never across an await.
type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

struct Inner {
    shared: parking_lot::Mutex<Shared>,
    io: parking_lot::Mutex<WriteHalf>,
    closing: watch::Sender<Option<Closing>>,
    /// Set once the writer has flushed and shut the transport down.
    finished: watch::Sender<bool>,
    handlers: Arc<Handlers>,
    limits: Limits,
    counters: Counters,
    heartbeat_load: AtomicU16,
    auto_retry: u32,
    peer_addr: Option<String>,
    /// What the transport knows beyond the address (e.g. a WebSocket's HTTP request).
    transport_info: Option<Arc<dyn Any + Send + Sync>>,
    user_data: Mutex<Option<Arc<dyn Any + Send + Sync>>>,
    /// Held until the connection is fully closed (a server's connection-count permit, a
    /// room hub's membership).
    guard: Mutex<Vec<Box<dyn Any + Send>>>,
    on_open: Option<SockCallback>,
    on_close: Option<CloseCallback>,
    on_heartbeat: Option<HeartbeatCallback>,
}

/// One gotalk connection. Both ends are equal: each can send requests and notifications, and
/// each answers the other's requests with its [`Handlers`].
///
/// `Sock` is a cheap handle (an `Arc`): clone it freely to use it from several tasks. Any number
/// of requests may be in flight at once. The connection stays open until [`Sock::close`] is
/// called, the peer closes it, or an error ends it; then every request still waiting fails with
/// [`Error::Closed`].
#[derive(Clone)]
pub struct Sock {
    inner: Arc<Inner>,
}

impl fmt::Debug for Sock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sock")
            .field("peer_addr", &self.inner.peer_addr)
            .field("closed", &self.close_reason())
            .finish()
    }
}

impl Sock {
    /// Takes over a connected byte stream (TCP, Unix, TLS, an in-memory pipe, anything
    /// `AsyncRead + AsyncWrite`), performs the version handshake and starts serving it.
    pub async fn adopt<T>(io: T, config: &Config, peer_addr: Option<String>) -> Result<Sock>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        Sock::adopt_split(r, w, config, peer_addr).await
    }

    /// Like [`Sock::adopt`], for a transport already split into read and write halves.
    pub async fn adopt_split<R, W>(
        reader: R,
        writer: W,
        config: &Config,
        peer_addr: Option<String>,
    ) -> Result<Sock>
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        Sock::adopt_split_with_info(reader, writer, config, peer_addr, None).await
    }

    /// Like [`Sock::adopt_split`], also keeping what the transport knows about the connection
    /// for [`Sock::transport_info`] (set before any callback or handler runs).
    pub(crate) async fn adopt_split_with_info<R, W>(
        reader: R,
        writer: W,
        config: &Config,
        peer_addr: Option<String>,
        transport_info: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Result<Sock>
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let limits = config.limits.clone();
        let (closing_tx, closing_rx) = watch::channel(None);
        // Our protocol version goes first, whoever writes first.
        let mut out = Outbox::new(limits.get_write_queue());
        let mut version = BytesMut::with_capacity(2);
        encode_version(&mut version, PROTOCOL_VERSION);
        out.batch().push_raw(&version);
        let _ = out.queued(false);
        let sock = Sock {
            inner: Arc::new(Inner {
                shared: parking_lot::Mutex::new(Shared {
                    pending: Pending::default(),
                    out,
                }),
                io: parking_lot::Mutex::new(Box::pin(writer)),
                closing: closing_tx,
                finished: watch::channel(false).0,
                handlers: config.handlers.clone().unwrap_or_else(default_handlers),
                limits,
                counters: Counters::default(),
                heartbeat_load: AtomicU16::new(0),
                auto_retry: config.auto_retry,
                peer_addr,
                transport_info,
                user_data: Mutex::new(None),
                guard: Mutex::new(Vec::new()),
                on_open: config.on_open.clone(),
                on_close: config.on_close.clone(),
                on_heartbeat: config.on_heartbeat.clone(),
            }),
        };
        let (hs_tx, hs_rx) = oneshot::channel();
        tokio::spawn(contained(
            sock.clone(),
            writer_task(sock.clone(), closing_rx.clone(), config.heartbeat_interval),
        ));
        tokio::spawn(contained(
            sock.clone(),
            reader_task(sock.clone(), Box::pin(reader), closing_rx, hs_tx),
        ));
        match tokio::time::timeout(config.handshake_timeout, hs_rx).await {
            Ok(Ok(Ok(()))) => Ok(sock),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Closed(
                sock.close_reason().unwrap_or(CloseReason::PeerClosed),
            )),
            Err(_) => {
                sock.shutdown(
                    CloseReason::Protocol {
                        code: ProtocolErrorCode::TIMEOUT,
                        by: Side::Local,
                        detail: "no protocol version received".into(),
                    },
                    Some(Message::ProtocolError {
                        code: ProtocolErrorCode::TIMEOUT,
                    }),
                );
                Err(Error::Timeout("handshake"))
            }
        }
    }

    // ---- requests -------------------------------------------------------------------------

    /// Sends request `op` with `input` encoded as JSON and decodes the JSON result.
    pub async fn request<I, O>(&self, op: &str, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let payload = serde_json::to_vec(input)?;
        let out = self.buffer_request(op, payload).await?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Sends request `op` with a raw payload and returns the raw result.
    ///
    /// A RetryResult is retried automatically after the wait the peer asked for, up to the
    /// configured number of times ([`Config::auto_retry`]).
    pub async fn buffer_request(&self, op: &str, payload: impl Into<Bytes>) -> Result<Bytes> {
        let payload = payload.into();
        if op.len() > MAX_NAME_LEN {
            return Err(NameTooLong(op.len()).into());
        }
        let mut retries = 0;
        loop {
            let reply = Call {
                sock: self,
                op,
                payload: &payload,
                id: None,
            }
            .await;
            match reply {
                Ok(Reply::Result(b)) => return Ok(b),
                Ok(Reply::Error(text)) => {
                    return Err(Error::Remote(String::from_utf8_lossy(&text).into_owned()))
                }
                Ok(Reply::Retry(wait_ms, text)) => {
                    let wait = Duration::from_millis(u64::from(wait_ms));
                    if retries >= self.inner.auto_retry {
                        return Err(Error::Retry {
                            wait,
                            message: String::from_utf8_lossy(&text).into_owned(),
                        });
                    }
                    retries += 1;
                    tracing::debug!(op = %op, ?wait, retries, "retrying request");
                    tokio::time::sleep(wait).await;
                }
                Ok(Reply::UnexpectedStream) => return Err(Error::UnexpectedStream),
                Ok(Reply::TooLarge(size)) => {
                    return Err(Error::PayloadTooLarge {
                        size: size as usize,
                        limit: self.inner.limits.get_max_payload() as usize,
                    })
                }
                Err(reason) => return Err(Error::Closed(reason)),
            }
        }
    }

    /// Starts streaming request `op`. Write request parts with the returned [`StreamSender`]
    /// (the first write sends the request itself) and end it with [`StreamSender::end`]; read
    /// result parts from the [`StreamReceiver`]. An ErrorResult or RetryResult arrives as an
    /// error from [`StreamReceiver::recv`].
    pub async fn stream_request(&self, op: &str) -> Result<(StreamSender, StreamReceiver)> {
        let op = Name::new(op)?;
        let (tx, rx) = mpsc::channel(self.inner.limits.get_stream_queue());
        let id = self.register(Waiter::Stream(tx))?;
        Ok((
            StreamSender::request(self.clone(), id, op),
            StreamReceiver::for_request(rx, self.clone(), id),
        ))
    }

    /// Sends notification `name` with `value` encoded as JSON.
    pub async fn notify<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.buffer_notify(name, serde_json::to_vec(value)?).await
    }

    /// Sends notification `name` with a raw payload.
    pub async fn buffer_notify(&self, name: &str, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Notification {
            name: Name::new(name)?,
            payload: payload.into(),
        })
        .await
    }

    /// Queues notification `n` (encoded once, see [`Notification`]) without waiting: fails with
    /// [`Error::Full`] at once when the connection's write buffer is full, so that one slow
    /// peer cannot hold up a sender that notifies many connections.
    pub fn try_notify(&self, n: &Notification) -> Result<()> {
        let mut guard = self.shared();
        let s = &mut *guard;
        if let Some(r) = s.pending.closed() {
            return Err(Error::Closed(r.clone()));
        }
        if !s.out.has_room() {
            return Err(Error::Full);
        }
        s.out.batch().push_encoded(&n.header, &n.payload);
        // Left to the writer task, never written here: a broadcast to thousands of connections
        // would make one syscall per member in a row on the sender's thread, where the writer
        // tasks spread them over every core and gather the notifications that arrive meanwhile.
        let next = s.out.queued(false);
        drop(guard);
        self.carry_out(next);
        Ok(())
    }

    /// Sends notification `n` (encoded once, see [`Notification`]), waiting for room in the
    /// write buffer like [`Sock::buffer_notify`].
    pub async fn send_notification(&self, n: &Notification) -> Result<()> {
        self.queue(false, |b| b.push_encoded(&n.header, &n.payload))
            .await
    }

    /// Sends a heartbeat now with the given load (0 = idle, 0xffff = saturated).
    pub async fn send_heartbeat(&self, load: u16) -> Result<()> {
        self.send(heartbeat(load)).await
    }

    /// The load reported by automatic heartbeats from now on.
    pub fn set_heartbeat_load(&self, load: u16) {
        self.inner.heartbeat_load.store(load, Ordering::Relaxed);
    }

    // ---- state ----------------------------------------------------------------------------

    /// Closes the connection: messages already queued are still written, every request still
    /// waiting fails with [`Error::Closed`]. Closing twice is a no-op.
    pub fn close(&self) {
        self.shutdown(CloseReason::Local, None);
    }

    /// Closes the connection because of a protocol error: sends `f` with `code`, then closes.
    pub fn close_with_error(&self, code: ProtocolErrorCode) {
        self.shutdown(
            CloseReason::Protocol {
                code,
                by: Side::Local,
                detail: String::new(),
            },
            Some(Message::ProtocolError { code }),
        );
    }

    /// Waits until the connection is closed and everything queued has been written (or the
    /// write failed), then returns why it closed.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner.closing.subscribe();
        let _ = rx.wait_for(|c| c.is_some()).await;
        let mut rx = self.inner.finished.subscribe();
        let _ = rx.wait_for(|done| *done).await;
        self.close_reason().unwrap_or(CloseReason::Local)
    }

    /// Why the connection closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared().pending.closed().cloned()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.shared().pending.closed().is_some()
    }

    /// The peer's address as the transport reported it, if any.
    pub fn peer_addr(&self) -> Option<&str> {
        self.inner.peer_addr.as_deref()
    }

    /// What the transport recorded about this connection, if it is a `T` (for a WebSocket
    /// accepted by an endpoint: a `ws::WsRequest`, also reachable as `Sock::ws_request`).
    pub fn transport_info<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.transport_info.as_deref()?.downcast_ref::<T>()
    }

    /// Attaches application data to this connection (replacing any earlier value).
    pub fn set_user_data<T: Any + Send + Sync>(&self, value: T) {
        *self
            .inner
            .user_data
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(value));
    }

    /// The application data attached with [`Sock::set_user_data`], if it is a `T`.
    pub fn user_data<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let data = self
            .inner
            .user_data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        data.downcast::<T>().ok()
    }

    /// The handlers serving the peer's requests on this connection.
    pub fn handlers(&self) -> &Arc<Handlers> {
        &self.inner.handlers
    }

    /// The limits in force on this connection.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Requests from the peer being handled right now.
    pub fn requests_in_progress(&self) -> u32 {
        self.inner.counters.in_progress()
    }

    /// Our requests waiting for a result.
    pub fn requests_pending(&self) -> usize {
        self.shared().pending.len()
    }

    /// An identifier for this connection, unique among open connections of the process.
    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Keeps `value` alive until the connection has fully closed (drops it at once if it has).
    pub(crate) fn hold_until_closed(&self, value: Box<dyn Any + Send>) {
        let mut held = self.inner.guard.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock the writer takes after setting `finished`, so that a value
        // is either dropped here or taken by the writer, never left behind.
        if *self.inner.finished.borrow() {
            drop(held);
            drop(value);
            return;
        }
        held.push(value);
    }

    /// Marks the connection fully closed and lets go of what was held until then.
    fn finish(&self) {
        self.inner.finished.send_replace(true);
        let held = std::mem::take(&mut *self.inner.guard.lock().unwrap_or_else(|e| e.into_inner()));
        // Dropped outside the lock: a value's drop may reach back into this connection.
        drop(held);
    }

    /// Whether two handles refer to the same connection.
    pub fn same_as(&self, other: &Sock) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    // ---- internals ------------------------------------------------------------------------

    fn shared(&self) -> parking_lot::MutexGuard<'_, Shared> {
        self.inner.shared.lock()
    }

    fn io(&self) -> parking_lot::MutexGuard<'_, WriteHalf> {
        self.inner.io.lock()
    }

    /// Drops our request `id` from the pending table (its results will be ignored).
    pub(crate) fn forget_request(&self, id: RequestId) {
        self.shared().pending.remove(id);
    }

    fn register(&self, waiter: Waiter) -> Result<RequestId> {
        self.shared().pending.insert(waiter).map_err(Error::Closed)
    }

    /// Queues a message for the writer, waiting while the outbox is full.
    pub(crate) async fn send(&self, msg: Message) -> Result<()> {
        self.queue(false, |b| b.push(&msg)).await
    }

    /// Waits for room in the outbox, then encodes a message with `encode` (under the lock) and
    /// sees it on its way: written right here if `direct` and nobody else is writing, else by
    /// the writer task. Fails, without calling `encode`, once the connection has closed.
    async fn queue(&self, direct: bool, encode: impl FnOnce(&mut Batch)) -> Result<()> {
        let mut encode = Some(encode);
        poll_fn(|cx| {
            let mut guard = self.shared();
            let s = &mut *guard;
            if let Some(r) = s.pending.closed() {
                return Poll::Ready(Err(Error::Closed(r.clone())));
            }
            if !s.out.poll_room(cx.waker()) {
                return Poll::Pending;
            }
            if let Some(encode) = encode.take() {
                encode(s.out.batch());
            }
            let next = s.out.queued(direct);
            drop(guard);
            self.carry_out(next);
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues the answers of request handlers, giving their `slots` request slots back just
    /// before (or when the connection turns out to be closed).
    ///
    /// The slots are held until the outbox has room: a peer that does not read its results
    /// must not be able to make finished handlers pile up, each holding its result, beyond the
    /// request limit. They are given back before the answers are queued, so a requestor that
    /// sends its next request as soon as it has a result is not turned away.
    async fn answer(
        &self,
        direct: bool,
        slots: u32,
        stream: bool,
        encode: impl FnOnce(&mut Batch),
    ) {
        let counters = &self.inner.counters;
        let release = || (0..slots).for_each(|_| counters.release(stream));
        let queued = self
            .queue(direct, |b| {
                release();
                encode(b);
            })
            .await;
        if queued.is_err() {
            release();
        }
    }

    /// Queues a request handler's final answer (if any), giving its request slot back.
    async fn answer_and_release(&self, msg: Option<Message>, stream: bool) {
        match msg {
            // A lone handler's answer is written right away; answers of several handlers
            // finishing together are gathered by the writer task.
            Some(msg) => {
                let lone = self.inner.counters.in_progress() <= 1;
                self.answer(lone, 1, stream, |b| b.push(&msg)).await;
            }
            None => self.inner.counters.release(stream),
        }
    }

    /// Does what the outbox asked of a sender after it queued.
    fn carry_out(&self, next: Next) {
        match next {
            Next::Nothing => {}
            Next::Wake(w) => w.wake(),
            Next::Write(batch) => self.write_now(batch),
        }
    }

    /// Writes `batch` without waiting (the outbox made us its writer); whatever the transport
    /// does not take at once is handed to the writer task, which waits for the peer.
    fn write_now(&self, mut batch: Batch) {
        // A transport that panics must not leave the writing claimed by nobody alive (the
        // caller may be any task): it counts as a failed write.
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut io = self.io();
            let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
            poll_write_batch(io.as_mut(), &mut cx, &mut batch)
        }))
        .unwrap_or_else(|panic| {
            let text = panic_message(&panic);
            Poll::Ready(Err(std::io::Error::other(format!(
                "transport panicked: {text}"
            ))))
        });
        let (how, failed) = match res {
            Poll::Ready(Ok(())) => (Written::Done, None),
            Poll::Pending => (Written::Partly, None),
            Poll::Ready(Err(e)) => (Written::Failed, Some(e)),
        };
        let writer = self.shared().out.written(batch, how);
        if let Some(w) = writer {
            w.wake();
        }
        if let Some(e) = failed {
            self.shutdown(CloseReason::Io(e.to_string()), None);
        }
    }

    /// Ends the connection: records `reason` (the first reason wins), fails every pending
    /// request, and tells the reader and writer to stop (the writer sends `last` first).
    pub(crate) fn shutdown(&self, reason: CloseReason, last: Option<Message>) {
        let (requests, streams, senders) = {
            let mut s = self.shared();
            let Some((requests, streams)) = s.pending.close(reason.clone()) else {
                return;
            };
            (requests, streams, s.out.take_room_waiters(true))
        };
        requests.into_iter().chain(senders).for_each(Waker::wake);
        for tx in &streams {
            fail_stream(tx, &reason);
        }
        tracing::debug!(peer = ?self.inner.peer_addr, %reason, "connection closing");
        self.inner.closing.send_replace(Some(Closing { last }));
        if let Some(cb) = &self.inner.on_close {
            cb(self, &reason);
        }
    }
}

/// One single-result request on its way: registered and queued in one step when first polled,
/// then waiting in the pending table until the reader stores its reply there. Dropped early
/// (say, by a caller's timeout), it takes its entry out of the table.
struct Call<'a> {
    sock: &'a Sock,
    op: &'a str,
    payload: &'a Bytes,
    /// Set once the request is queued.
    id: Option<RequestId>,
}

impl Future for Call<'_> {
    type Output = std::result::Result<Reply, CloseReason>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut guard = this.sock.shared();
        let s = &mut *guard;
        if let Some(id) = this.id {
            return match s.pending.poll_single(id, cx.waker()) {
                Some(reply) => {
                    this.id = None;
                    Poll::Ready(reply)
                }
                None => Poll::Pending,
            };
        }
        if let Some(r) = s.pending.closed() {
            return Poll::Ready(Err(r.clone()));
        }
        if !s.out.poll_room(cx.waker()) {
            return Poll::Pending;
        }
        let id = match s.pending.insert(Waiter::single(cx.waker())) {
            Ok(id) => id,
            Err(r) => return Poll::Ready(Err(r)),
        };
        s.out
            .batch()
            .push_request(MsgType::SingleRequest, id, this.op, this.payload);
        // A lone request is written right away; with others in flight, the writer task
        // gathers them into one write.
        let lone = s.pending.len() == 1;
        let next = s.out.queued(lone);
        drop(guard);
        this.id = Some(id);
        this.sock.carry_out(next);
        Poll::Pending
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.sock.shared().pending.remove(id);
        }
    }
}

/// Runs one of a connection's tasks so that a panic in it (say, in a user callback run by the
/// reader) closes that connection with a reason instead of leaving its requests waiting.
///
/// Not an `async fn`: one would keep `task` both as its argument and as the future it awaits,
/// doubling the memory every connection holds.
fn contained(
    sock: Sock,
    task: impl std::future::Future<Output = ()>,
) -> impl std::future::Future<Output = ()> {
    AssertUnwindSafe(task).catch_unwind().map(move |res| {
        if let Err(panic) = res {
            task_panicked(&sock, panic);
        }
    })
}

fn task_panicked(sock: &Sock, panic: Box<dyn Any + Send>) {
    let text = panic_message(&panic);
    tracing::error!("connection task panicked: {text}");
    sock.shutdown(
        CloseReason::Protocol {
            code: ProtocolErrorCode::ABNORMAL,
            by: Side::Local,
            detail: format!("internal error: {text}"),
        },
        Some(Message::ProtocolError {
            code: ProtocolErrorCode::ABNORMAL,
        }),
    );
    sock.finish();
}

fn heartbeat(load: u16) -> Message {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    Message::Heartbeat { load, time }
}

// ---- the reader ---------------------------------------------------------------------------

/// Initial read buffer size, and the least free space to offer each read.
const READ_CHUNK: usize = 4096;

/// Most the reader reserves ahead of bytes that have not arrived yet.
const RESERVE_MAX: usize = 1 << 20;

/// Why the reader stopped.
enum Stop {
    /// The connection is already closing (reason recorded elsewhere).
    Closing,
    /// Close with this reason (and maybe send this protocol error).
    Close(CloseReason, Option<Message>),
}

async fn reader_task<R>(
    sock: Sock,
    mut r: std::pin::Pin<Box<R>>,
    mut closing: watch::Receiver<Option<Closing>>,
    handshake: oneshot::Sender<Result<()>>,
) where
    R: AsyncRead + Send + ?Sized,
{
    let limits = sock.inner.limits.clone();
    let mut reader = Reader {
        sock: sock.clone(),
        answers: Vec::new(),
        held: 0,
        replies: Vec::new(),
        wake: Vec::new(),
        spares: Spares::default(),
        decoder: Decoder::new(limits.get_max_payload()),
        streams: IncomingStreams::default(),
        handshake: Some(handshake),
        bad_version: None,
    };
    let mut buf = BytesMut::new();
    let read_timeout = limits.get_read_timeout();
    let mut last_message = Instant::now();
    let far = Duration::from_secs(86400 * 365);
    let timer = tokio::time::sleep(read_timeout.unwrap_or(far));
    tokio::pin!(timer);

    let stop = 'outer: loop {
        // Handle every whole message already buffered before reading again.
        let mut got = false;
        let stop = loop {
            match reader.decoder.decode(&mut buf) {
                Ok(Some(d)) => {
                    got = true;
                    if let Err(stop) = reader.handle(d).await {
                        break Some(stop);
                    }
                    if reader.answers.len() >= BATCH {
                        reader.flush_answers().await;
                    }
                    if reader.replies.len() >= BATCH {
                        reader.flush_replies().await;
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(reader.decode_error(e)),
            }
        };
        reader.flush_replies().await;
        reader.flush_answers().await;
        if let Some(stop) = stop {
            break 'outer stop;
        }
        if got {
            last_message = Instant::now();
        }
        if buf.is_empty() {
            // A large buffer, consumed: keep it for reuse rather than hand it back.
            reader.spares.consumed(&mut buf);
            if buf.capacity() > 4 * READ_CHUNK {
                // Release any other large buffer once consumed; idle connections hold little.
                buf = BytesMut::new();
            }
        }
        // Reserve for the rest of an announced payload, but not more than RESERVE_MAX up front:
        // a peer announcing (and never sending) large payloads must not make us commit memory.
        let needed = reader.decoder.needed(&buf);
        let want = needed.clamp(READ_CHUNK, RESERVE_MAX);
        // A large message is read up to its end and no further: bytes of the next one read
        // into its buffer would have to be copied out into the next message's own buffer.
        let until = if needed >= SPARE_MIN {
            needed
        } else {
            usize::MAX
        };
        if !buf.is_empty() && buf.capacity() - buf.len() < READ_CHUNK {
            reader.spares.reserve(&mut buf, want);
        }
        tokio::select! {
            biased;
            _ = closing.changed() => break Stop::Closing,
            res = read_more(&mut r, &mut buf, until, &mut reader.spares) => match res {
                Ok(0) => {
                    let reason = if buf.is_empty() && !reader.decoder.is_discarding() {
                        CloseReason::PeerClosed
                    } else {
                        CloseReason::Io(format!(
                            "connection ended in the middle of a message ({} bytes unread)",
                            buf.len()
                        ))
                    };
                    break Stop::Close(reason, None);
                }
                Ok(_) => {}
                Err(e) => break Stop::Close(CloseReason::Io(e.to_string()), None),
            },
            _ = &mut timer, if read_timeout.is_some() => {
                let limit = read_timeout.unwrap_or(far);
                let deadline = last_message + limit;
                if Instant::now() >= deadline {
                    let code = ProtocolErrorCode::TIMEOUT;
                    break Stop::Close(
                        CloseReason::Protocol {
                            code,
                            by: Side::Local,
                            detail: format!("no complete message within {limit:?}"),
                        },
                        Some(Message::ProtocolError { code }),
                    );
                }
                // Re-armed lazily: resetting the timer on every message would cost more.
                timer.as_mut().reset(deadline);
            }
        }
    };
    match stop {
        Stop::Closing => {}
        Stop::Close(reason, last) => sock.shutdown(reason, last),
    }
    let reason = sock.close_reason().unwrap_or(CloseReason::Local);
    reader.streams.fail_all(&reason);
    if let Some(hs) = reader.handshake.take() {
        let _ = hs.send(Err(match reason.protocol_error_code() {
            Some(ProtocolErrorCode::UNSUPPORTED) => match reader.bad_version {
                Some(v) => Error::UnsupportedVersion(v),
                None => Error::Closed(reason),
            },
            _ => Error::Closed(reason),
        }));
    }
}

/// Most bytes an idle connection reads in one go, into a buffer on the stack of the poll
/// (not of the reader's future: nothing is held while it waits).
const IDLE_READ: usize = 16 * 1024;

/// Reads more bytes into `buf`, at most `until` of them (when a partly read message is large).
///
/// With nothing buffered and nothing waiting on the connection, the connection is idle: the
/// buffer is given back and the reader waits holding no buffer at all. When bytes arrive they
/// are read into a buffer on the stack for the length of one poll and copied into a fresh
/// buffer, so a burst of messages is taken in one read however large the old buffer was.
async fn read_more<R>(
    r: &mut std::pin::Pin<Box<R>>,
    buf: &mut BytesMut,
    until: usize,
    spares: &mut Spares,
) -> std::io::Result<usize>
where
    R: AsyncRead + Send + ?Sized,
{
    if !buf.is_empty() {
        return r
            .read_buf(&mut bytes::BufMut::limit(&mut *buf, until))
            .await;
    }
    if buf.capacity() >= READ_CHUNK {
        // `read_buf` reads nothing unless it completes, so trying it once is harmless.
        if let Some(res) = r.read_buf(buf).now_or_never() {
            return res;
        }
    }
    *buf = BytesMut::new();
    // While large messages flow (there are spare buffers), take just enough for a header:
    // the rest of a large message is then read straight into its own buffer, not copied
    // there from this one.
    let most = if spares.is_empty() { IDLE_READ } else { 512 };
    let mut read = std::pin::pin!(poll_fn(|cx| {
        // Not zeroed: the transport only writes into it.
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
        let mut rb = tokio::io::ReadBuf::uninit(&mut stack[..most]);
        std::task::ready!(r.as_mut().poll_read(cx, &mut rb))?;
        let got = rb.filled();
        // Just the bytes that came: whole messages, usually; a partial one makes the reader
        // reserve room for the rest. (A small buffer is also much cheaper to allocate and
        // free than a 4 KiB one.)
        buf.extend_from_slice(got);
        Poll::Ready(Ok(got.len()))
    }));
    if spares.is_empty() {
        return read.await;
    }
    // Large buffers kept for reuse are let go once the connection has been quiet a while.
    let mut quiet = Box::pin(tokio::time::sleep(SPARES_KEPT));
    poll_fn(|cx| {
        if let Poll::Ready(res) = read.as_mut().poll(cx) {
            return Poll::Ready(res);
        }
        if quiet.as_mut().poll(cx).is_ready() {
            spares.clear();
        }
        Poll::Pending
    })
    .await
}

/// Large read buffers kept for reuse.
///
/// A payload is split off the read buffer without copying, so the buffer cannot be reused for
/// the next message while the payload lives: each large message would get a freshly allocated
/// buffer, and the allocator, which may have handed the last one's pages back to the kernel,
/// page-faults them in anew (about a fifth of the pages of every 1 MiB message, when results
/// are dropped on other threads). Buffers for large messages are allocated here instead, and
/// kept once the reader has moved on from them, to be reused as soon as nothing else refers
/// to them. Emptied when the connection has been idle for [`SPARES_KEPT`].
#[derive(Default)]
struct Spares {
    /// Kept buffers (emptied views of their allocations) and their allocation sizes.
    kept: Vec<(BytesMut, usize)>,
    /// Allocation size of the reader's current buffer, if it was allocated here.
    current: usize,
}

/// Most large buffers kept for reuse, and the most bytes they may hold together.
const SPARES: usize = 4;
const SPARE_BYTES: usize = 16 << 20;

/// Messages needing at least this much room get their buffer from [`Spares`]; sizes are
/// rounded up to a multiple of it, so that buffers fit messages of about the same size.
const SPARE_MIN: usize = 64 * 1024;

/// How long an idle connection keeps its spare buffers.
const SPARES_KEPT: Duration = Duration::from_millis(250);

impl Spares {
    /// The reader has consumed all of `buf`: keep its allocation if it is one of ours.
    fn consumed(&mut self, buf: &mut BytesMut) {
        if self.current > 0 {
            let size = std::mem::take(&mut self.current);
            self.keep(std::mem::take(buf), size);
        }
    }

    fn keep(&mut self, mut old: BytesMut, size: usize) {
        let held: usize = self.kept.iter().map(|(_, n)| n).sum();
        if self.kept.len() < SPARES && held + size <= SPARE_BYTES {
            old.clear();
            self.kept.push((old, size));
        }
    }

    /// Makes room in `buf` for `want` more bytes, reusing a kept buffer if one is free.
    fn reserve(&mut self, buf: &mut BytesMut, want: usize) {
        if buf.try_reclaim(want) {
            return;
        }
        let need = buf.len() + want;
        if need < SPARE_MIN {
            buf.reserve(want);
            self.current = 0;
            return;
        }
        let free = self
            .kept
            .iter_mut()
            .position(|(b, size)| *size >= need && b.try_reclaim(need));
        let (mut next, size) = match free {
            Some(i) => self.kept.swap_remove(i),
            None => {
                // At least double a growing buffer, as `reserve` would: a payload arriving in
                // pieces must not be copied over and over.
                let size = need.max(2 * self.current).next_multiple_of(SPARE_MIN);
                (BytesMut::with_capacity(size), size)
            }
        };
        next.extend_from_slice(buf);
        let old = std::mem::replace(buf, next);
        let old_size = std::mem::replace(&mut self.current, size);
        if old_size > 0 {
            self.keep(old, old_size);
        }
    }

    fn clear(&mut self) {
        self.kept = Vec::new();
    }

    fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

struct Reader {
    sock: Sock,
    /// Large read buffers kept for reuse.
    spares: Spares,
    /// Answers of handlers that finished while the reader ran them, queued after each read.
    answers: Vec<Message>,
    /// Request slots still held by answers in `answers`.
    held: u32,
    /// Results of our single requests from the last read, handed to their tasks together.
    replies: Vec<(RequestId, Reply)>,
    /// The tasks of the requests completed by `replies`, woken once the lock is let go.
    wake: Vec<Waker>,
    decoder: Decoder,
    streams: IncomingStreams,
    handshake: Option<oneshot::Sender<Result<()>>>,
    bad_version: Option<u8>,
}

impl Reader {
    fn decode_error(&mut self, e: DecodeError) -> Stop {
        let code = match e {
            DecodeError::UnsupportedVersion(v) => {
                self.bad_version = Some(v);
                ProtocolErrorCode::UNSUPPORTED
            }
            DecodeError::Invalid { .. } => ProtocolErrorCode::INVALID_MSG,
        };
        invalid(code, e.to_string())
    }

    async fn handle(&mut self, d: Decoded) -> std::result::Result<(), Stop> {
        match d {
            Decoded::Version(_) => {
                if let Some(cb) = &self.sock.inner.on_open {
                    cb(&self.sock);
                }
                if let Some(hs) = self.handshake.take() {
                    let _ = hs.send(Ok(()));
                }
                Ok(())
            }
            // Requests and single results, nearly all of the traffic, are handled here
            // without waiting. Everything else goes through boxed futures: their state (stream
            // handling above all) would otherwise be part of the reader's future, which every
            // connection holds, idle or not.
            Decoded::Message(Message::SingleRequest { id, op, payload }) => {
                if let Some(refusal) = self.start_request(id, op, payload) {
                    let _ = self.sock.send(refusal).await;
                }
                Ok(())
            }
            Decoded::Message(Message::SingleResult { id, payload }) => {
                self.replies.push((id, Reply::Result(payload)));
                Ok(())
            }
            // Results gathered so far are handed over first, to keep the order of the wire.
            Decoded::Message(m) => {
                self.flush_replies().await;
                Box::pin(self.handle_message(m)).await
            }
            Decoded::Oversized(o) => {
                self.flush_replies().await;
                Box::pin(self.handle_oversized(o)).await
            }
        }
    }

    async fn handle_message(&mut self, m: Message) -> std::result::Result<(), Stop> {
        let sock = &self.sock;
        match m {
            Message::SingleRequest { id, op, payload } => {
                if let Some(refusal) = self.start_request(id, op, payload) {
                    let _ = self.sock.send(refusal).await;
                }
            }
            Message::StreamRequest { id, op, payload } => {
                self.start_stream(id, op, payload).await?;
            }
            Message::StreamRequestPart { id, payload } => {
                let last = payload.is_empty();
                match self.streams.route(id, last) {
                    PartTarget::Open(tx) => {
                        if tx.send(Ok(payload)).await.is_err() && !last {
                            // The handler finished early; drop the rest of its input.
                            self.streams.ignore(id);
                        }
                    }
                    PartTarget::Ignore => {}
                    PartTarget::Unknown => {
                        return Err(invalid(
                            ProtocolErrorCode::INVALID_MSG,
                            format!("stream part for request {id} which is not a stream request"),
                        ))
                    }
                }
            }
            Message::SingleResult { id, payload } => {
                self.deliver(id, Reply::Result(payload)).await;
            }
            Message::StreamResult { id, payload } => {
                let target = {
                    let mut s = sock.shared();
                    let p = &mut s.pending;
                    if !p.is_stream(id) {
                        None
                    } else if payload.is_empty() {
                        match p.remove(id) {
                            Some(Waiter::Stream(tx)) => Some(Some(tx)),
                            _ => Some(None),
                        }
                    } else {
                        Some(p.stream_sender(id))
                    }
                };
                let Some(target) = target else {
                    // `S` for a single-result request (if it is one of ours).
                    self.deliver(id, Reply::UnexpectedStream).await;
                    return Ok(());
                };
                if let Some(tx) = target {
                    // An empty part is the end marker for the receiver.
                    let _ = tx.send(Ok(payload)).await;
                }
            }
            Message::ErrorResult { id, payload } => {
                self.deliver(id, Reply::Error(payload)).await;
            }
            Message::RetryResult {
                id,
                wait_ms,
                payload,
            } => {
                self.deliver(id, Reply::Retry(wait_ms, payload)).await;
            }
            Message::Notification { name, payload } => {
                if let Some(h) = sock.inner.handlers.find_notification(&name) {
                    let h = h.clone();
                    let run =
                        std::panic::catch_unwind(AssertUnwindSafe(|| h(sock, &name, payload)));
                    if run.is_err() {
                        tracing::error!(name = %name, "notification handler panicked");
                    }
                } else {
                    tracing::debug!(name = %name, "notification without handler dropped");
                }
            }
            Message::Heartbeat { load, time } => {
                if let Some(cb) = &sock.inner.on_heartbeat {
                    cb(
                        sock,
                        load,
                        UNIX_EPOCH + Duration::from_secs(u64::from(time)),
                    );
                }
            }
            Message::ProtocolError { code } => {
                return Err(Stop::Close(
                    CloseReason::Protocol {
                        code,
                        by: Side::Remote,
                        detail: String::new(),
                    },
                    None,
                ));
            }
        }
        Ok(())
    }

    /// Completes one of our requests with a single reply (`R`, `E`, `e`, or an oversize).
    async fn deliver(&mut self, id: RequestId, reply: Reply) {
        self.replies.push((id, reply));
        self.flush_replies().await;
    }

    /// Hands the replies gathered from the last read to the requests waiting for them, under
    /// one lock, and wakes their tasks after letting go of it.
    async fn flush_replies(&mut self) {
        if self.replies.is_empty() {
            return;
        }
        let mut streams = Vec::new();
        {
            let mut s = self.sock.shared();
            for (id, reply) in self.replies.drain(..) {
                match s.pending.complete(id, reply) {
                    Completed::Single(w) => self.wake.extend(w),
                    Completed::Stream(tx, reply) => streams.push((tx, reply)),
                    Completed::Unknown => {
                        tracing::debug!(%id, "result for unknown request dropped")
                    }
                }
            }
        }
        self.wake.drain(..).for_each(Waker::wake);
        recycle(&mut self.replies);
        recycle(&mut self.wake);
        for (tx, reply) in streams {
            Box::pin(self.deliver_to_stream(tx, reply)).await;
        }
    }

    /// A single reply to one of our stream requests: the part (if any) then the end, or the
    /// error.
    async fn deliver_to_stream(&self, tx: mpsc::Sender<PartResult>, reply: Reply) {
        let item = match reply {
            Reply::Result(b) => {
                // A single result to a stream request: one part, then the end.
                if !b.is_empty() {
                    let _ = tx.send(Ok(b)).await;
                }
                Ok(Bytes::new())
            }
            Reply::Error(text) => Err(Error::Remote(String::from_utf8_lossy(&text).into_owned())),
            Reply::Retry(wait_ms, text) => Err(Error::Retry {
                wait: Duration::from_millis(u64::from(wait_ms)),
                message: String::from_utf8_lossy(&text).into_owned(),
            }),
            Reply::UnexpectedStream => Err(Error::UnexpectedStream),
            Reply::TooLarge(size) => Err(Error::PayloadTooLarge {
                size: size as usize,
                limit: self.sock.inner.limits.get_max_payload() as usize,
            }),
        };
        let _ = tx.send(item).await;
    }

    /// Starts handling request `id`; its answer joins the answers to this read if the handler
    /// finishes at once. Returns the refusal to send instead if there is no such operation or
    /// the request limit is reached.
    fn start_request(&mut self, id: RequestId, op: Name, payload: Bytes) -> Option<Message> {
        let sock = &self.sock;
        let handler = match sock.inner.handlers.find_request(&op) {
            Some(RequestHandler::Buffer(h)) => h.clone(),
            _ => return Some(error_result(id, unknown_op(&op))),
        };
        match sock.inner.counters.admit(&sock.inner.limits, false) {
            Admit::Yes => {}
            _ => return Some(retry_result(sock, id)),
        }
        // Run the handler here until it first has to wait. Most handlers (an echo, a lookup)
        // finish right away: their answer then joins the other answers to this read, with no
        // task spawned and no wake-up of the writer per request. A handler that waits goes on
        // in a task of its own (it re-registers its waker when that task polls it).
        let first = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut fut = handler(sock.clone(), op.clone(), payload);
            let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(res) => Ok(res),
                std::task::Poll::Pending => Err(fut),
            }
        }));
        let res = match first {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(fut)) => {
                let sock = sock.clone();
                tokio::spawn(async move {
                    let res = AssertUnwindSafe(fut).catch_unwind().await;
                    let msg = request_answer(id, &op, res);
                    sock.answer_and_release(Some(msg), false).await;
                });
                return None;
            }
            Err(panic) => Err(panic),
        };
        // The answer keeps its request slot until it is queued (see `flush_answers`): a burst
        // of requests in one read must not pile up more answers than the request limit allows.
        self.held += 1;
        self.answers.push(request_answer(id, &op, res));
        None
    }

    /// Queues the answers collected from the last read, and writes them right away unless
    /// the writer task is busy writing: the reader does what the writer task would, without
    /// the hop to it.
    async fn flush_answers(&mut self) {
        if self.answers.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let answers = &self.answers;
        self.sock
            .answer(true, held, false, |b| {
                answers.iter().for_each(|m| b.push(m))
            })
            .await;
        recycle(&mut self.answers);
    }

    async fn start_stream(
        &mut self,
        id: RequestId,
        op: Name,
        payload: Bytes,
    ) -> std::result::Result<(), Stop> {
        let sock = self.sock.clone();
        if self.streams.is_open(id) {
            return Err(invalid(
                ProtocolErrorCode::INVALID_MSG,
                format!("stream request {id} started twice"),
            ));
        }
        let refuse = |msg: Message| async {
            let _ = sock.send(msg).await;
        };
        let admit = sock.inner.counters.admit(&sock.inner.limits, true);
        if admit == Admit::StreamsDisabled {
            self.streams.ignore(id);
            refuse(error_result(id, "stream requests not supported".into())).await;
            return Ok(());
        }
        let handler = match sock.inner.handlers.find_request(&op) {
            Some(RequestHandler::Stream(h)) => h.clone(),
            _ => {
                if admit == Admit::Yes {
                    sock.inner.counters.release(true);
                }
                self.streams.ignore(id);
                refuse(error_result(id, unknown_op(&op))).await;
                return Ok(());
            }
        };
        if admit == Admit::Retry {
            self.streams.ignore(id);
            refuse(retry_result(&sock, id)).await;
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(sock.inner.limits.get_stream_queue());
        if !payload.is_empty() {
            let _ = tx.try_send(Ok(payload));
        }
        self.streams.open(id, tx);
        let input = StreamReceiver::new(rx, sock.clone());
        let (output, ended) = StreamSender::result(sock.clone(), id);
        tokio::spawn(async move {
            let res = AssertUnwindSafe(handler(sock.clone(), op.clone(), input, output))
                .catch_unwind()
                .await;
            let msg = match res {
                Ok(Ok(())) if ended.swap(true, Ordering::AcqRel) => None,
                Ok(Ok(())) => Some(Message::StreamResult {
                    id,
                    payload: Bytes::new(),
                }),
                Ok(Err(e)) => Some(handler_error(id, e)),
                Err(panic) => {
                    let text = panic_message(&panic);
                    tracing::error!(op = %op, "stream handler panicked: {text}");
                    Some(error_result(id, format!("handler panicked: {text}")))
                }
            };
            sock.answer_and_release(msg, true).await;
        });
        Ok(())
    }

    async fn handle_oversized(&mut self, o: Oversized) -> std::result::Result<(), Stop> {
        let limit = self.sock.inner.limits.get_max_payload();
        let text = format!("payload too large ({} bytes; limit {limit})", o.size);
        let Some(id) = o.id else {
            tracing::warn!(name = ?o.name, size = o.size, "oversized notification dropped");
            return Ok(());
        };
        match o.msg_type {
            MsgType::SingleRequest => {
                let _ = self.sock.send(error_result(id, text)).await;
            }
            MsgType::StreamRequest => {
                if self.streams.is_open(id) {
                    return Err(invalid(
                        ProtocolErrorCode::INVALID_MSG,
                        format!("stream request {id} started twice"),
                    ));
                }
                self.streams.ignore(id);
                let _ = self.sock.send(error_result(id, text)).await;
            }
            MsgType::StreamRequestPart => {
                if let PartTarget::Open(tx) = self.streams.route(id, false) {
                    let _ = tx
                        .send(Err(Error::PayloadTooLarge {
                            size: o.size as usize,
                            limit: limit as usize,
                        }))
                        .await;
                }
                self.streams.ignore(id);
            }
            _ => self.deliver(id, Reply::TooLarge(o.size)).await,
        }
        Ok(())
    }
}

/// Empties a vector the reader reuses after each read, keeping a few places (enough for the
/// one message a quiet connection gets at a time) but no large buffer.
fn recycle<T>(v: &mut Vec<T>) {
    v.clear();
    if v.capacity() > 4 {
        *v = Vec::new();
    }
}

fn invalid(code: ProtocolErrorCode, detail: String) -> Stop {
    Stop::Close(
        CloseReason::Protocol {
            code,
            by: Side::Local,
            detail,
        },
        Some(Message::ProtocolError { code }),
    )
}

fn unknown_op(op: &str) -> String {
    format!("unknown operation \"{op}\"")
}

fn error_result(id: RequestId, text: String) -> Message {
    Message::ErrorResult {
        id,
        payload: Bytes::from(text),
    }
}

fn retry_result(sock: &Sock, id: RequestId) -> Message {
    Message::RetryResult {
        id,
        wait_ms: sock.inner.limits.draw_retry_wait().as_millis() as u32,
        payload: Bytes::from_static(b"request rate limit"),
    }
}

/// The answer to request `id` from its buffer handler's outcome (a result, an error, a panic).
fn request_answer(
    id: RequestId,
    op: &Name,
    res: std::thread::Result<std::result::Result<Bytes, crate::HandlerError>>,
) -> Message {
    match res {
        Ok(Ok(out)) => Message::SingleResult { id, payload: out },
        Ok(Err(e)) => handler_error(id, e),
        Err(panic) => {
            let text = panic_message(&panic);
            tracing::error!(op = %op, "request handler panicked: {text}");
            error_result(id, format!("handler panicked: {text}"))
        }
    }
}

fn handler_error(id: RequestId, e: crate::HandlerError) -> Message {
    match e.retry_wait() {
        Some(wait) => Message::RetryResult {
            id,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
            payload: Bytes::from(e.message().to_owned()),
        },
        None => error_result(id, e.message().to_owned()),
    }
}

fn panic_message(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

// ---- the writer ---------------------------------------------------------------------------

/// Items queued at which the writer task stops waiting for more to join a write.
const BATCH: usize = 256;

async fn writer_task(
    sock: Sock,
    mut closing: watch::Receiver<Option<Closing>>,
    heartbeat_every: Option<Duration>,
) {
    let write_timeout = sock.inner.limits.get_write_timeout();
    // The buffers of the last batch, reused while the connection is busy.
    let mut spare = Batch::default();
    // Whether the last write carried more than one item.
    let mut busy = false;
    let mut heartbeats = heartbeat_every.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        tokio::select! {
            biased;
            (items, pending) = poll_fn(|cx| sock.poll_work(cx)) => {
                if items > 0 && items < BATCH && (items > 1 || busy || pending > 1) {
                    // Under load, let the tasks that are ready to run queue their messages
                    // too, so that they leave in this write rather than in one write each.
                    // (Not when messages come one at a time: that would only add latency.)
                    tokio::task::yield_now().await;
                }
            }
            _ = closing.changed() => break,
            _ = async { heartbeats.as_mut().expect("guarded").tick().await }, if heartbeats.is_some() => {
                let load = sock.inner.heartbeat_load.load(Ordering::Relaxed);
                sock.queue_heartbeat(load);
                continue;
            }
        }
        let Some((items, mut batch)) = sock.take_work(&mut spare, false) else {
            // A sender took the work meanwhile and writes it itself.
            continue;
        };
        busy = items > 1;
        if let Err(e) = write_out(&sock, &mut batch, write_timeout).await {
            sock.shutdown(CloseReason::Io(e.to_string()), None);
            break;
        }
        sock.shared().out.task_done(&mut spare, batch);
    }
    // Closing: once no sender is writing, write what is queued, then the last word.
    let mut last = closing.borrow().as_ref().and_then(|c| c.last.clone());
    let rest = poll_fn(|cx| {
        if sock.shared().out.poll_work(cx.waker(), true) {
            if let Some((_, batch)) = sock.take_work(&mut spare, true) {
                return Poll::Ready(batch);
            }
        }
        Poll::Pending
    });
    if let Ok(mut batch) = tokio::time::timeout(Duration::from_secs(1), rest).await {
        if let Some(m) = last.take() {
            batch.push(&m);
        }
        let _ = write_out(&sock, &mut batch, write_timeout).await;
    }
    let shutdown = poll_fn(|cx| sock.io().as_mut().poll_shutdown(cx));
    let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
    sock.finish();
}

impl Sock {
    /// For the writer task: whether there is work for it (how many items are queued, and how
    /// many of our requests wait for results), else `Pending` until there is.
    fn poll_work(&self, cx: &mut Context<'_>) -> Poll<(usize, usize)> {
        let mut s = self.shared();
        if s.out.poll_work(cx.waker(), false) {
            Poll::Ready((s.out.items(), s.pending.len()))
        } else {
            Poll::Pending
        }
    }

    /// For the writer task: takes the work (and the writing) over, recycling `spare`. With
    /// `closing`, takes whatever there is, even nothing. `None` if a sender is writing, or
    /// (unless closing) if there is nothing to do.
    fn take_work(&self, spare: &mut Batch, closing: bool) -> Option<(usize, Batch)> {
        let (taken, senders) = {
            let mut s = self.shared();
            let items = s.out.items();
            let batch = s.out.take_work(spare, closing)?;
            ((items, batch), s.out.take_room_waiters(false))
        };
        senders.into_iter().for_each(Waker::wake);
        Some(taken)
    }

    /// Queues a heartbeat, full outbox or not: it is the writer task that makes room.
    fn queue_heartbeat(&self, load: u16) {
        let mut s = self.shared();
        if s.pending.closed().is_none() {
            s.out.batch().push(&heartbeat(load));
            // The writer task queues it: nobody to wake or to write for it.
            let _ = s.out.queued(false);
        }
    }
}

/// Writes `batch` (and flushes), failing if the peer does not take it within `timeout`.
async fn write_out(
    sock: &Sock,
    batch: &mut Batch,
    timeout: Option<Duration>,
) -> std::io::Result<()> {
    let io = poll_fn(|cx| poll_write_batch(sock.io().as_mut(), cx, batch));
    match timeout {
        Some(t) => tokio::time::timeout(t, io).await.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("peer did not read for {t:?}"),
            ))
        }),
        None => io.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_read_buffers_are_reused_once_their_payloads_are_gone() {
        let mut spares = Spares::default();
        let mut buf = BytesMut::new();
        let size = 1 << 20;
        // A large message: its buffer comes from the spares, its payload is split off.
        spares.reserve(&mut buf, size);
        let first = buf.as_ptr();
        buf.resize(size, 7);
        let payload = buf.split_to(size).freeze();
        spares.consumed(&mut buf);
        // While the payload lives, the next message gets another buffer.
        spares.reserve(&mut buf, size);
        assert_ne!(buf.as_ptr(), first);
        buf.resize(size, 8);
        let second = buf.split_to(size).freeze();
        spares.consumed(&mut buf);
        // Once it is dropped, its buffer is used again, whole.
        drop(payload);
        spares.reserve(&mut buf, size);
        assert_eq!(buf.as_ptr(), first);
        assert!(buf.capacity() >= size);
        drop(second);
        // Small messages do not use them; an idle connection lets them go.
        assert_eq!(spares.kept.len(), 1);
        spares.clear();
        assert!(spares.is_empty());
    }

    #[test]
    fn a_growing_buffer_at_least_doubles() {
        let mut spares = Spares::default();
        let mut buf = BytesMut::new();
        spares.reserve(&mut buf, SPARE_MIN);
        let mut grows = 0;
        while buf.len() < 16 << 20 {
            let want = (buf.capacity() - buf.len()).max(1);
            buf.resize(buf.len() + want, 0);
            let before = buf.capacity();
            spares.reserve(&mut buf, SPARE_MIN);
            grows += usize::from(buf.capacity() != before);
        }
        assert!(grows <= 10, "{grows} reallocations for 16 MiB");
    }
}
