//! The reader task: owns the read half and a `BytesMut`, decodes every whole message the buffer
//! holds before reading again, asks [`crate::decide`] what each one does, and carries that out.
//!
//! It hands the results of our requests to their tasks (all of one read under one lock), runs
//! notification handlers in order, and runs each incoming request's handler until it first waits:
//! answers of handlers that finish at once are queued together after each read (and written by
//! the reader itself when nobody else is writing); a handler that waits goes on in a task of its
//! own. An idle connection holds no read buffer.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::AsyncRead;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::buffers::{read_more, Spares, READ_CHUNK, RESERVE_MAX, SPARE_MIN};
use super::writer::BATCH;
use super::{panic_message, Closing, Sock};
use crate::codec::{DecodeError, Decoder};
use crate::decide::{self, decide, error_result, Action, Ctx};
use crate::error::{CloseReason, Error, Result, Side};
use crate::frame::{Message, Name, ProtocolErrorCode, RequestId};
use crate::handlers::{BufferHandler, StreamHandler};
use crate::incoming::IncomingStreams;
use crate::parts::{self, Part, PartSender};
use crate::pending::{Completed, Reply, StreamResultTarget};
use crate::stream::{StreamReceiver, StreamSender};

/// Why the reader stopped.
enum Stop {
    /// The connection is already closing (reason recorded elsewhere).
    Closing,
    /// Close with this reason (and maybe send this protocol error).
    Close(CloseReason, Option<Message>),
}

