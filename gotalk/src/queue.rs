//! The bounded queue between a connection's senders and its writer task.
//!
//! It does what a bounded `tokio::sync::mpsc` channel did here (senders wait while it is full,
//! a permit reserves room, the writer takes everything queued at once), but allocates nothing
//! until the first message: tokio's channel allocates a block of 32 slots (≈ 2.3 KiB for our
//! items) when it is created, which every idle connection then holds.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore};

/// The queue was closed by its receiver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

/// A multi-producer, single-consumer queue holding at most `capacity` items.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    items: Mutex<State<T>>,
    /// One permit per free place.
    room: Semaphore,
    /// Wakes the receiver.
    ready: Notify,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// Room for one item, reserved with [`Queue::reserve`]; given back if dropped unused.
pub(crate) struct Permit<'a, T> {
    queue: &'a Queue<T>,
}

impl<T> Queue<T> {
    /// An empty queue for up to `capacity` items (at least 1).
    pub(crate) fn new(capacity: usize) -> Queue<T> {
        Queue {
            items: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            room: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for room for one item. Fails once the receiver has closed the queue.
    pub(crate) async fn reserve(&self) -> Result<Permit<'_, T>, Closed> {
        self.room.acquire().await.map_err(|_| Closed)?.forget();
        Ok(Permit { queue: self })
    }

    /// Waits for room, then queues `item`. Fails (dropping `item`) once the queue is closed.
    pub(crate) async fn send(&self, item: T) -> Result<(), Closed> {
        self.reserve().await?.send(item);
        Ok(())
    }

    /// Moves up to `limit` queued items to `out`, waiting until there is at least one. Returns
    /// how many were moved: 0 only once the queue is closed.
    pub(crate) async fn recv_many(&self, out: &mut Vec<T>, limit: usize) -> usize {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.state();
                let n = s.items.len().min(limit);
                if n > 0 {
                    out.extend(s.items.drain(..n));
                    drop(s);
                    self.room.add_permits(n);
                    return n;
                }
                if s.closed {
                    return 0;
                }
            }
            // `notify_one` keeps a wake-up for us if it comes between the check and here.
            notified.await;
        }
    }

    /// Takes one queued item, if there is one.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let item = self.state().items.pop_front()?;
        self.room.add_permits(1);
        Some(item)
    }

    /// Closes the queue: senders waiting for room and later ones fail; items already queued
    /// can still be taken.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.room.close();
        self.ready.notify_one();
    }
}

impl<T> Permit<'_, T> {
    /// Queues `item` in the reserved place (dropped if the queue has closed meanwhile).
    pub(crate) fn send(self, item: T) {
        let queue = self.queue;
        std::mem::forget(self);
        {
            let mut s = queue.state();
            if s.closed {
                return;
            }
            s.items.push_back(item);
        }
        queue.ready.notify_one();
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.queue.room.add_permits(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn senders_wait_while_full_and_items_keep_their_order() {
        let q = Queue::new(2);
        q.send(1).await.unwrap();
        q.send(2).await.unwrap();
        // Full: the third send waits until the receiver takes something.
        assert!(q.send(3).now_or_never().is_none());
        let permit = q.reserve().now_or_never();
        assert!(permit.is_none());
        let mut got = vec![];
        assert_eq!(q.recv_many(&mut got, 10).await, 2);
        assert_eq!(got, [1, 2]);
        q.send(3).await.unwrap();
        let p = q.reserve().await.unwrap();
        // An unused permit gives its place back.
        drop(p);
        q.send(4).await.unwrap();
        assert_eq!(q.try_recv(), Some(3));
        assert_eq!(q.recv_many(&mut got, 1).await, 1);
        assert_eq!(got, [1, 2, 4]);
        assert_eq!(q.try_recv(), None);
    }

    #[tokio::test]
    async fn the_receiver_wakes_for_a_send_from_another_task() {
        let q = std::sync::Arc::new(Queue::new(4));
        let q2 = q.clone();
        let t = tokio::spawn(async move {
            let mut got = vec![];
            q2.recv_many(&mut got, 8).await;
            got
        });
        tokio::task::yield_now().await;
        q.send("x").await.unwrap();
        assert_eq!(t.await.unwrap(), ["x"]);
    }

    #[tokio::test]
    async fn closing_fails_senders_and_ends_the_receiver() {
        let q = std::sync::Arc::new(Queue::new(1));
        q.send(1).await.unwrap();
        let q2 = q.clone();
        let waiting = tokio::spawn(async move { q2.send(2).await });
        tokio::task::yield_now().await;
        let early = q.reserve().now_or_never();
        assert!(early.is_none());
        q.close();
        assert_eq!(waiting.await.unwrap(), Err(Closed));
        assert_eq!(q.send(3).await, Err(Closed));
        let mut got = vec![];
        // What was queued before the close can still be taken, then the end.
        assert_eq!(q.recv_many(&mut got, 8).await, 1);
        assert_eq!(q.recv_many(&mut got, 8).await, 0);
        assert_eq!(got, [1]);
    }
}
