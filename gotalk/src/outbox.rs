//! What is waiting to be written on a connection, and who is writing it. No I/O here except
//! [`poll_write_batch`], which writes a taken [`Batch`] to whatever `AsyncWrite` it is given.
//!
//! Senders encode their messages straight into the outbox: headers and small payloads are
//! copied into one buffer, larger payloads are kept as their own [`Bytes`] (never copied). A
//! writer takes everything queued at once and writes it with vectored writes, so many small
//! messages leave in one syscall.
//!
//! Who writes is decided here, under the connection's lock ([`Owner`]): the writer task, or a
//! sender that found nobody writing and may write its bytes itself right away (the reader with
//! the answers to one read, a lone request). Such a *direct write* never waits: whatever the
//! transport does not take at once is handed to the writer task, which waits for the peer (with
//! the write timeout). This saves the task hop and the wake-up per message that a writer task
//! would cost when traffic is light, and keeps writes in order: nobody else writes while a
//! batch is in someone's hands.
//!
//! The outbox is bounded in bytes by [`crate::Limits::write_buffer`]: what is queued plus the
//! batch being written (by a sender or the writer task). A sender waits for room while that is
//! at or over the limit, so it is exceeded by at most one message. An idle outbox holds no
//! buffer.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::frame::{encode_request_header, Message, MsgType, RequestId};

/// Payloads up to this size are copied next to their header; larger ones are written from
/// their own buffer.
pub(crate) const COPY_PAYLOAD_MAX: usize = 1024;

/// Least capacity a fresh outbox buffer gets, so that a burst of small messages does not
/// regrow it message by message.
const MIN_BUF: usize = 1024;

/// Most buffers given to one vectored write (a batch is one buffer, plus two per large
/// payload in it).
const MAX_SLICES: usize = 16;

/// Who is writing the connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Nobody: the next sender may write directly, or the writer task claims the work.
    Nobody,
    /// A sender is writing a batch directly (without waiting).
    Sender,
    /// The writer task (it has been woken, or is writing); senders only queue.
    Task,
}

/// Encoded messages in the order they are to be written: bytes in `buf`, with large payloads
/// spliced in at the recorded offsets.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: BytesMut,
    /// `(offset in buf, payload)`: the payload goes on the wire before `buf[offset..]`.
    large: Vec<(usize, Bytes)>,
    /// Bytes of the batch already written.
    written: usize,
}

impl Batch {
    /// Total length on the wire.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.large.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    fn reserve(&mut self, n: usize) {
        if self.buf.capacity() - self.buf.len() < n {
            self.buf.reserve(n.max(MIN_BUF));
        }
    }

    /// Appends a message: its header, and its payload copied or kept aside.
    pub(crate) fn push(&mut self, m: &Message) {
        let p = m.payload();
        self.reserve(m.header_len() + copied_len(p));
        m.encode_header(&mut self.buf);
        self.push_payload(p);
    }

    /// Appends a request (`r` or `s`) from its parts.
    pub(crate) fn push_request(&mut self, t: MsgType, id: RequestId, op: &str, payload: &Bytes) {
        self.reserve(crate::frame::header_len(t, op.len()) + copied_len(payload));
        encode_request_header(&mut self.buf, t, id, op, payload.len());
        self.push_payload(payload);
    }

    /// Appends a message encoded beforehand: its header bytes, then its payload (copied or
    /// kept aside, as for any message).
    pub(crate) fn push_encoded(&mut self, header: &[u8], payload: &Bytes) {
        self.reserve(header.len() + copied_len(payload));
        self.buf.put_slice(header);
        self.push_payload(payload);
    }

    /// Appends raw bytes (the protocol version).
    pub(crate) fn push_raw(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.buf.put_slice(bytes);
    }

    fn push_payload(&mut self, p: &Bytes) {
        if p.len() <= COPY_PAYLOAD_MAX {
            self.buf.extend_from_slice(p);
        } else {
            self.large.push((self.buf.len(), p.clone()));
        }
    }

    /// Bytes of the batch written so far.
    pub(crate) fn progress(&self) -> usize {
        self.written
    }

    /// Whether everything has been written.
    fn is_written(&self) -> bool {
        self.written >= self.len()
    }

    /// Up to `out.len()` buffers of what is left to write, in order; returns how many.
    fn unwritten<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut skip = self.written;
        let mut n = 0;
        let mut from = 0;
        for i in 0..=self.large.len() {
            let (head, payload): (&[u8], &[u8]) = match self.large.get(i) {
                Some((at, p)) => {
                    let head = &self.buf[from..*at];
                    from = *at;
                    (head, p)
                }
                None => (&self.buf[from..], &[]),
            };
            for piece in [head, payload] {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                if n == out.len() {
                    return n;
                }
                out[n] = IoSlice::new(&piece[skip..]);
                skip = 0;
                n += 1;
            }
        }
        n
    }

    /// Empties the batch, keeping its buffer's capacity.
    fn clear(&mut self) {
        self.buf.clear();
        self.large.clear();
        self.written = 0;
    }
}

