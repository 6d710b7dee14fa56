//! The demo's chat: one room of a [`Hub`], and every connection (page or program) is in it.
//! With `--redis`, the hubs of several `gotalk serve` processes share it through Redis: a
//! message posted on one reaches the members of all, and each keeps every message in its
//! history. Ids increase by one per process; a message names its process (`node`).
//!
//! A post is encoded once ([`Notification`]) and queued on every member by the hub
//! ([`Sock::try_notify`]), which never waits: no task per recipient, and a member that does not
//! read cannot hold up the poster. A member whose write queue is full **misses the message**
//! (the hub's skip-and-count policy): it is logged the first time, and when it leaves with how
//! many it missed.
//! It is not disconnected, so a reader that stalls for a moment during a flood stays in the
//! room; the page notices the gap in the ids and fetches the history. A
//! member that never reads is closed by the library's write timeout (no progress for 30 s).
//! Until then it holds at most [`WRITE_BUFFER`] bytes (queued and being written) plus one
//! message of at most `MAX_WIRE` bytes, and the WebSocket layer's copy of what is being written:
//! `tests/serve.rs` derives the bound and checks it against the server's memory.
//!
//! Fan-outs take turns (one lock), so every member gets a process's messages in the order of
//! their ids, which is the order of the history: a page that fetches the history while
//! messages arrive can merge the two by process and id.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use gotalk::rooms::{Hub, HubBuilder};
use gotalk::{HandlerError, Notification, Sock};
use gotalk_cli::util::rfc3339;
use serde::Serialize;

/// Messages kept for pages that join later.
pub const HISTORY: usize = 100;
/// Longest message text, in bytes (longer ones are cut at a character boundary).
pub const MAX_TEXT: usize = 2000;
/// Longest name, in bytes.
pub const MAX_NAME: usize = 40;
/// Bytes a connection may have waiting to be written (the library's `write_buffer`): a chat
/// member that falls this far behind misses messages until it catches up.
pub const WRITE_BUFFER: usize = 128 << 10;
/// Largest `chat/msg` notification on the wire: the text and the name with every byte
/// escaped in two (control characters are removed, so `"` and `\` are the worst case), the
/// id, node, time and field names, and the message header.
#[cfg(test)]
pub const MAX_WIRE: usize = 2 * (MAX_TEXT + MAX_NAME) + 160;
/// The hub's room.
const ROOM: &str = "chat";

/// One chat message as pages receive it (`chat/msg`) and as the history lists it.
#[derive(Serialize)]
struct ChatMsg<'a> {
    /// Increases by one per message of this process, from 1 when it starts.
    id: u64,
    /// The process that posted it (its hub's node id, 16 hex digits).
    node: &'a str,
    name: &'a str,
    text: &'a str,
    time: String,
}

#[derive(Serialize)]
struct Typing<'a> {
    name: &'a str,
}

/// Messages a member missed because its queue was full (its connection's user data).
struct Missed(AtomicU64);

#[derive(Default)]
struct Room {
    /// The last [`HISTORY`] messages, as encoded for `chat/msg`, from every process.
    history: VecDeque<Bytes>,
    last_id: u64,
}

/// The chat room.
pub struct Chat {
    hub: Hub,
    node: String,
    room: Arc<Mutex<Room>>,
    /// Held for a whole fan-out.
    turn: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remember(room: &Mutex<Room>, msg: Bytes) {
    let mut room = lock(room);
    if room.history.len() == HISTORY {
        room.history.pop_front();
    }
    room.history.push_back(msg);
}

impl Chat {
    /// The chat, alone or (with a hub built with an adapter) shared with other processes.
    pub fn new(hub: HubBuilder) -> gotalk::Result<Chat> {
        let room = Arc::new(Mutex::new(Room::default()));
        let r = room.clone();
        let hub = hub
            // Messages from other processes go into the history too.
            .on_remote(move |_, n| {
                if n.name() == "chat/msg" {
                    remember(&r, n.payload().clone());
                }
            })
            .on_full(|sock| {
                let Some(missed) = sock.data::<Missed>() else {
                    return;
                };
                if missed.0.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::info!(
                        peer = sock.peer_addr().unwrap_or("?"),
                        "chat member does not read: it misses messages while \
                         {WRITE_BUFFER} bytes wait for it"
                    );
                }
            })
            .build()?;
        Ok(Chat {
            node: format!("{:016x}", hub.node_id()),
            hub,
            room,
            turn: Mutex::default(),
        })
    }

