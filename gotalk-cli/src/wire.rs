//! Decoding captured gotalk byte streams, and saying exactly where and why one stops being valid.
//!
//! [`StreamDecoder`] follows one direction of a conversation as bytes arrive (the proxy feeds it
//! whatever each read returned; `decode` feeds it a whole file), reporting every frame with the
//! byte offset where it starts. When the bytes stop being gotalk it reports a [`StreamError`] with
//! the absolute offset of the offending byte and the reason.
//!
//! ```
//! use gotalk_cli::wire::{decode_all, Frame};
//! let mut seen = vec![];
//! let err = decode_all(b"01r0001004echo00000002hix123", true, 1 << 20, |off, f| {
//!     seen.push((off, matches!(f, Frame::Message(_))));
//! })
//! .unwrap_err();
//! assert_eq!(seen, vec![(0, false), (2, true)]);
//! assert_eq!(err.offset, 24);
//! assert!(err.reason.contains("unknown message type"), "{}", err.reason);
//! ```

use std::fmt;

use base64::Engine as _;
use bytes::BytesMut;
use gotalk::codec::{DecodeError, Decoded, Decoder, Oversized};
use gotalk::frame::{self, Message};

/// One decoded frame.
#[derive(Debug)]
pub enum Frame<'a> {
    /// The two-digit protocol version that opens a conversation.
    Version(u8),
    /// A whole message.
    Message(&'a Message),
    /// A message whose payload is larger than the decoder's limit: its header, with the payload
    /// skipped unseen.
    Oversized(&'a Oversized),
}

/// Where and why a byte stream stopped being valid gotalk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// Offset of the offending byte (or of the start of the unfinished message) from the start
    /// of the stream.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for StreamError {}

/// Incremental decoder for one direction, tracking byte offsets. See the [module docs](self).
#[derive(Debug)]
pub struct StreamDecoder {
    decoder: Decoder,
    buf: BytesMut,
    /// Offset of `buf[0]` in the stream.
    offset: u64,
    frames: u64,
    failed: Option<StreamError>,
}

impl StreamDecoder {
    /// A decoder expecting the protocol version first (`expect_version`) or messages right
    /// away, and skipping payloads larger than `max_payload` without buffering them.
    pub fn new(expect_version: bool, max_payload: u32) -> StreamDecoder {
        StreamDecoder {
            decoder: if expect_version {
                Decoder::new(max_payload)
            } else {
                Decoder::without_version(max_payload)
            },
            buf: BytesMut::new(),
            offset: 0,
            frames: 0,
            failed: None,
        }
    }

    /// Bytes consumed so far (the offset of the next frame).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The error that stopped decoding, if any.
    pub fn error(&self) -> Option<&StreamError> {
        self.failed.as_ref()
    }

    /// Feeds more bytes, calling `on_frame(offset, frame)` for every whole frame. After the
    /// first error, further input is ignored and the same error is returned.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_frame: impl FnMut(u64, Frame<'_>),
    ) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        loop {
            let before = self.buf.len();
            let was_discarding = self.decoder.is_discarding();
            let res = self.decoder.decode(&mut self.buf);
            let consumed = (before - self.buf.len()) as u64;
            match res {
                Ok(Some(d)) => {
                    // When a skipped payload ends, the bytes consumed before the next frame
                    // belong to it; the frame itself starts after them.
                    let start = if was_discarding {
                        (self.offset + consumed).saturating_sub(frame_len(&d))
                    } else {
                        self.offset
                    };
                    self.offset += consumed;
                    self.frames += 1;
                    match &d {
                        Decoded::Version(v) => on_frame(start, Frame::Version(*v)),
                        Decoded::Message(m) => on_frame(start, Frame::Message(m)),
                        Decoded::Oversized(o) => on_frame(start, Frame::Oversized(o)),
                    }
                }
                Ok(None) => {
                    self.offset += consumed;
                    return Ok(());
                }
                Err(e) => {
                    self.offset += consumed;
                    let err = self.describe(e);
                    self.failed = Some(err.clone());
                    return Err(err);
                }
            }
        }
    }

    /// Declares the end of the stream: an error if it ends in the middle of a frame.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let err = if self.decoder.is_discarding() {
            Some(StreamError {
                offset: self.offset,
                reason: "the stream ends inside the payload of an oversized message".into(),
            })
        } else if self.buf.is_empty() {
            None
        } else {
            let reason = match gotalk::header::parse_header(&self.buf) {
                _ if self.frames == 0 && self.buf.len() < 2 => {
                    "the stream ends inside the protocol version (2 hex digits)".to_owned()
                }
                Ok(Some(h)) => format!(
                    "the stream ends in the middle of a {:?} message: it announces a {}-byte \
                     payload but only {} of its bytes arrived",
                    h.msg_type.as_byte() as char,
                    h.payload_len(),
                    self.buf.len().saturating_sub(h.len)
                ),
                _ => format!(
                    "the stream ends in the middle of a message header ({} bytes of it arrived)",
                    self.buf.len()
                ),
            };
            Some(StreamError {
                offset: self.offset,
                reason,
            })
        };
        match err {
            Some(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn describe(&self, e: DecodeError) -> StreamError {
        match e {
            DecodeError::UnsupportedVersion(v) => StreamError {
                offset: self.offset,
                reason: format!(
                    "unsupported protocol version {v:02x} (gotalk speaks version 01; a peer \
                     answers this with ProtocolError 1)"
                ),
            },
            DecodeError::Invalid { reason, at } => {
                let byte = self
                    .buf
                    .get(at)
                    .map(|&b| {
                        if b.is_ascii_graphic() {
                            format!(" (byte 0x{b:02x} {:?})", b as char)
                        } else {
                            format!(" (byte 0x{b:02x})")
                        }
                    })
                    .unwrap_or_default();
                StreamError {
                    offset: self.offset + at as u64,
                    reason: format!(
                        "{reason}{byte} in the message starting at byte {}",
                        self.offset
                    ),
                }
            }
        }
    }
}

/// Bytes of a frame as it appears on the wire up to the end of its header (oversized) or
/// payload (whole messages).
fn frame_len(d: &Decoded) -> u64 {
    match d {
        Decoded::Version(_) => 2,
        Decoded::Message(m) => (m.header_len() + m.payload().len()) as u64,
        Decoded::Oversized(o) => {
            let name_len = o.name.as_ref().map_or(0, |n| n.len());
            frame::header_len(o.msg_type, name_len) as u64
        }
    }
}

/// Decodes a whole byte stream (see [`StreamDecoder`]); `Ok` with the number of frames when it
/// is valid to the end.
pub fn decode_all(
    bytes: &[u8],
    expect_version: bool,
    max_payload: u32,
    on_frame: impl FnMut(u64, Frame<'_>),
) -> Result<u64, StreamError> {
    let mut d = StreamDecoder::new(expect_version, max_payload);
    d.feed(bytes, on_frame)?;
    d.finish()?;
    Ok(d.frames())
}

/// The two byte streams of a conformance transcript (`client_to_server`, `server_to_client`:
/// arrays of messages, each a string or `{"base64": ...}`).
pub fn transcript_streams(json: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not a JSON transcript: {e}"))?;
    let stream = |key: &str| -> Result<Vec<u8>, String> {
        let parts = v
            .get(key)
            .and_then(|p| p.as_array())
            .ok_or_else(|| format!("transcript has no {key:?} array"))?;
        let mut out = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if let Some(s) = part.as_str() {
                out.extend_from_slice(s.as_bytes());
            } else if let Some(b) = part.get("base64").and_then(|b| b.as_str()) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("{key}[{i}]: bad base64: {e}"))?;
                out.extend_from_slice(&bytes);
            } else {
                return Err(format!(
                    "{key}[{i}] is neither a string nor {{\"base64\": ...}}"
                ));
            }
        }
        Ok(out)
    };
    Ok((stream("client_to_server")?, stream("server_to_client")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(bytes: &[u8], chunk: usize) -> (Vec<u64>, Result<(), StreamError>) {
        let mut d = StreamDecoder::new(true, 8);
        let mut offs = vec![];
        for c in bytes.chunks(chunk.max(1)) {
            if let Err(e) = d.feed(c, |o, _| offs.push(o)) {
                return (offs, Err(e));
            }
        }
        (offs, d.finish())
    }

    #[test]
    fn offsets_are_the_same_for_any_split() {
        let stream = b"01r0001004echo00000002hiR000100000002hih00010000abcdn004ping00000000";
        let whole = offsets(stream, stream.len());
        assert_eq!(whole.0, vec![0, 2, 24, 39, 52]);
        assert!(whole.1.is_ok());
        for chunk in 1..stream.len() {
            assert_eq!(offsets(stream, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn oversized_payload_is_skipped_and_the_next_frame_offset_is_right() {
        // Payload of 10 bytes with a limit of 8: skipped; the next message starts at 34.
        let stream = b"01r0001004echo0000000a0123456789R000100000000";
        for chunk in 1..=stream.len() {
            let (offs, res) = offsets(stream, chunk);
            assert_eq!(offs, vec![0, 2, 32], "chunk {chunk}");
            assert!(res.is_ok());
        }
    }

    #[test]
    fn truncation_and_garbage_are_located() {
        let e = decode_all(b"01R00010000000ahello", true, 1 << 20, |_, _| {}).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.reason.contains("10-byte payload but only 5"), "{e}");
        let e = decode_all(b"01R00", true, 1 << 20, |_, _| {}).unwrap_err();
        assert!(e.reason.contains("header"), "{e}");
        let e = decode_all(b"02", true, 1 << 20, |_, _| {}).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.reason.contains("version 02"), "{e}");
        let e = decode_all(b"01R0001zzzzzzzz", true, 1 << 20, |_, _| {}).unwrap_err();
        assert_eq!(e.offset, 7, "{e}");
    }
}
