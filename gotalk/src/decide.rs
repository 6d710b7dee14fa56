//! What an incoming message does. [`decide`] takes the connection's state and one decoded
//! message and returns one [`Action`]; the reader (`sock/reader.rs`) only carries it out.
//!
//! Pure: no I/O, no clock, no waiting. Everything the protocol says about a message the peer
//! sent — which handler runs, which request is refused and how, which stream a part belongs to,
//! which violation closes the connection with which code — is decided here and unit-tested
//! without a socket.
//!
//! | incoming | action |
//! |---|---|
//! | the version | [`Action::Open`] (the decoder already refused other versions) |
//! | `r` | [`Action::Request`] with a request slot taken, or [`Action::Answer`] with ErrorResult `unknown operation` or RetryResult `request rate limit` |
//! | `s` | [`Action::Stream`] with a slot taken, or a refusal (streams disabled, unknown operation, over the limit); a stream ID still open closes with ProtocolError 2 |
//! | `p` | [`Action::Part`] to the open stream; [`Action::Ignore`] for a refused or finished one; ProtocolError 2 for a stream never opened |
//! | `R` `E` `e` | [`Action::Reply`] for one of our requests |
//! | `S` | [`Action::ResultPart`] for one of our stream requests |
//! | `n` | [`Action::Notify`] with its handler, or [`Action::Ignore`] |
//! | `h` | [`Action::Heartbeat`] |
//! | `f` | [`Action::Close`], caused by the peer |
//! | a payload over the limit | ErrorResult for a request, an error for the stream or our request it belongs to, or dropped (a notification) |

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{DecodeError, Decoded, Oversized};
use crate::error::{CloseReason, Error, PartResult, Side};
use crate::frame::{Message, MsgType, Name, ProtocolErrorCode, RequestId};
use crate::handlers::{
    BufferHandler, Handlers, NotificationHandler, RequestHandler, StreamHandler,
};
use crate::incoming::{IncomingStreams, PartTarget};
use crate::limits::{Admit, Counters, Limits};
use crate::parts::PartSender;
use crate::pending::Reply;

/// The parts of a connection's state a decision reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// Handlers for the peer's requests and notifications.
    pub(crate) handlers: &'a Handlers,
    /// The connection's limits.
    pub(crate) limits: &'a Limits,
    /// Requests in progress; [`decide`] takes a slot for each request it starts.
    pub(crate) counters: &'a Counters,
}

/// What to do with one incoming message.
pub(crate) enum Action {
    /// The peer's protocol version arrived: the connection is open.
    Open,
    /// Complete one of our single requests (or fail one of our stream requests) with a reply.
    Reply(RequestId, Reply),
    /// A part of the streaming result of one of our requests; empty is its end.
    ResultPart(RequestId, Bytes),
    /// Send this answer to a request of the peer's (a refusal: ErrorResult or RetryResult).
    Answer(Message),
    /// Run the handler of request `id` (a request slot has been taken for it).
    Request {
        /// The peer's request ID.
        id: RequestId,
        /// The operation.
        op: Name,
        /// The request's payload.
        payload: Bytes,
        /// Its handler.
        handler: Arc<BufferHandler>,
    },
    /// Open incoming stream `id` and run its handler (a request slot and a stream slot have been
    /// taken for it).
    Stream {
        /// The peer's request ID.
        id: RequestId,
        /// The operation.
        op: Name,
        /// The first part (may be empty).
        payload: Bytes,
        /// Its handler.
        handler: Arc<StreamHandler>,
    },
    /// Hand a part (or an error) to the handler of open stream `id`. `last`: the stream's entry
    /// is already closed.
    Part {
        /// The stream's request ID.
        id: RequestId,
        /// The stream handler's input.
        to: PartSender,
        /// What to hand over; an empty part ends the stream.
        part: PartResult,
        /// Whether this is the stream's last item.
        last: bool,
    },
    /// Run a notification handler.
    Notify {
        /// The handler.
        handler: Arc<NotificationHandler>,
        /// The notification's name.
        name: Name,
        /// Its payload.
        payload: Bytes,
    },
    /// The peer's heartbeat.
    Heartbeat {
        /// The peer's load.
        load: u16,
        /// The peer's clock (UNIX seconds).
        time: u32,
    },
    /// Nothing to do (a notification nobody handles, a part of a refused stream).
    Ignore,
    /// Close the connection for this reason, sending this last message (a ProtocolError).
    Close(CloseReason, Option<Message>),
}

