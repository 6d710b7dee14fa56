//! Rooms and broadcast: one notification to many connections, on one server or across server
//! processes.
//!
//! A [`Hub`] knows the connections added to it and the named rooms they joined. One call sends
//! a notification to every member of a room, to every connection, or to either but the sender:
//!
//! ```
//! use gotalk::rooms::Hub;
//! use gotalk::Notification;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> gotalk::Result<()> {
//! let hub = Hub::new();
//! let (alice, _alice_peer) = gotalk::pipe().await?;
//! let (bob, _bob_peer) = gotalk::pipe().await?;
//! hub.join(&alice, "lobby")?;
//! hub.join(&bob, "lobby")?;
//!
//! let n = Notification::json("chat/message", &"hello")?; // encoded once, for every member
//! let sent = hub.to("lobby").except(&alice).send(&n);
//! assert_eq!(sent.delivered, 1); // bob
//! let sent = hub.all().send(&n);
//! assert_eq!(sent.delivered, 2);
//! # Ok(()) }
//! ```
//!
//! ## What a broadcast costs, and slow members
//!
//! The notification is encoded once; every member's connection queues the same bytes with
//! [`Sock::try_notify`], from the broadcasting task: no task per member, no copy per member of
//! a payload over 1 KiB. A broadcast never waits for a member. A member whose write buffer is
//! full (its peer does not read fast enough; the bound is [`crate::Limits::write_buffer`]) is
//! handled by the hub's [`Overflow`] policy: by default the notification is **skipped** for
//! that member and counted ([`Sent::full`], [`HubStats::skipped`]); with [`Overflow::Close`]
//! that member's connection is closed instead (a page reconnects and reloads what it missed).
//! Either way the member cannot slow the others nor make the server hold more than its write
//! buffer.
//!
//! Membership ends by itself when a connection closes: the hub keeps nothing of it once the
//! connection has finished (written what it could), or as soon as a broadcast finds it closed.
//!
//! ## Across processes
//!
//! A hub built with an [`Adapter`] also hands every broadcast (unless [`Broadcast::local`]) to
//! the adapter, which carries it to the hubs of other processes; they deliver it to their own
//! members of the room, in the same way. `RedisAdapter` (feature `redis`) does this through
//! Redis pub/sub. Each hub has its own node id ([`Hub::node_id`]; one hub per process is the
//! usual setup), so a hub ignores its own broadcasts coming back and delivers them only once.
//!
//! What is promised across processes: **at most once, in order per sender**. A broadcast
//! reaches each other process once or not at all, and broadcasts from one hub arrive in the
//! order it sent them. Broadcasts are lost while the engine is unreachable (they are not
//! queued for later) and when a process falls too far behind; losses are counted
//! ([`HubStats::missed`], from gaps in each sender's sequence numbers, and the adapter's
//! [`AdapterStats::dropped`]). Local delivery never depends on the adapter: when Redis goes
//! away, members on the same process still get every broadcast.
//!
//! ## Memory
//!
//! A hub holds per connection an entry and a guard (about 200 bytes), and per room membership
//! about 50 bytes, plus the room's member list shared by broadcasts in flight. Room names are
//! at most 4095 bytes. Which rooms a peer can make its connection join is the application's
//! choice: bound it where a peer chooses the room.

mod adapter;
mod members;
mod wire;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::RedisAdapter;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;

use self::adapter::Receive;
pub use self::adapter::{Adapter, AdapterStats, Inbox};
use self::members::{Garbage, Member, State};
use crate::error::{Error, Result};
use crate::frame::{NameTooLong, MAX_NAME_LEN};
use crate::notification::Notification;
use crate::sock::Sock;

/// What a broadcast does with a member whose write buffer is full (its peer does not read
/// fast enough).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// The member does not get this notification; it is counted ([`Sent::full`],
    /// [`HubStats::skipped`]) and the member stays. The default: a member that is only
    /// briefly behind misses a few notifications rather than its connection.
    #[default]
    Skip,
    /// The member's connection is closed (it leaves every room), counted in
    /// [`HubStats::closed`]. For applications where a member must not silently miss
    /// notifications: the peer reconnects and resynchronises.
    Close,
}

