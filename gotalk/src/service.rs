//! Typed services: what the [`service`](macro@crate::service) macro's generated code builds on.
//!
//! A trait marked `#[gotalk::service]` describes the operations one peer offers; the macro turns
//! it into three things, each a thin layer over the untyped API of this crate:
//!
//! - `NameServer<T>`: registers an implementation of the trait on [`Handlers`] (one handler per
//!   method, [`Handlers::service`]). Each method decodes and encodes JSON exactly as a handler
//!   written with [`Handlers::handle`] would, so the wire does not change.
//! - `NameClient<C>`: calls the methods of a peer through a [`Caller`] — a [`Sock`], a `&Sock`,
//!   an `Arc<Sock>`, or anything else that can send requests (a pool of connections).
//! - `NameService`: the service's description ([`ServiceDef`]): its name and its methods' wire
//!   names and kinds; with `#[gotalk::service(typescript)]` also its TypeScript
//!   ([`crate::typescript`]).
//!
//! How a method maps to the protocol:
//!
//! | method | wire |
//! |---|---|
//! | `async fn op(&self, input: In) -> Out` | request `op`, JSON in, JSON out |
//! | `async fn op(&self, input: In) -> Result<Out, HandlerError>` | the same; an `Err` is an ErrorResult with the message |
//! | `async fn op(&self, input: In) -> Result<Out, E>` | the same; an `Err` is an ErrorResult carrying `E` as JSON, and the client gets it back typed ([`CallError::Service`]) |
//! | `fn name(&self, input: In)` | notification `name` |
//! | `async fn op(&self, input: Parts<In>) -> Parts<Out>` | stream request `op`: one JSON value per part, both ways |
//! | `async fn op(&self, input: In) -> Parts<Out>` | stream request: the input is its only part, results stream back |
//! | `async fn op(&self, input: Parts<In>) -> Out` (or a `Result`) | stream request: parts in, one result part back |
//!
//! A method may take no input (the client sends `null`), and the implementation may ask for the
//! calling connection with a first parameter `sock: &Sock` (to call back into the peer); the
//! client does not pass it.
//!
//! ```
//! use gotalk::service::{CallError, Parts};
//! use gotalk::{Config, Handlers, Limits, Sock};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! enum MathError { DivideByZero }
//!
//! #[gotalk::service]
//! trait Calc {
//!     async fn divide(&self, input: (f64, f64)) -> Result<f64, MathError>;
//!     async fn countdown(&self, from: u32) -> Parts<u32>;
//!     async fn total(&self, values: Parts<f64>) -> f64;
//!     /// Asks the caller for its name (the caller serves `Named`).
//!     async fn hello(&self, sock: &Sock) -> Result<String, gotalk::HandlerError>;
//!     #[gotalk(name = "log/line")]
//!     fn log(&self, line: String);
//! }
//!
//! #[gotalk::service]
//! trait Named {
//!     async fn name(&self) -> String;
//! }
//!
//! struct Calculator;
//!
//! impl Calc for Calculator {
//!     async fn divide(&self, (a, b): (f64, f64)) -> Result<f64, MathError> {
//!         if b == 0.0 { Err(MathError::DivideByZero) } else { Ok(a / b) }
//!     }
//!     async fn countdown(&self, from: u32) -> Parts<u32> {
//!         Parts::iter((1..=from).rev())
//!     }
//!     async fn total(&self, mut values: Parts<f64>) -> f64 {
//!         let mut sum = 0.0;
//!         while let Ok(Some(v)) = values.recv().await { sum += v; }
//!         sum
//!     }
//!     async fn hello(&self, sock: &Sock) -> Result<String, gotalk::HandlerError> {
//!         Ok(format!("hello {}", NamedClient::new(sock).name().await?))
//!     }
//!     fn log(&self, line: String) { println!("{line}"); }
//! }
//!
//! struct Me;
//!
//! impl Named for Me {
//!     async fn name(&self) -> String { "me".into() }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> gotalk::Result<()> {
//! // Streams are off by default: both ends allow a few.
//! let limits = Limits::default().stream_requests(4);
//! let mut server_side = Handlers::new();
//! server_side.service(CalcServer::new(Calculator));
//! let mut client_side = Handlers::new();
//! client_side.service(NamedServer::new(Me));
//! let (a, b) = gotalk::pipe_with(
//!     &Config::new().handlers(client_side).limits(limits.clone()),
//!     &Config::new().handlers(server_side).limits(limits),
//! ).await?;
//!
//! let calc = CalcClient::new(&a);
//! assert_eq!(calc.divide((1.0, 4.0)).await.unwrap(), 0.25);
//! assert!(matches!(calc.divide((1.0, 0.0)).await, Err(CallError::Service(MathError::DivideByZero))));
//! assert_eq!(calc.countdown(3).await?.into_vec().await?, [3, 2, 1]);
//! assert_eq!(calc.total(vec![1.0, 2.5].into()).await?, 3.5);
//! assert_eq!(calc.hello().await?, "hello me");
//! calc.log("done".into()).await?;
//! # drop(b);
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, HandlerError, Result};
use crate::handlers::Handlers;
use crate::sock::Sock;
use crate::stream::{StreamReceiver, StreamSender};

