//! The two ends of a streaming exchange: [`StreamSender`] writes parts, [`StreamReceiver`]
//! reads them.
//!
//! A requestor gets both from [`Sock::stream_request`]: it writes request parts (`s`, then `p`)
//! and reads result parts (`S`). A stream handler gets the mirror image: it reads request parts
//! and writes result parts. An empty part means "end of stream" on the wire, so writing an empty
//! buffer is a no-op; call [`StreamSender::end`] to end the stream.
//!
//! Streams are on by default and bounded: a peer may have [`crate::Limits::stream_requests`]
//! (8) stream requests in progress on a connection (more are answered with a RetryResult), and
//! the parts waiting for handlers to read them hold at most [`crate::Limits::stream_buffer`]
//! (1 MiB) before the connection's reader waits; `stream_requests(0)` refuses them.
//!
//! ```
//! use gotalk::{Config, Handlers};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> gotalk::Result<()> {
//! // A handler that sums the numbers it is sent, one part each, and answers with one part.
//! let mut handlers = Handlers::new();
//! handlers.handle_stream("sum", |_sock, _op, mut parts, mut results| async move {
//!     let mut sum = 0u64;
//!     while let Some(part) = parts.recv().await? {
//!         sum += std::str::from_utf8(&part)?.parse::<u64>()?;
//!     }
//!     results.write(sum.to_string()).await?;
//!     Ok(())
//! });
//! let (sock, _server) =
//!     gotalk::pipe_with(&Config::new(), &Config::new().handlers(handlers)).await?;
//!
//! let (mut parts, mut results) = sock.stream_request("sum").await?;
//! for n in 1..=4 {
//!     parts.write(n.to_string()).await?;
//! }
//! parts.end().await?;
//! assert_eq!(results.collect().await?, b"10");
//!
//! // The handler's error ends the stream; the requestor reads it as an error.
//! let (mut parts, mut results) = sock.stream_request("sum").await?;
//! parts.write("one").await?;
//! parts.end().await?;
//! assert!(matches!(results.recv().await, Err(gotalk::Error::Remote(_))));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{CloseReason, Error, Result};
use crate::frame::{Message, Name, RequestId};
use crate::notification::check_payload_len;
use crate::parts::{self, PartReceiver};
use crate::pending::Waiter;
use crate::sock::Sock;

impl Sock {
    /// Starts streaming request `op`. Write request parts with the returned [`StreamSender`]
    /// (the first write sends the request itself) and end it with [`StreamSender::end`]; read
    /// result parts from the [`StreamReceiver`]. An ErrorResult or RetryResult arrives as an
    /// error from [`StreamReceiver::recv`].
    ///
    /// Writing and reading may go on at the same time (from two tasks, say): the peer's
    /// handler may answer each part as it comes.
    ///
    /// ```
    /// use gotalk::{Config, Handlers};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// let mut handlers = Handlers::new();
    /// handlers.handle_stream("upper", |_sock, _op, mut parts, mut results| async move {
    ///     while let Some(part) = parts.recv().await? {
    ///         results.write(part.to_ascii_uppercase()).await?;
    ///     }
    ///     Ok(())
    /// });
    /// let server = Config::new().handlers(handlers);
    /// let (sock, _server) = gotalk::pipe_with(&Config::new(), &server).await?;
    ///
    /// let (mut parts, mut results) = sock.stream_request("upper").await?;
    /// parts.write("hello ").await?;
    /// parts.write("world").await?;
    /// parts.end().await?;
    /// let mut got = Vec::new();
    /// while let Some(part) = results.recv().await? {
    ///     got.push(part);
    /// }
    /// assert_eq!(got, ["HELLO ", "WORLD"]);
    /// # Ok(()) }
    /// ```
    pub async fn stream_request(&self, op: &str) -> Result<(StreamSender, StreamReceiver)> {
        let op = Name::new(op)?;
        let (tx, rx) = parts::channel();
        let id = self.register(Waiter::Stream(tx))?;
        Ok((
            StreamSender::request(self.clone(), id, op),
            StreamReceiver::for_request(rx, self.clone(), id),
        ))
    }
}

/// Reads the parts of a stream, in order.
///
/// Parts are buffered up to the connection's [`crate::Limits::stream_buffer`] (shared by all its
/// streams); beyond that the connection's reader waits for receivers to take parts out, so read
/// promptly (or drop the receiver) to keep the connection flowing. A stream handler's input
/// fails with [`Error::Timeout`] when the peer sends no part for
/// [`crate::Limits::stream_idle_timeout`].
pub struct StreamReceiver {
    rx: PartReceiver,
    sock: Sock,
    done: bool,
    /// Longest wait for a part (a stream handler's input).
    idle: Option<Duration>,
    /// For our own stream requests: the request to forget if this receiver is dropped early.
    request: Option<RequestId>,
}

