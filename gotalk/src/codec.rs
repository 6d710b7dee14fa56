//! Incremental decoding of a gotalk byte stream, free of I/O.
//!
//! Feed bytes into a `BytesMut` and call [`Decoder::decode`] until it returns `Ok(None)` (more
//! bytes needed). Any split of the input yields the same sequence of frames. Payloads are split off
//! the buffer as [`Bytes`] without copying.
//!
//! The payload size limit is enforced here: a message that announces more than
//! `max_payload` bytes is reported as [`Decoded::Oversized`] *before* its payload arrives, and
//! its payload is then skipped as it streams in, never buffered.
//!
//! ```
//! use bytes::BytesMut;
//! use gotalk::codec::{Decoded, Decoder};
//! use gotalk::frame::Message;
//!
//! let mut dec = Decoder::new(1024);
//! let mut buf = BytesMut::from(&b"01r0001004echo00000002hi"[..]);
//! assert!(matches!(dec.decode(&mut buf), Ok(Some(Decoded::Version(1)))));
//! match dec.decode(&mut buf).unwrap() {
//!     Some(Decoded::Message(Message::SingleRequest { op, payload, .. })) => {
//!         assert_eq!(op.as_str(), "echo");
//!         assert_eq!(&payload[..], b"hi");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(dec.decode(&mut buf).unwrap().is_none());
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{Message, MsgType, Name, RequestId};
use crate::header::{self, message_from_parts, message_with_name, parse_hex};

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The peer's protocol version (always the first frame). The decoder has already checked
    /// that it is [`crate::frame::PROTOCOL_VERSION`].
    Version(u8),
    /// A complete message.
    Message(Message),
    /// A message whose announced payload exceeds the limit. Its payload is being discarded;
    /// the connection stays usable.
    Oversized(Oversized),
}

/// The header of a message whose payload was too large to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// Message type.
    pub msg_type: MsgType,
    /// Request ID, for types that carry one.
    pub id: Option<RequestId>,
    /// Operation or notification name, for types that carry one.
    pub name: Option<Name>,
    /// Announced payload size.
    pub size: u32,
}

/// Why the byte stream is not valid gotalk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The peer's version is not one we speak: answer with protocol error 1.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The bytes are not a valid message: answer with protocol error 2.
    #[error("invalid message: {reason} (at byte {at} of the message)")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
        /// Offset of the offending byte from the start of the message.
        at: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Version,
    Messages,
    Discard { remaining: u32 },
}

/// Incremental decoder for one direction of a connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_payload: u32,
    state: State,
}

impl Decoder {
    /// A decoder that expects the two-digit version first, then messages, accepting payloads of
    /// at most `max_payload` bytes.
    pub fn new(max_payload: u32) -> Decoder {
        Decoder {
            max_payload,
            state: State::Version,
        }
    }

    /// A decoder for a stream that starts directly with messages (no version).
    pub fn without_version(max_payload: u32) -> Decoder {
        Decoder {
            max_payload,
            state: State::Messages,
        }
    }

    /// The payload limit in force.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Whether the decoder is skipping the payload of an oversized message.
    pub fn is_discarding(&self) -> bool {
        matches!(self.state, State::Discard { .. })
    }

    /// How many more bytes the next frame needs at least, given what `buf` holds: lets a reader
    /// reserve room for a large payload in one step. 0 when unknown.
    pub fn needed(&self, buf: &[u8]) -> usize {
        if self.state != State::Messages {
            return 0;
        }
        match header::parse_header(buf) {
            Ok(Some(h)) if h.size <= self.max_payload => {
                (h.len + h.payload_len()).saturating_sub(buf.len())
            }
            _ => 0,
        }
    }

