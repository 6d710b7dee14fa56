//! Connection state that needs no I/O: request ID allocation, the table of our requests waiting
//! for results, and the bookkeeping of the peer's stream requests.
//!
//! [`crate::sock`] drives this state from its reader and writer tasks. Keeping it here, free of
//! sockets and clocks, lets it be tested directly.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::{CloseReason, Error};
use crate::frame::{RequestId, PRINTABLE_ID_SPACE};
use crate::stream::PartResult;

/// The answer to a single-result request, as received.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `R`: the result payload.
    Result(Bytes),
    /// `E`: the peer's error text.
    Error(Bytes),
    /// `e`: retry after `wait_ms`, with the peer's reason.
    Retry(u32, Bytes),
    /// `S` arrived for a single-result request.
    UnexpectedStream,
    /// The announced result was larger than our payload limit.
    TooLarge(u32),
}

/// Who is waiting for the results of one of our requests.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A single-result request (`r`).
    Single(oneshot::Sender<std::result::Result<Reply, CloseReason>>),
    /// A stream request (`s`): result parts go into the channel.
    Stream(mpsc::Sender<PartResult>),
}

impl Waiter {
    /// Tells the waiter that the connection closed.
    pub(crate) fn fail(self, reason: &CloseReason) {
        match self {
            Waiter::Single(tx) => {
                let _ = tx.send(Err(reason.clone()));
            }
            Waiter::Stream(tx) => {
                let _ = tx.try_send(Err(Error::Closed(reason.clone())));
            }
        }
    }
}

/// Our requests in flight, keyed by request ID, plus whether the connection has closed.
///
/// Registering a request and closing the connection happen under the same lock, so a request
/// either gets a result or learns that the connection closed: never silence.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    next: u32,
    waiting: HashMap<u32, Waiter, BuildHasherDefault<IdHasher>>,
    closed: Option<CloseReason>,
}

/// Hashes request IDs (4 bytes as a `u32`) with one multiplication: they come from a counter
/// here, so they need no protection against chosen collisions, and the default SipHash costs
/// more than the rest of a table operation.
#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        let h = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Pending {
    /// Allocates a fresh printable request ID for `waiter`, skipping IDs still in flight after
    /// the counter wraps. Fails if the connection has closed.
    pub(crate) fn insert(&mut self, waiter: Waiter) -> std::result::Result<RequestId, CloseReason> {
        if let Some(r) = &self.closed {
            return Err(r.clone());
        }
        loop {
            let id = RequestId::from_counter(self.next);
            self.next = (self.next + 1) % PRINTABLE_ID_SPACE;
            if let std::collections::hash_map::Entry::Vacant(e) = self.waiting.entry(id.as_u32()) {
                e.insert(waiter);
                return Ok(id);
            }
        }
    }

    /// Removes and returns the waiter for `id`.
    pub(crate) fn remove(&mut self, id: RequestId) -> Option<Waiter> {
        self.waiting.remove(&id.as_u32())
    }

    /// For a stream waiter: a clone of its channel, leaving it registered.
    pub(crate) fn stream_sender(&self, id: RequestId) -> Option<mpsc::Sender<PartResult>> {
        match self.waiting.get(&id.as_u32()) {
            Some(Waiter::Stream(tx)) => Some(tx.clone()),
            _ => None,
        }
    }

    /// Whether `id` is waiting for a streaming result.
    pub(crate) fn is_stream(&self, id: RequestId) -> bool {
        matches!(self.waiting.get(&id.as_u32()), Some(Waiter::Stream(_)))
    }

    /// Marks the connection closed and hands back every waiter, to be failed outside the lock.
    /// Returns `None` if it was already closed.
    pub(crate) fn close(&mut self, reason: CloseReason) -> Option<Vec<Waiter>> {
        if self.closed.is_some() {
            return None;
        }
        self.closed = Some(reason);
        Some(self.waiting.drain().map(|(_, w)| w).collect())
    }

    /// Why the connection closed, once it has.
    pub(crate) fn closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Requests in flight.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// How many stream IDs the reader remembers after refusing or finishing them, so that the
/// peer's remaining parts for them are dropped quietly instead of being treated as parts for
/// a stream that never existed.
pub(crate) const IGNORED_STREAMS: usize = 64;

/// The peer's stream requests that are being handled here, by request ID. Owned by the reader.
#[derive(Debug)]
pub(crate) struct IncomingStreams {
    open: HashMap<u32, mpsc::Sender<PartResult>>,
    ignored: VecDeque<RequestId>,
    /// Size of `open` at which entries of finished handlers are next swept out.
    sweep_at: usize,
}

/// Where a `p` part should go.
#[derive(Debug)]
pub(crate) enum PartTarget {
    /// To this open stream's handler.
    Open(mpsc::Sender<PartResult>),
    /// Drop it: the stream was refused or its handler finished.
    Ignore,
    /// No stream with this ID was ever started: a protocol violation.
    Unknown,
}

impl Default for IncomingStreams {
    fn default() -> IncomingStreams {
        IncomingStreams {
            open: HashMap::new(),
            ignored: VecDeque::new(),
            sweep_at: IGNORED_STREAMS,
        }
    }
}