/// What one broadcast did on this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Members whose connection queued the notification.
    pub delivered: usize,
    /// Members whose write buffer was full (see [`Overflow`]).
    pub full: usize,
    /// Members whose connection had closed (they are out of the hub now).
    pub closed: usize,
    /// Whether the broadcast was handed to the hub's adapter for other processes.
    pub published: bool,
}

/// Counters of a hub since it was built, and its current size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Connections in the hub.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Notifications queued on members' connections (one per member per broadcast).
    pub delivered: u64,
    /// Notifications a member did not get because its write buffer was full
    /// ([`Overflow::Skip`]).
    pub skipped: u64,
    /// Members closed because their write buffer was full ([`Overflow::Close`]).
    pub closed: u64,
    /// Broadcasts handed to the adapter.
    pub published: u64,
    /// Broadcasts the adapter refused (not connected, or its queue full): other processes
    /// did not get them.
    pub unpublished: u64,
    /// Broadcasts from other processes delivered here.
    pub received: u64,
    /// Broadcasts from other processes that never arrived: gaps in a sender's sequence.
    pub missed: u64,
    /// Messages from the adapter that were not broadcasts (another program on the channel,
    /// or a newer format), and repeated ones: ignored.
    pub ignored: u64,
    /// What the adapter says about itself, if the hub has one.
    pub adapter: Option<AdapterStats>,
}

/// Rooms and broadcast over the connections added to it. A cheap handle (an `Arc`): clone it
/// into handlers and callbacks. See the [module documentation](self).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("Hub")
            .field("node_id", &format_args!("{:016x}", self.inner.node))
            .field("connections", &st.members.len())
            .field("rooms", &st.rooms.len())
            .field("overflow", &self.inner.overflow)
            .field("adapter", &self.inner.adapter)
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

/// Called with each broadcast from another process (its room, `None` for every connection).
type RemoteCallback = Box<dyn Fn(Option<&str>, &Notification) + Send + Sync>;
/// Called with a member whose write buffer was full.
type FullCallback = Box<dyn Fn(&Sock) + Send + Sync>;

/// Builds a [`Hub`]: its [`Overflow`] policy and its [`Adapter`].
#[derive(Default)]
pub struct HubBuilder {
    overflow: Overflow,
    adapter: Option<Box<dyn Adapter>>,
    on_remote: Option<RemoteCallback>,
    on_full: Option<FullCallback>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("overflow", &self.overflow)
            .field("adapter", &self.adapter)
            .field("on_remote", &self.on_remote.is_some())
            .field("on_full", &self.on_full.is_some())
            .finish()
    }
}

impl HubBuilder {
    /// What a broadcast does with a member whose write buffer is full ([`Overflow::Skip`] by
    /// default).
    pub fn overflow(mut self, policy: Overflow) -> HubBuilder {
        self.overflow = policy;
        self
    }

    /// Carries broadcasts to and from other processes with `adapter`.
    pub fn adapter(mut self, adapter: impl Adapter) -> HubBuilder {
        self.adapter = Some(Box::new(adapter));
        self
    }

    /// Calls `f` with every broadcast from another process (its room, or `None` for every
    /// connection) before delivering it here: to keep a history of what was said elsewhere,
    /// say. It runs on the adapter's task, between two deliveries: keep it short.
    pub fn on_remote(
        mut self,
        f: impl Fn(Option<&str>, &Notification) + Send + Sync + 'static,
    ) -> HubBuilder {
        self.on_remote = Some(Box::new(f));
        self
    }

    /// Calls `f` with each member whose write buffer is full when a broadcast reaches it
    /// (before [`Overflow::Close`] closes it): to log a peer that does not read, say. It runs
    /// on the broadcasting task: keep it short.
    pub fn on_full(mut self, f: impl Fn(&Sock) + Send + Sync + 'static) -> HubBuilder {
        self.on_full = Some(Box::new(f));
        self
    }