/// How many bytes of payload `p` go into a batch's buffer (the rest is spliced in).
fn copied_len(p: &Bytes) -> usize {
    if p.len() <= COPY_PAYLOAD_MAX {
        p.len()
    } else {
        0
    }
}

/// Writes what is left of `batch` to `w`, then flushes. `Pending` means the transport could
/// not take everything now (what it took is recorded in `batch`): poll again later, with a
/// waker that will be woken.
pub(crate) fn poll_write_batch(
    mut w: Pin<&mut (dyn AsyncWrite + Send)>,
    cx: &mut Context<'_>,
    batch: &mut Batch,
) -> Poll<std::io::Result<()>> {
    while !batch.is_written() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let k = batch.unwritten(&mut slices);
        let n = ready!(w.as_mut().poll_write_vectored(cx, &slices[..k]))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        batch.written += n;
    }
    w.poll_flush(cx)
}

/// The outbox of one connection. Lives under the connection's lock.
#[derive(Debug)]
pub(crate) struct Outbox {
    queued: Batch,
    /// A batch a sender could not finish writing, for the writer task to finish first.
    resume: Option<Batch>,
    /// Items queued (messages, or the answers to one read).
    items: usize,
    /// Bytes of the batch out of `queued`: in a writer's hands, or in `resume`.
    writing: usize,
    /// Bytes queued plus `writing` at which senders wait.
    capacity: usize,
    owner: Owner,
    /// The writer task, while it waits for work.
    writer: Option<Waker>,
    /// Senders waiting for room.
    room: Vec<Waker>,
    /// The writer task waits to write its last word: wake it when a sender stops writing.
    closing: bool,
}

/// What a sender must do after queuing, once it has let go of the lock.
#[must_use]
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing: a writer will pick the message up.
    Nothing,
    /// Wake the writer task.
    Wake(Waker),
    /// Write this batch now (the sender owns the writing until it calls [`Outbox::written`]).
    Write(Batch),
}

/// How a direct write ended.
#[derive(Debug)]
pub(crate) enum Written {
    /// Everything was written and flushed.
    Done,
    /// The transport took only part of it (or none): the writer task finishes it.
    Partly,
    /// The transport failed.
    Failed,
}

impl Outbox {
    /// An empty outbox for about `capacity` bytes (at least 1).
    pub(crate) fn new(capacity: usize) -> Outbox {
        Outbox {
            queued: Batch::default(),
            resume: None,
            items: 0,
            writing: 0,
            capacity: capacity.max(1),
            owner: Owner::Nobody,
            writer: None,
            room: Vec::new(),
            closing: false,
        }
    }

    /// Bytes queued or being written.
    pub(crate) fn used(&self) -> usize {
        self.queued.len() + self.writing
    }

