//! How a broadcast travels between nodes: the bytes a [`super::Hub`] hands its adapter and
//! reads back from it. Pure: no I/O, no state.
//!
//! ```text
//! version   1 byte   (1)
//! node      8 bytes  big-endian: the hub that sent it
//! seq       8 bytes  big-endian: that hub's count of broadcasts published, from 0
//! room      2 bytes  big-endian length (0xffff: every connection), then the room name
//! name      2 bytes  big-endian length, then the notification name
//! payload   the rest
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::MAX_NAME_LEN;
use crate::notification::Notification;

const VERSION: u8 = 1;

/// The room length that stands for "every connection".
const ALL: u16 = 0xffff;

/// A broadcast as read back from the wire.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub node: u64,
    pub seq: u64,
    /// `None`: every connection.
    pub room: Option<&'a str>,
    pub name: &'a str,
    pub payload: &'a [u8],
}

/// Why bytes from an adapter are not a broadcast.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("truncated")]
    Truncated,
    #[error("a room or notification name is not UTF-8")]
    NotUtf8,
    #[error("a room or notification name longer than {MAX_NAME_LEN} bytes")]
    TooLong,
}

/// Encodes a broadcast of `n` to `room` (`None`: every connection).
pub(crate) fn encode(node: u64, seq: u64, room: Option<&str>, n: &Notification) -> Bytes {
    let name = n.name();
    let room_len = room.map_or(0, str::len);
    let mut b =
        BytesMut::with_capacity(1 + 8 + 8 + 2 + room_len + 2 + name.len() + n.payload().len());
    b.put_u8(VERSION);
    b.put_u64(node);
    b.put_u64(seq);
    match room {
        // Room names are at most MAX_NAME_LEN bytes (checked by the hub), far below ALL.
        Some(r) => {
            b.put_u16(r.len() as u16);
            b.put_slice(r.as_bytes());
        }
        None => b.put_u16(ALL),
    }
    b.put_u16(name.len() as u16);
    b.put_slice(name.as_bytes());
    b.put_slice(n.payload());
    b.freeze()
}

/// Decodes what [`encode`] made, checking every length against what is there.
pub(crate) fn decode(b: &[u8]) -> Result<Envelope<'_>, Malformed> {
    let mut r = Reader(b);
    let version = r.u8()?;
    if version != VERSION {
        return Err(Malformed::Version(version));
    }
    let node = r.u64()?;
    let seq = r.u64()?;
    let room = match r.u16()? {
        ALL => None,
        len => Some(r.text(len)?),
    };
    let len = r.u16()?;
    let name = r.text(len)?;
    Ok(Envelope {
        node,
        seq,
        room,
        name,
        payload: r.0,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn text(&mut self, len: u16) -> Result<&'a str, Malformed> {
        if usize::from(len) > MAX_NAME_LEN {
            return Err(Malformed::TooLong);
        }
        std::str::from_utf8(self.take(len.into())?).map_err(|_| Malformed::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_reads_back_as_it_was_written() {
        let n = Notification::new("chat/message", &b"{\"text\":\"hi\"}"[..]).unwrap();
        let b = encode(7, 42, Some("lobby"), &n);
        assert_eq!(
            decode(&b),
            Ok(Envelope {
                node: 7,
                seq: 42,
                room: Some("lobby"),
                name: "chat/message",
                payload: b"{\"text\":\"hi\"}",
            })
        );
        let all = encode(
            u64::MAX,
            0,
            None,
            &Notification::new("x", Bytes::new()).unwrap(),
        );
        let e = decode(&all).unwrap();
        assert_eq!(
            (e.node, e.room, e.name, e.payload),
            (u64::MAX, None, "x", &b""[..])
        );
        // An empty room name is a room like any other, not "every connection".
        let empty = encode(1, 1, Some(""), &n);
        assert_eq!(decode(&empty).unwrap().room, Some(""));
    }

    #[test]
    fn every_truncation_and_bad_field_is_refused_without_panicking() {
        let n = Notification::new("news", &b"payload"[..]).unwrap();
        let b = encode(1, 2, Some("room"), &n);
        // Cut before the name ends: truncated; cut in the payload: a shorter payload.
        let name_end = 1 + 8 + 8 + 2 + 4 + 2 + 4;
        for cut in 0..name_end {
            assert_eq!(decode(&b[..cut]), Err(Malformed::Truncated), "cut at {cut}");
        }
        assert_eq!(decode(&b[..name_end + 3]).unwrap().payload, b"pay");
        let mut v = b.to_vec();
        v[0] = 2;
        assert_eq!(decode(&v), Err(Malformed::Version(2)));
        let mut v = b.to_vec();
        v[19] = 0xc3; // first byte of "room" -> an unfinished UTF-8 sequence
        assert_eq!(decode(&v), Err(Malformed::NotUtf8));
        let mut v = b.to_vec();
        v[17..19].copy_from_slice(&0x1000u16.to_be_bytes());
        assert_eq!(decode(&v), Err(Malformed::TooLong));
        for junk in [&b""[..], b"\x01", &[0xff; 64]] {
            assert!(decode(junk).is_err());
        }
    }
}