impl fmt::Debug for StreamReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("done", &self.done)
            .finish()
    }
}

impl StreamReceiver {
    /// A stream handler's input: the parts of the peer's stream request.
    pub(crate) fn new(rx: PartReceiver, sock: Sock) -> StreamReceiver {
        StreamReceiver {
            idle: sock.limits().stream_idle_timeout,
            rx,
            sock,
            done: false,
            request: None,
        }
    }

    /// A receiver for the results of our stream request `id`.
    pub(crate) fn for_request(rx: PartReceiver, sock: Sock, id: RequestId) -> StreamReceiver {
        StreamReceiver {
            rx,
            sock,
            done: false,
            idle: None,
            request: Some(id),
        }
    }

    /// The next part: `Ok(Some(part))`, `Ok(None)` at the end of the stream, or an error (the
    /// peer answered with an error, the connection closed before the end, or — for a stream
    /// handler's input — the peer sent no part for [`crate::Limits::stream_idle_timeout`]).
    pub async fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let next = match self.idle {
            None => self.rx.recv().await,
            Some(t) => match tokio::time::timeout(t, self.rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    // Further parts are dropped by the reader (it finds this end closed).
                    self.done = true;
                    self.rx.close();
                    return Err(Error::Timeout("stream part"));
                }
            },
        };
        match next.map(|p| p.data) {
            Some(Ok(b)) if b.is_empty() => {
                self.done = true;
                Ok(None)
            }
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(Error::Closed(
                    self.sock.close_reason().unwrap_or(CloseReason::Local),
                ))
            }
        }
    }

    /// Reads every remaining part and returns them concatenated.
    pub async fn collect(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = self.recv().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}

impl Drop for StreamReceiver {
    fn drop(&mut self) {
        if let (Some(id), false) = (self.request, self.done) {
            // Nobody will read the results: stop routing them here.
            self.sock.forget_request(id);
        }
    }
}

/// What a [`StreamSender`] sends: request parts (`s` then `p`) or result parts (`S`).
#[derive(Debug, Clone)]
enum Kind {
    /// Requestor side; `op` goes with the first part.
    Request { op: Name, started: bool },
    /// Handler side.
    Result,
}

/// Writes the parts of a stream.
pub struct StreamSender {
    sock: Sock,
    id: RequestId,
    kind: Kind,
    ended: Arc<AtomicBool>,
}

impl fmt::Debug for StreamSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSender")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("ended", &self.ended.load(Ordering::Relaxed))
            .finish()
    }
}

impl StreamSender {
    pub(crate) fn request(sock: Sock, id: RequestId, op: Name) -> StreamSender {
        StreamSender {
            sock,
            id,
            kind: Kind::Request { op, started: false },
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn result(sock: Sock, id: RequestId) -> (StreamSender, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(false));
        (
            StreamSender {
                sock,
                id,
                kind: Kind::Result,
                ended: ended.clone(),
            },
            ended,
        )
    }

    /// The request ID of this stream.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Sends one part. Empty parts are skipped (on the wire an empty part ends the stream).
    pub async fn write(&mut self, part: impl Into<Bytes>) -> Result<()> {
        let part = part.into();
        if self.ended.load(Ordering::Acquire) {
            return Err(Error::Closed(CloseReason::Local));
        }
        check_payload_len(part.len())?;
        let msg = match &mut self.kind {
            Kind::Request { op, started } if !*started => {
                *started = true;
                Message::StreamRequest {
                    id: self.id,
                    op: op.clone(),
                    payload: part,
                }
            }
            _ if part.is_empty() => return Ok(()),
            Kind::Request { .. } => Message::StreamRequestPart {
                id: self.id,
                payload: part,
            },
            Kind::Result => Message::StreamResult {
                id: self.id,
                payload: part,
            },
        };
        self.sock.send(msg).await
    }

    /// Ends the stream (sends the empty end-of-stream part). Ending twice is a no-op.
    pub async fn end(&mut self) -> Result<()> {
        if let Kind::Request { started: false, .. } = self.kind {
            // The `s` message must go first; it may carry an empty first part.
            self.write(Bytes::new()).await?;
        }
        if self.ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let msg = match self.kind {
            Kind::Request { .. } => Message::StreamRequestPart {
                id: self.id,
                payload: Bytes::new(),
            },
            Kind::Result => Message::StreamResult {
                id: self.id,
                payload: Bytes::new(),
            },
        };
        self.sock.send(msg).await
    }
}