/// What a generated client sends its calls through: the raw, untyped operations of a
/// connection. [`Sock`] implements it; so do [`Pool`](crate::pool::Pool) and
/// [`KeepAlive`](crate::pool::KeepAlive) (calls spread over responders, or kept across
/// reconnects), and references and `Arc`s of any `Caller`.
pub trait Caller: Send + Sync {
    /// Sends request `op` with `payload` and returns the result payload (see
    /// [`Sock::buffer_request`]).
    fn call(&self, op: &str, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send;

    /// Sends notification `name` with `payload` (see [`Sock::buffer_notify`]).
    fn notify(&self, name: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Starts stream request `op` (see [`Sock::stream_request`]).
    fn stream(
        &self,
        op: &str,
    ) -> impl Future<Output = Result<(StreamSender, StreamReceiver)>> + Send;
}

impl Caller for Sock {
    fn call(&self, op: &str, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send {
        self.buffer_request(op, payload)
    }

    fn notify(&self, name: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.buffer_notify(name, payload)
    }

    fn stream(
        &self,
        op: &str,
    ) -> impl Future<Output = Result<(StreamSender, StreamReceiver)>> + Send {
        self.stream_request(op)
    }
}

impl<C: Caller + ?Sized> Caller for &C {
    fn call(&self, op: &str, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send {
        (**self).call(op, payload)
    }

    fn notify(&self, name: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        (**self).notify(name, payload)
    }

    fn stream(
        &self,
        op: &str,
    ) -> impl Future<Output = Result<(StreamSender, StreamReceiver)>> + Send {
        (**self).stream(op)
    }
}

impl<C: Caller + ?Sized> Caller for Arc<C> {
    fn call(&self, op: &str, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send {
        (**self).call(op, payload)
    }

    fn notify(&self, name: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        (**self).notify(name, payload)
    }

    fn stream(
        &self,
        op: &str,
    ) -> impl Future<Output = Result<(StreamSender, StreamReceiver)>> + Send {
        (**self).stream(op)
    }
}

/// Something that registers handlers: the `NameServer` types the service macro generates.
pub trait Service {
    /// Adds one handler per method to `handlers`.
    fn register(self, handlers: &mut Handlers);
}

impl Handlers {
    /// Registers every method of a typed service (a `NameServer` generated by
    /// [`service`](macro@crate::service)) as a handler.
    pub fn service(&mut self, service: impl Service) -> &mut Self {
        service.register(self);
        self
    }
}

/// How a method travels on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// A single request: one payload in, one result back.
    Request,
    /// A notification: one payload, no answer.
    Notification,
    /// A stream request; the flags say which side streams (the other sends one part).
    Stream {
        /// The input is a stream of parts ([`Parts`]), not a single value.
        input: bool,
        /// The output is a stream of parts, not a single value.
        output: bool,
    },
}

/// One method of a service, as the wire sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodDef {
    /// The Rust method name.
    pub method: &'static str,
    /// The operation or notification name on the wire.
    pub name: &'static str,
    /// Request, notification or stream.
    pub kind: MethodKind,
    /// Whether an `Err` carries a typed error value (as JSON) rather than a message.
    pub typed_error: bool,
}

/// The description of a service, implemented by the `NameService` type the macro generates.
pub trait ServiceDef {
    /// The trait's name.
    const NAME: &'static str;
    /// Its methods, in the order they are declared.
    const METHODS: &'static [MethodDef];
}

// ---- Parts -----------------------------------------------------------------------------------

/// A typed stream of parts: each part is one JSON value on the wire. It is both what a
/// streaming method receives and what it returns.
///
/// Read it with [`Parts::recv`] (or as a [`Stream`]); make one from an iterator
/// ([`Parts::iter`], `From<Vec<T>>`), from any stream of results ([`Parts::new`]), or fill it
/// from another task ([`Parts::channel`]). An `Err` item is always the last one: on the wire it
/// ends the stream with an ErrorResult.
pub struct Parts<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T>> + Send>>,
}

impl<T> fmt::Debug for Parts<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Parts")
    }
}

