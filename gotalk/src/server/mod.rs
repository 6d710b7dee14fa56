//! [`Server`]: accepts connections on a listener and serves each with a [`Sock`].
//!
//! Every accepted connection gets a copy of the server's [`Config`] (handlers, limits,
//! heartbeats, callbacks). The accept loop runs in the background from [`Server::bind`] on,
//! for as long as the [`Server`] value lives; [`Server::shutdown`] stops accepting, lets
//! requests in progress finish within a grace period, then closes every connection.
//!
//! How many connections it holds, and how many one peer address may hold, is set by
//! [`ServerOptions`]. Every connection is accepted at once: one over a limit is closed right
//! away (and logged), never left waiting in the listen backlog; when the server is full, its
//! idlest connection is closed to make room (see [`ServerOptions::evict_idle_after`]).
//!
//! ```no_run
//! # async fn run() -> gotalk::Result<()> {
//! use gotalk::{Config, Handlers, Server};
//!
//! let mut handlers = Handlers::new();
//! handlers.handle("echo", |s: String| async move { Ok(s) });
//! let server = Server::bind("tcp://127.0.0.1:1234", Config::new().handlers(handlers)).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::addr::Addr;
use crate::config::Config;
use crate::error::Result;
use crate::limits::drain;
use crate::sock::Sock;
use crate::transport;

pub(crate) mod options;
pub(crate) mod slots;

pub use options::{
    ServerOptions, DEFAULT_EVICT_IDLE_AFTER, DEFAULT_HTTP_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_HTTP_CONNECTIONS,
    DEFAULT_MAX_HTTP_CONNECTIONS_PER_ADDRESS, DEFAULT_WS_MESSAGE_ALLOWANCE,
};
use slots::{SlotLimits, Slots};

/// A listening gotalk server. See the [module docs](self).
///
/// **Keep it**: dropping a `Server` stops its listener (connections already open are served
/// on until they close). A listener tied to a value ends with it, as a `TcpListener` does, so
/// a test or a component that is done with a server cannot leave it listening by mistake;
/// call [`Server::shutdown`] to close the open connections too.
#[must_use = "dropping a Server stops its listener; keep it for as long as it should serve"]
pub struct Server {
    local_addr: Addr,
    slots: Arc<Slots>,
    stop: watch::Sender<bool>,
    accept_done: watch::Receiver<bool>,
    unix_path: Option<PathBuf>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connection_count())
            .finish()
    }
}

