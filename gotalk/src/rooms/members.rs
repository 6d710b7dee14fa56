//! Who is in which room: the hub's membership tables, without I/O (the hub in `mod.rs` locks
//! them, and fans out over their snapshots outside the lock).

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::sock::Sock;

/// Connections and rooms. Member lists are `IndexMap`s keyed by [`Sock::key`]: dense to walk,
/// O(1) to remove from. A broadcast walks a snapshot (`Arc<[Sock]>`, rebuilt only after the
/// list changed) outside the lock, so that joining never waits for a broadcast and a callback
/// run by a member's connection during a broadcast may use the hub.
#[derive(Default)]
pub(super) struct State {
    pub(super) members: IndexMap<usize, Member>,
    pub(super) all: Option<Arc<[Sock]>>,
    pub(super) rooms: HashMap<Arc<str>, Room>,
}

pub(super) struct Member {
    pub(super) sock: Sock,
    pub(super) rooms: Vec<Arc<str>>,
}

#[derive(Default)]
pub(super) struct Room {
    pub(super) members: IndexMap<usize, Sock>,
    pub(super) snapshot: Option<Arc<[Sock]>>,
}

/// What the state let go of, dropped once the lock is released: a `Sock` may be the last
/// handle of its connection, whose drop may run guards that take the lock again.
#[derive(Default)]
pub(super) struct Garbage {
    pub(super) socks: Vec<Sock>,
    pub(super) snapshots: Vec<Arc<[Sock]>>,
}

impl State {
    pub(super) fn snapshot(&mut self, room: Option<&str>) -> Option<Arc<[Sock]>> {
        match room {
            None => Some(
                self.all
                    .get_or_insert_with(|| self.members.values().map(|m| m.sock.clone()).collect())
                    .clone(),
            ),
            Some(r) => {
                let room = self.rooms.get_mut(r)?;
                Some(
                    room.snapshot
                        .get_or_insert_with(|| room.members.values().cloned().collect())
                        .clone(),
                )
            }
        }
    }

    pub(super) fn join_room(&mut self, key: usize, sock: &Sock, room: &str) {
        let State { members, rooms, .. } = self;
        let m = members.get_mut(&key).expect("added before joining");
        if m.rooms.iter().any(|r| &**r == room) {
            return;
        }
        let name = match rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        m.rooms.push(name.clone());
        let r = rooms.entry(name).or_default();
        r.members.insert(key, sock.clone());
        r.snapshot = None;
    }

    pub(super) fn leave_room(&mut self, room: &str, key: usize, garbage: &mut Garbage) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        garbage.socks.extend(r.members.swap_remove(&key));
        garbage.snapshots.extend(r.snapshot.take());
        if r.members.is_empty() {
            self.rooms.remove(room);
        }
    }

    /// Removes a connection that closed.
    pub(super) fn remove(&mut self, key: usize, garbage: &mut Garbage) {
        let Some(m) = self.members.swap_remove(&key) else {
            return;
        };
        for name in &m.rooms {
            self.leave_room(name, key, garbage);
        }
        garbage.socks.push(m.sock);
        garbage.snapshots.extend(self.all.take());
    }
}