    /// Whether there is room for one more message (without waiting for it).
    pub(crate) fn has_room(&self) -> bool {
        self.used() < self.capacity
    }

    /// Whether there is room for one more message; if not, `waker` is woken when there is.
    pub(crate) fn poll_room(&mut self, waker: &Waker) -> bool {
        if self.has_room() {
            return true;
        }
        if !self.room.iter().any(|w| w.will_wake(waker)) {
            self.room.push(waker.clone());
        }
        false
    }

    /// Where to encode the next item; count it with [`Outbox::queued`] once encoded.
    pub(crate) fn batch(&mut self) -> &mut Batch {
        &mut self.queued
    }

    /// Counts one item queued and says what the sender must do next: write it itself if
    /// `direct` is allowed and nobody is writing, else wake the writer task if it waits.
    pub(crate) fn queued(&mut self, direct: bool) -> Next {
        self.items += 1;
        match self.owner {
            Owner::Nobody if direct && self.resume.is_none() => {
                self.owner = Owner::Sender;
                Next::Write(self.take(Batch::default()))
            }
            Owner::Nobody => self.writer.take().map_or(Next::Nothing, Next::Wake),
            Owner::Sender | Owner::Task => Next::Nothing,
        }
    }

    /// Takes everything queued, leaving `spare` (cleared) to queue into. Wakes nobody: the
    /// caller wakes the senders returned by [`Outbox::take_room_waiters`].
    fn take(&mut self, mut spare: Batch) -> Batch {
        spare.clear();
        self.items = 0;
        let taken = std::mem::replace(&mut self.queued, spare);
        self.writing = taken.len();
        taken
    }

    /// Senders waiting for room, to be woken outside the lock once bytes were written (or all
    /// of them, with `all`: the connection closed).
    pub(crate) fn take_room_waiters(&mut self, all: bool) -> Vec<Waker> {
        if all || self.has_room() {
            std::mem::take(&mut self.room)
        } else {
            Vec::new()
        }
    }

    /// A sender's direct write ended. Returns the writer task to wake if the rest (or what was
    /// queued meanwhile) is now its job.
    pub(crate) fn written(&mut self, batch: Batch, how: Written) -> Option<Waker> {
        debug_assert_eq!(self.owner, Owner::Sender);
        if !matches!(how, Written::Partly) {
            self.writing = 0;
        }
        match how {
            Written::Done if self.items == 0 => {
                self.owner = Owner::Nobody;
                // Idle again: hold no buffer (`batch` is dropped). A busy connection queues
                // into the writer task's buffers instead, which it recycles.
                if self.closing {
                    self.writer.take()
                } else {
                    None
                }
            }
            Written::Done => {
                self.owner = Owner::Task;
                self.writer.take()
            }
            Written::Partly => {
                self.owner = Owner::Task;
                self.resume = Some(batch);
                self.writer.take()
            }
            Written::Failed => {
                // The connection is being shut down (`batch` is dropped); the writer task
                // finds what was queued meanwhile when it flushes on closing, and fails too.
                self.owner = Owner::Nobody;
                self.writer.take()
            }
        }
    }