pub(super) async fn reader_task<R>(
    sock: Sock,
    mut r: std::pin::Pin<Box<R>>,
    mut closing: watch::Receiver<Option<Closing>>,
    handshake: oneshot::Sender<Result<()>>,
) where
    R: AsyncRead + Send + ?Sized,
{
    let limits = sock.inner.limits.clone();
    let mut reader = Reader {
        sock: sock.clone(),
        answers: Vec::new(),
        held: (0, 0),
        replies: Vec::new(),
        wake: Vec::new(),
        spares: Spares::new(limits.max_payload),
        decoder: Decoder::new(limits.max_payload),
        streams: IncomingStreams::default(),
        handshake: Some(handshake),
        bad_version: None,
        active: false,
    };
    let mut buf = BytesMut::new();
    let read_timeout = limits.read_timeout;
    let mut last_message = Instant::now();
    let far = Duration::from_secs(86400 * 365);
    let timer = tokio::time::sleep(read_timeout.unwrap_or(far));
    tokio::pin!(timer);

    let stop = 'outer: loop {
        // Handle every whole message already buffered before reading again.
        let mut got = false;
        let stop = loop {
            match reader.decoder.decode(&mut buf) {
                Ok(Some(d)) => {
                    got = true;
                    if let Err(stop) = reader.handle(d).await {
                        break Some(stop);
                    }
                    if reader.answers.len() >= BATCH {
                        reader.flush_answers().await;
                    }
                    if reader.replies.len() >= BATCH {
                        reader.flush_replies().await;
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(reader.decode_error(e)),
            }
        };
        reader.flush_replies().await;
        reader.flush_answers().await;
        if let Some(stop) = stop {
            break 'outer stop;
        }
        if got {
            last_message = Instant::now();
            if std::mem::take(&mut reader.active) {
                let ms = last_message.duration_since(sock.inner.opened).as_millis() as u64;
                sock.inner.last_activity.store(ms, Ordering::Relaxed);
            }
        }
        if buf.is_empty() {
            // A large buffer, consumed: keep it for reuse rather than hand it back.
            reader.spares.consumed(&mut buf);
            if buf.capacity() > 4 * READ_CHUNK {
                // Release any other large buffer once consumed; idle connections hold little.
                buf = BytesMut::new();
            }
        }
        // Reserve for the rest of an announced payload, but not more than RESERVE_MAX up front:
        // a peer announcing (and never sending) large payloads must not make us commit memory.
        let needed = reader.decoder.needed(&buf);
        let want = needed.clamp(READ_CHUNK, RESERVE_MAX);
        // A large message is read up to its end and no further: bytes of the next one read
        // into its buffer would have to be copied out into the next message's own buffer.
        let until = if needed >= SPARE_MIN {
            needed
        } else {
            usize::MAX
        };
        if !buf.is_empty() && buf.capacity() - buf.len() < READ_CHUNK {
            reader.spares.reserve(&mut buf, want);
        }
        tokio::select! {
            biased;
            _ = closing.changed() => break Stop::Closing,
            res = read_more(&mut r, &mut buf, until, &mut reader.spares) => match res {
                Ok(0) => {
                    let reason = if buf.is_empty() && !reader.decoder.is_discarding() {
                        CloseReason::PeerClosed
                    } else {
                        CloseReason::Io {
                            kind: std::io::ErrorKind::UnexpectedEof,
                            message: format!(
                                "connection ended in the middle of a message ({} bytes unread)",
                                buf.len()
                            ),
                        }
                    };
                    break Stop::Close(reason, None);
                }
                Ok(_) => {}
                Err(e) => break Stop::Close(CloseReason::io(&e), None),
            },
            _ = &mut timer, if read_timeout.is_some() => {
                let limit = read_timeout.unwrap_or(far);
                let deadline = last_message + limit;
                if Instant::now() >= deadline {
                    let code = ProtocolErrorCode::TIMEOUT;
                    break Stop::Close(
                        CloseReason::Protocol {
                            code,
                            by: Side::Local,
                            detail: format!("no complete message within {limit:?}"),
                        },
                        Some(Message::ProtocolError { code }),
                    );
                }
                // Re-armed lazily: resetting the timer on every message would cost more.
                timer.as_mut().reset(deadline);
            }
        }
    };
    match stop {
        Stop::Closing => {}
        Stop::Close(reason, last) => sock.shutdown(reason, last),
    }
    let reason = sock.close_reason().unwrap_or(CloseReason::Local);
    reader.streams.fail_all(&reason);
    if let Some(hs) = reader.handshake.take() {
        let _ = hs.send(Err(match reason.protocol_error_code() {
            Some(ProtocolErrorCode::UNSUPPORTED) => match reader.bad_version {
                Some(v) => Error::UnsupportedVersion(v),
                None => Error::Closed(reason),
            },
            _ => Error::Closed(reason),
        }));
    }
}

struct Reader {
    sock: Sock,
    /// Large read buffers kept for reuse.
    spares: Spares,
    /// Answers to the peer's requests from the last read (of handlers that finished while the
    /// reader ran them, and refusals), queued after each read.
    answers: Vec<Message>,
    /// Request slots, and the bytes of their requests, still held by answers in `answers`.
    held: (u32, usize),
    /// Results of our requests from the last read, handed to their tasks together.
    replies: Vec<(RequestId, Reply)>,
    /// The tasks of the requests completed by `replies`, woken once the lock is let go.
    wake: Vec<Waker>,
    decoder: Decoder,
    streams: IncomingStreams,
    handshake: Option<oneshot::Sender<Result<()>>>,
    bad_version: Option<u8>,
    /// Whether the last read brought a message other than a heartbeat.
    active: bool,
}

impl Reader {
    fn decode_error(&mut self, e: DecodeError) -> Stop {
        if let DecodeError::UnsupportedVersion(v) = e {
            self.bad_version = Some(v);
        }
        match decide::decode_error(&e) {
            Action::Close(reason, last) => Stop::Close(reason, last),
            _ => unreachable!("decode errors close the connection"),
        }
    }

    /// Carries out what one decoded message does. Requests and results, nearly all of the
    /// traffic, are handled here without waiting; everything else goes through a boxed future:
    /// its state (stream handling above all) would otherwise be part of the reader's future,
    /// which every connection holds, idle or not.
    async fn handle(&mut self, d: crate::codec::Decoded) -> std::result::Result<(), Stop> {
        let inner = &self.sock.inner;
        let cx = Ctx {
            handlers: &inner.handlers,
            limits: &inner.limits,
            counters: &inner.counters,
        };
        let action = decide(&cx, &mut self.streams, d);
        match action {
            Action::Heartbeat { .. } => {}
            _ => self.active = true,
        }
        match action {
            Action::Reply(id, reply) => self.replies.push((id, reply)),
            Action::Request {
                id,
                op,
                payload,
                handler,
            } => self.start_request(id, op, payload, handler),
            Action::Answer(m) => self.answers.push(m),
            Action::Ignore => {}
            // Results gathered so far are handed over first, to keep the order of the wire.
            other => {
                self.flush_replies().await;
                Box::pin(self.carry_out(other)).await?;
            }
        }
        Ok(())
    }

    /// Carries out the actions that may wait.
    async fn carry_out(&mut self, action: Action) -> std::result::Result<(), Stop> {
        let sock = &self.sock;
        match action {
            Action::Open => {
                if let Some(cb) = &sock.inner.callbacks.internal_open {
                    cb(sock);
                }
                if let Some(cb) = &sock.inner.callbacks.open {
                    cb(sock);
                }
                if let Some(hs) = self.handshake.take() {
                    let _ = hs.send(Ok(()));
                }
            }
            Action::Stream {
                id,
                op,
                payload,
                handler,
            } => self.start_stream(id, op, payload, handler).await,
            Action::Part { id, to, part, last } => {
                let part = match part {
                    Ok(payload) => match budgeted(sock, payload).await {
                        Some(part) => part,
                        None => return Err(Stop::Closing),
                    },
                    Err(e) => Part::free(Err(e)),
                };
                if to.send(part).is_err() && !last {
                    // The handler finished early; drop the rest of its input.
                    self.streams.ignore(id);
                }
            }
            Action::ResultPart(id, payload) => {
                let target = sock.shared().pending.stream_result(id, payload.is_empty());
                match target {
                    StreamResultTarget::Stream(tx) => {
                        // An empty part is the end marker for the receiver.
                        if let Some(part) = budgeted(sock, payload).await {
                            let _ = tx.send(part);
                        }
                    }
                    StreamResultTarget::NotStream => {
                        // `S` for a single-result request (if it is one of ours).
                        self.replies.push((id, Reply::UnexpectedStream));
                        self.flush_replies().await;
                    }
                }
            }
            Action::Notify {
                handler,
                name,
                payload,
            } => {
                let run =
                    std::panic::catch_unwind(AssertUnwindSafe(|| handler(sock, &name, payload)));
                if run.is_err() {
                    tracing::error!(name = %name, "notification handler panicked");
                }
            }
            Action::Heartbeat { load, time } => {
                let at = sock.inner.opened.elapsed().as_millis() as u64 + 1;
                let v = (u64::from(load) << 48) | (at & 0xffff_ffff_ffff);
                sock.inner.peer_heartbeat.store(v, Ordering::Relaxed);
                if let Some(cb) = &sock.inner.callbacks.heartbeat {
                    cb(
                        sock,
                        load,
                        UNIX_EPOCH + Duration::from_secs(u64::from(time)),
                    );
                }
            }
            Action::Close(reason, last) => return Err(Stop::Close(reason, last)),
            Action::Reply(..) | Action::Request { .. } | Action::Answer(_) | Action::Ignore => {
                unreachable!("handled without waiting")
            }
        }
        Ok(())
    }

    /// Hands the replies gathered from the last read to the requests waiting for them, under
    /// one lock, and wakes their tasks after letting go of it.
    async fn flush_replies(&mut self) {
        if self.replies.is_empty() {
            return;
        }
        let mut streams = Vec::new();
        let mut late = 0;
        {
            let mut s = self.sock.shared();
            for (id, reply) in self.replies.drain(..) {
                match s.pending.complete(id, reply) {
                    Completed::Single(w) => self.wake.extend(w),
                    Completed::Stream(tx, reply) => streams.push((tx, reply)),
                    Completed::Unknown => late += 1,
                }
            }
        }
        if late > 0 {
            tracing::debug!(late, "results for requests nobody waits for dropped");
            self.sock
                .inner
                .late_results
                .fetch_add(late, Ordering::Relaxed);
        }
        self.wake.drain(..).for_each(Waker::wake);
        recycle(&mut self.replies);
        recycle(&mut self.wake);
        for (tx, reply) in streams {
            Box::pin(self.deliver_to_stream(tx, reply)).await;
        }
    }

    /// A single reply to one of our stream requests: the part (if any) then the end, or the
    /// error.
    async fn deliver_to_stream(&self, tx: PartSender, reply: Reply) {
        let item = match reply {
            Reply::Result(b) => {
                // A single result to a stream request: one part, then the end.
                if !b.is_empty() {
                    if let Some(part) = budgeted(&self.sock, b).await {
                        let _ = tx.send(part);
                    }
                }
                Ok(Bytes::new())
            }
            Reply::Error(text) => Err(Error::Remote(String::from_utf8_lossy(&text).into_owned())),
            Reply::Retry(wait_ms, text) => Err(Error::Retry {
                wait: Duration::from_millis(u64::from(wait_ms)),
                message: String::from_utf8_lossy(&text).into_owned(),
            }),
            Reply::UnexpectedStream => Err(Error::UnexpectedStream),
            Reply::TooLarge(size) => Err(Error::PayloadTooLarge {
                size: size as usize,
                limit: self.sock.inner.limits.max_payload as usize,
            }),
        };
        let _ = tx.send(Part::free(item));
    }

    /// Runs request `id`'s handler until it first has to wait. Most handlers (an echo, a
    /// lookup) finish right away: their answer then joins the other answers to this read, with
    /// no task spawned and no wake-up of the writer per request. A handler that waits goes on in
    /// a task of its own (it re-registers its waker when that task polls it).
    fn start_request(
        &mut self,
        id: RequestId,
        op: Name,
        payload: Bytes,
        handler: std::sync::Arc<BufferHandler>,
    ) {
        let sock = &self.sock;
        let size = payload.len();
        let first = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut fut = handler(sock.clone(), op.clone(), payload);
            let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(res) => Ok(res),
                std::task::Poll::Pending => Err(fut),
            }
        }));
        let res = match first {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(fut)) => {
                let sock = sock.clone();
                tokio::spawn(async move {
                    let res = AssertUnwindSafe(fut).catch_unwind().await;
                    let msg = request_answer(id, &op, res);
                    sock.answer_and_release(Some(msg), false, size).await;
                });
                return;
            }
            Err(panic) => Err(panic),
        };
        // The answer keeps its request slot until it is queued (see `flush_answers`): a burst
        // of requests in one read must not pile up more answers than the request limit allows.
        self.held.0 += 1;
        self.held.1 += size;
        self.answers.push(request_answer(id, &op, res));
    }

    /// Queues the answers collected from the last read, and writes them right away unless
    /// the writer task is busy writing: the reader does what the writer task would, without
    /// the hop to it.
    async fn flush_answers(&mut self) {
        if self.answers.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let answers = &self.answers;
        self.sock
            .answer(true, held, false, |b| {
                answers.iter().for_each(|m| b.push(m))
            })
            .await;
        recycle(&mut self.answers);
    }

    /// Opens stream `id` and runs its handler in a task of its own.
    async fn start_stream(
        &mut self,
        id: RequestId,
        op: Name,
        payload: Bytes,
        handler: std::sync::Arc<StreamHandler>,
    ) {
        let sock = self.sock.clone();
        let (tx, rx) = parts::channel();
        if !payload.is_empty() {
            if let Some(part) = budgeted(&sock, payload).await {
                let _ = tx.send(part);
            }
        }
        self.streams.open(id, tx);
        let input = StreamReceiver::new(rx, sock.clone());
        let (output, ended) = StreamSender::result(sock.clone(), id);
        tokio::spawn(async move {
            let res = AssertUnwindSafe(handler(sock.clone(), op.clone(), input, output))
                .catch_unwind()
                .await;
            let msg = match res {
                Ok(Ok(())) if ended.swap(true, Ordering::AcqRel) => None,
                Ok(Ok(())) => Some(Message::StreamResult {
                    id,
                    payload: Bytes::new(),
                }),
                Ok(Err(e)) => Some(handler_error(id, e)),
                Err(panic) => {
                    let text = panic_message(&panic);
                    tracing::error!(op = %op, "stream handler panicked: {text}");
                    Some(error_result(id, format!("handler panicked: {text}")))
                }
            };
            sock.answer_and_release(msg, true, 0).await;
        });
    }
}

