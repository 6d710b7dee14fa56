//! The reader's buffers: reading more bytes into the read buffer (holding none while the
//! connection is idle), and the large buffers kept for reuse while large messages flow.

use std::future::{poll_fn, Future};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Initial read buffer size, and the least free space to offer each read.
pub(super) const READ_CHUNK: usize = 4096;

/// Most the reader reserves ahead of bytes that have not arrived yet: a peer announcing (and
/// never sending) large payloads must not make us commit memory.
pub(super) const RESERVE_MAX: usize = 1 << 20;

/// Most bytes an idle connection reads in one go, into a buffer on the stack of the poll
/// (not of the reader's future: nothing is held while it waits).
const IDLE_READ: usize = 16 * 1024;

/// Reads more bytes into `buf`, at most `until` of them (when a partly read message is large).
///
/// With nothing buffered and nothing waiting on the connection, the connection is idle: the
/// buffer is given back and the reader waits holding no buffer at all. When bytes arrive they
/// are read into a buffer on the stack for the length of one poll and copied into a fresh
/// buffer, so a burst of messages is taken in one read however large the old buffer was.
pub(super) async fn read_more<R>(
    r: &mut std::pin::Pin<Box<R>>,
    buf: &mut BytesMut,
    until: usize,
    spares: &mut Spares,
) -> std::io::Result<usize>
where
    R: AsyncRead + Send + ?Sized,
{
    if !buf.is_empty() {
        return r
            .read_buf(&mut bytes::BufMut::limit(&mut *buf, until))
            .await;
    }
    if buf.capacity() >= READ_CHUNK {
        // `read_buf` reads nothing unless it completes, so trying it once is harmless.
        if let Some(res) = r.read_buf(buf).now_or_never() {
            return res;
        }
    }
    *buf = BytesMut::new();
    // While large messages flow (there are spare buffers), take just enough for a header:
    // the rest of a large message is then read straight into its own buffer, not copied
    // there from this one.
    let most = if spares.is_empty() { IDLE_READ } else { 512 };
    let mut read = std::pin::pin!(poll_fn(|cx| {
        // Not zeroed: the transport only writes into it.
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
        let mut rb = tokio::io::ReadBuf::uninit(&mut stack[..most]);
        std::task::ready!(r.as_mut().poll_read(cx, &mut rb))?;
        let got = rb.filled();
        // Just the bytes that came: whole messages, usually; a partial one makes the reader
        // reserve room for the rest. (A small buffer is also much cheaper to allocate and
        // free than a 4 KiB one.)
        buf.extend_from_slice(got);
        Poll::Ready(Ok(got.len()))
    }));
    if spares.is_empty() {
        return read.await;
    }
    // Large buffers kept for reuse are let go once the connection has been quiet a while.
    let mut quiet = Box::pin(tokio::time::sleep(SPARES_KEPT));
    poll_fn(|cx| {
        if let Poll::Ready(res) = read.as_mut().poll(cx) {
            return Poll::Ready(res);
        }
        if quiet.as_mut().poll(cx).is_ready() {
            spares.clear();
        }
        Poll::Pending
    })
    .await
}

/// Large read buffers kept for reuse.
///
/// A payload is split off the read buffer without copying, so the buffer cannot be reused for
/// the next message while the payload lives: each large message would get a freshly allocated
/// buffer, and the allocator, which may have handed the last one's pages back to the kernel,
/// page-faults them in anew (about a fifth of the pages of every 1 MiB message, when results
/// are dropped on other threads). Buffers for large messages are allocated here instead, and
/// kept once the reader has moved on from them, to be reused as soon as nothing else refers
/// to them. Emptied when the connection has been idle for [`SPARES_KEPT`].
pub(super) struct Spares {
    /// Most bytes the kept buffers may hold together.
    max_bytes: usize,
    /// Kept buffers (emptied views of their allocations) and their allocation sizes.
    kept: Vec<(BytesMut, usize)>,
    /// Allocation size of the reader's current buffer, if it was allocated here.
    current: usize,
}

/// Most large buffers kept for reuse, and the most bytes they may hold together.
const SPARES: usize = 4;
/// Most bytes kept buffers may hold together, whatever the payload limit.
const SPARE_BYTES: usize = 16 << 20;

