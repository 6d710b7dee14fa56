//! [`serve`]: the HTTP server for an application with a WebSocket [`Endpoint`](super::Endpoint)
//! in its router, with the limits an internet-facing HTTP port needs before the upgrade.
//!
//! Built on hyper's HTTP/1.1 server (WebSocket upgrades are HTTP/1.1): a request head must
//! arrive within a timeout, HTTP connections are capped in total and per peer address, and
//! every request carries axum's `ConnectInfo<SocketAddr>` so that the endpoint can count its
//! WebSocket connections per address too. `axum::serve` has neither the timeout nor the caps.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::server::options::ServerOptions;
use crate::server::slots::{AddrKey, Refusal};

/// Largest request head accepted (hyper's read buffer; bodies stream through it in pieces):
/// bounds what a connection that trickles headers can make the server hold.
const MAX_HEAD: usize = 64 * 1024;

/// How often (at most) refused HTTP connections are logged; the ones in between are counted.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` over HTTP/1.1 until the returned future is dropped or a
/// [graceful shutdown](Serve::with_graceful_shutdown) completes, with the HTTP limits of
/// [`ServerOptions`] (defaults unless set on [`Serve`]):
///
/// - the head of every request (a WebSocket upgrade, a `gotalk.js` download, your pages) must
///   arrive within [`http_header_timeout`](ServerOptions::http_header_timeout) (10 s) of the
///   connection opening or of the previous response, else the connection is closed: idle and
///   trickling (slowloris) connections do not stay;
/// - at most [`max_http_connections`](ServerOptions::max_http_connections) (1 024) HTTP
///   connections not yet upgraded, and
///   [`max_http_connections_per_address`](ServerOptions::max_http_connections_per_address)
///   (64) from one address: at the cap, the connection that has waited longest for a request
///   head makes room for the new one; if all are busy with a request, the new one is closed
///   at once (logged);
/// - when the process runs out of file descriptors, the longest-waiting idle connection is
///   closed so that a new one can be accepted;
/// - request heads over 64 KiB are refused (431);
/// - every request carries `ConnectInfo<SocketAddr>`, so the [`Endpoint`](super::Endpoint)'s
///   own limits (upgraded connections, in total and per address) apply.
///
/// Use it instead of `axum::serve` for any router with an endpoint in it: with
/// `axum::serve`, a connection may take as long as it likes to send its headers, any number of
/// connections may wait doing so, and without `into_make_service_with_connect_info` the
/// endpoint cannot count connections per address.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use gotalk::ws::{axum, serve, Endpoint};
/// use gotalk::{Config, ServerOptions};
///
/// let endpoint = Endpoint::new(Config::new());
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { axum::response::Html("<script src=/gotalk/gotalk.js></script>") }))
///     .merge(endpoint.router("/gotalk/"));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve(listener, app)
///     .options(&ServerOptions::default().http_header_timeout(std::time::Duration::from_secs(5)))
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        options: ServerOptions::default(),
        signal: None,
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An HTTP server being set up; see [`serve`]. Runs when awaited.
#[must_use = "a Serve does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    options: ServerOptions,
    signal: Option<Signal>,
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Takes the HTTP limits of `options`:
    /// [`http_header_timeout`](ServerOptions::http_header_timeout),
    /// [`max_http_connections`](ServerOptions::max_http_connections) and
    /// [`max_http_connections_per_address`](ServerOptions::max_http_connections_per_address).
    /// (The endpoint's own limits are set on the [`Endpoint`](super::Endpoint).)
    pub fn options(mut self, options: &ServerOptions) -> Serve {
        self.options = options.clone();
        self
    }

    /// See [`ServerOptions::http_header_timeout`].
    pub fn header_timeout(mut self, t: Duration) -> Serve {
        self.options.http_header_timeout = t;
        self
    }

    /// See [`ServerOptions::max_http_connections`].
    pub fn max_connections(mut self, n: usize) -> Serve {
        self.options = self.options.max_http_connections(n);
        self
    }

    /// See [`ServerOptions::max_http_connections_per_address`].
    pub fn max_connections_per_address(mut self, n: Option<usize>) -> Serve {
        self.options = self.options.max_http_connections_per_address(n);
        self
    }

    /// Stops accepting when `signal` completes, lets the requests in progress finish, and
    /// completes once every HTTP connection has closed (upgraded WebSockets are not waited
    /// for: they belong to the endpoint).
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Serve {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    async fn run(self) -> io::Result<()> {
        let Serve {
            listener,
            router,
            options,
            signal,
        } = self;
        let conns = Arc::new(HttpConns::new(&options));
        let header_timeout = options.http_header_timeout;
        let (closing, closing_rx) = watch::channel(false);
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        let mut last_error_log: Option<Instant> = None;
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        let out_of_fds = matches!(e.raw_os_error(), Some(EMFILE | ENFILE));
                        if last_error_log.map_or(true, |at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                            tracing::warn!("accept failed: {e}");
                            last_error_log = Some(Instant::now());
                        }
                        if !(out_of_fds && conns.evict_one()) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        continue;
                    }
                }
            };
            let Ok(ticket) = conns.admit(peer) else {
                continue; // dropped: closed at once
            };
            let task = tokio::spawn(serve_connection(
                tcp,
                peer,
                router.clone(),
                ticket.clone(),
                header_timeout,
                closing_rx.clone(),
            ));
            conns.started(&ticket, task.abort_handle());
        }
        drop(listener);
        closing.send_replace(true);
        conns.until_empty().await;
        Ok(())
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

