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

mod buffers;
mod open;
mod reader;
mod requests;
mod writer;

use std::any::Any;
use std::fmt;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{CloseReason, Error, Result, Side};
use crate::frame::{Message, Name, ProtocolErrorCode, RequestId};
use crate::handlers::Handlers;
use crate::limits::{Counters, Limits};
use crate::notification::{check_payload_len, Notification};
use crate::outbox::{poll_write_batch, Batch, Next, Outbox, Written};
use crate::parts::Budget;
use crate::pending::{fail_stream, Pending, Waiter};

/// What the writer does when the connection closes.
#[derive(Debug, Clone, Default)]
pub(super) struct Closing {
    /// A last message to send (a protocol error) after what is already queued.
    pub(super) last: Option<Message>,
}

/// What senders, the reader and the writer share, under one lock: our requests waiting for
/// results, and the bytes waiting to be written. One lock, so that a request is registered
/// and queued in one step, and the answers and results of one read are handed over in one.
pub(super) struct Shared {
    pub(super) pending: Pending,
    pub(super) out: Outbox,
}

/// The write half of the transport. Only whoever the outbox names as writing uses it, so the
/// lock is never contended; it is held only while polling, never across an await.
pub(super) type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

pub(crate) type SockCallback = Arc<dyn Fn(&Sock) + Send + Sync>;
pub(crate) type CloseCallback = Arc<dyn Fn(&Sock, &CloseReason) + Send + Sync>;
pub(crate) type HeartbeatCallback = Arc<dyn Fn(&Sock, u16, SystemTime) + Send + Sync>;
pub(crate) type RetryCallback = Arc<dyn Fn(&Sock, &str, Duration, u32) + Send + Sync>;

/// The user's callbacks (see [`crate::Config`]).
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    /// Not the user's: run when the handshake is done, before `open` (a server registers the
    /// connection and hands it its slot there, so that it is listed before it serves anything).
    pub(crate) internal_open: Option<SockCallback>,
    pub(crate) open: Option<SockCallback>,
    pub(crate) close: Option<CloseCallback>,
    pub(crate) heartbeat: Option<HeartbeatCallback>,
    pub(crate) retry: Option<RetryCallback>,
}

/// `heartbeat_load` while the load is computed from the requests in progress.
const LOAD_AUTO: u32 = u32::MAX;

/// What [`Sock::hold_until_closed`] holds: values until the connection has fully closed (a
/// server's connection slot, a room hub's membership), then nothing ever again (a value handed
/// over late is dropped at once).
pub(super) enum Guard {
    Open(Vec<Box<dyn Any + Send>>),
    Done,
}

pub(super) struct Inner {
    pub(super) shared: parking_lot::Mutex<Shared>,
    pub(super) io: parking_lot::Mutex<WriteHalf>,
    pub(super) closing: watch::Sender<Option<Closing>>,
    /// Set once the writer has flushed and shut the transport down.
    pub(super) finished: watch::Sender<bool>,
    pub(super) handlers: Arc<Handlers>,
    pub(super) limits: Limits,
    pub(super) counters: Counters,
    /// The bytes of stream parts buffered on this connection.
    pub(super) stream_budget: Budget,
    /// The load our heartbeats report, or [`LOAD_AUTO`].
    pub(super) heartbeat_load: AtomicU32,
    pub(super) auto_retry: u32,
    pub(super) max_retry_wait: Duration,
    pub(super) peer_addr: Option<String>,
    /// What the transport knows beyond the address (e.g. a WebSocket's HTTP request).
    pub(super) transport_info: Option<Arc<dyn Any + Send + Sync>>,
    /// Application data, one value per type.
    pub(super) data: parking_lot::Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
    /// Held until the connection is fully closed (e.g. a server's connection slot).
    pub(super) guard: Mutex<Guard>,
    pub(super) callbacks: Callbacks,
    /// When the connection opened: the origin of the times below.
    pub(super) opened: Instant,
    /// The peer's last heartbeat: its load in the top 16 bits, the milliseconds after `opened`
    /// it arrived (plus one; 0: none yet) in the rest.
    pub(super) peer_heartbeat: AtomicU64,
    /// Milliseconds after `opened` of the last message from the peer other than a heartbeat.
    pub(super) last_activity: AtomicU64,
    /// Automatic retries made so far.
    pub(super) retries: AtomicU64,
    /// Results that arrived for requests nobody waited for any more.
    pub(super) late_results: AtomicU64,
}

