//! [`KeepAlive`]: a connection that stays connected — the Rust counterpart of gotalk.js
//! `openKeepAlive` — and the dialing loop ([`Link`]) that every member of a
//! [`Pool`](super::Pool) runs too.
//!
//! The loop dials, runs the [`on_connect`](PoolOptions::on_connect) hook, offers the
//! connection to requests, watches it (and the peer's heartbeats) until it ends, then dials
//! again after a back-off with jitter. Requests go through the same steps as a pool's (see the
//! [`pool` docs](super)).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::addr::Addr;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::frame::ProtocolErrorCode;
use crate::sock::Sock;
use crate::stream::{StreamReceiver, StreamSender};

use super::choose::{choose, Balance, Choice, Responder, ResponderStats};
use super::options::{PoolOptions, RequestOptions};
use super::request::{self, Roster};

/// One address dialed and redialed for as long as it is wanted.
pub(crate) struct Link {
    pub(crate) addr: String,
    config: Config,
    options: PoolOptions,
    pub(crate) responder: Arc<Responder>,
    /// Bumped whenever this link comes up or goes down (shared by a pool's links).
    changes: Arc<watch::Sender<u64>>,
    stop: watch::Sender<bool>,
    connects: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
}

impl Link {
    /// Starts dialing `addr` in the background.
    pub(crate) fn start(
        addr: String,
        config: &Config,
        options: &PoolOptions,
        changes: Arc<watch::Sender<u64>>,
    ) -> Arc<Link> {
        let responder = Arc::new(Responder::new(addr.clone()));
        let link = Arc::new(Link {
            config: config.clone(),
            addr,
            options: options.clone(),
            responder,
            changes,
            stop: watch::channel(false).0,
            connects: AtomicU64::new(0),
            last_error: parking_lot::Mutex::new(None),
        });
        tokio::spawn(link.clone().run());
        link
    }

    /// Stops dialing and closes the connection, if any.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
        if let Some(sock) = self.responder.sock() {
            sock.close();
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Its responder as the chooser sees it, and why the last dial failed.
    pub(crate) fn stats(&self) -> ResponderStats {
        let mut stats = self.responder.stats();
        stats.last_error = self.last_error();
        stats
    }

    /// "down (last error: …)" or "connecting", for error messages.
    pub(crate) fn describe(&self) -> String {
        match self.last_error() {
            Some(e) => format!("{}: down ({e})", self.addr),
            None if self.responder.is_up() => format!("{}: up", self.addr),
            None => format!("{}: connecting", self.addr),
        }
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn run(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        // Failed attempts in a row (doubling the back-off).
        let mut level = 0u32;
        loop {
            let attempt = tokio::time::timeout(self.options.connect_timeout, self.dial());
            let res = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                res = attempt => res.unwrap_or(Err(Error::Timeout("connect"))),
            };
            match res {
                Ok(sock) => {
                    *self.last_error.lock() = None;
                    self.connects.fetch_add(1, Ordering::Relaxed);
                    self.responder.connected(sock.clone());
                    // It may have closed before it was offered (then `on_close` found nothing
                    // to take down).
                    if sock.is_closed() {
                        self.responder.disconnected(Some(&sock));
                    }
                    self.bump();
                    let since = Instant::now();
                    let stopped = self.watch_connection(&sock, &mut stop).await;
                    self.responder.disconnected(Some(&sock));
                    self.bump();
                    if stopped {
                        break;
                    }
                    if since.elapsed() >= self.options.reconnect_max {
                        level = 0;
                    }
                    tracing::debug!(addr = %self.addr, "connection ended; dialing again");
                }
                Err(e) => {
                    tracing::debug!(addr = %self.addr, "connecting failed: {e}");
                    *self.last_error.lock() = Some(e.to_string());
                    self.bump();
                }
            }
            let delay = backoff(&self.options, level);
            level = level.saturating_add(1);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if let Some(sock) = self.responder.sock() {
            sock.close();
        }
        self.responder.disconnected(None);
        self.bump();
    }

    /// Connects and runs the hook.
    async fn dial(&self) -> Result<Sock> {
        let sock = crate::transport::connect_with(&self.addr, &self.config).await?;
        if let Some(hook) = &self.options.on_connect {
            if let Err(e) = hook(sock.clone()).await {
                sock.close();
                return Err(e);
            }
        }
        Ok(sock)
    }

    /// Waits until `sock` closes (`false`) or the link is stopped (`true`), closing it if the
    /// peer's heartbeats stop.
    async fn watch_connection(&self, sock: &Sock, stop: &mut watch::Receiver<bool>) -> bool {
        let limit = self.options.heartbeat_timeout;
        let every = limit.map_or(Duration::MAX, |t| (t / 4).max(Duration::from_millis(10)));
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    sock.close();
                    return true;
                }
                _ = sock.closing() => return false,
                _ = check.tick(), if limit.is_some() => {
                    if limit.is_some_and(|t| self.responder.is_stale(t)) {
                        tracing::info!(addr = %self.addr, "heartbeats stopped; reconnecting");
                        sock.close_with_error(ProtocolErrorCode::TIMEOUT);
                    }
                }
            }
        }
    }
}

