//! Every limit a connection enforces, in one place, and the checks that apply them.
//!
//! | limit | default | enforced where | what the peer sees |
//! |---|---|---|---|
//! | [`max_payload`](Limits::max_payload) | 16 MiB | decoder, before allocating | ErrorResult `payload too large`; connection stays open |
//! | [`buffer_requests`](Limits::buffer_requests) | [`UNLIMITED`](Limits::UNLIMITED) | on each `r`/`s` | RetryResult `request rate limit` |
//! | [`stream_requests`](Limits::stream_requests) | 0 (none: refused) | on each `s` | ErrorResult `stream requests not supported`, or RetryResult |
//! | [`read_timeout`](Limits::read_timeout) | 30 s | reader, per message | ProtocolError 3 and close |
//! | [`write_timeout`](Limits::write_timeout) | 30 s | writer | connection closed (peer does not read) |
//! | [`handshake_timeout`](Limits::handshake_timeout) | 10 s | opening a connection | connection dropped |
//! | [`write_queue`](Limits::write_queue) | 1024 messages | senders wait when full | back-pressure |
//! | [`stream_queue`](Limits::stream_queue) | 32 parts | reader waits when full | back-pressure |
//!
//! Request limits count per connection, so one peer's flood never starves another peer. The
//! limits of a server as a whole (connections in total and per peer address, which idle one
//! makes room, the HTTP side of a WebSocket port, the WebSocket message allowance) are
//! [`ServerOptions`](crate::ServerOptions).
//!
//! ```
//! use std::time::Duration;
//! use gotalk::Limits;
//!
//! let limits = Limits::default()
//!     .buffer_requests(64)
//!     .stream_requests(4)
//!     .max_payload(1 << 20)
//!     .read_timeout(Some(Duration::from_secs(10)))
//!     .retry_wait(Duration::from_millis(100), Duration::from_secs(1));
//! assert_eq!(limits.stream_requests, 4);
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Default [`Limits::max_payload`]: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: u32 = 16 << 20;

/// Resource limits for connections. Cheap to clone; see the [module docs](self) for the table of
/// defaults.
///
/// Read a limit from its field (`limits.max_payload`); set it with the builder method of the
/// same name. Counts are plain numbers — `0` allows none — with [`Limits::UNLIMITED`] for no
/// limit; a timeout of `None` waits forever.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload accepted in one message, in bytes.
    pub max_payload: u32,
    /// Requests (of any kind) one connection may have in progress at once.
    pub buffer_requests: u32,
    /// Stream requests one connection may have in progress at once (`0`: none, streams are
    /// refused).
    pub stream_requests: u32,
    /// Shortest `wait` drawn for a limit's RetryResult.
    pub retry_wait_min: Duration,
    /// Longest `wait` drawn for a limit's RetryResult.
    pub retry_wait_max: Duration,
    /// Longest time to wait for the next complete message.
    pub read_timeout: Option<Duration>,
    /// Longest time a write may make no progress.
    pub write_timeout: Option<Duration>,
    /// Longest wait for the peer's protocol version when a connection opens (and, on
    /// transports that have one, for the TLS or WebSocket handshake before it).
    pub handshake_timeout: Option<Duration>,
    /// Messages that may wait to be written before senders are made to wait.
    pub write_queue: usize,
    /// Parts of one incoming stream buffered before the reader waits for its handler.
    pub stream_queue: usize,
}

impl Default for Limits {
    /// Like the reference's `DefaultLimits`: buffer requests unlimited, stream requests disabled,
    /// 30 s read timeout; plus a 16 MiB payload limit the reference lacks.
    fn default() -> Limits {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
            buffer_requests: Limits::UNLIMITED,
            stream_requests: 0,
            retry_wait_min: Duration::from_millis(500),
            retry_wait_max: Duration::from_millis(5000),
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(10)),
            write_queue: 1024,
            stream_queue: 32,
        }
    }
}

impl Limits {
    /// A count that means "no limit".
    pub const UNLIMITED: u32 = u32::MAX;

    /// No request limits and no read timeout (like the reference's `NoLimits`); stream requests
    /// are unlimited. The payload limit stays at its default.
    pub fn none() -> Limits {
        Limits {
            buffer_requests: Limits::UNLIMITED,
            stream_requests: Limits::UNLIMITED,
            read_timeout: None,
            ..Limits::default()
        }
    }

    /// Largest payload accepted in one message. Larger requests get an ErrorResult and their
    /// payload is skipped without being buffered.
    pub fn max_payload(mut self, bytes: u32) -> Limits {
        self.max_payload = bytes;
        self
    }

    /// How many requests (of any kind) one connection may have in progress at once
    /// ([`Limits::UNLIMITED`] for no limit). Requests over the limit get a RetryResult.
    pub fn buffer_requests(mut self, n: u32) -> Limits {
        self.buffer_requests = n;
        self
    }

    /// How many stream requests one connection may have in progress at once; `0` refuses
    /// stream requests with an ErrorResult, [`Limits::UNLIMITED`] sets no limit beyond
    /// [`Limits::buffer_requests`]. Stream requests over the limit get a RetryResult.
    pub fn stream_requests(mut self, n: u32) -> Limits {
        self.stream_requests = n;
        self
    }

    /// The range from which the `wait` of a limit's RetryResult is drawn (default 0.5–5 s).
    pub fn retry_wait(mut self, min: Duration, max: Duration) -> Limits {
        self.retry_wait_min = min.min(max);
        self.retry_wait_max = max.max(min);
        self
    }

