//! [`Config`]: how a connection behaves — handlers, limits, heartbeats, retries, callbacks.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::CloseReason;
use crate::handlers::{default_handlers, Handlers};
use crate::limits::Limits;
use crate::sock::{Callbacks, Sock};

/// How a connection behaves: handlers, limits, heartbeats, retries and callbacks. Used by
/// [`crate::connect_with`], [`crate::Server`] (every accepted connection gets a copy) and
/// [`Sock::adopt`].
///
/// Read a setting from its field; set it with the builder method of the same name.
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
/// assert_eq!(config.limits.buffer_requests, 100);
/// assert_eq!(config.auto_retry, 3);
/// ```
#[derive(Clone)]
pub struct Config {
    handlers: Option<Arc<Handlers>>,
    /// Resource limits (see [`Limits`]).
    pub limits: Limits,
    /// How often a heartbeat is sent; `None`: never.
    pub heartbeat_interval: Option<Duration>,
    /// How many times a request answered with RetryResult is sent again.
    pub auto_retry: u32,
    /// Longest RetryResult wait an automatic retry honours.
    pub max_retry_wait: Duration,
    /// TLS settings for `tls://` and `wss://` addresses.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::transport::tls::config::TlsClientConfig>,
    pub(crate) callbacks: Callbacks,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            handlers: None,
            limits: Limits::default(),
            heartbeat_interval: Some(Config::DEFAULT_HEARTBEAT_INTERVAL),
            auto_retry: 5,
            max_retry_wait: Duration::from_secs(30),
            #[cfg(feature = "tls")]
            tls: None,
            callbacks: Callbacks::default(),
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
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Default interval between automatic heartbeats (as in the reference).
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(20);

    /// The defaults: process-wide default handlers, [`Limits::default`], heartbeats every 20 s,
    /// up to 5 automatic retries.
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
    /// peer asked for) before [`Error::Retry`](crate::Error::Retry) is returned. 0 disables
    /// automatic retries.
    pub fn auto_retry(mut self, max_retries: u32) -> Config {
        self.auto_retry = max_retries;
        self
    }

    /// Longest RetryResult wait an automatic retry honours (default 30 s): a peer asking for
    /// more gets its [`Error::Retry`](crate::Error::Retry) returned at once, for the caller to
    /// decide, instead of parking the request.
    pub fn max_retry_wait(mut self, wait: Duration) -> Config {
        self.max_retry_wait = wait;
        self
    }

    /// Called once the handshake is done, before any message from the peer is handled.
    pub fn on_open(mut self, f: impl Fn(&Sock) + Send + Sync + 'static) -> Config {
        self.callbacks.open = Some(Arc::new(f));
        self
    }

    /// Called once when the connection closes, with the reason (see
    /// [`CloseReason::protocol_error_code`]).
    pub fn on_close(mut self, f: impl Fn(&Sock, &CloseReason) + Send + Sync + 'static) -> Config {
        self.callbacks.close = Some(Arc::new(f));
        self
    }

    /// Called for every heartbeat received, with the peer's load and time.
    pub fn on_heartbeat(
        mut self,
        f: impl Fn(&Sock, u16, SystemTime) + Send + Sync + 'static,
    ) -> Config {
        self.callbacks.heartbeat = Some(Arc::new(f));
        self
    }

    /// Called before every automatic retry, with the operation, the wait and which retry it is
    /// (1 for the first). [`Sock::retries`] counts them too.
    pub fn on_retry(
        mut self,
        f: impl Fn(&Sock, &str, Duration, u32) + Send + Sync + 'static,
    ) -> Config {
        self.callbacks.retry = Some(Arc::new(f));
        self
    }

    /// TLS settings for connecting to `tls://` and `wss://` addresses (see
    /// [`crate::transport::tls`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::transport::tls::config::TlsClientConfig) -> Config {
        self.tls = Some(tls);
        self
    }

    /// The handlers a connection opened with this configuration uses.
    pub(crate) fn handlers_or_default(&self) -> Arc<Handlers> {
        self.handlers.clone().unwrap_or_else(default_handlers)
    }
}