    /// The hub; starts the adapter, if any (within a Tokio runtime).
    pub fn build(self) -> Result<Hub> {
        let inner = Arc::new(HubInner {
            state: Mutex::new(State::default()),
            overflow: self.overflow,
            // Random per hub: a process restarted gets a new id, so that its sequence starting
            // over again is not mistaken for old broadcasts.
            node: fastrand::u64(1..),
            seq: Mutex::new(0),
            senders: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            adapter: self.adapter,
            on_remote: self.on_remote,
            on_full: self.on_full,
        });
        if let Some(a) = &inner.adapter {
            let hub: Arc<dyn Receive> = inner.clone();
            a.start(Inbox::new(Arc::downgrade(&hub)))?;
        }
        Ok(Hub { inner })
    }
}

impl Hub {
    /// A hub for this process alone, skipping members whose write buffer is full.
    pub fn new() -> Hub {
        Hub::builder()
            .build()
            .expect("a hub without an adapter always builds")
    }

    /// Builds a hub with another [`Overflow`] policy or an [`Adapter`].
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// This hub's id among the processes sharing its adapter (random, fixed for its life).
    pub fn node_id(&self) -> u64 {
        self.inner.node
    }

    // ---- membership -------------------------------------------------------------------------

    /// Adds `sock` to the hub's connections (the ones [`Hub::all`] reaches) without joining a
    /// room. It stays until it closes. Adding it again does nothing.
    pub fn add(&self, sock: &Sock) -> Result<()> {
        self.enter(sock, None)
    }

    /// Adds `sock` to room `room` (and to the hub's connections). It stays until it leaves or
    /// closes. Joining again does nothing. Fails if the connection has closed, or if the name
    /// is longer than 4095 bytes.
    pub fn join(&self, sock: &Sock, room: &str) -> Result<()> {
        if room.len() > MAX_NAME_LEN {
            return Err(NameTooLong(room.len()).into());
        }
        self.enter(sock, Some(room))
    }

    /// Takes `sock` out of room `room` (it stays among the hub's connections). Returns whether
    /// it was a member.
    pub fn leave(&self, sock: &Sock, room: &str) -> bool {
        let key = sock.key();
        let mut garbage = Garbage::default();
        let mut st = self.inner.state.lock();
        let Some(m) = st.members.get_mut(&key) else {
            return false;
        };
        let Some(i) = m.rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        let name = m.rooms.swap_remove(i);
        st.leave_room(&name, key, &mut garbage);
        drop(st);
        true
    }

    /// Takes `sock` out of every room (it stays among the hub's connections).
    pub fn leave_all(&self, sock: &Sock) {
        let key = sock.key();
        let mut garbage = Garbage::default();
        let mut st = self.inner.state.lock();
        let Some(m) = st.members.get_mut(&key) else {
            return;
        };
        for name in std::mem::take(&mut m.rooms) {
            st.leave_room(&name, key, &mut garbage);
        }
    }

    /// The rooms `sock` is in.
    pub fn rooms_of(&self, sock: &Sock) -> Vec<String> {
        let st = self.inner.state.lock();
        st.members.get(&sock.key()).map_or_else(Vec::new, |m| {
            m.rooms.iter().map(|r| r.to_string()).collect()
        })
    }

    /// The connections in room `room` (every connection of the hub with `None`), on this
    /// process.
    pub fn members(&self, room: Option<&str>) -> Vec<Sock> {
        self.inner
            .state
            .lock()
            .snapshot(room)
            .map_or_else(Vec::new, |s| s.to_vec())
    }

    /// How many connections room `room` has on this process (the hub's connections with
    /// `None`).
    pub fn member_count(&self, room: Option<&str>) -> usize {
        let st = self.inner.state.lock();
        match room {
            None => st.members.len(),
            Some(r) => st.rooms.get(r).map_or(0, |r| r.members.len()),
        }
    }

    // ---- broadcast --------------------------------------------------------------------------

    /// A broadcast to every member of room `room`.
    pub fn to<'a>(&'a self, room: &'a str) -> Broadcast<'a> {
        Broadcast {
            hub: self,
            room: Some(room),
            except: None,
            local: false,
        }
    }