    /// Longest time to wait for the next complete message; `None` waits forever. On expiry the
    /// connection is closed with ProtocolError 3.
    pub fn read_timeout(mut self, t: Option<Duration>) -> Limits {
        self.read_timeout = t;
        self
    }

    /// Longest time a write may make no progress (a peer that does not read) before the
    /// connection is closed; `None` waits forever.
    pub fn write_timeout(mut self, t: Option<Duration>) -> Limits {
        self.write_timeout = t;
        self
    }

    /// Longest wait for the handshakes when a connection opens (the peer's protocol version,
    /// and the TLS or WebSocket handshake before it); `None` waits forever.
    pub fn handshake_timeout(mut self, t: Option<Duration>) -> Limits {
        self.handshake_timeout = t;
        self
    }

    /// Messages that may wait to be written before senders are made to wait (at least 1).
    pub fn write_queue(mut self, n: usize) -> Limits {
        self.write_queue = n.max(1);
        self
    }

    /// Parts of one incoming stream request buffered before the reader waits for its handler
    /// (at least 1).
    pub fn stream_queue(mut self, n: usize) -> Limits {
        self.stream_queue = n.max(1);
        self
    }

    /// The handshake timeout as a duration (`None`: a year, as good as forever).
    pub(crate) fn handshake_wait(&self) -> Duration {
        self.handshake_timeout
            .unwrap_or(Duration::from_secs(365 * 86400))
    }

    /// A wait for a RetryResult, drawn uniformly from the configured range.
    pub fn draw_retry_wait(&self) -> Duration {
        let (lo, hi) = (
            self.retry_wait_min.as_millis() as u64,
            self.retry_wait_max.as_millis() as u64,
        );
        Duration::from_millis(if hi > lo { fastrand::u64(lo..=hi) } else { lo })
    }
}

/// What the limits say about an incoming request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go ahead; release the slot with [`Counters::release`] when done.
    Yes,
    /// Over the limit: answer with a RetryResult.
    Retry,
    /// Stream requests are disabled: answer with an ErrorResult.
    StreamsDisabled,
}

/// Per-connection counters of requests in progress.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU32,
    streams: AtomicU32,
}

impl Counters {
    /// Takes a slot for a request (`stream` = a stream request), if the limits allow.
    pub(crate) fn admit(&self, limits: &Limits, stream: bool) -> Admit {
        if stream && limits.stream_requests == 0 {
            return Admit::StreamsDisabled;
        }
        if !take(&self.requests, limits.buffer_requests) {
            return Admit::Retry;
        }
        if stream && !take(&self.streams, limits.stream_requests) {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return Admit::Retry;
        }
        Admit::Yes
    }

    /// Gives back a slot taken by [`Counters::admit`].
    pub(crate) fn release(&self, stream: bool) {
        // SeqCst (the same instruction as AcqRel on x86): a shutdown that starts waiting and
        // then finds this request still counted must see its end here.
        if self.requests.fetch_sub(1, Ordering::SeqCst) == 1 && drain::waiting() {
            drain::IDLE.notify_waiters();
        }
        if stream {
            self.streams.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Requests in progress.
    pub(crate) fn in_progress(&self) -> u32 {
        self.requests.load(Ordering::Acquire)
    }
}

/// How a graceful shutdown learns that connections went idle without polling them: while one
/// waits ([`drain::Waiting`]), a connection whose last request in progress ends wakes it (every
/// waiting shutdown of the process; each checks its own connections again). Otherwise this
/// costs one relaxed load when a connection's requests in progress drop to zero.
pub(crate) mod drain {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    static WAITING: AtomicUsize = AtomicUsize::new(0);
    /// Notified when a connection's requests in progress drop to zero while someone waits.
    pub(crate) static IDLE: Notify = Notify::const_new();

    pub(super) fn waiting() -> bool {
        WAITING.load(Ordering::SeqCst) > 0
    }

    /// Held by a shutdown while it waits on [`IDLE`].
    #[derive(Debug)]
    pub(crate) struct Waiting(());

    impl Waiting {
        /// Counts a waiter; read the counters after this, they are then sure to wake it.
        pub(crate) fn start() -> Waiting {
            WAITING.fetch_add(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            Waiting(())
        }
    }

    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Takes one unit of `counter` unless that would exceed `limit`.
fn take(counter: &AtomicU32, limit: u32) -> bool {
    let n = counter.fetch_add(1, Ordering::AcqRel) + 1;
    if limit != Limits::UNLIMITED && n > limit {
        counter.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_limit_counts_toward_request_limit() {
        let l = Limits::default().buffer_requests(2).stream_requests(1);
        let c = Counters::default();
        assert_eq!(c.admit(&l, true), Admit::Yes);
        assert_eq!(c.admit(&l, true), Admit::Retry);
        assert_eq!(c.admit(&l, false), Admit::Yes);
        assert_eq!(c.admit(&l, false), Admit::Retry);
        c.release(true);
        assert_eq!(c.admit(&l, true), Admit::Yes);
        assert_eq!(c.in_progress(), 2);
    }

    #[test]
    fn defaults_disable_streams() {
        let c = Counters::default();
        assert_eq!(c.admit(&Limits::default(), true), Admit::StreamsDisabled);
        assert_eq!(c.admit(&Limits::default(), false), Admit::Yes);
    }

    #[test]
    fn retry_wait_in_range() {
        let l = Limits::default().retry_wait(Duration::from_millis(10), Duration::from_millis(20));
        for _ in 0..100 {
            let w = l.draw_retry_wait();
            assert!(w >= Duration::from_millis(10) && w <= Duration::from_millis(20));
        }
    }
}
