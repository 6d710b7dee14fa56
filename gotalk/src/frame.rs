//! Protocol messages and their encoding: pure functions over bytes.
//!
//! Every gotalk message is an ASCII header, optionally followed by a payload whose size the header
//! states. This module knows the header layout of each message type (see the protocol grammar in
//! the crate docs); [`crate::codec`] builds incremental decoding on top of it.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol version this crate speaks, sent as two hex digits (`01`) when a connection opens.
pub const PROTOCOL_VERSION: u8 = 1;

/// Longest operation or notification name the wire format can carry (`text3Size` is 3 hex digits).
pub const MAX_NAME_LEN: usize = 0xfff;

/// Longest header of any message: `r` + id + name size + name + payload size.
pub const MAX_HEADER_LEN: usize = 1 + 4 + 3 + MAX_NAME_LEN + 8;

/// Largest heartbeat `load` value (`hexUInt4`).
pub const HEARTBEAT_MAX_LOAD: u16 = 0xffff;

/// A protocol error code, as carried by an `f` message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolErrorCode(pub u32);

impl ProtocolErrorCode {
    /// 0: closed because of an abnormal condition (e.g. a server fault).
    pub const ABNORMAL: ProtocolErrorCode = ProtocolErrorCode(0);
    /// 1: the other side does not support the caller's protocol version.
    pub const UNSUPPORTED: ProtocolErrorCode = ProtocolErrorCode(1);
    /// 2: an invalid message was transmitted.
    pub const INVALID_MSG: ProtocolErrorCode = ProtocolErrorCode(2);
    /// 3: the other side closed the connection because communicating took too long.
    pub const TIMEOUT: ProtocolErrorCode = ProtocolErrorCode(3);

    /// The meaning of the code in words.
    pub fn description(self) -> &'static str {
        match self.0 {
            0 => "abnormal condition",
            1 => "unsupported protocol",
            2 => "invalid protocol message",
            3 => "timeout",
            _ => "unknown protocol error",
        }
    }
}

impl fmt::Debug for ProtocolErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtocolErrorCode({} {:?})", self.0, self.description())
    }
}

impl fmt::Display for ProtocolErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.description(), self.0)
    }
}

/// The type byte that starts every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// `r`: a request with a single payload.
    SingleRequest = b'r',
    /// `s`: the start of a streaming request, carrying its first part.
    StreamRequest = b's',
    /// `p`: a further part of a streaming request; an empty part ends the stream.
    StreamRequestPart = b'p',
    /// `R`: a result with a single payload.
    SingleResult = b'R',
    /// `S`: one part of a streaming result; an empty part ends it.
    StreamResult = b'S',
    /// `E`: the request was faulty (the requestor's fault); do not retry as-is.
    ErrorResult = b'E',
    /// `e`: the responder could not serve the request now; retry after `wait` milliseconds.
    RetryResult = b'e',
    /// `n`: a one-way notification.
    Notification = b'n',
    /// `h`: a heartbeat carrying the sender's load and time.
    Heartbeat = b'h',
    /// `f`: a protocol error; the sender closes the connection.
    ProtocolError = b'f',
}

impl MsgType {
    /// The message type for a type byte, if it is one.
    pub fn from_byte(b: u8) -> Option<MsgType> {
        Some(match b {
            b'r' => MsgType::SingleRequest,
            b's' => MsgType::StreamRequest,
            b'p' => MsgType::StreamRequestPart,
            b'R' => MsgType::SingleResult,
            b'S' => MsgType::StreamResult,
            b'E' => MsgType::ErrorResult,
            b'e' => MsgType::RetryResult,
            b'n' => MsgType::Notification,
            b'h' => MsgType::Heartbeat,
            b'f' => MsgType::ProtocolError,
            _ => return None,
        })
    }

    /// The type byte as it appears on the wire.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// Whether this message type carries a request ID.
    pub fn has_id(self) -> bool {
        !matches!(
            self,
            MsgType::Notification | MsgType::Heartbeat | MsgType::ProtocolError
        )
    }

    /// Whether this message type is followed by a payload.
    pub fn has_payload(self) -> bool {
        !matches!(self, MsgType::Heartbeat | MsgType::ProtocolError)
    }

    /// Whether this message type answers a request (`R S E e`).
    pub fn is_result(self) -> bool {
        matches!(
            self,
            MsgType::SingleResult
                | MsgType::StreamResult
                | MsgType::ErrorResult
                | MsgType::RetryResult
        )
    }
}