/// Decides what one decoded message does. Takes request slots from `cx.counters` for the
/// requests it starts, and keeps `streams` (the peer's open and refused streams) up to date.
pub(crate) fn decide(cx: &Ctx<'_>, streams: &mut IncomingStreams, d: Decoded) -> Action {
    match d {
        Decoded::Version(_) => Action::Open,
        Decoded::Message(m) => message(cx, streams, m),
        Decoded::Oversized(o) => oversized(cx, streams, o),
    }
}

/// The close for bytes that are not gotalk.
pub(crate) fn decode_error(e: &DecodeError) -> Action {
    let code = match e {
        DecodeError::UnsupportedVersion(_) => ProtocolErrorCode::UNSUPPORTED,
        DecodeError::Invalid { .. } => ProtocolErrorCode::INVALID_MSG,
    };
    violation(code, e.to_string())
}

fn message(cx: &Ctx<'_>, streams: &mut IncomingStreams, m: Message) -> Action {
    match m {
        Message::SingleRequest { id, op, payload } => {
            let Some(RequestHandler::Buffer(h)) = cx.handlers.find_request_for(&op, false) else {
                return Action::Answer(error_result(id, unknown_op(&op)));
            };
            match cx.counters.admit(cx.limits, false, payload.len()) {
                Admit::Yes => Action::Request {
                    id,
                    op,
                    payload,
                    handler: h.clone(),
                },
                _ => Action::Answer(retry_result(cx.limits, id)),
            }
        }
        Message::StreamRequest { id, op, payload } => {
            if streams.is_open(id) {
                return started_twice(id);
            }
            let refusal = match cx.counters.admit(cx.limits, true, 0) {
                Admit::StreamsDisabled => error_result(id, STREAMS_DISABLED.into()),
                admit => match cx.handlers.find_request_for(&op, true) {
                    Some(RequestHandler::Stream(h)) if admit == Admit::Yes => {
                        return Action::Stream {
                            id,
                            op,
                            payload,
                            handler: h.clone(),
                        };
                    }
                    Some(RequestHandler::Stream(_)) => retry_result(cx.limits, id),
                    _ => {
                        if admit == Admit::Yes {
                            cx.counters.release(true, 0);
                        }
                        error_result(id, unknown_op(&op))
                    }
                },
            };
            // The peer may already be sending the refused stream's parts: drop them quietly.
            streams.ignore(id);
            Action::Answer(refusal)
        }
        Message::StreamRequestPart { id, payload } => {
            let last = payload.is_empty();
            match streams.route(id, last) {
                PartTarget::Open(to) => Action::Part {
                    id,
                    to,
                    part: Ok(payload),
                    last,
                },
                PartTarget::Ignore => Action::Ignore,
                PartTarget::Unknown => violation(
                    ProtocolErrorCode::INVALID_MSG,
                    format!("stream part for request {id} which is not a stream request"),
                ),
            }
        }
        Message::SingleResult { id, payload } => Action::Reply(id, Reply::Result(payload)),
        Message::StreamResult { id, payload } => Action::ResultPart(id, payload),
        Message::ErrorResult { id, payload } => Action::Reply(id, Reply::Error(payload)),
        Message::RetryResult {
            id,
            wait_ms,
            payload,
        } => Action::Reply(id, Reply::Retry(wait_ms, payload)),
        Message::Notification { name, payload } => match cx.handlers.find_notification(&name) {
            Some(h) => Action::Notify {
                handler: h.clone(),
                name,
                payload,
            },
            None => {
                tracing::debug!(name = %name, "notification without handler dropped");
                Action::Ignore
            }
        },
        Message::Heartbeat { load, time } => Action::Heartbeat { load, time },
        Message::ProtocolError { code } => Action::Close(
            CloseReason::Protocol {
                code,
                by: Side::Remote,
                detail: String::new(),
            },
            None,
        ),
    }
}

