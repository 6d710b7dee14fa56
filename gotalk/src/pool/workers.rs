//! [`Workers`]: the other topology — workers dial in to a coordinator, which keeps the set of
//! connected workers offering each operation and sends every job to the least loaded one.
//!
//! A worker announces what it offers with an ordinary request, [`OFFER_OP`]
//! (`"workers.offer"`), whose JSON payload is the list of operation names (`["resize"]`), on
//! every connection — a [`KeepAlive`](super::KeepAlive) with
//! [`on_connect`](super::PoolOptions::on_connect) calling [`Workers::offer`] does that after
//! each reconnect. Offering again replaces the list (`[]` withdraws). The coordinator then
//! sends its requests over the connection the worker opened, as the protocol allows either
//! side to. A plain gotalk peer in any language is a valid worker: it connects, sends that
//! request, and answers requests.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::{Error, HandlerError, Result};
use crate::frame::ProtocolErrorCode;
use crate::frame::MAX_NAME_LEN;
use crate::handlers::Handlers;
use crate::sock::Sock;
use crate::stream::{StreamReceiver, StreamSender};

use super::choose::{choose, Choice, Responder, ResponderStats};
use super::options::{PoolOptions, RequestOptions};
use super::request::{self, Roster};

/// The operation a worker calls on its coordinator to say which operations it offers.
pub const OFFER_OP: &str = "workers.offer";

/// Most operations one worker may offer.
const MAX_OFFERED: usize = 256;

/// Most bytes of operation names one worker may offer (they are kept while it is connected).
const MAX_OFFERED_BYTES: usize = 16 * 1024;

/// Least time between two offers on one connection: each one changes what every request
/// looks up, so a peer must not make the coordinator do it in a loop.
const OFFER_GAP: Duration = Duration::from_secs(1);

/// The connected workers of a coordinator, by the operations they offer; requests sent
/// through it go to the least loaded worker offering the operation (see the
/// [`pool` docs](super) for the rules: deadlines, waiting for a worker, moves after a
/// RetryResult, repeats of operations safe to repeat).
///
/// Of the [`PoolOptions`], those about dialing (`reconnect`, `connect_timeout`, `on_connect`,
/// `resolve_every`) do not apply: workers dial.
///
/// ```
/// use std::time::Duration;
/// use gotalk::pool::{KeepAlive, PoolOptions, Workers};
/// use gotalk::{Config, Handlers, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> gotalk::Result<()> {
/// // The coordinator.
/// let workers = Workers::new(PoolOptions::new().timeout(Some(Duration::from_secs(5))));
/// let mut h = Handlers::new();
/// workers.install(&mut h);
/// let server = Server::bind("127.0.0.1:0", Config::new().handlers(h)).await?;
///
/// // A worker (usually another process).
/// let mut wh = Handlers::new();
/// wh.handle("double", |n: u64| async move { Ok(n * 2) });
/// let worker = KeepAlive::open(
///     &server.local_addr().to_string(),
///     Config::new().handlers(wh),
///     PoolOptions::new().on_connect(|sock| async move { Workers::offer(&sock, &["double"]).await }),
/// )?;
///
/// // Jobs wait for a worker offering the operation (up to their deadline).
/// let n: u64 = workers.request("double", &21).await?;
/// assert_eq!(n, 42);
/// worker.close();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    options: PoolOptions,
    changes: watch::Sender<u64>,
    board: parking_lot::RwLock<Board>,
    turn: AtomicUsize,
    closed: AtomicBool,
}

/// Who offers what.
#[derive(Default)]
struct Board {
    /// Every worker that offered, by a number of its own.
    workers: HashMap<u64, Worker>,
    next_id: u64,
    /// The workers offering each operation (rebuilt on every change; read per request).
    by_op: HashMap<String, Vec<Arc<Responder>>>,
}

struct Worker {
    responder: Arc<Responder>,
    sock: Sock,
    /// Sorted, without repeats.
    ops: Vec<String>,
    offered_at: Instant,
}

impl Board {
    /// Moves `responder` from the lists of the operations in `old` to those in `new` (both
    /// sorted): the cost is that of the change, not of every worker's offer.
    fn change(&mut self, responder: &Arc<Responder>, old: &[String], new: &[String]) {
        for op in old.iter().filter(|op| new.binary_search(op).is_err()) {
            if let Some(list) = self.by_op.get_mut(op) {
                list.retain(|r| !Arc::ptr_eq(r, responder));
                if list.is_empty() {
                    self.by_op.remove(op);
                }
            }
        }
        for op in new.iter().filter(|op| old.binary_search(op).is_err()) {
            self.by_op
                .entry(op.clone())
                .or_default()
                .push(responder.clone());
        }
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.stats())
            .finish()
    }
}

