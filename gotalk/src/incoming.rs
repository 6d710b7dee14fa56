//! The peer's stream requests being handled here: where each incoming part goes (an open
//! stream's handler, nowhere for a refused or finished one, or nowhere at all: a protocol
//! error). No I/O: owned by the connection's reader, tested directly.

use std::collections::{HashMap, VecDeque};

use crate::error::{CloseReason, Error};
use crate::frame::RequestId;
use crate::parts::{Part, PartSender};

/// How many stream IDs the reader remembers after refusing or finishing them, so that the
/// peer's remaining parts for them are dropped quietly instead of being treated as parts for
/// a stream that never existed.
pub(crate) const IGNORED_STREAMS: usize = 64;

/// The peer's stream requests that are being handled here, by request ID. Owned by the reader.
#[derive(Debug)]
pub(crate) struct IncomingStreams {
    open: HashMap<u32, PartSender>,
    ignored: VecDeque<RequestId>,
    /// Size of `open` at which entries of finished handlers are next swept out.
    sweep_at: usize,
}

/// Where a `p` part should go.
#[derive(Debug)]
pub(crate) enum PartTarget {
    /// To this open stream's handler.
    Open(PartSender),
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
    pub(crate) fn open(&mut self, id: RequestId, tx: PartSender) {
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
            let _ = tx.send(Part::free(Err(Error::Closed(reason.clone()))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_finished_handlers_are_swept() {
        let mut s = IncomingStreams::default();
        for i in 0..10_000u32 {
            let (tx, rx) = crate::parts::channel();
            drop(rx); // the handler finished without reading to the end
            s.open(RequestId(i.to_be_bytes()), tx);
        }
        assert!(s.open_count() <= 2 * IGNORED_STREAMS, "{}", s.open_count());
        let (tx, _rx) = crate::parts::channel();
        let live = RequestId(*b"live");
        s.open(live, tx);
        for i in 10_000..20_000u32 {
            let (tx, rx) = crate::parts::channel();
            drop(rx);
            s.open(RequestId(i.to_be_bytes()), tx);
        }
        assert!(matches!(s.route(live, false), PartTarget::Open(_)));
    }

    #[test]
    fn parts_route_to_open_ignored_or_unknown() {
        let mut s = IncomingStreams::default();
        let (tx, _rx) = crate::parts::channel();
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
