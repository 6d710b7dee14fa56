//! Our requests waiting for their replies: request ID allocation, the table of pending
//! requests, and the close that fails them all. No I/O: the connection's tasks drive it under
//! the connection's lock, and it is tested directly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use std::task::Waker;

use crate::error::{CloseReason, Error};
use crate::frame::{RequestId, PRINTABLE_ID_SPACE};
use crate::parts::{Part, PartSender};

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
    /// A single-result request (`r`): the reply once it has arrived, and the task to wake
    /// then. The requesting future takes the reply out of the table itself, so completing a
    /// request allocates nothing.
    Single {
        /// The reply, once it has arrived.
        reply: Option<Reply>,
        /// The requesting task, while it waits.
        waker: Option<Waker>,
    },
    /// A stream request (`s`): result parts go into the channel.
    Stream(PartSender),
}

impl Waiter {
    /// A single-result request whose task is `waker`.
    pub(crate) fn single(waker: &Waker) -> Waiter {
        Waiter::Single {
            reply: None,
            waker: Some(waker.clone()),
        }
    }
}

/// What completing a request with a reply asks of the reader.
#[derive(Debug)]
pub(crate) enum Completed {
    /// Stored for a single request; wake its task (if it waits) once the lock is let go.
    Single(Option<Waker>),
    /// The request is a stream request (now out of the table): deliver the reply through its
    /// channel.
    Stream(PartSender, Reply),
    /// No request is waiting for this ID (forgotten, or answered twice): drop the reply.
    Unknown,
}

/// Where a part of a streaming result (`S`) goes.
#[derive(Debug)]
pub(crate) enum StreamResultTarget {
    /// To our stream request's receiver (an empty part ends it; its entry is then gone).
    Stream(PartSender),
    /// The ID is not one of our stream requests (a single request's, or unknown).
    NotStream,
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

    /// Removes the entry for `id` (a stream that ended, a request given up).
    pub(crate) fn remove(&mut self, id: RequestId) -> Option<Waiter> {
        self.waiting.remove(&id.as_u32())
    }

    /// Completes request `id` with `reply`.
    pub(crate) fn complete(&mut self, id: RequestId, reply: Reply) -> Completed {
        match self.waiting.get_mut(&id.as_u32()) {
            Some(Waiter::Single {
                reply: r @ None,
                waker,
            }) => {
                *r = Some(reply);
                Completed::Single(waker.take())
            }
            Some(Waiter::Stream(_)) => match self.waiting.remove(&id.as_u32()) {
                Some(Waiter::Stream(tx)) => Completed::Stream(tx, reply),
                _ => Completed::Unknown,
            },
            _ => Completed::Unknown,
        }
    }

