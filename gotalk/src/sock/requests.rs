//! Our requests: [`Sock::request`] and [`Sock::buffer_request`], with automatic retries, and
//! the future of one single-result request (registered and queued in one step, then waiting
//! for the reader to store its reply).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Sock;
use crate::error::{CloseReason, Error, Result};
use crate::frame::{MsgType, NameTooLong, RequestId, MAX_NAME_LEN};
use crate::notification::check_payload_len;
use crate::pending::{Reply, Waiter};

impl Sock {
    /// Sends request `op` with `input` encoded as JSON and decodes the JSON result. The peer's
    /// ErrorResult is [`Error::Remote`] with its text; a RetryResult is retried as
    /// [`Sock::buffer_request`] says.
    ///
    /// ```
    /// use gotalk::{Config, Error, Handlers};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Sum { a: i64, b: i64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// let server = Config::new()
    ///     .handlers(Handlers::new().handle("sum", |s: Sum| async move { Ok(s.a + s.b) }));
    /// let (sock, _server) = gotalk::pipe_with(&Config::new(), &server).await?;
    ///
    /// let n: i64 = sock.request("sum", &Sum { a: 2, b: 3 }).await?;
    /// assert_eq!(n, 5);
    /// // Input the handler cannot decode: the peer says what is wrong with it.
    /// let e = sock.request::<_, i64>("sum", &serde_json::json!({ "a": 2 })).await.unwrap_err();
    /// assert!(matches!(e, Error::Remote(text) if text.ends_with("missing field `b` at line 1 column 7")));
    /// # Ok(()) }
    /// ```
    pub async fn request<I, O>(&self, op: &str, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let payload = serde_json::to_vec(input)?;
        let out = self.buffer_request(op, payload).await?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Sends request `op` with a raw payload and returns the raw result.
    ///
    /// A RetryResult is retried automatically after the wait the peer asked for, up to the
    /// configured number of times ([`Config::auto_retry`](crate::Config::auto_retry)); a wait
    /// over [`Config::max_retry_wait`](crate::Config::max_retry_wait) is not waited for, and the wait ends early (with
    /// [`Error::Closed`]) if the connection closes.
    ///
    /// To give up after a while, wrap the call in a timeout: dropping the future frees its
    /// request (a result arriving later is dropped and counted, see [`Sock::late_results`]).
    /// Protocol v1 has no way to tell the peer to stop working on it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> gotalk::Result<()> {
    /// # let mut h = gotalk::Handlers::new();
    /// # h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    /// # let (sock, _peer) = gotalk::pipe_with(&gotalk::Config::new(), &gotalk::Config::new().handlers(h)).await?;
    /// let answer = tokio::time::timeout(Duration::from_secs(5), sock.buffer_request("echo", "hi"))
    ///     .await
    ///     .map_err(|_| gotalk::Error::Timeout("echo"))??;
    /// assert_eq!(&answer[..], b"hi");
    /// # Ok(()) }
    /// ```
    pub async fn buffer_request(&self, op: &str, payload: impl Into<Bytes>) -> Result<Bytes> {
        let payload = payload.into();
        let mut retries = 0;
        loop {
            match self.request_once(op, &payload).await {
                Err(Error::Retry { wait, .. })
                    if retries < self.inner.auto_retry && wait <= self.inner.max_retry_wait =>
                {
                    retries += 1;
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                    if let Some(cb) = &self.inner.callbacks.retry {
                        cb(self, op, wait, retries);
                    }
                    tracing::debug!(op = %op, ?wait, retries, "retrying request");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        reason = self.closing() => return Err(Error::Closed(reason)),
                    }
                }
                other => return other,
            }
        }
    }

    /// Sends request `op` once: a RetryResult is returned as [`Error::Retry`], whatever
    /// [`Config::auto_retry`](crate::Config::auto_retry) says (for layers that retry elsewhere,
    /// such as a pool). Takes the payload by reference so that trying again needs no copy of
    /// the handle.
    pub(crate) async fn request_once(&self, op: &str, payload: &Bytes) -> Result<Bytes> {
        if op.len() > MAX_NAME_LEN {
            return Err(NameTooLong(op.len()).into());
        }
        check_payload_len(payload.len())?;
        let reply = Call {
            sock: self,
            op,
            payload,
            id: None,
        }
        .await;
        match reply {
            Ok(Reply::Result(b)) => Ok(b),
            Ok(Reply::Error(text)) => {
                Err(Error::Remote(String::from_utf8_lossy(&text).into_owned()))
            }
            Ok(Reply::Retry(wait_ms, text)) => Err(Error::Retry {
                wait: Duration::from_millis(u64::from(wait_ms)),
                message: String::from_utf8_lossy(&text).into_owned(),
            }),
            Ok(Reply::UnexpectedStream) => Err(Error::UnexpectedStream),
            Ok(Reply::TooLarge(size)) => Err(Error::PayloadTooLarge {
                size: size as usize,
                limit: self.inner.limits.max_payload as usize,
            }),
            Err(reason) => Err(Error::Closed(reason)),
        }
    }
}

/// One single-result request on its way: registered and queued in one step when first polled,
/// then waiting in the pending table until the reader stores its reply there. Dropped early
/// (say, by a caller's timeout), it takes its entry out of the table.
struct Call<'a> {
    sock: &'a Sock,
    op: &'a str,
    payload: &'a Bytes,
    /// Set once the request is queued.
    id: Option<RequestId>,
}

impl Future for Call<'_> {
    type Output = std::result::Result<Reply, CloseReason>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut guard = this.sock.shared();
        let s = &mut *guard;
        if let Some(id) = this.id {
            return match s.pending.poll_single(id, cx.waker()) {
                Some(reply) => {
                    this.id = None;
                    Poll::Ready(reply)
                }
                None => Poll::Pending,
            };
        }
        if let Some(r) = s.pending.closed() {
            return Poll::Ready(Err(r.clone()));
        }
        if !s.out.poll_room(cx.waker()) {
            return Poll::Pending;
        }
        let id = match s.pending.insert(Waiter::single(cx.waker())) {
            Ok(id) => id,
            Err(r) => return Poll::Ready(Err(r)),
        };
        s.out
            .batch()
            .push_request(MsgType::SingleRequest, id, this.op, this.payload);
        // A lone request is written right away; with others in flight, the writer task
        // gathers them into one write.
        let lone = s.pending.len() == 1;
        let next = s.out.queued(lone);
        drop(guard);
        this.id = Some(id);
        this.sock.carry_out(next);
        Poll::Pending
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.sock.shared().pending.remove(id);
        }
    }
}