/// The 4 bytes that tie a result to its request.
///
/// IDs are opaque: any 4 bytes are valid and are echoed unchanged. The reference Go client sends a
/// little-endian binary counter, gotalk.js ASCII base 36; this crate sends printable base-62 IDs
/// (see [`RequestId::from_counter`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RequestId(pub [u8; 4]);

const BASE62: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// How many distinct printable IDs [`RequestId::from_counter`] produces before it repeats.
pub const PRINTABLE_ID_SPACE: u32 = 62 * 62 * 62 * 62;

impl RequestId {
    /// A printable ID for counter value `n` (taken modulo [`PRINTABLE_ID_SPACE`]): four base-62
    /// digits, `0000`, `0001`, … `ZZZZ`.
    pub fn from_counter(n: u32) -> RequestId {
        let mut n = n % PRINTABLE_ID_SPACE;
        let mut id = [b'0'; 4];
        for slot in id.iter_mut().rev() {
            *slot = BASE62[(n % 62) as usize];
            n /= 62;
        }
        RequestId(id)
    }

    /// The 4 bytes as one integer, for use as a map key.
    pub fn as_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The ID's bytes.
    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId(\"{self}\")")
    }
}

impl fmt::Display for RequestId {
    /// Printable bytes as they are, anything else as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// An operation or notification name: UTF-8 text of at most [`MAX_NAME_LEN`] bytes.
///
/// Backed by [`Bytes`], so a name decoded from the wire shares the read buffer instead of being
/// copied into a new allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Name(Bytes);

/// A name that cannot be sent: longer than [`MAX_NAME_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name is {0} bytes long; gotalk names are at most 4095 bytes")]
pub struct NameTooLong(pub usize);

impl Name {
    /// A name from a string, checked for length.
    pub fn new(s: &str) -> Result<Name, NameTooLong> {
        Name::from_bytes_checked(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A name from a `'static` string without copying it.
    pub fn from_static(s: &'static str) -> Result<Name, NameTooLong> {
        Name::from_bytes_checked(Bytes::from_static(s.as_bytes()))
    }

    fn from_bytes_checked(b: Bytes) -> Result<Name, NameTooLong> {
        if b.len() > MAX_NAME_LEN {
            return Err(NameTooLong(b.len()));
        }
        Ok(Name(b))
    }

    /// Wraps bytes already known to be UTF-8 and short enough.
    pub(crate) fn from_utf8_unchecked_len(b: Bytes) -> Name {
        debug_assert!(std::str::from_utf8(&b).is_ok() && b.len() <= MAX_NAME_LEN);
        Name(b)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Every constructor guarantees UTF-8; the check is cheap for short names and keeps the
        // crate free of `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Name {
    type Error = NameTooLong;
    fn try_from(s: &str) -> Result<Name, NameTooLong> {
        Name::new(s)
    }
}

impl TryFrom<String> for Name {
    type Error = NameTooLong;
    fn try_from(s: String) -> Result<Name, NameTooLong> {
        Name::from_bytes_checked(Bytes::from(s))
    }
}

/// One protocol message, payload included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `r`: request `op` with a single payload.
    SingleRequest {
        /// Request ID chosen by the requestor.
        id: RequestId,
        /// Operation name.
        op: Name,
        /// Request payload.
        payload: Bytes,
    },
    /// `s`: start of a streaming request; `payload` is its first part.
    StreamRequest {
        /// Request ID chosen by the requestor.
        id: RequestId,
        /// Operation name.
        op: Name,
        /// First part of the request.
        payload: Bytes,
    },
    /// `p`: a further part of streaming request `id`; empty ends the stream.
    StreamRequestPart {
        /// ID of the streaming request.
        id: RequestId,
        /// Part payload; empty means end of stream.
        payload: Bytes,
    },
    /// `R`: the single result of request `id`.
    SingleResult {
        /// ID of the answered request.
        id: RequestId,
        /// Result payload.
        payload: Bytes,
    },
    /// `S`: one part of the streaming result of request `id`; empty ends it.
    StreamResult {
        /// ID of the answered request.
        id: RequestId,
        /// Part payload; empty means end of stream.
        payload: Bytes,
    },
    /// `E`: request `id` was faulty; `payload` is the error text.
    ErrorResult {
        /// ID of the answered request.
        id: RequestId,
        /// Error description (plain UTF-8 text from reference peers).
        payload: Bytes,
    },
    /// `e`: request `id` may be retried after `wait_ms` milliseconds.
    RetryResult {
        /// ID of the answered request.
        id: RequestId,
        /// Milliseconds to wait before retrying; 0 means "at your convenience".
        wait_ms: u32,
        /// Reason text.
        payload: Bytes,
    },
    /// `n`: notification `name`.
    Notification {
        /// Notification name.
        name: Name,
        /// Notification payload.
        payload: Bytes,
    },
    /// `h`: heartbeat.
    Heartbeat {
        /// Sender's load, 0 (idle) to 0xffff (saturated).
        load: u16,
        /// Sender's clock, UNIX seconds (truncated to 32 bits).
        time: u32,
    },
    /// `f`: protocol error; the connection is closing.
    ProtocolError {
        /// The error code.
        code: ProtocolErrorCode,
    },
}

static EMPTY: Bytes = Bytes::from_static(b"");

impl Message {
    /// The type byte of this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::SingleRequest { .. } => MsgType::SingleRequest,
            Message::StreamRequest { .. } => MsgType::StreamRequest,
            Message::StreamRequestPart { .. } => MsgType::StreamRequestPart,
            Message::SingleResult { .. } => MsgType::SingleResult,
            Message::StreamResult { .. } => MsgType::StreamResult,
            Message::ErrorResult { .. } => MsgType::ErrorResult,
            Message::RetryResult { .. } => MsgType::RetryResult,
            Message::Notification { .. } => MsgType::Notification,
            Message::Heartbeat { .. } => MsgType::Heartbeat,
            Message::ProtocolError { .. } => MsgType::ProtocolError,
        }
    }

