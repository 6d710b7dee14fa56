//! [`Server`]: accepts connections on a listener and serves each with a [`Sock`].
//!
//! Every accepted connection gets a copy of the server's [`Config`] (handlers, limits,
//! heartbeats, callbacks). The accept loop runs in the background from [`Server::bind`] on;
//! [`Server::shutdown`] stops accepting, lets requests in progress finish within a grace period,
//! then closes every connection.
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

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::addr::Addr;
use crate::config::Config;
use crate::error::Result;
use crate::sock::Sock;
use crate::transport;

#[derive(Default)]
struct Registry {
    socks: Mutex<HashMap<usize, Sock>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Sock>> {
        self.socks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A listening gotalk server. See the [module docs](self).
pub struct Server {
    local_addr: Addr,
    registry: Arc<Registry>,
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

/// Options of the accept loop itself (beyond the per-connection [`Config`]).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Most connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            max_connections: 10_000,
        }
    }
}

impl Server {
    /// Binds `addr` (`tcp://host:port`, `host:port` or `unix:///path`) and starts accepting
    /// connections in the background. Use port 0 to pick a free port; [`Server::local_addr`]
    /// tells which.
    ///
    /// With the `websocket` feature, `ws://host:port/path` serves a WebSocket
    /// [`Endpoint`](crate::ws::Endpoint) at `path` (and `gotalk.js` beside it) on its own HTTP
    /// server; to add pages of your own, merge [`Endpoint::router`](crate::ws::Endpoint::router)
    /// into your axum application instead.
    pub async fn bind(addr: &str, config: Config) -> Result<Server> {
        Server::bind_with(addr, config, ServerOptions::default()).await
    }

    /// Like [`Server::bind`], with options for the accept loop.
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

    /// Like [`Server::bind_tls`], with options for the accept loop.
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
                return Err(crate::Error::InvalidAddress {
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
                return Err(crate::Error::InvalidAddress {
                    addr: other.to_string(),
                    reason: reason.into(),
                });
            }
        };
        let local_addr = match (&tls, local_addr) {
            (Some(_), Addr::Tcp(hp)) => Addr::Tls(hp),
            (_, a) => a,
        };
        let registry = Arc::new(Registry::default());
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, accept_done) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let config = tracked(config, registry.clone());
        tokio::spawn(async move {
            accept_loop(listener, config, stop_rx, limit, tls).await;
            done_tx.send_replace(true);
        });
        Ok(Server {
            local_addr,
            registry,
            stop,
            accept_done,
            unix_path,
        })
    }

    #[cfg(feature = "websocket")]
    async fn start_ws(url: &str, config: Config, options: ServerOptions) -> Result<Server> {
        let registry = Arc::new(Registry::default());
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, accept_done) = watch::channel(false);
        let endpoint = transport::ws::Endpoint::new(tracked(config, registry.clone()))
            .max_connections(options.max_connections);
        let local_addr = transport::ws::listen(url, endpoint, stop_rx, done_tx).await?;
        Ok(Server {
            local_addr,
            registry,
            stop,
            accept_done,
            unix_path: None,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local_addr
    }

    /// The connections open right now.
    pub fn connections(&self) -> Vec<Sock> {
        self.registry.lock().values().cloned().collect()
    }

    /// How many connections are open right now.
    pub fn connection_count(&self) -> usize {
        self.registry.lock().len()
    }

    /// Stops accepting new connections; open connections are left alone.
    pub fn stop_accepting(&self) {
        self.stop.send_replace(true);
    }

    /// Graceful shutdown: stops accepting, waits up to `grace` for requests in progress on every
    /// connection to be answered, then closes every connection (flushing what was queued).
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_accepting();
        let mut done = self.accept_done.clone();
        let _ = done.wait_for(|d| *d).await;
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
        let deadline = Instant::now() + grace;
        loop {
            let busy = self
                .connections()
                .iter()
                .any(|s| s.requests_in_progress() > 0);
            if !busy || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let socks = self.connections();
        for s in &socks {
            s.close();
        }
        for s in &socks {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.closed()).await;
        }
    }
}

/// Wraps the user's callbacks so the registry learns about every connection that opens and
/// closes.
fn tracked(config: Config, registry: Arc<Registry>) -> Config {
    let user_open = config.callbacks.open.clone();
    let user_close = config.callbacks.close.clone();
    let reg_open = registry.clone();
    config
        .on_open(move |sock| {
            reg_open.lock().insert(sock.key(), sock.clone());
            if sock.is_closed() {
                reg_open.lock().remove(&sock.key());
            }
            if let Some(cb) = &user_open {
                cb(sock);
            }
        })
        .on_close(move |sock, reason| {
            registry.lock().remove(&sock.key());
            if let Some(cb) = &user_close {
                cb(sock, reason);
            }
        })
}

async fn accept_loop(
    listener: Listener,
    config: Config,
    mut stop: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
    tls: Option<Tls>,
) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = accept(&listener) => a,
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = config.clone();
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
            match res {
                Ok(sock) => sock.hold_until_closed(Box::new(permit)),
                Err(e) => tracing::debug!("handshake failed: {e}"),
            }
        });
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    Ok(match l {
        Listener::Tcp(l) => Conn::Tcp(l.accept().await?.0),
        Listener::Unix(l) => Conn::Unix(l.accept().await?.0),
    })
}