/// A message whose payload is over the limit (the decoder skips the payload itself).
fn oversized(cx: &Ctx<'_>, streams: &mut IncomingStreams, o: Oversized) -> Action {
    let limit = cx.limits.max_payload;
    let Some(id) = o.id else {
        tracing::warn!(name = ?o.name, size = o.size, "oversized notification dropped");
        return Action::Ignore;
    };
    let text = format!("payload too large ({} bytes; limit {limit})", o.size);
    match o.msg_type {
        MsgType::SingleRequest => Action::Answer(error_result(id, text)),
        MsgType::StreamRequest if streams.is_open(id) => started_twice(id),
        MsgType::StreamRequest => {
            streams.ignore(id);
            Action::Answer(error_result(id, text))
        }
        MsgType::StreamRequestPart => {
            let target = streams.route(id, false);
            streams.ignore(id);
            match target {
                PartTarget::Open(to) => Action::Part {
                    id,
                    to,
                    part: Err(Error::PayloadTooLarge {
                        size: o.size as usize,
                        limit: limit as usize,
                    }),
                    last: true,
                },
                _ => Action::Ignore,
            }
        }
        _ => Action::Reply(id, Reply::TooLarge(o.size)),
    }
}

/// The ErrorResult text for stream requests to a connection that takes none.
pub(crate) const STREAMS_DISABLED: &str = "stream requests not supported";

fn started_twice(id: RequestId) -> Action {
    violation(
        ProtocolErrorCode::INVALID_MSG,
        format!("stream request {id} started twice"),
    )
}

/// Close with ProtocolError `code`, found by us.
fn violation(code: ProtocolErrorCode, detail: String) -> Action {
    Action::Close(
        CloseReason::Protocol {
            code,
            by: Side::Local,
            detail,
        },
        Some(Message::ProtocolError { code }),
    )
}

fn unknown_op(op: &str) -> String {
    format!("unknown operation \"{op}\"")
}

/// ErrorResult `text` for request `id`.
pub(crate) fn error_result(id: RequestId, text: String) -> Message {
    Message::ErrorResult {
        id,
        payload: Bytes::from(text),
    }
}