    /// A connection opened: it hears every message from now on (until it closes).
    pub fn join(&self, sock: &Sock) {
        sock.insert_data(Missed(AtomicU64::new(0)));
        // Fails only if it has closed already.
        let _ = self.hub.join(sock, ROOM);
    }

    /// A connection closed (the hub lets it go by itself).
    pub fn leave(&self, sock: &Sock) {
        let missed = sock
            .data::<Missed>()
            .map_or(0, |m| m.0.load(Ordering::Relaxed));
        if missed > 0 {
            tracing::info!(
                peer = sock.peer_addr().unwrap_or("?"),
                missed,
                "chat member left, having missed messages"
            );
        }
    }

    /// Posts `text` from `name` to every member; returns the message's id.
    pub fn post(&self, name: &str, text: &str) -> Result<u64, HandlerError> {
        let text = clean(text, MAX_TEXT);
        if text.is_empty() {
            return Err(HandlerError::msg("empty message"));
        }
        let mut name = clean(name, MAX_NAME);
        if name.is_empty() {
            name = "anonymous".into();
        }
        let _turn = lock(&self.turn);
        let (id, n) = {
            let mut room = lock(&self.room);
            let id = room.last_id + 1;
            let msg = ChatMsg {
                id,
                node: &self.node,
                name: &name,
                text: &text,
                time: rfc3339(SystemTime::now()),
            };
            let n = Notification::json("chat/msg", &msg)?;
            room.last_id = id;
            if room.history.len() == HISTORY {
                room.history.pop_front();
            }
            room.history.push_back(n.payload().clone());
            (id, n)
        };
        let _ = self.hub.to(ROOM).send(&n);
        Ok(id)
    }

    /// Tells every member but `from` that `name` is typing.
    pub fn typing(&self, from: &Sock, name: &str) {
        let name = clean(name, MAX_NAME);
        if name.is_empty() {
            return;
        }
        let Ok(n) = Notification::json("chat/typing", &Typing { name: &name }) else {
            return;
        };
        let _turn = lock(&self.turn);
        let _ = self.hub.to(ROOM).except(from).send(&n);
    }

    /// The history as a JSON array, oldest first.
    pub fn history(&self) -> Bytes {
        let room = lock(&self.room);
        let len = room.history.iter().map(|m| m.len() + 1).sum::<usize>() + 2;
        let mut out = BytesMut::with_capacity(len);
        out.put_u8(b'[');
        for (i, m) in room.history.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(m);
        }
        out.put_u8(b']');
        out.freeze()
    }
}

/// `s` without control characters (which would also cost six bytes each in JSON) and
/// surrounding white space, cut to at most `max` bytes at a character boundary.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_control_characters_and_cuts_at_a_character_boundary() {
        assert_eq!(clean("  a\u{1b}[31mb\n ", 10), "a[31mb");
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean("\t\r\n", 10), "");
    }

    #[test]
    fn the_largest_message_fits_max_wire() {
        let text = "\"".repeat(MAX_TEXT);
        let name = "\\".repeat(MAX_NAME);
        let msg = ChatMsg {
            id: u64::MAX,
            node: "0123456789abcdef",
            name: &clean(&name, MAX_NAME),
            text: &clean(&text, MAX_TEXT),
            time: rfc3339(SystemTime::now()),
        };
        let n = Notification::json("chat/msg", &msg).unwrap();
        assert!(n.wire_len() <= MAX_WIRE, "{} > {MAX_WIRE}", n.wire_len());
    }
}