/// Messages needing at least this much room get their buffer from [`Spares`]; sizes are
/// rounded up to a multiple of it, so that buffers fit messages of about the same size.
pub(super) const SPARE_MIN: usize = 64 * 1024;

/// How long an idle connection keeps its spare buffers.
const SPARES_KEPT: Duration = Duration::from_millis(250);

impl Default for Spares {
    fn default() -> Spares {
        Spares::new(u32::MAX)
    }
}

impl Spares {
    /// Spares for messages of at most `max_payload` bytes: [`SPARES`] buffers of that size at
    /// most, and never more than [`SPARE_BYTES`] together.
    pub(super) fn new(max_payload: u32) -> Spares {
        let one = (max_payload as usize + SPARE_MIN).next_multiple_of(SPARE_MIN);
        Spares {
            max_bytes: (SPARES * one).min(SPARE_BYTES),
            kept: Vec::new(),
            current: 0,
        }
    }

    /// The reader has consumed all of `buf`: keep its allocation if it is one of ours.
    pub(super) fn consumed(&mut self, buf: &mut BytesMut) {
        if self.current > 0 {
            let size = std::mem::take(&mut self.current);
            self.keep(std::mem::take(buf), size);
        }
    }

    fn keep(&mut self, mut old: BytesMut, size: usize) {
        let held: usize = self.kept.iter().map(|(_, n)| n).sum();
        if self.kept.len() < SPARES && held + size <= self.max_bytes {
            old.clear();
            self.kept.push((old, size));
        }
    }

    /// Makes room in `buf` for `want` more bytes, reusing a kept buffer if one is free.
    pub(super) fn reserve(&mut self, buf: &mut BytesMut, want: usize) {
        if buf.try_reclaim(want) {
            return;
        }
        let need = buf.len() + want;
        if need < SPARE_MIN {
            buf.reserve(want);
            self.current = 0;
            return;
        }
        let free = self
            .kept
            .iter_mut()
            .position(|(b, size)| *size >= need && b.try_reclaim(need));
        let (mut next, size) = match free {
            Some(i) => self.kept.swap_remove(i),
            None => {
                // At least double a growing buffer, as `reserve` would: a payload arriving in
                // pieces must not be copied over and over.
                let size = need.max(2 * self.current).next_multiple_of(SPARE_MIN);
                (BytesMut::with_capacity(size), size)
            }
        };
        next.extend_from_slice(buf);
        let old = std::mem::replace(buf, next);
        let old_size = std::mem::replace(&mut self.current, size);
        if old_size > 0 {
            self.keep(old, old_size);
        }
    }

    pub(super) fn clear(&mut self) {
        self.kept = Vec::new();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_read_buffers_are_reused_once_their_payloads_are_gone() {
        let mut spares = Spares::default();
        let mut buf = BytesMut::new();
        let size = 1 << 20;
        // A large message: its buffer comes from the spares, its payload is split off.
        spares.reserve(&mut buf, size);
        let first = buf.as_ptr();
        buf.resize(size, 7);
        let payload = buf.split_to(size).freeze();
        spares.consumed(&mut buf);
        // While the payload lives, the next message gets another buffer.
        spares.reserve(&mut buf, size);
        assert_ne!(buf.as_ptr(), first);
        buf.resize(size, 8);
        let second = buf.split_to(size).freeze();
        spares.consumed(&mut buf);
        // Once it is dropped, its buffer is used again, whole.
        drop(payload);
        spares.reserve(&mut buf, size);
        assert_eq!(buf.as_ptr(), first);
        assert!(buf.capacity() >= size);
        drop(second);
        // Small messages do not use them; an idle connection lets them go.
        assert_eq!(spares.kept.len(), 1);
        spares.clear();
        assert!(spares.is_empty());
    }

    #[test]
    fn a_growing_buffer_at_least_doubles() {
        let mut spares = Spares::default();
        let mut buf = BytesMut::new();
        spares.reserve(&mut buf, SPARE_MIN);
        let mut grows = 0;
        while buf.len() < 16 << 20 {
            let want = (buf.capacity() - buf.len()).max(1);
            buf.resize(buf.len() + want, 0);
            let before = buf.capacity();
            spares.reserve(&mut buf, SPARE_MIN);
            grows += usize::from(buf.capacity() != before);
        }
        assert!(grows <= 10, "{grows} reallocations for 16 MiB");
    }
}