/// What a TLS server needs per connection (nothing without the `tls` feature).
#[cfg(feature = "tls")]
type Tls = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Tls = NoTls;
/// Uninhabited: without the `tls` feature no server has TLS settings.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum NoTls {}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Server {
    /// Binds `addr` (`tcp://host:port`, `host:port` or `unix:///path`) and starts accepting
    /// connections in the background, with the [`ServerOptions`] defaults. Use port 0 to pick
    /// a free port; [`Server::local_addr`] tells which. Serves until the `Server` is dropped
    /// or shut down.
    ///
    /// With the `websocket` feature, `ws://host:port/path` serves a WebSocket
    /// [`Endpoint`](crate::ws::Endpoint) at `path` (and `gotalk.js` beside it) on its own HTTP
    /// server ([`ws::serve`](crate::ws::serve)); to add pages of your own, merge
    /// [`Endpoint::router`](crate::ws::Endpoint::router) into your axum application and serve
    /// it with [`ws::serve`](crate::ws::serve).
    pub async fn bind(addr: &str, config: Config) -> Result<Server> {
        Server::bind_with(addr, config, ServerOptions::default()).await
    }

    /// Like [`Server::bind`], with options for the server as a whole.
    pub async fn bind_with(addr: &str, config: Config, options: ServerOptions) -> Result<Server> {
        Server::start(addr, config, options, None).await
    }

    /// Binds a TCP address (`tls://host:port`, `tcp://host:port` or `host:port`) and serves
    /// gotalk over TLS on it: every accepted connection does the TLS handshake (within the
    /// [`Limits::handshake_timeout`](crate::Limits::handshake_timeout)) before the gotalk one. [`Server::local_addr`] is a
    /// `tls://` address. See [`transport::tls`].
    #[cfg(feature = "tls")]
    pub async fn bind_tls(
        addr: &str,
        config: Config,
        tls: transport::tls::TlsServerConfig,
    ) -> Result<Server> {
        Server::bind_tls_with(addr, config, tls, ServerOptions::default()).await
    }

    /// Like [`Server::bind_tls`], with options for the server as a whole.
    #[cfg(feature = "tls")]
    pub async fn bind_tls_with(
        addr: &str,
        config: Config,
        tls: transport::tls::TlsServerConfig,
        options: ServerOptions,
    ) -> Result<Server> {
        let addr = match addr.parse::<Addr>()? {
            Addr::Tls(hp) | Addr::Tcp(hp) => hp,
            other => {
                return Err(crate::error::Error::InvalidAddress {
                    addr: other.to_string(),
                    reason: "Server::bind_tls serves tls://host:port addresses".into(),
                })
            }
        };
        Server::start(&addr, config, options, Some(tls.acceptor()?)).await
    }

    async fn start(
        addr: &str,
        config: Config,
        options: ServerOptions,
        tls: Option<Tls>,
    ) -> Result<Server> {
        #[cfg(feature = "websocket")]
        if let (Addr::WebSocket(url), None) = (addr.parse::<Addr>()?, &tls) {
            return Server::start_ws(&url, config, options).await;
        }
        let (listener, local_addr, unix_path) = match addr.parse::<Addr>()? {
            Addr::Tcp(hp) => {
                let l = TcpListener::bind(&hp).await?;
                let a = Addr::Tcp(l.local_addr()?.to_string());
                (Listener::Tcp(l), a, None)
            }
            Addr::Unix(path) => {
                let l = UnixListener::bind(&path)?;
                (Listener::Unix(l), Addr::Unix(path.clone()), Some(path))
            }
            other => {
                let reason = match other {
                    Addr::Tls(_) => "use Server::bind_tls with the server's certificate",
                    _ => "Server::bind serves tcp:// and unix:// addresses",
                };
                return Err(crate::error::Error::InvalidAddress {
                    addr: other.to_string(),
                    reason: reason.into(),
                });
            }
        };
        let local_addr = match (&tls, local_addr) {
            (Some(_), Addr::Tcp(hp)) => Addr::Tls(hp),
            (_, a) => a,
        };
        let slots = Slots::new(SlotLimits::of(&options));
        slots.set_name(local_addr.to_string());
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, accept_done) = watch::channel(false);
        let accepting = slots.clone();
        tokio::spawn(async move {
            accept_loop(listener, config, stop_rx, accepting, tls).await;
            done_tx.send_replace(true);
        });
        Ok(Server {
            local_addr,
            slots,
            stop,
            accept_done,
            unix_path,
        })
    }

    #[cfg(feature = "websocket")]
    async fn start_ws(url: &str, config: Config, options: ServerOptions) -> Result<Server> {
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, accept_done) = watch::channel(false);
        let endpoint = transport::ws::Endpoint::new(config).options(&options);
        let slots = endpoint.slots().clone();
        let local_addr = transport::ws::listen(url, endpoint, &options, stop_rx, done_tx).await?;
        slots.set_name(local_addr.to_string());
        Ok(Server {
            local_addr,
            slots,
            stop,
            accept_done,
            unix_path: None,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local_addr
    }

    /// The connections open right now (their handshake done).
    pub fn connections(&self) -> Vec<Sock> {
        self.slots.connections()
    }

    /// How many connections are open right now (their handshake done).
    pub fn connection_count(&self) -> usize {
        self.slots.count()
    }

    /// Stops accepting new connections; open connections are left alone.
    pub fn stop_accepting(&self) {
        self.stop.send_replace(true);
    }

    /// Graceful shutdown: stops accepting, waits up to `grace` for requests in progress on every
    /// connection to be answered, then closes every connection (flushing what was queued) and
    /// waits (a little) for them to be closed.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_accepting();
        let mut done = self.accept_done.clone();
        let _ = done.wait_for(|d| *d).await;
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
        let _ = tokio::time::timeout(grace, self.requests_done()).await;
        let socks = self.slots.close_all();
        // Each closing connection flushes what it has queued, within its own write timeout;
        // the wait here is only so that callers usually find everything closed.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.slots.until_empty()).await;
        drop(socks);
    }

    /// Returns once no open connection has a request of its peer in progress.
    async fn requests_done(&self) {
        let _waiting = drain::Waiting::start();
        loop {
            let idle = drain::IDLE.notified();
            let mut idle = std::pin::pin!(idle);
            idle.as_mut().enable();
            let busy = self
                .slots
                .connections()
                .iter()
                .any(|s| s.requests_in_progress() > 0);
            if !busy {
                return;
            }
            idle.await;
        }
    }
}

/// How long the accept loop pauses after an error other than running out of descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

async fn accept_loop(
    listener: Listener,
    config: Config,
    mut stop: watch::Receiver<bool>,
    slots: Arc<Slots>,
    tls: Option<Tls>,
) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = accept(&listener) => a,
        };
        let (conn, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning, and do
                // not flood the log while it lasts.
                if last_error_log.map_or(true, |at| at.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!("accept failed: {e}");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Refused: dropped, which closes it at once (the refusal is logged by `admit`).
        let Ok(slot) = slots.admit(peer) else {
            continue;
        };
        let config = slots.config_for(slot, &config);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = &tls; // unused without the `tls` feature
            let res = match conn {
                #[cfg(feature = "tls")]
                Conn::Tcp(s) if tls.is_some() => {
                    let acceptor = tls.as_ref().expect("guarded");
                    transport::tls::accept(s, acceptor, &config).await
                }
                Conn::Tcp(s) => transport::tcp::adopt(s, &config).await,
                Conn::Unix(s) => transport::unix::adopt(s, &config, Some("unix".into())).await,
            };
            if let Err(e) = res {
                tracing::debug!("handshake failed: {e}");
            }
        });
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<(Conn, Option<IpAddr>)> {
    Ok(match l {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            (Conn::Tcp(s), Some(a.ip()))
        }
        Listener::Unix(l) => (Conn::Unix(l.accept().await?.0), None),
    })
}