    /// A broadcast to every connection of the hub.
    pub fn all(&self) -> Broadcast<'_> {
        Broadcast {
            hub: self,
            room: None,
            except: None,
            local: false,
        }
    }

    /// Counters since the hub was built, and its current size.
    pub fn stats(&self) -> HubStats {
        let (connections, rooms) = {
            let st = self.inner.state.lock();
            (st.members.len(), st.rooms.len())
        };
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HubStats {
            connections,
            rooms,
            delivered: get(&c.delivered),
            skipped: get(&c.skipped),
            closed: get(&c.closed),
            published: get(&c.published),
            unpublished: get(&c.unpublished),
            received: get(&c.received),
            missed: get(&c.missed),
            ignored: get(&c.ignored),
            adapter: self.inner.adapter.as_ref().map(|a| a.stats()),
        }
    }

    fn enter(&self, sock: &Sock, room: Option<&str>) -> Result<()> {
        if let Some(reason) = sock.close_reason() {
            return Err(Error::Closed(reason));
        }
        let key = sock.key();
        let added = {
            let mut st = self.inner.state.lock();
            let added = !st.members.contains_key(&key);
            if added {
                st.members.insert(
                    key,
                    Member {
                        sock: sock.clone(),
                        rooms: Vec::new(),
                    },
                );
                st.all = None;
            }
            if let Some(room) = room {
                st.join_room(key, sock, room);
            }
            added
        };
        if added {
            // Outside the lock: if the connection has finished meanwhile, the guard is dropped
            // right here, and its drop takes the lock to remove the member.
            sock.hold_until_closed(Box::new(Membership {
                hub: Arc::downgrade(&self.inner),
                key,
            }));
        }
        Ok(())
    }
}

/// One broadcast being set up: where it goes ([`Hub::to`], [`Hub::all`]), whom it skips, and
/// whether it leaves this process.
#[derive(Debug)]
#[must_use = "a broadcast does nothing until sent"]
pub struct Broadcast<'a> {
    hub: &'a Hub,
    room: Option<&'a str>,
    except: Option<usize>,
    local: bool,
}

impl Broadcast<'_> {
    /// Skips `sock` (typically the sender).
    pub fn except(mut self, sock: &Sock) -> Self {
        self.except = Some(sock.key());
        self
    }

    /// Delivers on this process only, not through the hub's adapter.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Sends `n` to every member here (without waiting for any of them) and hands it to the
    /// adapter for the other processes.
    pub fn send(self, n: &Notification) -> Sent {
        let hub = &self.hub.inner;
        let mut sent = hub.fan_out(self.room, self.except, n);
        if !self.local {
            if let Some(a) = &hub.adapter {
                sent.published = hub.publish(a.as_ref(), self.room, n);
            }
        }
        sent
    }

    /// Sends notification `name` with `value` encoded as JSON (once), as [`Broadcast::send`].
    pub fn notify<T: Serialize + ?Sized>(self, name: &str, value: &T) -> Result<Sent> {
        Ok(self.send(&Notification::json(name, value)?))
    }
}

// ---- the hub's state ------------------------------------------------------------------------

struct HubInner {
    state: Mutex<State>,
    overflow: Overflow,
    node: u64,
    /// The sequence number of our next broadcast to the adapter; locked while publishing, so
    /// that the adapter gets broadcasts in the order of their numbers.
    seq: Mutex<u64>,
    /// Other hubs' next expected sequence numbers, by node id.
    senders: Mutex<HashMap<u64, u64>>,
    counters: Counters,
    adapter: Option<Box<dyn Adapter>>,
    on_remote: Option<RemoteCallback>,
    on_full: Option<FullCallback>,
}

/// Hubs we remember a sequence number of; past this many (processes come and go, each with a
/// new id) the table starts over.
const MAX_SENDERS: usize = 4096;

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    skipped: AtomicU64,
    closed: AtomicU64,
    published: AtomicU64,
    unpublished: AtomicU64,
    received: AtomicU64,
    missed: AtomicU64,
    ignored: AtomicU64,
}

