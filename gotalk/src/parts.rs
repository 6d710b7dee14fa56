//! Stream parts on their way to a [`crate::StreamReceiver`], and the connection's budget of
//! bytes for them ([`crate::Limits::stream_buffer`]).
//!
//! The reader takes a part's share of the budget before handing it over and the receiver gives
//! it back when the part is taken out: however many streams a peer opens and however large their
//! parts, the parts buffered on one connection stay within the budget, and beyond it the reader
//! waits (the peer is slowed down, not buffered).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::error::PartResult;

/// What each part counts beyond its size, so that a flood of tiny parts is bounded too.
pub(crate) const PART_OVERHEAD: usize = 64;

/// A part (an empty one ends the stream) or an error, with its share of the budget.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) data: PartResult,
    /// Given back when the part is taken out (dropped with it).
    _share: Option<OwnedSemaphorePermit>,
}

impl Part {
    /// An item that takes no share: an error, an end of stream, a part already accounted for.
    pub(crate) fn free(data: PartResult) -> Part {
        Part { data, _share: None }
    }
}

/// The sending side of a stream's parts.
pub(crate) type PartSender = mpsc::UnboundedSender<Part>;
/// The receiving side of a stream's parts.
pub(crate) type PartReceiver = mpsc::UnboundedReceiver<Part>;

/// A channel for one stream's parts; bounded by the [`Budget`] its parts take a share of.
pub(crate) fn channel() -> (PartSender, PartReceiver) {
    mpsc::unbounded_channel()
}

/// The bytes of stream parts one connection may hold.
#[derive(Debug)]
pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    /// A budget of `total` bytes (at least 1).
    pub(crate) fn new(total: usize) -> Budget {
        let total = total
            .clamp(1, Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        Budget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Part `payload` with its share, waiting until the budget has room for it (a part larger
    /// than the whole budget waits for all of it).
    pub(crate) async fn part(&self, payload: Bytes) -> Part {
        let cost = (payload.len() + PART_OVERHEAD).min(self.total) as u32;
        let share = self.bytes.clone().acquire_many_owned(cost).await.ok();
        Part {
            data: Ok(payload),
            _share: share,
        }
    }

    /// Bytes of the budget not in use.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_hold_their_share_until_taken_out() {
        let budget = Budget::new(1000);
        let (tx, mut rx) = channel();
        tx.send(budget.part(Bytes::from(vec![0; 436])).await)
            .unwrap();
        assert_eq!(budget.available(), 500);
        tx.send(budget.part(Bytes::new()).await).unwrap();
        assert_eq!(budget.available(), 436);
        // No room for another 436 + 64 bytes: the sender waits until a part is taken out.
        let next = budget.part(Bytes::from(vec![0; 436]));
        let mut next = std::pin::pin!(next);
        assert!(futures_util::FutureExt::now_or_never(next.as_mut()).is_none());
        drop(rx.recv().await.unwrap());
        let part = next.await;
        assert_eq!(part.data.as_ref().unwrap().len(), 436);
        // A part larger than the whole budget takes all of it.
        drop(rx.recv().await.unwrap());
        drop(part);
        let huge = budget.part(Bytes::from(vec![0; 5000])).await;
        assert_eq!(budget.available(), 0);
        drop(huge);
        assert_eq!(budget.available(), 1000);
    }
}
