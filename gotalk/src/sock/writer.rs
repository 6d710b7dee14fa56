//! The writer task: writes what senders queued whenever it could not be written at once (under
//! load, many messages gathered into one vectored write; when the peer is slow to read, with
//! the write timeout), sends heartbeats, and flushes the last words when the connection closes.

use std::future::{poll_fn, Future};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{heartbeat, Closing, Sock};
use crate::error::CloseReason;
use crate::outbox::{poll_write_batch, Batch};

/// Items queued at which the writer task stops waiting for more to join a write.
pub(super) const BATCH: usize = 256;

pub(super) async fn writer_task(
    sock: Sock,
    mut closing: watch::Receiver<Option<Closing>>,
    heartbeat_every: Option<Duration>,
) {
    let write_timeout = sock.inner.limits.write_timeout;
    // The buffers of the last batch, reused while the connection is busy.
    let mut spare = Batch::default();
    // Whether the last write carried more than one item.
    let mut busy = false;
    // Whether a write failed (the transport, or the peer not reading).
    let mut failed = false;
    let mut heartbeats = heartbeat_every.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        tokio::select! {
            biased;
            (items, pending) = poll_fn(|cx| sock.poll_work(cx)) => {
                if items > 0 && items < BATCH && (items > 1 || busy || pending > 1) {
                    // Under load, let the tasks that are ready to run queue their messages
                    // too, so that they leave in this write rather than in one write each.
                    // (Not when messages come one at a time: that would only add latency.)
                    tokio::task::yield_now().await;
                }
            }
            _ = closing.changed() => break,
            _ = async { heartbeats.as_mut().expect("guarded").tick().await }, if heartbeats.is_some() => {
                let load = sock.heartbeat_load();
                sock.queue_heartbeat(load);
                continue;
            }
        }
        let Some((items, mut batch)) = sock.take_work(&mut spare, false) else {
            // A sender took the work meanwhile and writes it itself.
            continue;
        };
        busy = items > 1;
        if let Err(e) = write_out(&sock, &mut batch, write_timeout).await {
            sock.shutdown(CloseReason::io(&e), None);
            // The peer does not take what we write: nothing more is written to it.
            failed = true;
            break;
        }
        let senders = {
            let mut s = sock.shared();
            s.out.task_done(&mut spare, batch);
            s.out.take_room_waiters(false)
        };
        senders.into_iter().for_each(Waker::wake);
    }
    // Closing: once no sender is writing, write what is queued, then the last word (with the
    // same rule: given up when the peer reads nothing for the write timeout).
    let mut last = closing.borrow().as_ref().and_then(|c| c.last.clone());
    let rest = poll_fn(|cx| {
        if sock.shared().out.poll_work(cx.waker(), true) {
            if let Some((_, batch)) = sock.take_work(&mut spare, true) {
                return Poll::Ready(batch);
            }
        }
        Poll::Pending
    });
    let rest = async {
        match failed {
            true => None,
            false => tokio::time::timeout(Duration::from_secs(1), rest)
                .await
                .ok(),
        }
    };
    if let Some(mut batch) = rest.await {
        if let Some(m) = last.take() {
            batch.push(&m);
        }
        let _ = write_out(&sock, &mut batch, write_timeout).await;
    }
    let shutdown = poll_fn(|cx| sock.io().as_mut().poll_shutdown(cx));
    let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
    sock.release_guard();
    sock.inner.finished.send_replace(true);
}

impl Sock {
    /// For the writer task: whether there is work for it (how many items are queued, and how
    /// many of our requests wait for results), else `Pending` until there is.
    fn poll_work(&self, cx: &mut Context<'_>) -> Poll<(usize, usize)> {
        let mut s = self.shared();
        if s.out.poll_work(cx.waker(), false) {
            Poll::Ready((s.out.items(), s.pending.len()))
        } else {
            Poll::Pending
        }
    }

    /// For the writer task: takes the work (and the writing) over, recycling `spare`. With
    /// `closing`, takes whatever there is, even nothing. `None` if a sender is writing, or
    /// (unless closing) if there is nothing to do.
    fn take_work(&self, spare: &mut Batch, closing: bool) -> Option<(usize, Batch)> {
        let (taken, senders) = {
            let mut s = self.shared();
            let items = s.out.items();
            let batch = s.out.take_work(spare, closing)?;
            ((items, batch), s.out.take_room_waiters(false))
        };
        senders.into_iter().for_each(Waker::wake);
        Some(taken)
    }

    /// Queues a heartbeat, full outbox or not: it is the writer task that makes room.
    fn queue_heartbeat(&self, load: u16) {
        let mut s = self.shared();
        if s.pending.closed().is_none() {
            s.out.batch().push(&heartbeat(load));
            // The writer task queues it: nobody to wake or to write for it.
            let _ = s.out.queued(false);
        }
    }
}

/// Writes `batch` (and flushes), failing if the peer takes nothing of it for `timeout`: a
/// slow reader that keeps reading is never cut off, one that stops is.
async fn write_out(
    sock: &Sock,
    batch: &mut Batch,
    timeout: Option<Duration>,
) -> std::io::Result<()> {
    let Some(t) = timeout else {
        return poll_fn(|cx| poll_write_batch(sock.io().as_mut(), cx, batch)).await;
    };
    let mut stall = std::pin::pin!(tokio::time::sleep(t));
    let mut seen = batch.progress();
    poll_fn(|cx| {
        if let Poll::Ready(res) = poll_write_batch(sock.io().as_mut(), cx, batch) {
            return Poll::Ready(res);
        }
        if batch.progress() > seen {
            seen = batch.progress();
            stall.as_mut().reset(Instant::now() + t);
        }
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("peer read nothing for {t:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
