//! [`Notification`]: a notification encoded once, for sending on many connections.

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::frame::{Message, Name};

/// A notification encoded once, to be sent on many connections (a broadcast) without being
/// encoded again for each: every connection writes the same header and payload bytes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> gotalk::Result<()> {
/// let (a, _b) = gotalk::pipe().await?;
/// let n = gotalk::Notification::json("chat/message", &"hello")?;
/// a.try_notify(&n)?; // fails at once, instead of waiting, if `a`'s peer does not read
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Notification {
    pub(crate) header: Bytes,
    pub(crate) payload: Bytes,
    name_len: usize,
}

impl Notification {
    /// Notification `name` with a raw payload.
    pub fn new(name: &str, payload: impl Into<Bytes>) -> Result<Notification> {
        let payload = payload.into();
        check_payload_len(payload.len())?;
        let msg = Message::Notification {
            name: Name::new(name)?,
            payload,
        };
        let mut header = BytesMut::with_capacity(msg.header_len());
        msg.encode_header(&mut header);
        let Message::Notification { payload, .. } = msg else {
            unreachable!("built above")
        };
        Ok(Notification {
            header: header.freeze(),
            payload,
            name_len: name.len(),
        })
    }

    /// Notification `name` with `value` encoded as JSON.
    pub fn json<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Notification> {
        Notification::new(name, serde_json::to_vec(value)?)
    }

    /// The notification's name.
    pub fn name(&self) -> &str {
        // The header is `n`, a 3-digit name length, then the name (valid UTF-8: it came from a
        // `&str`).
        std::str::from_utf8(&self.header[4..4 + self.name_len]).unwrap_or_default()
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Bytes the notification takes on the wire.
    pub fn wire_len(&self) -> usize {
        self.header.len() + self.payload.len()
    }
}

/// Refuses a payload whose size cannot be written in a message header.
pub(crate) fn check_payload_len(len: usize) -> Result<()> {
    if u32::try_from(len).is_err() {
        return Err(Error::PayloadTooLarge {
            size: len,
            limit: u32::MAX as usize,
        });
    }
    Ok(())
}
