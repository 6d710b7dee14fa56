//! Message headers from bytes: the pure parser the decoder, the WebSocket adapter and the
//! `gotalk` command build on. Never panics, never allocates.
//!
//! Every gotalk message is an ASCII header, optionally followed by a payload whose size the header
//! states. This module knows the header layout of each message type (see the protocol grammar in
//! the crate docs); [`crate::codec`] builds incremental decoding on top of it.

use std::ops::Range;

use bytes::Bytes;

use crate::frame::{Message, MsgType, Name, ProtocolErrorCode, RequestId};

/// Parses `digits.len()` hex digits (either case). `None` if any byte is not a hex digit.
pub fn parse_hex(digits: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in digits {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

/// Why bytes are not a valid message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderError {
    /// What is wrong, in words.
    pub reason: &'static str,
    /// Offset of the offending byte from the start of the header.
    pub at: usize,
}

/// A header parsed from bytes, with the name as a range into those bytes so that the caller can
/// slice it out of its buffer without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    /// Message type.
    pub msg_type: MsgType,
    /// Request ID (all zero for types without one).
    pub id: RequestId,
    /// Byte range of the name within the parsed bytes (empty for types without one).
    pub name: Range<usize>,
    /// `wait` of a RetryResult, `load` of a heartbeat, `code` of a protocol error; else 0.
    pub wait: u32,
    /// Payload size (for a heartbeat: its `time`; 0 for a protocol error).
    pub size: u32,
    /// Total header length in bytes.
    pub len: usize,
}

impl RawHeader {
    /// Number of payload bytes that follow this header.
    pub fn payload_len(&self) -> usize {
        if self.msg_type.has_payload() {
            self.size as usize
        } else {
            0
        }
    }
}

/// Parses the header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a header (nothing is consumed; call again with
/// more bytes). Never panics and never allocates.
pub fn parse_header(buf: &[u8]) -> Result<Option<RawHeader>, HeaderError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some(t) = MsgType::from_byte(first) else {
        return Err(HeaderError {
            reason: "unknown message type",
            at: 0,
        });
    };
    let hex = |range: Range<usize>, reason: &'static str| -> Result<u32, HeaderError> {
        let digits = &buf[range.clone()];
        parse_hex(digits).ok_or_else(|| {
            let bad = digits
                .iter()
                .position(|c| !c.is_ascii_hexdigit())
                .unwrap_or(0);
            HeaderError {
                reason,
                at: range.start + bad,
            }
        })
    };
    // Validates the bytes available so far, so that garbage is reported as soon as it is seen
    // rather than after a full header's worth of bytes arrived.
    let have = buf.len();
    let mut h = RawHeader {
        msg_type: t,
        id: RequestId::default(),
        name: 0..0,
        wait: 0,
        size: 0,
        len: 0,
    };
    let mut pos = 1;
    match t {
        MsgType::Heartbeat => {
            if have < 13 {
                return check_partial_hex(buf, 1, "heartbeat load and time must be hex");
            }
            h.wait = hex(1..5, "heartbeat load must be 4 hex digits")?;
            h.size = hex(5..13, "heartbeat time must be 8 hex digits")?;
            h.len = 13;
            return Ok(Some(h));
        }
        MsgType::ProtocolError => {
            if have < 9 {
                return check_partial_hex(buf, 1, "protocol error code must be 8 hex digits");
            }
            h.wait = hex(1..9, "protocol error code must be 8 hex digits")?;
            h.len = 9;
            return Ok(Some(h));
        }
        _ => {}
    }
    if t.has_id() {
        if have < pos + 4 {
            return Ok(None);
        }
        h.id = RequestId([buf[1], buf[2], buf[3], buf[4]]);
        pos += 4;
    }
    if matches!(
        t,
        MsgType::SingleRequest | MsgType::StreamRequest | MsgType::Notification
    ) {
        if have < pos + 3 {
            return check_partial_hex(buf, pos, "name size must be 3 hex digits");
        }
        let n = hex(pos..pos + 3, "name size must be 3 hex digits")? as usize;
        pos += 3;
        if have < pos + n {
            return Ok(None);
        }
        if std::str::from_utf8(&buf[pos..pos + n]).is_err() {
            return Err(HeaderError {
                reason: "name is not valid UTF-8",
                at: pos,
            });
        }
        h.name = pos..pos + n;
        pos += n;
    }
    if t == MsgType::RetryResult {
        if have < pos + 8 {
            return check_partial_hex(buf, pos, "retry wait must be 8 hex digits");
        }
        h.wait = hex(pos..pos + 8, "retry wait must be 8 hex digits")?;
        pos += 8;
    }
    if have < pos + 8 {
        return check_partial_hex(buf, pos, "payload size must be 8 hex digits");
    }
    h.size = hex(pos..pos + 8, "payload size must be 8 hex digits")?;
    h.len = pos + 8;
    Ok(Some(h))
}