    /// Whether there is work for the writer task (with `closing`: whether it may take the
    /// outbox to write its last word, which it may unless a sender is writing). If not,
    /// `waker` is woken when there is.
    pub(crate) fn poll_work(&mut self, waker: &Waker, closing: bool) -> bool {
        let work = self.has_work(closing);
        if !work && !self.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.writer = Some(waker.clone());
        }
        self.closing |= closing;
        work
    }

    /// The writer task takes the work and the writing over: the batch a sender could not
    /// finish, else everything queued (`spare` is recycled as the next buffer to queue into).
    /// `None` if there is no work (see [`Outbox::poll_work`]).
    pub(crate) fn take_work(&mut self, spare: &mut Batch, closing: bool) -> Option<Batch> {
        if !self.has_work(closing) {
            return None;
        }
        self.owner = Owner::Task;
        if let Some(b) = self.resume.take() {
            return Some(b);
        }
        Some(self.take(std::mem::take(spare)))
    }

    /// Whether the writer task has work (see [`Outbox::poll_work`]).
    fn has_work(&self, closing: bool) -> bool {
        match self.owner {
            Owner::Task => true,
            Owner::Nobody => closing || self.items > 0 || self.resume.is_some(),
            Owner::Sender => false,
        }
    }

    /// Items queued.
    pub(crate) fn items(&self) -> usize {
        self.items
    }

    /// The writer task finished writing `batch`. If more is queued it stays the writer (and
    /// keeps the buffers for the next batch in `spare`); else it lets go of the writing and
    /// holds no buffer. Returns whether it stays the writer.
    pub(crate) fn task_done(&mut self, spare: &mut Batch, batch: Batch) -> bool {
        debug_assert_eq!(self.owner, Owner::Task);
        self.writing = 0;
        if self.items > 0 || self.resume.is_some() {
            *spare = batch;
            return true;
        }
        self.owner = Owner::Nobody;
        *spare = Batch::default();
        false
    }

    /// Who is writing now.
    #[cfg(test)]
    pub(crate) fn owner(&self) -> Owner {
        self.owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Name;
    use futures_util::task::noop_waker;

    fn wire(b: &Batch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let k = b.unwritten(&mut slices);
        for s in &slices[..k] {
            out.extend_from_slice(s);
        }
        out
    }

    fn request(id: &[u8; 4], payload: Bytes) -> Message {
        Message::SingleRequest {
            id: RequestId(*id),
            op: Name::new("op").unwrap(),
            payload,
        }
    }

    #[test]
    fn small_payloads_are_copied_and_large_ones_spliced_in_order() {
        let mut b = Batch::default();
        let big = Bytes::from(vec![b'x'; COPY_PAYLOAD_MAX + 1]);
        b.push(&request(b"0001", Bytes::from_static(b"hi")));
        b.push(&request(b"0002", big.clone()));
        b.push_request(MsgType::SingleRequest, RequestId(*b"0003"), "op", &big);
        b.push_raw(b"01");
        let mut want = Vec::new();
        for m in [
            request(b"0001", Bytes::from_static(b"hi")),
            request(b"0002", big.clone()),
            request(b"0003", big.clone()),
        ] {
            want.extend_from_slice(&m.to_bytes());
        }
        want.extend_from_slice(b"01");
        assert_eq!(wire(&b), want);
        assert_eq!(b.len(), want.len());
        // Partly written: what is left starts where the transport stopped, in any piece.
        for cut in [1, 20, 30, COPY_PAYLOAD_MAX + 20, want.len() - 1] {
            b.written = cut;
            assert_eq!(wire(&b), &want[cut..], "cut at {cut}");
        }
    }

    #[test]
    fn a_lone_sender_writes_directly_and_others_queue_behind_it() {
        let mut o = Outbox::new(8);
        o.batch().push(&request(b"0001", Bytes::new()));
        let Next::Write(batch) = o.queued(true) else {
            panic!("nobody was writing: the sender writes")
        };
        assert_eq!(o.owner(), Owner::Sender);
        // While it writes, the next sender only queues.
        o.batch().push(&request(b"0002", Bytes::new()));
        assert!(matches!(o.queued(true), Next::Nothing));
        // The writer task finds no work while a sender writes, and waits.
        let mut spare = Batch::default();
        assert!(!o.poll_work(&noop_waker(), false));
        assert!(o.take_work(&mut spare, false).is_none());
        // The direct write finished but more was queued meanwhile: the task takes over.
        assert!(o.written(batch, Written::Done).is_some());
        assert_eq!(o.owner(), Owner::Task);
        let b = o.take_work(&mut spare, false).unwrap();
        assert_eq!(wire(&b), request(b"0002", Bytes::new()).to_bytes());
        assert!(!o.task_done(&mut spare, b));
        assert_eq!(o.owner(), Owner::Nobody);
    }

    #[test]
    fn a_partial_direct_write_is_finished_by_the_task_before_anything_newer() {
        let mut o = Outbox::new(8);
        o.batch().push(&request(b"0001", Bytes::new()));
        let Next::Write(mut batch) = o.queued(true) else {
            panic!()
        };
        batch.written = 3;
        assert!(o.written(batch, Written::Partly).is_none());
        o.batch().push(&request(b"0002", Bytes::new()));
        // Nobody may write directly now: the rest of the first batch must go first.
        assert!(matches!(o.queued(true), Next::Nothing));
        let mut spare = Batch::default();
        let first = o.take_work(&mut spare, false).unwrap();
        assert_eq!(
            wire(&first),
            &request(b"0001", Bytes::new()).to_bytes()[3..]
        );
        assert!(o.task_done(&mut spare, first));
        let second = o.take_work(&mut spare, false).unwrap();
        assert_eq!(wire(&second), request(b"0002", Bytes::new()).to_bytes());
    }

    #[test]
    fn senders_wait_for_room_until_the_bytes_being_written_are_written() {
        let mut o = Outbox::new(4);
        let w = noop_waker();
        // Room while under the limit; the message that reaches it may go over.
        assert!(o.poll_room(&w));
        o.batch().push_raw(b"xxx");
        assert!(matches!(o.queued(false), Next::Nothing));
        assert!(o.poll_room(&w));
        o.batch().push_raw(b"yyy");
        assert!(matches!(o.queued(false), Next::Nothing));
        assert_eq!(o.used(), 6);
        assert!(!o.poll_room(&w));
        assert!(!o.poll_room(&w));
        assert_eq!(o.room.len(), 1, "one waker per waiting sender");
        assert!(o.take_room_waiters(false).is_empty(), "still full");
        // Taken by the writer, the bytes still count until they are written.
        let mut spare = Batch::default();
        let b = o.take_work(&mut spare, false).unwrap();
        assert_eq!(wire(&b), b"xxxyyy");
        assert_eq!(o.used(), 6);
        assert!(o.take_room_waiters(false).is_empty(), "being written");
        assert!(!o.task_done(&mut spare, b));
        assert_eq!(o.used(), 0);
        assert_eq!(o.take_room_waiters(false).len(), 1);
        assert!(o.poll_room(&w));
    }

    #[test]
    fn a_direct_write_counts_until_written_and_its_unwritten_rest_until_finished() {
        let mut o = Outbox::new(4);
        o.batch().push_raw(b"abcdef");
        let Next::Write(mut batch) = o.queued(true) else {
            panic!()
        };
        assert!(!o.has_room());
        batch.written = 2;
        assert!(o.written(batch, Written::Partly).is_none());
        assert!(!o.has_room(), "the rest waits for the writer task");
        let mut spare = Batch::default();
        let rest = o.take_work(&mut spare, false).unwrap();
        assert_eq!(wire(&rest), b"cdef");
        assert!(!o.task_done(&mut spare, rest));
        assert!(o.has_room());
    }

    #[test]
    fn the_writer_task_is_woken_only_while_it_waits() {
        let mut o = Outbox::new(8);
        let mut spare = Batch::default();
        assert!(!o.poll_work(&noop_waker(), false));
        o.batch().push_raw(b"a");
        assert!(matches!(o.queued(false), Next::Wake(_)));
        o.batch().push_raw(b"b");
        // Woken already: no second wake-up.
        assert!(matches!(o.queued(false), Next::Nothing));
        let b = o.take_work(&mut spare, false).unwrap();
        assert_eq!(wire(&b), b"ab");
        // Closing: the task takes the (empty) outbox to write its last word.
        assert!(!o.task_done(&mut spare, b));
        assert!(o.poll_work(&noop_waker(), true));
        assert!(o.take_work(&mut spare, true).is_some());
    }
}
