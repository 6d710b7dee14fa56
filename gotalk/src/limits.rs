//! Every limit a connection enforces ([`Limits`]: the table of defaults and reasons is on the
//! type), and the per-connection counters that apply the request limits.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// Default [`Limits::max_payload`]: 1 MiB.
const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;

/// Resource limits for connections: every limit a connection enforces, in one place. Cheap to
/// clone.
///
/// | limit | default | enforced where | what the peer sees |
/// |---|---|---|---|
/// | [`max_payload`](Limits::max_payload) | 1 MiB | decoder, before allocating | ErrorResult `payload too large`; connection stays open |
/// | [`buffer_requests`](Limits::buffer_requests) | 64 | on each `r`/`s` | RetryResult `request rate limit` |
/// | [`request_bytes`](Limits::request_bytes) | 4 MiB | on each `r` | RetryResult `request rate limit` |
/// | [`stream_requests`](Limits::stream_requests) | 8 | on each `s` | RetryResult; `0`: ErrorResult `stream requests not supported` |
/// | [`stream_buffer`](Limits::stream_buffer) | 1 MiB | reader, per stream part | back-pressure: the reader waits for stream handlers to take parts |
/// | [`stream_idle_timeout`](Limits::stream_idle_timeout) | 60 s | stream handler's input | the handler's `recv` fails; its ErrorResult |
/// | [`write_buffer`](Limits::write_buffer) | 1 MiB | senders wait when full | back-pressure: handlers, and then the reader, wait |
/// | [`write_timeout`](Limits::write_timeout) | 30 s | writer, without progress | connection closed (peer does not read) |
/// | [`read_timeout`](Limits::read_timeout) | 30 s | reader, per message | ProtocolError 3 and close |
/// | [`handshake_timeout`](Limits::handshake_timeout) | 10 s | opening a connection | connection dropped |
///
/// Every limit on memory counts bytes. What a connection can hold at most, and how the defaults
/// were chosen, is in SECURITY.md ("What a connection can cost").
///
/// Fixed bounds that are not settings, with their reasons:
///
/// | bound | value | why |
/// |---|---|---|
/// | reserved ahead of a message's bytes | 1 MiB (`sock/buffers.rs`) | a peer announcing a payload and not sending it commits nothing |
/// | large read buffers kept for reuse | 4, at most 4 × (`max_payload` + 64 KiB), released after 250 ms quiet (`sock/buffers.rs`) | reused pages instead of page faults on every large message |
/// | refused or finished stream IDs remembered | 64 (`incoming.rs`) | their late parts are dropped quietly, not taken for protocol errors |
/// | RetryResult wait honoured by an automatic retry | [`Config::max_retry_wait`](crate::Config::max_retry_wait), 30 s | a peer cannot park our requests for days |
/// | counted per stream part | its size + 64 bytes | a flood of empty parts is bounded too |
///
/// Request limits count per connection, so one peer's flood never starves another peer. The
/// limits of a server as a whole (connections in total and per peer address, which idle one
/// makes room, the HTTP side of a WebSocket port, the WebSocket message allowance) are
/// [`ServerOptions`](crate::ServerOptions).
///
/// ```
/// use std::time::Duration;
/// use gotalk::Limits;
///
/// let limits = Limits::default()
///     .buffer_requests(64)
///     .stream_requests(4)
///     .max_payload(1 << 20)
///     .read_timeout(Some(Duration::from_secs(10)))
///     .retry_wait(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(limits.stream_requests, 4);
/// ```
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
    /// Bytes of the peer's requests in progress on one connection: their payloads, and their
    /// answers until they are queued for writing.
    pub request_bytes: usize,
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
    /// Bytes that may wait to be written (queued, or being written) before senders wait.
    pub write_buffer: usize,
    /// Bytes of stream parts (of the peer's stream requests, and of the streaming results of
    /// ours) buffered on one connection before its reader waits for them to be taken.
    pub stream_buffer: usize,
    /// Longest wait for the next part of a peer's stream request.
    pub stream_idle_timeout: Option<Duration>,
}