    /// For the task waiting for single request `id`: its reply (taking the entry out), the
    /// reason the connection closed, or `None` after noting `waker` to wake when it arrives.
    pub(crate) fn poll_single(
        &mut self,
        id: RequestId,
        waker: &Waker,
    ) -> Option<std::result::Result<Reply, CloseReason>> {
        let key = id.as_u32();
        match self.waiting.get_mut(&key) {
            Some(Waiter::Single {
                reply: None,
                waker: w,
            }) if self.closed.is_none() => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                None
            }
            Some(Waiter::Single { reply, .. }) => {
                let reply = reply.take();
                self.waiting.remove(&key);
                Some(reply.ok_or_else(|| self.close_reason()))
            }
            _ => Some(Err(self.close_reason())),
        }
    }

    fn close_reason(&self) -> CloseReason {
        self.closed.clone().unwrap_or(CloseReason::Local)
    }

    /// Where a part (`end`: the empty last part) of the streaming result of `id` goes; the
    /// last one takes the request out of the table.
    pub(crate) fn stream_result(&mut self, id: RequestId, end: bool) -> StreamResultTarget {
        match self.waiting.get(&id.as_u32()) {
            Some(Waiter::Stream(tx)) if !end => StreamResultTarget::Stream(tx.clone()),
            Some(Waiter::Stream(_)) => match self.waiting.remove(&id.as_u32()) {
                Some(Waiter::Stream(tx)) => StreamResultTarget::Stream(tx),
                _ => StreamResultTarget::NotStream,
            },
            _ => StreamResultTarget::NotStream,
        }
    }

    /// Marks the connection closed. Single requests stay in the table (their tasks take the
    /// reason from there): their tasks are returned to be woken, and the channels of stream
    /// requests to be failed, outside the lock. Returns `None` if it was already closed.
    #[allow(clippy::type_complexity)]
    pub(crate) fn close(&mut self, reason: CloseReason) -> Option<(Vec<Waker>, Vec<PartSender>)> {
        if self.closed.is_some() {
            return None;
        }
        self.closed = Some(reason);
        let mut wakers = Vec::new();
        let mut streams = Vec::new();
        self.waiting.retain(|_, w| match w {
            Waiter::Single { waker, .. } => {
                wakers.extend(waker.take());
                true
            }
            Waiter::Stream(tx) => {
                streams.push(tx.clone());
                false
            }
        });
        Some((wakers, streams))
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
/// Fails a stream request's channel because the connection closed.
pub(crate) fn fail_stream(tx: &PartSender, reason: &CloseReason) {
    let _ = tx.send(Part::free(Err(Error::Closed(reason.clone()))));
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
        let (tx, _rx) = crate::parts::channel();
        let a = p.insert(Waiter::Stream(tx.clone())).unwrap();
        assert_eq!(&a.0, b"ZZZZ");
        p.next = PRINTABLE_ID_SPACE - 1;
        let b = p.insert(Waiter::Stream(tx)).unwrap();
        assert_eq!(&b.0, b"0000");
    }

    #[test]
    fn a_reply_is_kept_for_its_task_which_takes_it_once() {
        let waker = futures_util::task::noop_waker();
        let mut p = Pending::default();
        let id = p.insert(Waiter::single(&waker)).unwrap();
        assert!(p.poll_single(id, &waker).is_none());
        assert!(matches!(
            p.complete(id, Reply::Result(Bytes::from_static(b"x"))),
            Completed::Single(Some(_))
        ));
        // A second answer to the same request is not taken.
        assert!(matches!(
            p.complete(id, Reply::Result(Bytes::new())),
            Completed::Unknown
        ));
        match p.poll_single(id, &waker) {
            Some(Ok(Reply::Result(b))) => assert_eq!(&b[..], b"x"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn close_wakes_every_waiter_once() {
        let waker = futures_util::task::noop_waker();
        let mut p = Pending::default();
        let a = p.insert(Waiter::single(&waker)).unwrap();
        let b = p.insert(Waiter::single(&waker)).unwrap();
        // `b` was answered before the close: its answer still counts.
        let _ = p.complete(b, Reply::Result(Bytes::new()));
        let (tx, mut rx) = crate::parts::channel();
        p.insert(Waiter::Stream(tx)).unwrap();
        let (wakers, streams) = p.close(CloseReason::PeerClosed).unwrap();
        assert_eq!((wakers.len(), streams.len()), (1, 1));
        streams
            .iter()
            .for_each(|tx| fail_stream(tx, &CloseReason::PeerClosed));
        assert!(matches!(
            rx.try_recv().map(|p| p.data),
            Ok(Err(Error::Closed(CloseReason::PeerClosed)))
        ));
        assert_eq!(
            p.poll_single(a, &waker).unwrap().unwrap_err(),
            CloseReason::PeerClosed
        );
        assert!(matches!(
            p.poll_single(b, &waker),
            Some(Ok(Reply::Result(_)))
        ));
        assert!(p.close(CloseReason::Local).is_none());
        assert!(p.insert(Waiter::single(&waker)).is_err());
    }
}
