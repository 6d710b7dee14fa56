//! [`ServerOptions`]: the limits of a server as a whole, beyond those of each connection
//! ([`Limits`](crate::Limits)).

use std::time::Duration;

/// Default [`ServerOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default [`ServerOptions::max_connections_per_address`].
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// Default [`ServerOptions::evict_idle_after`].
pub const DEFAULT_EVICT_IDLE_AFTER: Duration = Duration::from_secs(5);
/// Default [`ServerOptions::http_header_timeout`].
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerOptions::max_http_connections`].
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 1_024;
/// Default [`ServerOptions::max_http_connections_per_address`].
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Default [`ServerOptions::ws_message_allowance`].
pub const DEFAULT_WS_MESSAGE_ALLOWANCE: usize = 64 * 1024;

/// The limits of a server as a whole: how many connections it serves, how many of them one
/// peer address may hold, when an idle one makes room for a new one, and, for a WebSocket
/// server, the limits of its HTTP side. Each field has a setter of the same name.
///
/// A peer address is an IPv4 address, or the /64 prefix of an IPv6 address (what one host
/// usually has). Unix-socket peers have no address and only count toward the total.
///
/// | field | default | what a peer over it gets |
/// |---|---|---|
/// | [`max_connections`](Self::max_connections) | 10 000 | the idlest connection is closed for it, else it is refused (closed at once; 503 for a WebSocket upgrade) |
/// | [`max_connections_per_address`](Self::max_connections_per_address) | 256 | refused (closed at once; 503) |
/// | [`evict_idle_after`](Self::evict_idle_after) | 5 s | — (how idle a connection must be to make room) |
/// | [`http_header_timeout`](Self::http_header_timeout) | 10 s | the HTTP connection is closed |
/// | [`max_http_connections`](Self::max_http_connections) | 1 024 | the longest-waiting idle HTTP connection is closed for it, else it is refused |
/// | [`max_http_connections_per_address`](Self::max_http_connections_per_address) | 64 | the same, among that address's HTTP connections |
/// | [`ws_message_allowance`](Self::ws_message_allowance) | 64 KiB | a WebSocket message over `max_payload` + this: close 1009 |
///
/// Behind a reverse proxy every connection comes from the proxy's address: raise or lift the
/// per-address limits there (and limit per client in the proxy).
///
/// ```
/// use std::time::Duration;
/// use gotalk::ServerOptions;
///
/// let options = ServerOptions::default()
///     .max_connections(2_000)
///     .max_connections_per_address(Some(50))
///     .evict_idle_after(Some(Duration::from_secs(30)))
///     .http_header_timeout(Duration::from_secs(5));
/// assert_eq!(options.max_connections, 2_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Most connections served at once (at least 1): connections still in their handshake
    /// count too. At the cap a new connection takes the place of the idlest one (see
    /// [`evict_idle_after`](Self::evict_idle_after)), or is refused: closed at once (a
    /// WebSocket upgrade gets `503 Service Unavailable`), never left waiting.
    pub max_connections: usize,
    /// Most connections from one peer address; `None` for no limit of its own. Connections
    /// beyond it are refused at once, whatever the total.
    pub max_connections_per_address: Option<usize>,
    /// At [`max_connections`](Self::max_connections), the connection longest without a
    /// message other than a heartbeat is closed to admit a new one, if that was at least this
    /// long ago and it has no request in progress (neither the peer's nor ours); `None` never
    /// closes one (new connections are refused instead). So heartbeats alone do not hold a
    /// place forever, and a new connection has this long to make its first request.
    pub evict_idle_after: Option<Duration>,
    /// WebSocket servers: the whole head of an HTTP request (the upgrade, or a `gotalk.js`
    /// download) must arrive within this long of the connection opening or of the previous
    /// response, else the connection is closed. Closes idle and trickling (slowloris) HTTP
    /// connections.
    pub http_header_timeout: Duration,
    /// WebSocket servers: most HTTP connections not (yet) upgraded to WebSocket (at least 1).
    /// At the cap, the one that has waited longest for a request head is closed for a new
    /// one; if every one is busy with a request, the new one is refused.
    pub max_http_connections: usize,
    /// WebSocket servers: most HTTP connections not yet upgraded from one peer address
    /// (`None`: no limit of its own); at it, that address's longest-waiting one makes room,
    /// else the new one is refused.
    pub max_http_connections_per_address: Option<usize>,
    /// WebSocket: bytes a WebSocket message (and frame) may carry beyond the payload limit
    /// ([`Limits::max_payload`](crate::Limits::max_payload)), for the headers of a peer that
    /// puts several gotalk messages in one. A larger message is refused from its header on
    /// (close status 1009), before it is buffered.
    pub ws_message_allowance: usize,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
            evict_idle_after: Some(DEFAULT_EVICT_IDLE_AFTER),
            http_header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_address: Some(DEFAULT_MAX_HTTP_CONNECTIONS_PER_ADDRESS),
            ws_message_allowance: DEFAULT_WS_MESSAGE_ALLOWANCE,
        }
    }
}

impl ServerOptions {
    /// Sets [`ServerOptions::max_connections`] (0 counts as 1).
    pub fn max_connections(mut self, n: usize) -> ServerOptions {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`ServerOptions::max_connections_per_address`] (`Some(0)` counts as `Some(1)`).
    pub fn max_connections_per_address(mut self, n: Option<usize>) -> ServerOptions {
        self.max_connections_per_address = n.map(|n| n.max(1));
        self
    }

    /// Sets [`ServerOptions::evict_idle_after`].
    pub fn evict_idle_after(mut self, idle: Option<Duration>) -> ServerOptions {
        self.evict_idle_after = idle;
        self
    }

    /// Sets [`ServerOptions::http_header_timeout`].
    pub fn http_header_timeout(mut self, t: Duration) -> ServerOptions {
        self.http_header_timeout = t;
        self
    }

    /// Sets [`ServerOptions::max_http_connections`] (0 counts as 1).
    pub fn max_http_connections(mut self, n: usize) -> ServerOptions {
        self.max_http_connections = n.max(1);
        self
    }

    /// Sets [`ServerOptions::max_http_connections_per_address`] (`Some(0)` counts as
    /// `Some(1)`).
    pub fn max_http_connections_per_address(mut self, n: Option<usize>) -> ServerOptions {
        self.max_http_connections_per_address = n.map(|n| n.max(1));
        self
    }

    /// Sets [`ServerOptions::ws_message_allowance`].
    pub fn ws_message_allowance(mut self, bytes: usize) -> ServerOptions {
        self.ws_message_allowance = bytes;
        self
    }
}
