//! How a [`KeepAlive`](super::KeepAlive), a [`Pool`](super::Pool) or a
//! [`Workers`](super::Workers) set behaves ([`PoolOptions`]), and how one request through them
//! does ([`RequestOptions`]).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::handlers::BoxFuture;
use crate::sock::Sock;

use super::choose::Balance;

/// The hook run on every new connection before it takes requests.
pub(crate) type ConnectHook = Arc<dyn Fn(Sock) -> BoxFuture<Result<()>> + Send + Sync>;

/// How keep-alive connections, pools and worker sets behave: reconnecting, deadlines, what is
/// safe to repeat, how responders are chosen. Cheap to clone.
///
/// | setting | default | applies to |
/// |---|---|---|
/// | [`reconnect`](PoolOptions::reconnect) | 100 ms doubling to 10 s, with jitter | `KeepAlive`, `Pool` |
/// | [`connect_timeout`](PoolOptions::connect_timeout) | 10 s (dial, handshake and hook; a request without deadline waiting for a responder) | all |
/// | [`on_connect`](PoolOptions::on_connect) | none | `KeepAlive`, `Pool` |
/// | [`timeout`](PoolOptions::timeout) | none | all |
/// | [`wait_for_connection`](PoolOptions::wait_for_connection) | yes | all |
/// | [`safe_to_repeat`](PoolOptions::safe_to_repeat) | no operation | all |
/// | [`max_attempts`](PoolOptions::max_attempts) | 4 | all |
/// | [`heartbeat_timeout`](PoolOptions::heartbeat_timeout) | 60 s | all |
/// | [`balance`](PoolOptions::balance) | [`Balance::LeastLoaded`] | `Pool`, `Workers` |
/// | [`resolve_every`](PoolOptions::resolve_every) | off | `Pool` |
///
/// ```
/// use std::time::Duration;
/// use gotalk::pool::{Balance, PoolOptions};
///
/// let options = PoolOptions::new()
///     .reconnect(Duration::from_millis(50), Duration::from_secs(2))
///     .timeout(Some(Duration::from_secs(5)))
///     .safe_to_repeat(["thumbnail", "lookup"])
///     .balance(Balance::LeastLoaded)
///     .on_connect(|sock| async move {
///         // Say who we are again on every (re)connect.
///         sock.notify("hello", &"worker 7").await
///     });
/// assert!(options.is_safe_to_repeat("lookup"));
/// ```
#[derive(Clone)]
pub struct PoolOptions {
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) wait_for_connection: bool,
    pub(crate) safe_to_repeat: Arc<HashSet<String>>,
    pub(crate) max_attempts: u32,
    pub(crate) heartbeat_timeout: Option<Duration>,
    pub(crate) balance: Balance,
    pub(crate) resolve_every: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            on_connect: None,
            timeout: None,
            wait_for_connection: true,
            safe_to_repeat: Arc::default(),
            max_attempts: 4,
            heartbeat_timeout: Some(Duration::from_secs(60)),
            balance: Balance::default(),
            resolve_every: None,
        }
    }
}

impl fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ops: Vec<_> = self.safe_to_repeat.iter().collect();
        ops.sort();
        f.debug_struct("PoolOptions")
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("on_connect", &self.on_connect.is_some())
            .field("timeout", &self.timeout)
            .field("wait_for_connection", &self.wait_for_connection)
            .field("safe_to_repeat", &ops)
            .field("max_attempts", &self.max_attempts)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("balance", &self.balance)
            .field("resolve_every", &self.resolve_every)
            .finish()
    }
}

impl PoolOptions {
    /// The defaults (see the table above).
    pub fn new() -> PoolOptions {
        PoolOptions::default()
    }

    /// Back-off between dials: the first redial waits about `min`, each failure doubles the
    /// wait up to `max`, and every wait is drawn between half of it and all of it (jitter, so
    /// that clients cut off together do not come back together). A connection that stayed up
    /// for `max` or longer starts the sequence over.
    pub fn reconnect(mut self, min: Duration, max: Duration) -> PoolOptions {
        self.reconnect_min = min.max(Duration::from_millis(1));
        self.reconnect_max = max.max(self.reconnect_min);
        self
    }

    /// Longest a connection attempt may take: dialing, the protocol handshake and the
    /// [`on_connect`](PoolOptions::on_connect) hook together. An attempt over time counts as
    /// failed. Also the longest a request without a [deadline](PoolOptions::timeout) waits
    /// for a responder to be up (or done asking us to wait) before it fails.
    pub fn connect_timeout(mut self, t: Duration) -> PoolOptions {
        self.connect_timeout = t;
        self
    }