// Linux and macOS agree on these.
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    ticket: Ticket,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let requests = ticket.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = requests.busy();
        let router = router.clone();
        async move {
            let res = tower::ServiceExt::oneshot(router, req).await;
            res.map(|res| {
                if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                    // Never made to room for others while hyper hands the connection over.
                    busy.upgrading();
                    return res;
                }
                // Busy until the whole body is written (or the connection ends).
                res.map(|body| axum::body::Body::new(Sending { body, _busy: busy }))
            })
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD);
    let conn = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                break;
            }
            _ = closing.wait_for(|c| *c), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(ticket);
}

/// A response body on its way out: its connection counts as busy until it is dropped.
struct Sending {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Sending {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

// ---- the HTTP connections -------------------------------------------------------------

/// One HTTP connection's place among [`HttpConns`], given back when the last clone is dropped.
#[derive(Clone)]
struct Ticket(Arc<TicketInner>);

struct TicketInner {
    conns: Arc<HttpConns>,
    id: u64,
}

impl Drop for TicketInner {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

impl Ticket {
    /// Marks a request in progress until the guard is dropped.
    fn busy(&self) -> Busy {
        self.0.conns.with(self.0.id, |c| c.busy += 1);
        Busy {
            ticket: self.clone(),
            upgrading: false,
        }
    }
}

/// A request in progress on an HTTP connection.
struct Busy {
    ticket: Ticket,
    upgrading: bool,
}

impl Busy {
    /// The connection is being upgraded: it stays busy until it leaves.
    fn upgrading(mut self) {
        self.upgrading = true;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.upgrading {
            return;
        }
        self.ticket.0.conns.with(self.ticket.0.id, |c| {
            c.busy -= 1;
            if c.busy == 0 {
                c.idle_since = Instant::now();
            }
        });
    }
}

struct Conn {
    address: AddrKey,
    /// Requests in progress (an upgrading connection keeps one forever).
    busy: u32,
    /// Since when it has waited for a request head.
    idle_since: Instant,
    /// Set once its task runs; only then can it be closed to make room.
    abort: Option<AbortHandle>,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Conn>,
    per_address: HashMap<AddrKey, usize>,
    next_id: u64,
    refused_unlogged: u64,
    last_refusal_log: Option<Instant>,
}

/// The HTTP connections of one [`serve`], not yet upgraded.
struct HttpConns {
    max: usize,
    per_address: Option<usize>,
    state: Mutex<State>,
    emptied: Notify,
}

impl HttpConns {
    fn new(o: &ServerOptions) -> HttpConns {
        HttpConns {
            max: o.max_http_connections.max(1),
            per_address: o.max_http_connections_per_address.map(|n| n.max(1)),
            state: Mutex::new(State::default()),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with(&self, id: u64, f: impl FnOnce(&mut Conn)) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            f(c);
        }
    }