impl IncomingStreams {
    /// Whether a stream with this ID is open.
    pub(crate) fn is_open(&self, id: RequestId) -> bool {
        self.open.contains_key(&id.as_u32())
    }

    /// Registers an open stream.
    pub(crate) fn open(&mut self, id: RequestId, tx: mpsc::Sender<PartResult>) {
        self.forget_ignored(id);
        if self.open.len() >= self.sweep_at {
            // A handler that returned before its input ended leaves an entry behind until the
            // peer ends the stream; a peer that never does must not grow this table without
            // bound. Sweeping when the table doubles keeps the cost amortised O(1).
            let finished: Vec<u32> = self
                .open
                .iter()
                .filter(|(_, tx)| tx.is_closed())
                .map(|(k, _)| *k)
                .collect();
            for k in finished {
                self.open.remove(&k);
                self.ignore(RequestId(k.to_be_bytes()));
            }
            self.sweep_at = (self.open.len() * 2).max(IGNORED_STREAMS);
        }
        self.open.insert(id.as_u32(), tx);
    }

    /// Streams whose handler may still want parts.
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Remembers a stream whose further parts are to be dropped.
    pub(crate) fn ignore(&mut self, id: RequestId) {
        self.open.remove(&id.as_u32());
        if self.ignored.len() == IGNORED_STREAMS {
            self.ignored.pop_front();
        }
        self.ignored.push_back(id);
    }

    fn forget_ignored(&mut self, id: RequestId) {
        self.ignored.retain(|i| *i != id);
    }

    /// Where part `id` goes. An empty (final) part also closes the entry.
    pub(crate) fn route(&mut self, id: RequestId, last: bool) -> PartTarget {
        if last {
            if let Some(tx) = self.open.remove(&id.as_u32()) {
                return PartTarget::Open(tx);
            }
        } else if let Some(tx) = self.open.get(&id.as_u32()) {
            return PartTarget::Open(tx.clone());
        }
        if self.ignored.contains(&id) {
            if last {
                self.forget_ignored(id);
            }
            return PartTarget::Ignore;
        }
        PartTarget::Unknown
    }

    /// Closes every open stream with an error (the connection ended).
    pub(crate) fn fail_all(&mut self, reason: &CloseReason) {
        for (_, tx) in self.open.drain() {
            let _ = tx.try_send(Err(Error::Closed(reason.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_skip_those_in_flight() {
        let mut p = Pending {
            next: PRINTABLE_ID_SPACE - 1,
            ..Default::default()
        };
        let (tx, _rx) = mpsc::channel(1);
        let a = p.insert(Waiter::Stream(tx.clone())).unwrap();
        assert_eq!(&a.0, b"ZZZZ");
        p.next = PRINTABLE_ID_SPACE - 1;
        let b = p.insert(Waiter::Stream(tx)).unwrap();
        assert_eq!(&b.0, b"0000");
    }

    #[test]
    fn close_hands_back_every_waiter_once() {
        let mut p = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        p.insert(Waiter::Single(tx)).unwrap();
        let ws = p.close(CloseReason::PeerClosed).unwrap();
        assert_eq!(ws.len(), 1);
        ws.into_iter()
            .for_each(|w| w.fail(&CloseReason::PeerClosed));
        assert_eq!(rx.try_recv().unwrap().unwrap_err(), CloseReason::PeerClosed);
        assert!(p.close(CloseReason::Local).is_none());
        let (tx, _rx) = oneshot::channel();
        assert!(p.insert(Waiter::Single(tx)).is_err());
    }

    #[test]
    fn entries_of_finished_handlers_are_swept() {
        let mut s = IncomingStreams::default();
        for i in 0..10_000u32 {
            let (tx, rx) = mpsc::channel(1);
            drop(rx); // the handler finished without reading to the end
            s.open(RequestId(i.to_be_bytes()), tx);
        }
        assert!(s.open_count() <= 2 * IGNORED_STREAMS, "{}", s.open_count());
        let (tx, _rx) = mpsc::channel(1);
        let live = RequestId(*b"live");
        s.open(live, tx);
        for i in 10_000..20_000u32 {
            let (tx, rx) = mpsc::channel(1);
            drop(rx);
            s.open(RequestId(i.to_be_bytes()), tx);
        }
        assert!(matches!(s.route(live, false), PartTarget::Open(_)));
    }

    #[test]
    fn parts_route_to_open_ignored_or_unknown() {
        let mut s = IncomingStreams::default();
        let (tx, _rx) = mpsc::channel(1);
        let a = RequestId(*b"aaaa");
        s.open(a, tx);
        assert!(matches!(s.route(a, false), PartTarget::Open(_)));
        assert!(matches!(s.route(a, true), PartTarget::Open(_)));
        assert!(matches!(s.route(a, false), PartTarget::Unknown));
        s.ignore(a);
        assert!(matches!(s.route(a, false), PartTarget::Ignore));
        assert!(matches!(s.route(a, true), PartTarget::Ignore));
        assert!(matches!(s.route(a, true), PartTarget::Unknown));
    }
}