impl<T: Send + 'static> Parts<T> {
    /// Parts from a stream of results; an `Err` ends the stream.
    pub fn new(stream: impl Stream<Item = Result<T>> + Send + 'static) -> Parts<T> {
        Parts {
            inner: Box::pin(stream),
        }
    }

    /// Parts from the values of an iterator.
    pub fn iter<I>(items: I) -> Parts<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Parts::new(futures_util::stream::iter(items.into_iter().map(Ok)))
    }

    /// No parts at all.
    pub fn empty() -> Parts<T> {
        Parts::new(futures_util::stream::empty())
    }

    /// Parts sent from elsewhere: the stream ends when every sender is dropped. At most
    /// `capacity` parts wait in between (a sender waits for room).
    pub fn channel(capacity: usize) -> (mpsc::Sender<Result<T>>, Parts<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let parts = Parts::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        (tx, parts)
    }

    /// The next part: `Ok(Some(value))`, `Ok(None)` at the end, or the error that ended the
    /// stream.
    pub async fn recv(&mut self) -> Result<Option<T>> {
        self.inner.next().await.transpose()
    }

    /// Reads every remaining part.
    pub async fn into_vec(mut self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while let Some(v) = self.recv().await? {
            out.push(v);
        }
        Ok(out)
    }

    /// The parts of a stream received from the peer, decoded from JSON one by one.
    fn receive(rx: StreamReceiver) -> Parts<T>
    where
        T: DeserializeOwned,
    {
        Parts::new(futures_util::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(Some(part)) => match serde_json::from_slice(&part) {
                    Ok(v) => Some((Ok(v), Some(rx))),
                    Err(e) => Some((Err(Error::Json(e)), None)),
                },
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }))
    }
}

impl<T> Stream for Parts<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl<T: Send + 'static> From<Vec<T>> for Parts<T> {
    fn from(items: Vec<T>) -> Parts<T> {
        Parts::iter(items)
    }
}

// ---- errors ----------------------------------------------------------------------------------

/// The error of a client call to a method that declares its own error type `E`.
#[derive(Debug)]
pub enum CallError<E> {
    /// The peer's implementation returned `Err(e)`.
    Service(E),
    /// The call failed otherwise: the connection, the protocol, an error text that is not an
    /// `E` (e.g. `unknown operation`), or a result that does not decode.
    Call(Error),
}