impl Default for Limits {
    /// Limits for a server facing the internet (see the table on [`Limits`] and
    /// SECURITY.md for the reasons). The reference's `DefaultLimits` has no request limit, no
    /// payload limit and no stream requests; these bound every connection in bytes.
    fn default() -> Limits {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
            buffer_requests: 64,
            request_bytes: 4 << 20,
            stream_requests: 8,
            retry_wait_min: Duration::from_millis(500),
            retry_wait_max: Duration::from_millis(5000),
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(10)),
            write_buffer: 1 << 20,
            stream_buffer: 1 << 20,
            stream_idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl Limits {
    /// A count that means "no limit".
    pub const UNLIMITED: u32 = u32::MAX;

    /// No request limits, no read timeout and no stream idle timeout (like the reference's
    /// `NoLimits`), for peers you trust. The limits on memory (payload size, buffers) stay.
    pub fn none() -> Limits {
        Limits {
            buffer_requests: Limits::UNLIMITED,
            request_bytes: usize::MAX,
            stream_requests: Limits::UNLIMITED,
            read_timeout: None,
            stream_idle_timeout: None,
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

    /// How many bytes the peer's requests in progress on one connection may hold: their payloads
    /// and, until they are queued, their answers. A request that would go over gets a
    /// RetryResult, unless nothing else is in progress.
    pub fn request_bytes(mut self, bytes: usize) -> Limits {
        self.request_bytes = bytes;
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

    /// Bytes that may wait to be written before senders wait for the peer to read (at least 1;
    /// one message may go over). Counts the batch being written too.
    pub fn write_buffer(mut self, bytes: usize) -> Limits {
        self.write_buffer = bytes.max(1);
        self
    }

    /// Bytes of stream parts buffered on one connection before its reader waits for stream
    /// handlers (and our stream requests' receivers) to take them (at least 1). Each part counts
    /// its size plus 64 bytes.
    pub fn stream_buffer(mut self, bytes: usize) -> Limits {
        self.stream_buffer = bytes.max(1);
        self
    }

    /// Longest wait for the next part of a stream request of the peer's: then the handler's
    /// [`StreamReceiver::recv`](crate::StreamReceiver::recv) fails with
    /// [`Error::Timeout`](crate::Error::Timeout) (`None`: wait forever).
    pub fn stream_idle_timeout(mut self, t: Option<Duration>) -> Limits {
        self.stream_idle_timeout = t;
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
    /// Bytes held by requests in progress (see [`Limits::request_bytes`]).
    bytes: AtomicUsize,
}

impl Counters {
    /// Takes a slot for a request (`stream` = a stream request) holding `bytes`, if the limits
    /// allow. The bytes are given back with [`Counters::release`].
    pub(crate) fn admit(&self, limits: &Limits, stream: bool, bytes: usize) -> Admit {
        if stream && limits.stream_requests == 0 {
            return Admit::StreamsDisabled;
        }
        // Only the reader admits, so a load then an add cannot overshoot; answers only give
        // bytes back or hold their own. One request is always let in, however large (up to
        // `max_payload`), so that a large request cannot be refused forever.
        let held = self.bytes.load(Ordering::Acquire);
        if held > 0 && held.saturating_add(bytes) > limits.request_bytes {
            return Admit::Retry;
        }
        if !take(&self.requests, limits.buffer_requests) {
            return Admit::Retry;
        }
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if stream && !take(&self.streams, limits.stream_requests) {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return Admit::Retry;
        }
        Admit::Yes
    }

    /// Counts `bytes` more held by a request in progress (its answer, waiting to be queued).
    pub(crate) fn hold(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back a slot taken by [`Counters::admit`], and `bytes` it held.
    pub(crate) fn release(&self, stream: bool, bytes: usize) {
        if bytes > 0 {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
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

    /// Bytes held by requests in progress.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
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
        assert_eq!(c.admit(&l, true, 0), Admit::Yes);
        assert_eq!(c.admit(&l, true, 0), Admit::Retry);
        assert_eq!(c.admit(&l, false, 0), Admit::Yes);
        assert_eq!(c.admit(&l, false, 0), Admit::Retry);
        c.release(true, 0);
        assert_eq!(c.admit(&l, true, 0), Admit::Yes);
        assert_eq!(c.in_progress(), 2);
    }

    #[test]
    fn zero_stream_requests_refuses_streams() {
        let c = Counters::default();
        let l = Limits::default().stream_requests(0);
        assert_eq!(c.admit(&l, true, 0), Admit::StreamsDisabled);
        assert_eq!(c.admit(&l, false, 0), Admit::Yes);
    }

    #[test]
    fn the_defaults_are_finite() {
        let l = Limits::default();
        assert!(l.buffer_requests < Limits::UNLIMITED && l.stream_requests > 0);
        assert!(l.read_timeout.is_some() && l.write_timeout.is_some());
        assert!(l.stream_idle_timeout.is_some() && l.handshake_timeout.is_some());
    }

    #[test]
    fn request_bytes_bound_what_requests_in_progress_hold_but_one_always_fits() {
        let l = Limits::default().request_bytes(100).buffer_requests(10);
        let c = Counters::default();
        // Alone, a request larger than the limit is let in.
        assert_eq!(c.admit(&l, false, 150), Admit::Yes);
        assert_eq!(c.admit(&l, false, 1), Admit::Retry);
        c.release(false, 150);
        assert_eq!(c.admit(&l, false, 60), Admit::Yes);
        assert_eq!(c.admit(&l, false, 40), Admit::Yes);
        assert_eq!(c.admit(&l, false, 1), Admit::Retry);
        // An answer waiting to be written holds its bytes too.
        c.release(false, 40);
        c.hold(40);
        assert_eq!(c.admit(&l, false, 1), Admit::Retry);
        c.release(false, 60 + 40);
        assert_eq!(c.bytes(), 0);
        assert_eq!(c.in_progress(), 0);
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