    /// The request ID, for the message types that carry one.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Message::SingleRequest { id, .. }
            | Message::StreamRequest { id, .. }
            | Message::StreamRequestPart { id, .. }
            | Message::SingleResult { id, .. }
            | Message::StreamResult { id, .. }
            | Message::ErrorResult { id, .. }
            | Message::RetryResult { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The operation or notification name, for the message types that carry one.
    pub fn name(&self) -> Option<&Name> {
        match self {
            Message::SingleRequest { op, .. } | Message::StreamRequest { op, .. } => Some(op),
            Message::Notification { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The payload (empty for heartbeats and protocol errors).
    pub fn payload(&self) -> &Bytes {
        match self {
            Message::SingleRequest { payload, .. }
            | Message::StreamRequest { payload, .. }
            | Message::StreamRequestPart { payload, .. }
            | Message::SingleResult { payload, .. }
            | Message::StreamResult { payload, .. }
            | Message::ErrorResult { payload, .. }
            | Message::RetryResult { payload, .. }
            | Message::Notification { payload, .. } => payload,
            Message::Heartbeat { .. } | Message::ProtocolError { .. } => &EMPTY,
        }
    }

    /// Length of the encoded header (everything before the payload).
    pub fn header_len(&self) -> usize {
        header_len(self.msg_type(), self.name().map_or(0, Name::len))
    }

    /// Appends the header (not the payload) to `dst`.
    ///
    /// Payload sizes above `u32::MAX` cannot be expressed on the wire; callers enforce their own
    /// (much smaller) payload limit before building a message.
    pub fn encode_header(&self, dst: &mut BytesMut) {
        let t = self.msg_type();
        dst.reserve(self.header_len());
        dst.put_u8(t.as_byte());
        match self {
            Message::Heartbeat { load, time } => {
                put_hex(dst, u64::from(*load), 4);
                put_hex(dst, u64::from(*time), 8);
                return;
            }
            Message::ProtocolError { code } => {
                put_hex(dst, u64::from(code.0), 8);
                return;
            }
            _ => {}
        }
        if let Some(id) = self.id() {
            dst.put_slice(&id.0);
        }
        if let Some(name) = self.name() {
            put_hex(dst, name.len() as u64, 3);
            dst.put_slice(name.as_bytes());
        }
        if let Message::RetryResult { wait_ms, .. } = self {
            put_hex(dst, u64::from(*wait_ms), 8);
        }
        let size = u32::try_from(self.payload().len()).unwrap_or(u32::MAX);
        put_hex(dst, u64::from(size), 8);
    }

    /// Appends header and payload to `dst` (copies the payload; the connection writer avoids
    /// that copy for large payloads by writing them as separate buffers).
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_header(dst);
        dst.extend_from_slice(self.payload());
    }

    /// The encoded message as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.header_len() + self.payload().len());
        self.encode(&mut b);
        b.freeze()
    }
}

/// Header length of a message of type `t` whose name (if any) is `name_len` bytes.
pub fn header_len(t: MsgType, name_len: usize) -> usize {
    match t {
        MsgType::SingleRequest | MsgType::StreamRequest => 1 + 4 + 3 + name_len + 8,
        MsgType::StreamRequestPart
        | MsgType::SingleResult
        | MsgType::StreamResult
        | MsgType::ErrorResult => 1 + 4 + 8,
        MsgType::RetryResult => 1 + 4 + 8 + 8,
        MsgType::Notification => 1 + 3 + name_len + 8,
        MsgType::Heartbeat => 1 + 4 + 8,
        MsgType::ProtocolError => 1 + 8,
    }
}

/// Appends the header of a request (`r` or `s`) built from its parts, as
/// [`Message::encode_header`] would for the same message: lets a sender encode a request without
/// building a [`Name`] (an allocation) first. `op` must be at most [`MAX_NAME_LEN`] bytes.
pub fn encode_request_header(
    dst: &mut BytesMut,
    t: MsgType,
    id: RequestId,
    op: &str,
    payload_len: usize,
) {
    debug_assert!(matches!(t, MsgType::SingleRequest | MsgType::StreamRequest));
    debug_assert!(op.len() <= MAX_NAME_LEN);
    dst.reserve(header_len(t, op.len()));
    dst.put_u8(t.as_byte());
    dst.put_slice(&id.0);
    put_hex(dst, op.len() as u64, 3);
    dst.put_slice(op.as_bytes());
    put_hex(
        dst,
        u64::from(u32::try_from(payload_len).unwrap_or(u32::MAX)),
        8,
    );
}

/// Appends the two-hex-digit protocol version.
pub fn encode_version(dst: &mut BytesMut, version: u8) {
    put_hex(dst, u64::from(version), 2);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn put_hex(dst: &mut BytesMut, v: u64, digits: usize) {
    let mut buf = [0u8; 16];
    let out = &mut buf[..digits];
    let mut v = v;
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
    dst.put_slice(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_from_parts_matches_the_message_encoding() {
        for (t, op, size) in [
            (MsgType::SingleRequest, "echo", 5usize),
            (MsgType::StreamRequest, "", 0),
            (MsgType::SingleRequest, "ünïcode/op", 0x1234_5678),
        ] {
            let id = RequestId(*b"a0Z9");
            let m = match t {
                MsgType::SingleRequest => Message::SingleRequest {
                    id,
                    op: Name::new(op).unwrap(),
                    payload: Bytes::from(vec![0u8; size.min(64)]),
                },
                _ => Message::StreamRequest {
                    id,
                    op: Name::new(op).unwrap(),
                    payload: Bytes::from(vec![0u8; size.min(64)]),
                },
            };
            let mut want = BytesMut::new();
            m.encode_header(&mut want);
            let mut got = BytesMut::new();
            encode_request_header(&mut got, t, id, op, size.min(64));
            assert_eq!(got, want);
        }
    }

    fn enc(m: &Message) -> Vec<u8> {
        m.to_bytes().to_vec()
    }

    #[test]
    fn encodes_the_seed_examples() {
        let m = Message::SingleRequest {
            id: RequestId(*b"0001"),
            op: Name::new("echo").unwrap(),
            payload: Bytes::from_static(br#"{"message":"Hello World"}"#),
        };
        assert_eq!(
            enc(&m),
            br#"r0001004echo00000019{"message":"Hello World"}"#.to_vec()
        );
        let m = Message::RetryResult {
            id: RequestId(*b"0001"),
            wait_ms: 5000,
            payload: Bytes::from_static(br#""request rate limit""#),
        };
        assert_eq!(
            enc(&m),
            br#"e00010000138800000014"request rate limit""#.to_vec()
        );
        let m = Message::ProtocolError {
            code: ProtocolErrorCode::UNSUPPORTED,
        };
        assert_eq!(enc(&m), b"f00000001".to_vec());
        let m = Message::Heartbeat {
            load: 0,
            time: 0x6b069db4,
        };
        assert_eq!(enc(&m), b"h00006b069db4".to_vec());
        let m = Message::Notification {
            name: Name::new("ping").unwrap(),
            payload: Bytes::from_static(br#"{"n":1}"#),
        };
        assert_eq!(enc(&m), br#"n004ping00000007{"n":1}"#.to_vec());
    }

    #[test]
    fn printable_ids() {
        assert_eq!(&RequestId::from_counter(0).0, b"0000");
        assert_eq!(&RequestId::from_counter(61).0, b"000Z");
        assert_eq!(&RequestId::from_counter(62).0, b"0010");
        assert_eq!(
            RequestId::from_counter(PRINTABLE_ID_SPACE),
            RequestId::from_counter(0)
        );
        assert_eq!(RequestId([0, 0, 0, 1]).to_string(), "\\x00\\x00\\x00\\x01");
    }
}