impl HubInner {
    /// Queues `n` on every local member of `room` (every connection with `None`) but
    /// `except`, applying the overflow policy.
    fn fan_out(&self, room: Option<&str>, except: Option<usize>, n: &Notification) -> Sent {
        let Some(members) = self.state.lock().snapshot(room) else {
            return Sent::default();
        };
        let mut sent = Sent::default();
        // Members found closed: out of the hub now rather than when their connection has
        // finished (which, for a peer that does not read, waits for the write timeout).
        let mut gone = Vec::new();
        for s in members.iter() {
            if except == Some(s.key()) {
                continue;
            }
            match s.try_notify(n) {
                Ok(()) => sent.delivered += 1,
                Err(Error::Full) => {
                    sent.full += 1;
                    if let Some(f) = &self.on_full {
                        f(s);
                    }
                    if self.overflow == Overflow::Close {
                        s.close();
                        gone.push(s.key());
                    }
                }
                Err(_) => {
                    sent.closed += 1;
                    gone.push(s.key());
                }
            }
        }
        drop(members);
        if !gone.is_empty() {
            let mut garbage = Garbage::default();
            let mut st = self.state.lock();
            for key in gone {
                st.remove(key, &mut garbage);
            }
        }
        let c = &self.counters;
        c.delivered
            .fetch_add(sent.delivered as u64, Ordering::Relaxed);
        if sent.full > 0 {
            let counter = match self.overflow {
                Overflow::Skip => &c.skipped,
                Overflow::Close => &c.closed,
            };
            counter.fetch_add(sent.full as u64, Ordering::Relaxed);
        }
        sent
    }

    fn publish(&self, adapter: &dyn Adapter, room: Option<&str>, n: &Notification) -> bool {
        if room.is_some_and(|r| r.len() > MAX_NAME_LEN) {
            // Nobody can have joined it, here or anywhere.
            return false;
        }
        let ok = {
            let mut seq = self.seq.lock();
            let msg = wire::encode(self.node, *seq, room, n);
            *seq += 1;
            adapter.publish(msg)
        };
        let c = if ok {
            &self.counters.published
        } else {
            &self.counters.unpublished
        };
        c.fetch_add(1, Ordering::Relaxed);
        ok
    }

    /// A message from the adapter: another hub's broadcast, delivered to our members.
    fn receive_message(&self, message: &[u8]) {
        let e = match wire::decode(message) {
            Ok(e) => e,
            Err(err) => {
                if self.counters.ignored.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %err, "rooms: ignoring a message from the adapter that is not a broadcast (logged once)");
                }
                return;
            }
        };
        if e.node == self.node {
            return; // ours: delivered here when it was sent
        }
        if !self.in_sequence(e.node, e.seq) {
            self.counters.ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let n = match Notification::new(e.name, Bytes::copy_from_slice(e.payload)) {
            Ok(n) => n,
            Err(_) => {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = &self.on_remote {
            f(e.room, &n);
        }
        self.fan_out(e.room, None, &n);
    }

    /// Whether broadcast `seq` of hub `node` is new, counting the ones skipped over as missed.
    fn in_sequence(&self, node: u64, seq: u64) -> bool {
        let mut senders = self.senders.lock();
        if senders.len() >= MAX_SENDERS && !senders.contains_key(&node) {
            senders.clear();
        }
        let next = senders.entry(node).or_insert(seq);
        if seq < *next {
            return false;
        }
        if seq > *next {
            let missed = seq - *next;
            self.counters.missed.fetch_add(missed, Ordering::Relaxed);
            tracing::debug!(node = %format_args!("{node:016x}"), missed, "rooms: broadcasts from another process were lost");
        }
        *next = seq + 1;
        true
    }

    fn forget(&self, key: usize) {
        let mut garbage = Garbage::default();
        self.state.lock().remove(key, &mut garbage);
    }
}

/// Held by a connection in the hub until it has closed; then removes it from the hub.
struct Membership {
    hub: Weak<HubInner>,
    key: usize,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.forget(self.key);
        }
    }
}

impl Receive for HubInner {
    fn receive(&self, message: &[u8]) {
        self.receive_message(message);
    }
}
