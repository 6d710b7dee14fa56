//! Where tungstenite (the WebSocket library under both axum's endpoint and our client) meets
//! the adapter: its messages and errors as adapter events, and the sizes it is configured with.

use std::io;

use tokio_tungstenite::tungstenite;

use super::adapter::{Event, WsMessage};
use crate::config::Config;

/// Most bytes tungstenite reads from the socket at a time (its `read_buffer_size`; the default
/// is 128 KiB). tungstenite zero-fills this much of its read buffer before every read, however
/// few bytes arrive, and an idle connection keeps it: at 128 KiB the zeroing was the largest
/// single cost of small messages and every connection held 148 KiB. Large messages still go
/// into one buffer sized for the whole frame, 16 KiB per read.
pub(crate) const READ_BUFFER: usize = 16 * 1024;

/// Largest WebSocket message accepted under `config`: the payload limit plus `allowance` for
/// the headers of a peer that sends several messages in one WebSocket message.
pub(crate) fn max_message_size(config: &Config, allowance: usize) -> usize {
    (config.limits.max_payload as usize).saturating_add(allowance)
}

impl WsMessage for tungstenite::Message {
    fn binary(data: bytes::Bytes) -> Self {
        tungstenite::Message::Binary(data)
    }

    fn close(code: u16, reason: &'static str) -> Self {
        tungstenite::Message::Close(Some(tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }))
    }

    fn event(self) -> Event {
        match self {
            m @ (tungstenite::Message::Binary(_) | tungstenite::Message::Text(_)) => {
                Event::Data(m.into_data())
            }
            tungstenite::Message::Close(_) => Event::Close,
            _ => Event::Skip,
        }
    }
}

/// What a tungstenite error means to the reader.
pub(crate) fn tungstenite_event(e: tungstenite::Error) -> io::Result<Event> {
    match e {
        tungstenite::Error::Capacity(c) => Ok(Event::TooBig(format!("WebSocket message: {c}"))),
        tungstenite::Error::Utf8(e) => Ok(Event::InvalidText(format!(
            "WebSocket text message is not UTF-8: {e}"
        ))),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Ok(Event::Close)
        }
        tungstenite::Error::Io(e) => Err(e),
        other => Err(io::Error::other(other)),
    }
}