/// RetryResult for a request over the limits, with a wait drawn from their range.
fn retry_result(limits: &Limits, id: RequestId) -> Message {
    Message::RetryResult {
        id,
        wait_ms: limits.draw_retry_wait().as_millis() as u32,
        payload: Bytes::from_static(b"request rate limit"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::codec::Decoder;

    fn handlers() -> Handlers {
        let mut h = Handlers::new();
        h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
        h.handle_stream("upper", |_s, _op, _i, _o| async move { Ok(()) });
        h.handle_buffer_notification("tick", |_s, _n, _p| {});
        h
    }

    /// The connection's side of a test: handlers, limits, counters and the stream table.
    struct Conn {
        handlers: Handlers,
        limits: Limits,
        counters: Counters,
        streams: IncomingStreams,
    }

    impl Conn {
        fn new(limits: Limits) -> Conn {
            Conn {
                handlers: handlers(),
                limits,
                counters: Counters::default(),
                streams: IncomingStreams::default(),
            }
        }

        /// Decides on the message encoded in `wire` (one message, no version).
        fn on(&mut self, wire: &[u8]) -> Action {
            let mut d = Decoder::without_version(self.limits.max_payload);
            let mut buf = bytes::BytesMut::from(wire);
            let decoded = d.decode(&mut buf).unwrap().expect("a whole message");
            let cx = Ctx {
                handlers: &self.handlers,
                limits: &self.limits,
                counters: &self.counters,
            };
            decide(&cx, &mut self.streams, decoded)
        }
    }

    fn limits() -> Limits {
        Limits::default()
            .buffer_requests(2)
            .stream_requests(1)
            .retry_wait(Duration::from_millis(7), Duration::from_millis(7))
    }

    fn answer(a: Action) -> Vec<u8> {
        match a {
            Action::Answer(m) => m.to_bytes().to_vec(),
            _ => panic!("expected an answer"),
        }
    }

    fn closes_with(a: Action, want: ProtocolErrorCode) -> String {
        match a {
            Action::Close(CloseReason::Protocol { code, by, detail }, Some(last)) => {
                assert_eq!((code, by), (want, Side::Local));
                assert_eq!(last, Message::ProtocolError { code: want });
                detail
            }
            _ => panic!("expected a close with {want:?}"),
        }
    }

    #[test]
    fn the_version_opens_the_connection() {
        let mut c = Conn::new(limits());
        let cx = Ctx {
            handlers: &c.handlers,
            limits: &c.limits,
            counters: &c.counters,
        };
        assert!(matches!(
            decide(&cx, &mut c.streams, Decoded::Version(1)),
            Action::Open
        ));
    }

    #[test]
    fn a_request_runs_its_handler_until_the_limit_then_gets_a_retry() {
        let mut c = Conn::new(limits());
        for _ in 0..2 {
            assert!(matches!(
                c.on(b"r0001004echo00000002hi"),
                Action::Request { ref op, ref payload, .. } if &**op == "echo" && &payload[..] == b"hi"
            ));
        }
        assert_eq!(c.counters.in_progress(), 2);
        assert_eq!(
            answer(c.on(b"r0003004echo00000000")),
            b"e00030000000700000012request rate limit"
        );
        c.counters.release(false, 2);
        assert!(matches!(
            c.on(b"r0004004echo00000000"),
            Action::Request { .. }
        ));
    }

    #[test]
    fn a_request_for_an_unknown_or_stream_only_operation_gets_an_error() {
        let mut c = Conn::new(limits());
        assert_eq!(
            answer(c.on(b"r0001004nope00000000")),
            b"E000100000018unknown operation \"nope\""
        );
        // `upper` handles stream requests only: a single request is unknown to it.
        assert_eq!(
            answer(c.on(b"r0002005upper00000000")),
            b"E000200000019unknown operation \"upper\""
        );
        assert_eq!(c.counters.in_progress(), 0);
    }

    #[test]
    fn a_stream_request_opens_a_stream_and_its_parts_go_to_it() {
        let mut c = Conn::new(limits());
        let Action::Stream { id, payload, .. } = c.on(b"s0001005upper00000001a") else {
            panic!("expected a stream")
        };
        assert_eq!((&id.0, &payload[..]), (b"0001", &b"a"[..]));
        // The reader opens the stream with the channel to its handler.
        let (tx, _rx) = crate::parts::channel();
        c.streams.open(id, tx);
        assert!(matches!(
            c.on(b"p000100000001b"),
            Action::Part { last: false, part: Ok(ref p), .. } if &p[..] == b"b"
        ));
        assert!(matches!(
            c.on(b"p000100000000"),
            Action::Part { last: true, .. }
        ));
        // Ended: a further part is for a stream that does not exist.
        closes_with(c.on(b"p000100000001c"), ProtocolErrorCode::INVALID_MSG);
    }

    #[test]
    fn a_stream_id_still_open_cannot_start_again() {
        let mut c = Conn::new(limits().stream_requests(2));
        let Action::Stream { id, .. } = c.on(b"s0001005upper00000000") else {
            panic!()
        };
        c.streams.open(id, crate::parts::channel().0);
        let detail = closes_with(
            c.on(b"s0001005upper00000000"),
            ProtocolErrorCode::INVALID_MSG,
        );
        assert!(detail.contains("started twice"), "{detail}");
    }

    #[test]
    fn refused_streams_get_errors_and_their_parts_are_dropped() {
        // Disabled.
        let mut c = Conn::new(limits().stream_requests(0));
        assert_eq!(
            answer(c.on(b"s0001005upper00000000")),
            b"E00010000001dstream requests not supported"
        );
        assert!(matches!(c.on(b"p000100000001x"), Action::Ignore));
        // Unknown operation: the slot taken to check is given back.
        let mut c = Conn::new(limits());
        assert_eq!(
            answer(c.on(b"s0002004nope00000000")),
            b"E000200000018unknown operation \"nope\""
        );
        assert_eq!(c.counters.in_progress(), 0);
        assert!(matches!(c.on(b"p000200000000"), Action::Ignore));
        // Over the stream limit.
        let Action::Stream { id, .. } = c.on(b"s0003005upper00000000") else {
            panic!()
        };
        c.streams.open(id, crate::parts::channel().0);
        assert_eq!(
            answer(c.on(b"s0004005upper00000000")),
            b"e00040000000700000012request rate limit"
        );
        assert!(matches!(c.on(b"p000400000001x"), Action::Ignore));
    }

    #[test]
    fn a_part_for_a_stream_never_opened_is_a_protocol_error() {
        let mut c = Conn::new(limits());
        let detail = closes_with(c.on(b"p999900000001x"), ProtocolErrorCode::INVALID_MSG);
        assert!(detail.contains("not a stream request"), "{detail}");
    }

    #[test]
    fn results_complete_our_requests() {
        let mut c = Conn::new(limits());
        assert!(matches!(
            c.on(b"R000100000002ok"),
            Action::Reply(_, Reply::Result(ref b)) if &b[..] == b"ok"
        ));
        assert!(matches!(
            c.on(b"E000100000003bad"),
            Action::Reply(_, Reply::Error(ref b)) if &b[..] == b"bad"
        ));
        assert!(matches!(
            c.on(b"e00010000138800000000"),
            Action::Reply(_, Reply::Retry(5000, _))
        ));
        assert!(matches!(
            c.on(b"S000100000001x"),
            Action::ResultPart(_, ref b) if &b[..] == b"x"
        ));
    }

    #[test]
    fn notifications_heartbeats_and_protocol_errors() {
        let mut c = Conn::new(limits());
        assert!(matches!(
            c.on(b"n004tick00000000"),
            Action::Notify { ref name, .. } if &**name == "tick"
        ));
        assert!(matches!(c.on(b"n004tock00000000"), Action::Ignore));
        assert!(matches!(
            c.on(b"h00ff6b069db4"),
            Action::Heartbeat {
                load: 0xff,
                time: 0x6b069db4
            }
        ));
        match c.on(b"f00000003") {
            Action::Close(
                CloseReason::Protocol {
                    code,
                    by: Side::Remote,
                    ..
                },
                None,
            ) => assert_eq!(code, ProtocolErrorCode::TIMEOUT),
            _ => panic!("expected a close caused by the peer"),
        }
    }

    #[test]
    fn oversized_payloads_fail_only_what_they_belong_to() {
        let mut c = Conn::new(limits().max_payload(4));
        assert_eq!(
            answer(c.on(b"r0001004echo00000005")),
            b"E000100000024payload too large (5 bytes; limit 4)"
        );
        assert_eq!(c.counters.in_progress(), 0);
        assert_eq!(
            answer(c.on(b"s0002005upper00000005")),
            b"E000200000024payload too large (5 bytes; limit 4)"
        );
        assert!(matches!(c.on(b"p000200000000"), Action::Ignore));
        // A part over the limit fails its stream, whose further parts are dropped.
        let Action::Stream { id, .. } = c.on(b"s0003005upper00000000") else {
            panic!()
        };
        c.streams.open(id, crate::parts::channel().0);
        assert!(matches!(
            c.on(b"p000300000005"),
            Action::Part {
                last: true,
                part: Err(Error::PayloadTooLarge { size: 5, limit: 4 }),
                ..
            }
        ));
        assert!(matches!(c.on(b"p000300000001x"), Action::Ignore));
        assert!(matches!(
            c.on(b"R000400000005"),
            Action::Reply(_, Reply::TooLarge(5))
        ));
        assert!(matches!(c.on(b"n004tick00000005"), Action::Ignore));
    }

    #[test]
    fn bytes_that_are_not_gotalk_close_with_the_right_code() {
        closes_with(
            decode_error(&DecodeError::UnsupportedVersion(2)),
            ProtocolErrorCode::UNSUPPORTED,
        );
        closes_with(
            decode_error(&DecodeError::Invalid { reason: "x", at: 0 }),
            ProtocolErrorCode::INVALID_MSG,
        );
    }
}