    /// Runs `hook` on every new connection (the first and every reconnect) before any request
    /// is sent on it — a worker announcing itself to its coordinator again, a client logging
    /// in. If the hook fails, the connection is closed and the attempt counts as failed.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> PoolOptions
    where
        F: Fn(Sock) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |sock| Box::pin(hook(sock))));
        self
    }

    /// The deadline of every request (overridable per request with [`RequestOptions`]): the
    /// whole of it, waiting for a connection, retries and moves included. Over time, the
    /// request fails with [`Error::Timeout`](crate::Error::Timeout) and its result, if it
    /// comes later, is dropped.
    ///
    /// `None` (the default): no deadline. A request then waits for a responder at most
    /// [`connect_timeout`](PoolOptions::connect_timeout), and once sent waits for its result
    /// as a request on a [`Sock`] does: until it comes or the connection ends (a responder
    /// that stops reading or sending is cut off by the read timeout of
    /// [`Limits`](crate::Limits) and by [`heartbeat_timeout`](PoolOptions::heartbeat_timeout)).
    /// No deadline is the default because a deadline arms a timer per request: a quarter of
    /// the client's CPU time per request at the benchmark matrix's point (b).
    pub fn timeout(mut self, t: Option<Duration>) -> PoolOptions {
        self.timeout = t;
        self
    }

    /// What a request does when no responder is up: wait for one (up to its deadline;
    /// `true`, the default) or fail at once with [`Error::Unavailable`](crate::Error::Unavailable).
    pub fn wait_for_connection(mut self, wait: bool) -> PoolOptions {
        self.wait_for_connection = wait;
        self
    }

    /// Marks operations as safe to repeat: a request for one of them whose connection died
    /// before its result came is sent again (to another responder, or after reconnecting),
    /// where any other request fails. Only mark operations whose repetition does no harm.
    pub fn safe_to_repeat<I, S>(mut self, ops: I) -> PoolOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut set = HashSet::clone(&self.safe_to_repeat);
        set.extend(ops.into_iter().map(Into::into));
        self.safe_to_repeat = Arc::new(set);
        self
    }

    /// Whether `op` was marked with [`PoolOptions::safe_to_repeat`].
    pub fn is_safe_to_repeat(&self, op: &str) -> bool {
        !self.safe_to_repeat.is_empty() && self.safe_to_repeat.contains(op)
    }

    /// Most times one request is sent (the first attempt included) before its last error is
    /// returned. Repeats after a lost connection count; moves after a RetryResult do not: a
    /// request that was refused, and so not run, moves on for as long as its deadline allows
    /// (without one, for [`connect_timeout`](PoolOptions::connect_timeout) from the first
    /// refusal), waiting whenever every responder asked to.
    pub fn max_attempts(mut self, n: u32) -> PoolOptions {
        self.max_attempts = n.max(1);
        self
    }

    /// A responder that has sent heartbeats on its connection and then none for this long is
    /// taken out: its connection is closed (ProtocolError 3, timeout) and, for a keep-alive
    /// connection, dialed again. Responders that never send heartbeats are judged by their
    /// connection alone. `None`: heartbeats are not watched.
    pub fn heartbeat_timeout(mut self, t: Option<Duration>) -> PoolOptions {
        self.heartbeat_timeout = t.filter(|t| !t.is_zero());
        self
    }

    /// How a responder is chosen (see [`Balance`]).
    pub fn balance(mut self, balance: Balance) -> PoolOptions {
        self.balance = balance;
        self
    }

    /// For a [`Pool`](super::Pool): look the host names of its `tcp://` addresses up again
    /// this often, and keep one connection to every address they resolve to — new addresses
    /// are dialed, addresses gone are closed (requests in flight there end as if their
    /// connection died). `None` (the default): one connection per address as given, its name
    /// resolved again on every dial.
    pub fn resolve_every(mut self, every: Option<Duration>) -> PoolOptions {
        self.resolve_every = every.filter(|d| !d.is_zero());
        self
    }
}

/// How one request behaves, where it differs from its [`PoolOptions`].
///
/// ```
/// use std::time::Duration;
/// use gotalk::pool::RequestOptions;
///
/// let once = RequestOptions::new()
///     .timeout(Some(Duration::from_millis(250)))
///     .wait_for_connection(false)
///     .safe_to_repeat(false);
/// # let _ = once;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestOptions {
    timeout: Option<Option<Duration>>,
    safe_to_repeat: Option<bool>,
    wait_for_connection: Option<bool>,
}

impl RequestOptions {
    /// Everything as in the [`PoolOptions`].
    pub fn new() -> RequestOptions {
        RequestOptions::default()
    }

    /// This request's deadline (see [`PoolOptions::timeout`]); `None`: no deadline.
    pub fn timeout(mut self, t: Option<Duration>) -> RequestOptions {
        self.timeout = Some(t);
        self
    }

    /// Whether this request may be sent again after its connection died (see
    /// [`PoolOptions::safe_to_repeat`]).
    pub fn safe_to_repeat(mut self, yes: bool) -> RequestOptions {
        self.safe_to_repeat = Some(yes);
        self
    }

    /// Whether this request waits for a responder when none is up (see
    /// [`PoolOptions::wait_for_connection`]).
    pub fn wait_for_connection(mut self, wait: bool) -> RequestOptions {
        self.wait_for_connection = Some(wait);
        self
    }

    /// The settings in force for a request for `op` under `options`.
    pub(crate) fn resolve(&self, op: &str, options: &PoolOptions) -> Policy {
        Policy {
            timeout: self.timeout.unwrap_or(options.timeout),
            repeat: self
                .safe_to_repeat
                .unwrap_or_else(|| options.is_safe_to_repeat(op)),
            wait: self
                .wait_for_connection
                .unwrap_or(options.wait_for_connection),
            wait_limit: options.connect_timeout,
            max_attempts: options.max_attempts,
        }
    }
}

/// The settings of one request, resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) timeout: Option<Duration>,
    pub(crate) repeat: bool,
    pub(crate) wait: bool,
    /// Longest wait for a responder of a request without a deadline.
    pub(crate) wait_limit: Duration,
    pub(crate) max_attempts: u32,
}