/// For an incomplete header: fail early if the hex digits seen so far from `from` are not hex.
fn check_partial_hex(
    buf: &[u8],
    from: usize,
    reason: &'static str,
) -> Result<Option<RawHeader>, HeaderError> {
    match buf
        .get(from..)
        .and_then(|rest| rest.iter().position(|c| !c.is_ascii_hexdigit()))
    {
        Some(bad) => Err(HeaderError {
            reason,
            at: from + bad,
        }),
        None => Ok(None),
    }
}

/// Builds a [`Message`] from a parsed header, the bytes holding the header (for the name) and the
/// payload.
pub fn message_from_parts(h: &RawHeader, header: &Bytes, payload: Bytes) -> Message {
    // An empty name may come with an empty `header` (the decoder does not keep the header
    // bytes then), so it must not be sliced out of it.
    let name = if h.name.is_empty() {
        Bytes::new()
    } else {
        header.slice(h.name.clone())
    };
    message_with_name(h, name, payload)
}

/// Like [`message_from_parts`], with the name's bytes (already validated by
/// [`parse_header`]) given on their own.
pub(crate) fn message_with_name(h: &RawHeader, name: Bytes, payload: Bytes) -> Message {
    let name = Name::from_utf8_unchecked_len(name);
    let id = h.id;
    match h.msg_type {
        MsgType::SingleRequest => Message::SingleRequest {
            id,
            op: name,
            payload,
        },
        MsgType::StreamRequest => Message::StreamRequest {
            id,
            op: name,
            payload,
        },
        MsgType::StreamRequestPart => Message::StreamRequestPart { id, payload },
        MsgType::SingleResult => Message::SingleResult { id, payload },
        MsgType::StreamResult => Message::StreamResult { id, payload },
        MsgType::ErrorResult => Message::ErrorResult { id, payload },
        MsgType::RetryResult => Message::RetryResult {
            id,
            wait_ms: h.wait,
            payload,
        },
        MsgType::Notification => Message::Notification { name, payload },
        MsgType::Heartbeat => Message::Heartbeat {
            load: h.wait as u16,
            time: h.size,
        },
        MsgType::ProtocolError => Message::ProtocolError {
            code: ProtocolErrorCode(h.wait),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_of_every_type() {
        let h = parse_header(b"r0001004echo00000019").unwrap().unwrap();
        assert_eq!(h.msg_type, MsgType::SingleRequest);
        assert_eq!(&h.id.0, b"0001");
        assert_eq!(h.name, 8..12);
        assert_eq!(h.size, 25);
        assert_eq!(h.len, 20);
        let h = parse_header(b"e000100001388000000141").unwrap().unwrap();
        assert_eq!((h.wait, h.size, h.len), (5000, 20, 21));
        let h = parse_header(b"h00016b069db4").unwrap().unwrap();
        assert_eq!((h.wait, h.size), (1, 0x6b069db4));
        let h = parse_header(b"f00000003").unwrap().unwrap();
        assert_eq!(h.wait, 3);
        let h = parse_header(b"p\x00\x00\x00\x00000000FF").unwrap().unwrap();
        assert_eq!(h.size, 255);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let full = b"r0001004echo00000019";
        for n in 0..full.len() {
            assert_eq!(parse_header(&full[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn garbage_is_reported_with_position() {
        assert_eq!(
            parse_header(b"x1234").unwrap_err(),
            HeaderError {
                reason: "unknown message type",
                at: 0
            }
        );
        let e = parse_header(b"R0001000000zz").unwrap_err();
        assert_eq!(e.at, 11);
        // Reported before the whole header arrived.
        let e = parse_header(b"r00010g").unwrap_err();
        assert_eq!(e.at, 6);
        let e = parse_header(b"n002\xff\xfe00000000").unwrap_err();
        assert_eq!(e.reason, "name is not valid UTF-8");
    }
}