/// One gotalk connection. Both ends are equal: each can send requests and notifications, and
/// each answers the other's requests with its [`Handlers`].
///
/// `Sock` is a cheap handle (an `Arc`): clone it freely to use it from several tasks. Any number
/// of requests may be in flight at once. The connection stays open until [`Sock::close`] is
/// called, the peer closes it, or an error ends it; then every request still waiting fails with
/// [`Error::Closed`].
///
/// Its methods, by family (each has an example):
/// - **requests**: [`request`](Sock::request) (JSON), [`buffer_request`](Sock::buffer_request)
///   (bytes), [`stream_request`](Sock::stream_request) (parts both ways);
/// - **notifications**: [`notify`](Sock::notify), [`buffer_notify`](Sock::buffer_notify), and
///   for one notification to many connections [`try_notify`](Sock::try_notify);
/// - **the connection's end**: [`close`](Sock::close), [`closing`](Sock::closing),
///   [`closed`](Sock::closed), [`close_reason`](Sock::close_reason);
/// - **what belongs to it**: [`insert_data`](Sock::insert_data) / [`data`](Sock::data),
///   [`peer_addr`](Sock::peer_addr), [`limits`](Sock::limits), heartbeats and load
///   ([`peer_load`](Sock::peer_load), [`set_heartbeat_load`](Sock::set_heartbeat_load)).
///
/// A `Sock` comes from [`connect`](crate::connect), from a [`Server`](crate::Server) (the
/// handlers of each accepted connection get it), from [`pipe`](crate::pipe) (two ends in
/// memory, as in the examples here) or from [`Sock::adopt`].
#[derive(Clone)]
pub struct Sock {
    pub(super) inner: Arc<Inner>,
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
    // ---- requests -------------------------------------------------------------------------