    /// A place for a connection from `peer`, made by closing the longest-waiting idle
    /// connection (of that address, when the address is at its share) if needed.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Ticket, Refusal> {
        let address = AddrKey::of(peer.ip());
        let mut s = self.lock();
        let at_share = self
            .per_address
            .is_some_and(|share| s.per_address.get(&address).copied().unwrap_or(0) >= share);
        let need_room = at_share || s.conns.len() >= self.max;
        if need_room {
            let only = at_share.then_some(address);
            match longest_waiting(&s, only) {
                Some(id) => evict(&mut s, id),
                None => {
                    let why = if at_share {
                        Refusal::Address
                    } else {
                        Refusal::Full
                    };
                    log_refusal(&mut s, why, peer);
                    return Err(why);
                }
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        s.conns.insert(
            id,
            Conn {
                address,
                busy: 0,
                idle_since: Instant::now(),
                abort: None,
            },
        );
        *s.per_address.entry(address).or_default() += 1;
        Ok(Ticket(Arc::new(TicketInner {
            conns: self.clone(),
            id,
        })))
    }

    /// The connection's task runs: it can be closed from now on.
    fn started(&self, ticket: &Ticket, abort: AbortHandle) {
        self.with(ticket.0.id, |c| c.abort = Some(abort));
    }

    /// Closes the longest-waiting idle connection, if there is one.
    fn evict_one(&self) -> bool {
        let mut s = self.lock();
        match longest_waiting(&s, None) {
            Some(id) => {
                evict(&mut s, id);
                true
            }
            None => false,
        }
    }

    fn remove(&self, id: u64) {
        let mut s = self.lock();
        if let Some(c) = s.conns.remove(&id) {
            forget_address(&mut s, c.address);
        }
        if s.conns.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    async fn until_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            let mut emptied = std::pin::pin!(emptied);
            emptied.as_mut().enable();
            if self.lock().conns.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

fn forget_address(s: &mut State, address: AddrKey) {
    if let Some(n) = s.per_address.get_mut(&address) {
        *n -= 1;
        if *n == 0 {
            s.per_address.remove(&address);
        }
    }
}

/// The idle connection (of `only` that address) that has waited longest for a request head.
fn longest_waiting(s: &State, only: Option<AddrKey>) -> Option<u64> {
    s.conns
        .iter()
        .filter(|(_, c)| c.busy == 0 && c.abort.is_some())
        .filter(|(_, c)| only.map_or(true, |a| c.address == a))
        .min_by_key(|(_, c)| c.idle_since)
        .map(|(id, _)| *id)
}

/// Closes connection `id` (its task is aborted, which closes the socket) and gives its place
/// back now.
fn evict(s: &mut State, id: u64) {
    if let Some(c) = s.conns.remove(&id) {
        forget_address(s, c.address);
        if let Some(abort) = c.abort {
            abort.abort();
        }
        tracing::debug!("closed an idle HTTP connection to make room for a new one");
    }
}

fn log_refusal(s: &mut State, why: Refusal, peer: SocketAddr) {
    let now = Instant::now();
    if s.last_refusal_log
        .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_EVERY)
    {
        s.refused_unlogged += 1;
        return;
    }
    tracing::warn!(
        %peer,
        also_refused_since_last_log = s.refused_unlogged,
        "HTTP connection refused: {why} (every connection is busy with a request)"
    );
    s.refused_unlogged = 0;
    s.last_refusal_log = Some(now);
}