impl<E> CallError<E> {
    /// The service's error, if the peer's implementation returned one.
    pub fn service(&self) -> Option<&E> {
        match self {
            CallError::Service(e) => Some(e),
            CallError::Call(_) => None,
        }
    }

    /// Turns an error text from the peer back into `E` when it is one.
    fn from_error(e: Error) -> CallError<E>
    where
        E: DeserializeOwned,
    {
        if let Error::Remote(text) = &e {
            if let Ok(v) = serde_json::from_str(text) {
                return CallError::Service(v);
            }
        }
        CallError::Call(e)
    }
}

impl<E> From<Error> for CallError<E> {
    fn from(e: Error) -> CallError<E> {
        CallError::Call(e)
    }
}

/// Shows a service error with its `Debug` form, which every error type has (a `Display` would
/// be one more thing to write for each).
impl<E: fmt::Debug> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Service(e) => write!(f, "service error: {e:?}"),
            CallError::Call(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for CallError<E> {}

/// Marks the types that can travel as the payload of a service method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the payload of a gotalk service method",
    label = "not a serde type",
    note = "arguments, results, stream parts and error types travel as JSON: derive `serde::Serialize` and `serde::Deserialize` for `{Self}`"
)]
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// The message of an ErrorResult that ends a stream because of `e`: the peer's own text is
/// passed on as it was, a request to retry stays one.
fn handler_error(e: Error) -> HandlerError {
    match e {
        Error::Remote(text) => HandlerError::msg(text),
        Error::Retry { wait, message } => HandlerError::retry(wait, message),
        e => HandlerError::msg(e),
    }
}