impl Workers {
    /// An empty set, requests following `options`.
    pub fn new(options: PoolOptions) -> Workers {
        Workers {
            inner: Arc::new(Inner {
                options,
                changes: watch::channel(0).0,
                board: parking_lot::RwLock::default(),
                turn: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Adds the [`OFFER_OP`] operation, by which workers join, to the coordinator's handlers.
    pub fn install(&self, handlers: &mut Handlers) {
        let inner = Arc::downgrade(&self.inner);
        handlers.handle_with_sock(OFFER_OP, move |sock: Sock, ops: Vec<String>| {
            let inner = inner.clone();
            async move {
                let inner = inner
                    .upgrade()
                    .ok_or_else(|| HandlerError::msg("this coordinator takes no workers"))?;
                check_offer(&ops)?;
                Inner::offered(&inner, &sock, ops)
            }
        });
    }

    /// For a worker: tells the coordinator at the other end of `sock` which operations this
    /// worker offers (replacing what it offered before). Call it on every connection, e.g.
    /// from [`PoolOptions::on_connect`].
    pub async fn offer(sock: &Sock, ops: &[&str]) -> Result<()> {
        sock.request::<_, serde_json::Value>(OFFER_OP, ops).await?;
        Ok(())
    }

    /// How many workers offer `op` now.
    pub fn offering(&self, op: &str) -> usize {
        self.inner.board.read().by_op.get(op).map_or(0, Vec::len)
    }

    /// Waits up to `timeout` until at least `n` workers offer `op`.
    pub async fn wait_for(&self, op: &str, n: usize, timeout: Duration) -> Result<()> {
        let mut changes = self.inner.changes.subscribe();
        let wait = async {
            while self.offering(op) < n {
                if changes.changed().await.is_err() || self.inner.is_closed() {
                    return Err(Error::Unavailable(self.inner.why_unavailable(op)));
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(Error::Timeout("waiting for workers")))
    }

    /// Every worker as the chooser sees it now.
    pub fn stats(&self) -> Vec<ResponderStats> {
        let mut v: Vec<_> = self
            .inner
            .board
            .read()
            .workers
            .values()
            .map(|w| w.responder.stats())
            .collect();
        v.sort_by(|a, b| a.addr.cmp(&b.addr));
        v
    }

    /// Stops taking requests: requests waiting for a worker fail with
    /// [`Error::Unavailable`]. The workers' connections stay open (they belong to the server).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.bump();
    }

    /// Sends request `op` with `input` encoded as JSON to the least loaded worker offering it,
    /// and decodes the JSON result.
    pub async fn request<I, O>(&self, op: &str, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        self.request_with(op, input, RequestOptions::new()).await
    }

    /// Like [`Workers::request`], with options for this request.
    pub async fn request_with<I, O>(&self, op: &str, input: &I, opts: RequestOptions) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let out = self
            .buffer_request_with(op, serde_json::to_vec(input)?, opts)
            .await?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Sends request `op` with a raw payload and returns the raw result.
    ///
    /// (An `async fn` in all but name: what it returns is the request, to await. Written so
    /// that a request's future holds no more than it needs.)
    pub fn buffer_request<'a>(
        &'a self,
        op: &'a str,
        payload: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Bytes>> + Send + 'a {
        self.buffer_request_with(op, payload, RequestOptions::new())
    }

    /// Like [`Workers::buffer_request`], with options for this request.
    pub fn buffer_request_with<'a>(
        &'a self,
        op: &'a str,
        payload: impl Into<Bytes>,
        opts: RequestOptions,
    ) -> impl Future<Output = Result<Bytes>> + Send + 'a {
        let policy = opts.resolve(op, &self.inner.options);
        request::buffer_request(&*self.inner, op, payload.into(), policy)
    }

    /// Starts stream request `op` on the least loaded worker offering it.
    pub async fn stream_request(&self, op: &str) -> Result<(StreamSender, StreamReceiver)> {
        let policy = RequestOptions::new().resolve(op, &self.inner.options);
        request::stream_request(&*self.inner, op, policy).await
    }

    /// Sends notification `name` with `value` encoded as JSON to the least loaded worker
    /// offering an operation of that name.
    pub async fn notify<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.buffer_notify(name, serde_json::to_vec(value)?).await
    }

    /// Sends notification `name` with a raw payload (see [`Workers::notify`]).
    pub async fn buffer_notify(&self, name: &str, payload: impl Into<Bytes>) -> Result<()> {
        let policy = RequestOptions::new().resolve(name, &self.inner.options);
        request::notify(&*self.inner, name, payload.into(), policy).await
    }
}

/// Refuses offers that would cost the coordinator more than a worker is worth.
fn check_offer(ops: &[String]) -> std::result::Result<(), HandlerError> {
    if ops.len() > MAX_OFFERED {
        return Err(HandlerError::msg(format!(
            "a worker may offer at most {MAX_OFFERED} operations ({} offered)",
            ops.len()
        )));
    }
    let bytes: usize = ops.iter().map(String::len).sum();
    if bytes > MAX_OFFERED_BYTES {
        return Err(HandlerError::msg(format!(
            "a worker may offer at most {MAX_OFFERED_BYTES} bytes of operation names ({bytes} offered)"
        )));
    }
    if let Some(bad) = ops
        .iter()
        .find(|op| op.is_empty() || op.len() > MAX_NAME_LEN)
    {
        return Err(HandlerError::msg(format!(
            "not an operation name: {:?} (1 to {MAX_NAME_LEN} bytes)",
            bad.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

impl Inner {
    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A worker offered `ops` on `sock`.
    fn offered(
        this: &Arc<Inner>,
        sock: &Sock,
        mut ops: Vec<String>,
    ) -> std::result::Result<(), HandlerError> {
        ops.sort();
        ops.dedup();
        let joined = {
            let mut guard = this.board.write();
            let board = &mut *guard;
            // Closed meanwhile: its watcher may have come and gone; do not add it back.
            if sock.is_closed() {
                return Ok(());
            }
            match board.workers.values_mut().find(|w| w.sock.same_as(sock)) {
                Some(w) => {
                    let since = w.offered_at.elapsed();
                    if since < OFFER_GAP {
                        return Err(HandlerError::retry(
                            OFFER_GAP - since,
                            "a worker may offer once a second",
                        ));
                    }
                    let old = std::mem::replace(&mut w.ops, ops);
                    w.offered_at = Instant::now();
                    let (responder, new) = (w.responder.clone(), w.ops.clone());
                    board.change(&responder, &old, &new);
                    None
                }
                None => {
                    let label = sock.peer_addr().unwrap_or("worker").to_owned();
                    let responder = Arc::new(Responder::new(label));
                    responder.connected(sock.clone());
                    board.change(&responder, &[], &ops);
                    board.next_id += 1;
                    let id = board.next_id;
                    board.workers.insert(
                        id,
                        Worker {
                            responder: responder.clone(),
                            sock: sock.clone(),
                            ops,
                            offered_at: Instant::now(),
                        },
                    );
                    Some((id, responder))
                }
            }
        };
        if let Some((id, responder)) = joined {
            tracing::debug!(peer = ?sock.peer_addr(), "worker joined");
            tokio::spawn(watch_worker(
                Arc::downgrade(this),
                id,
                responder,
                sock.clone(),
                this.options.heartbeat_timeout,
            ));
        }
        this.bump();
        Ok(())
    }

    /// Worker `id` is gone.
    fn left(&self, id: u64) {
        let gone = {
            let mut board = self.board.write();
            let gone = board.workers.remove(&id);
            if let Some(w) = &gone {
                board.change(&w.responder, &w.ops, &[]);
            }
            gone
        };
        if let Some(w) = gone {
            w.responder.disconnected(None);
            tracing::debug!(peer = ?w.sock.peer_addr(), "worker left");
            self.bump();
        }
    }
}

/// Removes worker `id` as soon as its connection starts closing, closing it first if its
/// heartbeats stop.
async fn watch_worker(
    inner: Weak<Inner>,
    id: u64,
    responder: Arc<Responder>,
    sock: Sock,
    limit: Option<Duration>,
) {
    let every = limit.map_or(Duration::MAX, |t| (t / 4).max(Duration::from_millis(10)));
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = sock.closing() => break,
            _ = check.tick(), if limit.is_some() => {
                if limit.is_some_and(|t| responder.is_stale(t)) {
                    tracing::info!(peer = ?sock.peer_addr(), "worker's heartbeats stopped; closing");
                    sock.close_with_error(ProtocolErrorCode::TIMEOUT);
                }
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        inner.left(id);
    }
}

impl Roster for Inner {
    fn choose(&self, op: &str) -> Choice {
        let board = self.board.read();
        match board.by_op.get(op) {
            Some(offering) => choose(offering, self.options.balance, &self.turn),
            None => Choice::Nobody,
        }
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn why_unavailable(&self, op: &str) -> String {
        if self.is_closed() {
            return "the worker set was closed".into();
        }
        let n = self.board.read().workers.len();
        format!("no worker offers \"{op}\" ({n} workers connected)")
    }
}