/// The wait before dial number `level + 1` after a failure: `min · 2^level` up to `max`,
/// drawn between half of it and all of it.
fn backoff(options: &PoolOptions, level: u32) -> Duration {
    let full = options
        .reconnect_min
        .saturating_mul(1u32 << level.min(20))
        .min(options.reconnect_max);
    full.mul_f64(0.5 + fastrand::f64() / 2.0)
}

impl Roster for Link {
    fn choose(&self, _op: &str) -> Choice {
        // A set of one: no turn to keep.
        static TURN: AtomicUsize = AtomicUsize::new(0);
        choose(
            std::slice::from_ref(&self.responder),
            Balance::LeastLoaded,
            &TURN,
        )
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.is_stopped()
    }

    fn why_unavailable(&self, _op: &str) -> String {
        if self.is_stopped() {
            format!("the keep-alive connection to {} was closed", self.addr)
        } else {
            format!("not connected to {}", self.describe())
        }
    }
}

/// A connection to one address that reconnects whenever it is lost — the counterpart of
/// gotalk.js `openKeepAlive`.
///
/// It dials in the background from [`KeepAlive::open`] on, with exponential back-off and
/// jitter between failed attempts, and runs the [`on_connect`](PoolOptions::on_connect) hook
/// on every new connection before any request is sent on it. Requests made while it is down
/// wait for the next connection up to their deadline, or fail at once (see
/// [`PoolOptions::wait_for_connection`]); a request in flight when the connection drops fails
/// with [`Error::Closed`], unless its operation is [safe to
/// repeat](PoolOptions::safe_to_repeat): then it is sent again on the next connection. A
/// RetryResult is waited out and the request sent again (up to
/// [`max_attempts`](PoolOptions::max_attempts)). See the [`pool` docs](super) for the whole of
/// the rules.
///
/// Cheap to clone; the connection closes and dialing stops when the last clone is dropped or
/// [`KeepAlive::close`] is called.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use gotalk::pool::{KeepAlive, PoolOptions};
/// use gotalk::{Config, Handlers, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> gotalk::Result<()> {
/// let mut h = Handlers::new();
/// h.handle("echo", |s: String| async move { Ok(s) });
/// let server = Server::bind("127.0.0.1:0", Config::new().handlers(h)).await?;
///
/// let hooks = Arc::new(AtomicU32::new(0));
/// let counter = hooks.clone();
/// let options = PoolOptions::new()
///     .timeout(Some(Duration::from_secs(5)))
///     .on_connect(move |_sock| {
///         counter.fetch_add(1, Ordering::Relaxed);
///         async { Ok(()) }
///     });
/// let conn = KeepAlive::open(&server.local_addr().to_string(), Config::new(), options)?;
/// // Waits for the first connection (up to the deadline), then asks.
/// let out: String = conn.request("echo", &"hi").await?;
/// assert_eq!(out, "hi");
/// assert_eq!(hooks.load(Ordering::Relaxed), 1);
/// conn.close();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KeepAlive {
    owner: Arc<Owner>,
}