/// The pieces generated code calls. Not a public API: it changes with the macro.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use crate::handlers::{decode_json, encode_json};

    pub use crate::handlers::Handlers;
    pub use crate::stream::{StreamReceiver, StreamSender};

    /// Compile-time check, spanned at the user's type by the macro.
    pub const fn assert_payload<T: Payload>() {}

    // ---- client side ----

    pub async fn request<C, I, O>(caller: &C, op: &str, input: &I) -> Result<O>
    where
        C: Caller + ?Sized,
        I: Payload,
        O: Payload,
    {
        let payload = serde_json::to_vec(input)?;
        let out = caller.call(op, Bytes::from(payload)).await?;
        Ok(serde_json::from_slice(&out)?)
    }

    pub async fn request_typed<C, I, O, E>(
        caller: &C,
        op: &str,
        input: &I,
    ) -> Result<O, CallError<E>>
    where
        C: Caller + ?Sized,
        I: Payload,
        O: Payload,
        E: Payload,
    {
        request(caller, op, input)
            .await
            .map_err(CallError::from_error)
    }

    pub fn typed<O, E: Payload>(r: Result<O>) -> Result<O, CallError<E>> {
        r.map_err(CallError::from_error)
    }

    pub async fn notify<C, I>(caller: &C, name: &str, input: &I) -> Result<()>
    where
        C: Caller + ?Sized,
        I: Payload,
    {
        let payload = serde_json::to_vec(input)?;
        caller.notify(name, Bytes::from(payload)).await
    }

    /// Sends the one input part of a stream request and ends it.
    pub async fn send_one<I: Payload>(tx: &mut StreamSender, input: &I) -> Result<()> {
        tx.write(serde_json::to_vec(input)?).await?;
        tx.end().await
    }

    /// Sends `input` as the parts of a stream request from a task of its own (the caller
    /// reads the results meanwhile), and returns the results. The task stops when the results
    /// are dropped or end; an error in `input` ends the request and is the last item of the
    /// results.
    pub fn send_parts_and_receive<I, O>(
        mut tx: StreamSender,
        mut input: Parts<I>,
        rx: StreamReceiver,
    ) -> Parts<O>
    where
        I: Payload,
        O: Payload,
    {
        let (failed_tx, failed_rx) = oneshot::channel::<Error>();
        tokio::spawn(async move {
            let mut failed_tx = failed_tx;
            let failure = loop {
                let item = tokio::select! {
                    _ = failed_tx.closed() => return,
                    item = input.next() => item,
                };
                let part = match item {
                    None => break None,
                    Some(Ok(v)) => match serde_json::to_vec(&v) {
                        Ok(part) => part,
                        Err(e) => break Some(Error::Json(e)),
                    },
                    Some(Err(e)) => break Some(e),
                };
                if tx.write(part).await.is_err() {
                    // The connection is gone; the results say so.
                    return;
                }
            };
            let _ = tx.end().await;
            if let Some(e) = failure {
                let _ = failed_tx.send(e);
            }
        });
        let results = Parts::<O>::receive(rx);
        Parts::new(futures_util::stream::unfold(
            Some((results, failed_rx)),
            |state| async move {
                let (mut results, mut failed_rx) = state?;
                match results.next().await {
                    Some(Ok(v)) => Some((Ok(v), Some((results, failed_rx)))),
                    Some(Err(e)) => Some((Err(e), None)),
                    None => failed_rx.try_recv().ok().map(|e| (Err(e), None)),
                }
            },
        ))
    }

    pub fn receive_parts<O>(rx: StreamReceiver) -> Parts<O>
    where
        O: Payload,
    {
        Parts::receive(rx)
    }

    /// The single result of a stream request: its first part, read up to the end of the
    /// stream (`null` when the peer sent no part).
    pub async fn single_result<O>(mut results: Parts<O>) -> Result<O>
    where
        O: Payload,
    {
        let first = results.recv().await?;
        while results.recv().await?.is_some() {}
        match first {
            Some(v) => Ok(v),
            None => Ok(serde_json::from_slice(b"null")?),
        }
    }

    // ---- server side ----

    pub fn decode<I: Payload>(payload: &[u8]) -> Result<I, HandlerError> {
        decode_json(payload)
    }

    pub fn reply<O: Payload>(out: &O) -> Result<Bytes, HandlerError> {
        encode_json(out)
    }

    pub fn reply_result<O: Payload>(out: Result<O, HandlerError>) -> Result<Bytes, HandlerError> {
        encode_json(&out?)
    }

    pub fn reply_typed<O: Payload, E: Payload>(out: Result<O, E>) -> Result<Bytes, HandlerError> {
        match out {
            Ok(v) => encode_json(&v),
            Err(e) => Err(match serde_json::to_string(&e) {
                Ok(text) => HandlerError::msg(text),
                Err(e) => HandlerError::msg(format!("failed to encode error: {e}")),
            }),
        }
    }

    /// The single input of a stream request: its first part (`null` when there is none).
    /// The rest of the request is not read.
    pub async fn first_part<I: Payload>(mut rx: StreamReceiver) -> Result<I, HandlerError> {
        let first = rx.recv().await.map_err(handler_error)?;
        decode_json(first.as_deref().unwrap_or_default())
    }

    pub fn receive_input<I>(rx: StreamReceiver) -> Parts<I>
    where
        I: Payload,
    {
        Parts::receive(rx)
    }

    /// Writes every part of `out` as a result part; an `Err` ends the stream with an
    /// ErrorResult.
    pub async fn send_results<O: Payload>(
        tx: &mut StreamSender,
        mut out: Parts<O>,
    ) -> Result<(), HandlerError> {
        while let Some(item) = out.next().await {
            let part = encode_json(&item.map_err(handler_error)?)?;
            tx.write(part).await.map_err(HandlerError::msg)?;
        }
        Ok(())
    }

    /// Writes the single result part of a stream request.
    pub async fn send_result(tx: &mut StreamSender, part: Bytes) -> Result<(), HandlerError> {
        tx.write(part).await.map_err(HandlerError::msg)
    }

    pub fn shared<T>(service: T) -> Arc<T> {
        Arc::new(service)
    }
}
