//! Errors: what went wrong, and who caused it.
//!
//! There are four sources of trouble, and every error says which one it is:
//! the **peer** answered with an error or broke the protocol ([`Error::Remote`],
//! [`Error::Retry`], a [`CloseReason`] caused by the peer), a **handler** of ours failed
//! ([`HandlerError`], sent to the peer as an ErrorResult), **we** refused something
//! ([`Error::PayloadTooLarge`], [`Error::InvalidName`], [`Error::Timeout`]), or **I/O** failed.

use std::fmt;
use std::time::Duration;

use crate::frame::ProtocolErrorCode;

/// Which end of a connection did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// This process.
    Local,
    /// The peer at the other end of the connection.
    Remote,
}

/// Why a connection closed. Every pending request of a closed connection fails with
/// [`Error::Closed`] carrying this reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side closed the connection ([`crate::Sock::close`], a server shutdown, or dropping
    /// every handle).
    Local,
    /// The peer closed the connection (end of stream) without an error.
    PeerClosed,
    /// A protocol error ended the connection. `by` says who detected it: `Local` means we sent
    /// the `f` message (e.g. the peer sent garbage), `Remote` means the peer sent it to us.
    Protocol {
        /// The protocol error code.
        code: ProtocolErrorCode,
        /// Who sent the `f` message.
        by: Side,
        /// Details, when known (e.g. what was wrong with a message we received).
        detail: String,
    },
    /// Reading or writing the connection failed.
    Io {
        /// What kind of failure it was (e.g. `ConnectionReset`, `TimedOut`, `UnexpectedEof`).
        kind: std::io::ErrorKind,
        /// What happened, in words.
        message: String,
    },
}

impl CloseReason {
    /// An I/O failure, keeping its kind.
    pub fn io(e: &std::io::Error) -> CloseReason {
        CloseReason::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// The protocol error code, if a protocol error ended the connection.
    pub fn protocol_error_code(&self) -> Option<ProtocolErrorCode> {
        match self {
            CloseReason::Protocol { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("connection closed by this side"),
            CloseReason::PeerClosed => f.write_str("connection closed by peer"),
            CloseReason::Protocol { code, by, detail } => {
                let who = match by {
                    Side::Local => "we sent",
                    Side::Remote => "peer sent",
                };
                write!(f, "protocol error: {who} {code}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            CloseReason::Io { message, .. } => write!(f, "connection failed: {message}"),
        }
    }
}

/// The error type of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer answered with an ErrorResult: the request was faulty and should not be retried
    /// as-is. The text is the peer's error message.
    #[error("peer answered with an error: {0}")]
    Remote(String),
    /// The peer answered with a RetryResult and no (further) automatic retry was made.
    #[error("peer asked to retry after {wait:?}: {message}")]
    Retry {
        /// How long the peer asked us to wait.
        wait: Duration,
        /// The peer's reason.
        message: String,
    },
    /// The connection closed before the operation completed.
    #[error("{0}")]
    Closed(CloseReason),
    /// A payload is larger than the configured maximum ([`crate::Limits::max_payload`]).
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload size.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// An operation or notification name longer than 4095 bytes.
    #[error(transparent)]
    InvalidName(#[from] crate::frame::NameTooLong),
    /// A JSON value could not be encoded, or a JSON result could not be decoded.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A single-result request was answered with a stream of results (use
    /// [`crate::Sock::stream_request`] for such operations).
    #[error("unexpected streaming response")]
    UnexpectedStream,
    /// A message could not be queued without waiting: the connection's write buffer is full
    /// because the peer does not read fast enough (see [`crate::Sock::try_notify`]).
    #[error("the connection's write buffer is full (the peer is not reading fast enough)")]
    Full,
    /// A wait ran out (connect, handshake, or a request timeout set by the caller).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The peer does not speak protocol version 1.
    #[error("peer speaks unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// An I/O error (connecting, binding, handshaking).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS failed: loading certificates or keys, or the handshake (e.g. the peer's certificate
    /// is not trusted). The text says what to check.
    #[error("TLS: {0}")]
    Tls(String),
    /// An address that this crate cannot parse or connect to.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// If the peer asked us to retry, how long it asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Retry { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// Whether the connection closed (for any reason) before the operation completed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed(_))
    }

    /// The close reason, if the connection closed.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            Error::Closed(r) => Some(r),
            _ => None,
        }
    }
}

/// Items carried to a [`crate::StreamReceiver`]: a part, an empty part for the end, or an
/// error.
pub(crate) type PartResult = std::result::Result<bytes::Bytes, Error>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error a request handler returns; the peer receives it as an ErrorResult (or a
/// RetryResult, see [`HandlerError::retry`]).
///
/// Any `std::error::Error` converts into it, so handlers can use `?`:
///
/// ```
/// use gotalk::HandlerError;
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     Ok(s.parse::<u32>()?)
/// }
/// assert_eq!(parse("x").unwrap_err().message(), "invalid digit found in string");
/// ```
pub struct HandlerError {
    message: String,
    retry: Option<Duration>,
}

impl HandlerError {
    /// An error with the given message, sent as the ErrorResult payload.
    pub fn msg(message: impl fmt::Display) -> HandlerError {
        HandlerError {
            message: message.to_string(),
            retry: None,
        }
    }

    /// Answer with a RetryResult: the requestor may retry after `wait`.
    pub fn retry(wait: Duration, message: impl fmt::Display) -> HandlerError {
        HandlerError {
            message: message.to_string(),
            retry: Some(wait),
        }
    }

    /// The message sent to the peer.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The wait, when this error asks the peer to retry.
    pub fn retry_wait(&self) -> Option<Duration> {
        self.retry
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    /// The error's message; for an [`Error`] from a request to another peer, the peer's own
    /// message unchanged (a handler that forwards a peer's error with `?` adds no prefix, however
    /// many hops the error travels) and its RetryResult wait.
    fn from(e: E) -> HandlerError {
        let any: &dyn std::any::Any = &e;
        match any.downcast_ref::<Error>() {
            Some(Error::Remote(text)) => HandlerError::msg(text),
            Some(Error::Retry { wait, message }) => HandlerError::retry(*wait, message),
            _ => HandlerError::msg(e),
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("message", &self.message)
            .field("retry", &self.retry)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