    /// Decodes the next frame from the front of `buf`, consuming its bytes.
    ///
    /// `Ok(None)` means more bytes are needed. After an `Err` the stream cannot be resynchronised:
    /// the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        loop {
            match self.state {
                State::Version => {
                    if buf.len() < 2 {
                        if let Some(&c) = buf.first() {
                            if !c.is_ascii_hexdigit() {
                                return Err(DecodeError::Invalid {
                                    reason: "protocol version must be 2 hex digits",
                                    at: 0,
                                });
                            }
                        }
                        return Ok(None);
                    }
                    let v = parse_hex(&buf[..2]).ok_or(DecodeError::Invalid {
                        reason: "protocol version must be 2 hex digits",
                        at: usize::from(buf[0].is_ascii_hexdigit()),
                    })? as u8;
                    if v != crate::frame::PROTOCOL_VERSION {
                        return Err(DecodeError::UnsupportedVersion(v));
                    }
                    buf.advance(2);
                    self.state = State::Messages;
                    return Ok(Some(Decoded::Version(v)));
                }
                State::Discard { remaining } => {
                    let n = (remaining as usize).min(buf.len());
                    buf.advance(n);
                    let remaining = remaining - n as u32;
                    if remaining > 0 {
                        self.state = State::Discard { remaining };
                        return Ok(None);
                    }
                    self.state = State::Messages;
                }
                State::Messages => return self.decode_message(buf),
            }
        }
    }

    fn decode_message(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        let h = match header::parse_header(buf) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(DecodeError::Invalid {
                    reason: e.reason,
                    at: e.at,
                })
            }
        };
        let plen = h.payload_len();
        if h.msg_type.has_payload() && h.size > self.max_payload {
            let header = buf.split_to(h.len).freeze();
            let t = h.msg_type;
            let oversized = Oversized {
                msg_type: t,
                id: t.has_id().then_some(h.id),
                name: match t {
                    MsgType::SingleRequest | MsgType::StreamRequest | MsgType::Notification => {
                        message_from_parts(&h, &header, Bytes::new())
                            .name()
                            .cloned()
                    }
                    _ => None,
                },
                size: h.size,
            };
            self.state = State::Discard { remaining: h.size };
            return Ok(Some(Decoded::Oversized(oversized)));
        }
        if buf.len() < h.len + plen {
            return Ok(None);
        }
        // Only the name and the payload are kept, each sharing the buffer (no copy).
        let name = if h.name.is_empty() {
            buf.advance(h.len);
            Bytes::new()
        } else {
            buf.advance(h.name.start);
            let name = buf.split_to(h.name.len()).freeze();
            buf.advance(h.len - h.name.end);
            name
        };
        let payload = if plen == 0 {
            Bytes::new()
        } else {
            buf.split_to(plen).freeze()
        };
        Ok(Some(Decoded::Message(message_with_name(&h, name, payload))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(dec: &mut Decoder, buf: &mut BytesMut) -> Vec<Decoded> {
        let mut out = vec![];
        while let Some(d) = dec.decode(buf).unwrap() {
            out.push(d);
        }
        out
    }

    #[test]
    fn oversized_payload_is_skipped_without_buffering() {
        let mut dec = Decoder::new(4);
        let mut buf = BytesMut::from(&b"01r0001004echo00000008abc"[..]);
        let out = all(&mut dec, &mut buf);
        assert_eq!(out.len(), 2);
        match &out[1] {
            Decoded::Oversized(o) => {
                assert_eq!(o.size, 8);
                assert_eq!(o.name.as_deref(), Some("echo"));
                assert_eq!(o.id, Some(RequestId(*b"0001")));
            }
            d => panic!("{d:?}"),
        }
        assert!(buf.is_empty());
        assert!(dec.is_discarding());
        buf.extend_from_slice(b"defghR000100000000");
        let out = all(&mut dec, &mut buf);
        assert_eq!(
            out,
            vec![Decoded::Message(Message::SingleResult {
                id: RequestId(*b"0001"),
                payload: Bytes::new()
            })]
        );
    }

    #[test]
    fn bad_version() {
        let mut dec = Decoder::new(4);
        assert_eq!(
            dec.decode(&mut BytesMut::from(&b"02"[..])),
            Err(DecodeError::UnsupportedVersion(2))
        );
        let mut dec = Decoder::new(4);
        assert!(matches!(
            dec.decode(&mut BytesMut::from(&b"x"[..])),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn needed_reports_payload_remainder() {
        let dec = Decoder::without_version(1 << 20);
        assert_eq!(dec.needed(b"R000100000100ab"), 254);
        assert_eq!(dec.needed(b"R0001"), 0);
    }
}