/// Empties a vector the reader reuses after each read, keeping a few places (enough for the
/// one message a quiet connection gets at a time) but no large buffer.
/// `payload` with its share of the connection's stream budget, waiting for room; `None` once
/// the connection is closing. The reader must not stay behind a handler that never reads its
/// parts: whoever notices the close first (the writer, a timeout, the user) frees it.
async fn budgeted(sock: &Sock, payload: Bytes) -> Option<Part> {
    tokio::select! {
        biased;
        part = sock.inner.stream_budget.part(payload) => Some(part),
        _ = sock.closing() => None,
    }
}

fn recycle<T>(v: &mut Vec<T>) {
    v.clear();
    if v.capacity() > 4 {
        *v = Vec::new();
    }
}

/// The answer to request `id` from its buffer handler's outcome (a result, an error, a panic).
fn request_answer(
    id: RequestId,
    op: &Name,
    res: std::thread::Result<std::result::Result<Bytes, crate::error::HandlerError>>,
) -> Message {
    match res {
        // A size the header cannot carry would corrupt the stream: refused, as the sender's own
        // payloads are.
        Ok(Ok(out)) if u32::try_from(out.len()).is_err() => {
            tracing::error!(op = %op, size = out.len(), "request handler's result too large");
            error_result(id, format!("result too large ({} bytes)", out.len()))
        }
        Ok(Ok(out)) => Message::SingleResult { id, payload: out },
        Ok(Err(e)) => handler_error(id, e),
        Err(panic) => {
            let text = panic_message(&panic);
            tracing::error!(op = %op, "request handler panicked: {text}");
            error_result(id, format!("handler panicked: {text}"))
        }
    }
}

fn handler_error(id: RequestId, e: crate::error::HandlerError) -> Message {
    match e.retry_wait() {
        Some(wait) => Message::RetryResult {
            id,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
            payload: Bytes::from(e.message().to_owned()),
        },
        None => error_result(id, e.message().to_owned()),
    }
}