    /// Sends notification `name` with `value` encoded as JSON. Returns once it is queued: a
    /// notification has no answer, and the peer drops one it has no handler for.
    ///
    /// ```
    /// use gotalk::{Config, Handlers};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// let (said, mut heard) = tokio::sync::mpsc::unbounded_channel();
    /// let mut handlers = Handlers::new();
    /// handlers.handle_notification("chat", move |text: String| {
    ///     let _ = said.send(text);
    /// });
    /// let (sock, _peer) =
    ///     gotalk::pipe_with(&Config::new(), &Config::new().handlers(handlers)).await?;
    ///
    /// sock.notify("chat", "hello").await?;
    /// sock.notify("nobody-listens", &42).await?; // dropped by the peer
    /// assert_eq!(heard.recv().await.as_deref(), Some("hello"));
    /// # Ok(()) }
    /// ```
    pub async fn notify<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.buffer_notify(name, serde_json::to_vec(value)?).await
    }

    /// Sends notification `name` with a raw payload.
    pub async fn buffer_notify(&self, name: &str, payload: impl Into<Bytes>) -> Result<()> {
        let payload = payload.into();
        check_payload_len(payload.len())?;
        self.send(Message::Notification {
            name: Name::new(name)?,
            payload,
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

    /// The load reported by automatic heartbeats from now on (`None`: computed from the
    /// requests in progress, the default; see [`Sock::heartbeat_load`]).
    pub fn set_heartbeat_load(&self, load: Option<u16>) {
        let v = load.map_or(LOAD_AUTO, u32::from);
        self.inner.heartbeat_load.store(v, Ordering::Relaxed);
    }

    /// The load our next heartbeat reports: the one set with [`Sock::set_heartbeat_load`], or by
    /// default how busy this side is serving the peer — its requests in progress against
    /// [`Limits::buffer_requests`] (0 idle, 0xffff at the limit; without a limit, the number of
    /// requests in progress).
    pub fn heartbeat_load(&self) -> u16 {
        match self.inner.heartbeat_load.load(Ordering::Relaxed) {
            LOAD_AUTO => {
                let busy = u64::from(self.inner.counters.in_progress());
                let load = match self.inner.limits.buffer_requests {
                    Limits::UNLIMITED => busy,
                    0 => 0xffff,
                    limit => busy * 0xffff / u64::from(limit),
                };
                load.min(0xffff) as u16
            }
            set => set as u16,
        }
    }

    /// The load the peer reported in its last heartbeat, and when it arrived (`None` until a
    /// heartbeat arrives). A pool uses it to send work where the load is lowest.
    pub fn peer_load(&self) -> Option<(u16, Instant)> {
        let v = self.inner.peer_heartbeat.load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let at = (v & 0xffff_ffff_ffff) - 1;
        Some((
            (v >> 48) as u16,
            self.inner.opened + Duration::from_millis(at),
        ))
    }

    /// When the peer last sent a message other than a heartbeat (or, if it has not, when the
    /// connection opened): how long it has been idle.
    pub fn last_activity(&self) -> Instant {
        let ms = self.inner.last_activity.load(Ordering::Relaxed);
        self.inner.opened + Duration::from_millis(ms)
    }

    /// Automatic retries this connection has made (see [`Config::on_retry`](crate::Config::on_retry)).
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// Results that arrived for requests nobody waited for any more (their futures were
    /// dropped, say by a timeout); they are dropped.
    pub fn late_results(&self) -> u64 {
        self.inner.late_results.load(Ordering::Relaxed)
    }

    // ---- state ----------------------------------------------------------------------------

    /// Closes the connection: messages already queued are still written, every request still
    /// waiting fails with [`Error::Closed`]. Closing twice is a no-op. Returns at once; wait
    /// with [`Sock::closed`] for the end.
    ///
    /// ```
    /// use gotalk::CloseReason;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// let (sock, peer) = gotalk::pipe().await?;
    /// sock.close();
    /// assert_eq!(sock.closed().await, CloseReason::Local);
    /// assert_eq!(peer.closed().await, CloseReason::PeerClosed);
    /// // Whatever is sent afterwards fails, and says why.
    /// let e = sock.buffer_request("echo", "hi").await.unwrap_err();
    /// assert_eq!(e.close_reason(), Some(&CloseReason::Local));
    /// # Ok(()) }
    /// ```
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

    /// Waits until the connection starts closing (for any reason), then returns why. A handler
    /// doing long work can select on it to stop when nobody waits for its answer any more.
    pub async fn closing(&self) -> CloseReason {
        let mut rx = self.inner.closing.subscribe();
        let _ = rx.wait_for(|c| c.is_some()).await;
        self.close_reason().unwrap_or(CloseReason::Local)
    }

    /// Waits until the connection is closed and everything queued has been written (or the
    /// write failed), then returns why it closed. A task that serves one connection can end
    /// with it:
    ///
    /// ```
    /// use gotalk::CloseReason;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// let (sock, peer) = gotalk::pipe().await?;
    /// let watcher = tokio::spawn(async move {
    ///     match sock.closed().await {
    ///         CloseReason::PeerClosed => "the peer hung up".to_owned(),
    ///         other => format!("closed: {other}"),
    ///     }
    /// });
    /// peer.close();
    /// assert_eq!(watcher.await.unwrap(), "the peer hung up");
    /// # Ok(()) }
    /// ```
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

    /// Attaches `value` to this connection, replacing an earlier value of the same type. One
    /// value per type, as in `http::Extensions`: use a type of your own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// struct Session { user: String }
    /// let (sock, _peer) = gotalk::pipe().await?;
    /// sock.insert_data(Session { user: "ann".into() });
    /// assert_eq!(sock.data::<Session>().unwrap().user, "ann");
    /// # Ok(()) }
    /// ```
    pub fn insert_data<T: Any + Send + Sync>(&self, value: T) {
        let mut data = self.inner.data.lock();
        data.retain(|v| !v.is::<T>());
        data.push(Arc::new(value));
    }

    /// The value of type `T` attached with [`Sock::insert_data`], if any.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let data = self.inner.data.lock();
        let v = data.iter().find(|v| v.is::<T>())?.clone();
        v.downcast::<T>().ok()
    }

    /// Detaches the value of type `T`, if any.
    pub fn remove_data<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let mut data = self.inner.data.lock();
        let i = data.iter().position(|v| v.is::<T>())?;
        data.swap_remove(i).downcast::<T>().ok()
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

    /// Keeps `value` alive until the connection has fully closed (dropped at once if it has):
    /// dropped before [`Sock::closed`] returns.
    pub(crate) fn hold_until_closed(&self, value: Box<dyn Any + Send>) {
        let mut guard = self.inner.guard.lock().unwrap_or_else(|e| e.into_inner());
        if let Guard::Open(held) = &mut *guard {
            held.push(value);
        }
    }

    /// An identifier for this connection, unique among open connections of the process.
    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Lets go of what [`Sock::hold_until_closed`] holds, for good.
    pub(super) fn release_guard(&self) {
        let held = std::mem::replace(
            &mut *self.inner.guard.lock().unwrap_or_else(|e| e.into_inner()),
            Guard::Done,
        );
        drop(held);
    }

    /// Whether two handles refer to the same connection.
    pub fn same_as(&self, other: &Sock) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    // ---- internals ------------------------------------------------------------------------

    pub(super) fn shared(&self) -> parking_lot::MutexGuard<'_, Shared> {
        self.inner.shared.lock()
    }

    pub(super) fn io(&self) -> parking_lot::MutexGuard<'_, WriteHalf> {
        self.inner.io.lock()
    }

    /// Drops our request `id` from the pending table (its results will be ignored).
    pub(crate) fn forget_request(&self, id: RequestId) {
        self.shared().pending.remove(id);
    }

    pub(crate) fn register(&self, waiter: Waiter) -> Result<RequestId> {
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

    /// Queues the answers of request handlers, giving their `slots` request slots and the
    /// `bytes` they hold back just before (or when the connection turns out to be closed).
    ///
    /// The slots are held until the outbox has room: a peer that does not read its results
    /// must not be able to make finished handlers pile up, each holding its result, beyond the
    /// request limits. They are given back before the answers are queued, so a requestor that
    /// sends its next request as soon as it has a result is not turned away.
    pub(super) async fn answer(
        &self,
        direct: bool,
        (slots, bytes): (u32, usize),
        stream: bool,
        encode: impl FnOnce(&mut Batch),
    ) {
        let counters = &self.inner.counters;
        let release =
            || (0..slots).for_each(|i| counters.release(stream, if i == 0 { bytes } else { 0 }));
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

    /// Queues a request handler's final answer (if any), giving its request slot back and the
    /// `bytes` its request held; its answer holds its own bytes until queued.
    pub(super) async fn answer_and_release(
        &self,
        msg: Option<Message>,
        stream: bool,
        bytes: usize,
    ) {
        let counters = &self.inner.counters;
        match msg {
            // A lone handler's answer is written right away; answers of several handlers
            // finishing together are gathered by the writer task.
            Some(msg) => {
                let size = msg.payload().len();
                counters.hold(size);
                let lone = counters.in_progress() <= 1;
                self.answer(lone, (1, bytes + size), stream, |b| b.push(&msg))
                    .await;
            }
            None => counters.release(stream, bytes),
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
        let (writer, senders) = {
            let mut s = self.shared();
            let writer = s.out.written(batch, how);
            (writer, s.out.take_room_waiters(false))
        };
        writer.into_iter().chain(senders).for_each(Waker::wake);
        if let Some(e) = failed {
            self.shutdown(CloseReason::io(&e), None);
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
        if let Some(cb) = &self.inner.callbacks.close {
            cb(self, &reason);
        }
    }
}

pub(super) fn heartbeat(load: u16) -> Message {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    Message::Heartbeat { load, time }
}

/// A panic's message, for logs and ErrorResults.
pub(crate) fn panic_message(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}