/// Stops the link when the last [`KeepAlive`] handle goes.
struct Owner {
    link: Arc<Link>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.link.stop();
    }
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = &self.owner.link;
        f.debug_struct("KeepAlive")
            .field("addr", &link.addr)
            .field("up", &link.responder.is_up())
            .field("connects", &link.connects())
            .field("last_error", &link.last_error())
            .finish()
    }
}

impl KeepAlive {
    /// Starts keeping a connection to `addr` (any address [`crate::connect`] takes) open,
    /// configured by `config` (its automatic retries apply only to requests made on
    /// [`KeepAlive::sock`] directly) and `options`. Returns at once; fails only if `addr` does
    /// not parse. Must be
    /// called within a tokio runtime.
    pub fn open(addr: &str, config: Config, options: PoolOptions) -> Result<KeepAlive> {
        let addr = addr.parse::<Addr>()?.to_string();
        let changes = Arc::new(watch::channel(0).0);
        Ok(KeepAlive {
            owner: Arc::new(Owner {
                link: Link::start(addr, &config, &options, changes),
            }),
        })
    }

    fn link(&self) -> &Link {
        &self.owner.link
    }

    /// The address dialed.
    pub fn addr(&self) -> &str {
        &self.link().addr
    }

    /// The current connection, if it is up.
    pub fn sock(&self) -> Option<Sock> {
        self.link().responder.sock()
    }

    /// Whether the connection is up now.
    pub fn is_up(&self) -> bool {
        self.link().responder.is_up()
    }

    /// Waits up to `timeout` for the connection to be up (the hook run), and returns it.
    pub async fn connected(&self, timeout: Duration) -> Result<Sock> {
        let mut changes = self.link().changes.subscribe();
        let wait = async {
            loop {
                if let Some(sock) = self.sock().filter(|s| !s.is_closed()) {
                    return Ok(sock);
                }
                if self.link().is_stopped() || changes.changed().await.is_err() {
                    return Err(Error::Unavailable(self.link().why_unavailable("")));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(Error::Timeout("connect")))
    }

    /// How many connections have been made (each ran the hook).
    pub fn connects(&self) -> u64 {
        self.link().connects()
    }

    /// Why the last attempt to connect failed, while the connection is down.
    pub fn last_error(&self) -> Option<String> {
        self.link().last_error()
    }

    /// The connection as the chooser sees it: up or not, requests in flight, the peer's load.
    pub fn stats(&self) -> ResponderStats {
        self.link().stats()
    }

    /// Stops reconnecting and closes the connection; requests waiting for a connection fail
    /// with [`Error::Unavailable`], those in flight with [`Error::Closed`].
    pub fn close(&self) {
        self.link().stop();
        self.link().bump();
    }

    /// Sends request `op` with `input` encoded as JSON and decodes the JSON result.
    pub async fn request<I, O>(&self, op: &str, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        self.request_with(op, input, RequestOptions::new()).await
    }

    /// Like [`KeepAlive::request`], with options for this request.
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

    /// Like [`KeepAlive::buffer_request`], with options for this request.
    pub fn buffer_request_with<'a>(
        &'a self,
        op: &'a str,
        payload: impl Into<Bytes>,
        opts: RequestOptions,
    ) -> impl Future<Output = Result<Bytes>> + Send + 'a {
        let policy = opts.resolve(op, &self.link().options);
        request::buffer_request(self.link(), op, payload.into(), policy)
    }

    /// Starts stream request `op` on the current connection (waiting for one like a request
    /// does). A stream under way is not repeated: if the connection drops, its receiver
    /// returns [`Error::Closed`].
    pub async fn stream_request(&self, op: &str) -> Result<(StreamSender, StreamReceiver)> {
        let policy = RequestOptions::new().resolve(op, &self.link().options);
        request::stream_request(self.link(), op, policy).await
    }

    /// Sends notification `name` with `value` encoded as JSON (waiting for a connection like a
    /// request does). Delivered at most once.
    pub async fn notify<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.buffer_notify(name, serde_json::to_vec(value)?).await
    }

    /// Sends notification `name` with a raw payload. Delivered at most once.
    pub async fn buffer_notify(&self, name: &str, payload: impl Into<Bytes>) -> Result<()> {
        let policy = RequestOptions::new().resolve(name, &self.link().options);
        request::notify(self.link(), name, payload.into(), policy).await
    }
}
