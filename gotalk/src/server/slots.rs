//! Connection slots: how many connections a server holds, how many of them one peer address
//! holds, and which connection makes room when the server is full.
//!
//! A slot is taken when a connection is accepted (before any handshake) and given back when
//! the connection has fully closed (the [`Slot`] is held by the connection, see
//! `Sock::hold_until_closed`). Admitting looks at counters under one short lock; only a full
//! server looks through its connections, for the idlest one.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::options::ServerOptions;
use crate::config::Config;
use crate::sock::Sock;

/// Connections closed to make room that may still be closing at once: beyond the cap, the
/// server holds at most this many more connections.
const EVICTING_MAX: usize = 64;

/// How often (at most) refusals are logged; the ones in between are counted.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The address a per-address limit counts by: an IPv4 address, or the /64 prefix of an IPv6
/// address (one host or one site usually has a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddrKey(u128);

impl AddrKey {
    pub(crate) fn of(addr: IpAddr) -> AddrKey {
        match addr {
            IpAddr::V4(v4) => AddrKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(u32::from(v4) as u128),
                None => AddrKey((u128::from(v6) >> 64 << 64) | 1),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address holds its share already.
    Address,
    /// The server is full and no connection is idle enough to make room.
    Full,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Address => "too many connections from this address",
            Refusal::Full => "too many connections",
        })
    }
}

/// The limits [`Slots`] enforce (from [`ServerOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotLimits {
    pub(crate) max: usize,
    pub(crate) per_address: Option<usize>,
    pub(crate) evict_idle_after: Option<Duration>,
}

impl SlotLimits {
    pub(crate) fn of(o: &ServerOptions) -> SlotLimits {
        SlotLimits {
            max: o.max_connections.max(1),
            per_address: o.max_connections_per_address.map(|n| n.max(1)),
            evict_idle_after: o.evict_idle_after,
        }
    }
}

/// A connection registered once its handshake is done.
struct Open {
    sock: Sock,
    /// Closed to make room; its slot no longer counts toward the cap.
    evicted: bool,
}

#[derive(Default)]
struct State {
    /// Slots taken and not evicted.
    taken: usize,
    /// Slots of evicted connections still closing.
    evicting: usize,
    per_address: HashMap<AddrKey, usize>,
    open: HashMap<u64, Open>,
    next_id: u64,
    /// Connections registered from now on are closed at once (the server is shutting down).
    closing: bool,
    refused_unlogged: u64,
    last_refusal_log: Option<Instant>,
}

/// The connection slots of one server (or one WebSocket endpoint).
pub(crate) struct Slots {
    limits: SlotLimits,
    state: Mutex<State>,
    /// Notified whenever a registered connection lets go of its slot.
    released: Notify,
    /// What the log calls this server (its address, or "WebSocket endpoint").
    name: Mutex<String>,
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Slots")
            .field("limits", &self.limits)
            .field("taken", &s.taken)
            .field("open", &s.open.len())
            .finish()
    }
}

/// A taken slot: given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    address: Option<AddrKey>,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("id", &self.id).finish()
    }
}

impl Slots {
    pub(crate) fn new(limits: SlotLimits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            state: Mutex::new(State::default()),
            released: Notify::new(),
            name: Mutex::new(String::new()),
        })
    }

    /// What the log calls this server.
    pub(crate) fn set_name(&self, name: String) {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = name;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for a connection from `peer`, closing the idlest connection to make room
    /// if the server is full. A refusal is logged here; the caller closes the connection.
    pub(crate) fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, Refusal> {
        let address = peer.map(AddrKey::of);
        let mut s = self.lock();
        let refused = |mut s: MutexGuard<'_, State>, why: Refusal| {
            self.log_refusal(&mut s, why, peer);
            Err(why)
        };
        if let (Some(key), Some(share)) = (address, self.limits.per_address) {
            if s.per_address.get(&key).copied().unwrap_or(0) >= share {
                return refused(s, Refusal::Address);
            }
        }
        let mut victim = None;
        if s.taken >= self.limits.max {
            match self.idlest(&s) {
                Some(id) if s.evicting < EVICTING_MAX => {
                    let open = s.open.get_mut(&id).expect("found above");
                    open.evicted = true;
                    victim = Some(open.sock.clone());
                    s.taken -= 1;
                    s.evicting += 1;
                }
                _ => return refused(s, Refusal::Full),
            }
        }
        s.taken += 1;
        if let Some(key) = address {
            *s.per_address.entry(key).or_default() += 1;
        }
        let id = s.next_id;
        s.next_id += 1;
        drop(s);
        if let Some(sock) = victim {
            tracing::debug!(peer = ?sock.peer_addr(), "closing the idlest connection to admit a new one");
            sock.close();
        }
        Ok(Slot {
            slots: self.clone(),
            id,
            address,
        })
    }

    /// The registered connection longest without a message other than heartbeats, if that was
    /// long enough ago and it has no request in progress, ours or the peer's.
    fn idlest(&self, s: &State) -> Option<u64> {
        let idle_for = self.limits.evict_idle_after?;
        let cutoff = Instant::now().checked_sub(idle_for)?;
        let mut best: Option<(Instant, u64)> = None;
        for (id, open) in &s.open {
            if open.evicted || open.sock.requests_in_progress() > 0 {
                continue;
            }
            let at = open.sock.last_activity();
            if at > cutoff || best.is_some_and(|(b, _)| at >= b) {
                continue;
            }
            // Takes the connection's lock: only for a candidate better than the best so far.
            if open.sock.requests_pending() > 0 {
                continue;
            }
            best = Some((at, *id));
        }
        best.map(|(_, id)| id)
    }

    fn log_refusal(&self, s: &mut State, why: Refusal, peer: Option<IpAddr>) {
        let now = Instant::now();
        let due = s
            .last_refusal_log
            .map_or(true, |at| now.duration_since(at) >= REFUSAL_LOG_EVERY);
        if !due {
            s.refused_unlogged += 1;
            return;
        }
        let name = self.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        tracing::warn!(
            server = %name,
            peer = ?peer,
            also_refused_since_last_log = s.refused_unlogged,
            limits = ?self.limits,
            "connection refused: {why}"
        );
        s.refused_unlogged = 0;
        s.last_refusal_log = Some(now);
    }

    /// The configuration for the connection that holds `slot`: once its handshake is done (and
    /// before the user's `on_open`, before it serves anything), it is registered and holds the
    /// slot until it has fully closed. If the handshake fails, the slot goes with the config.
    pub(crate) fn config_for(self: &Arc<Self>, slot: Slot, config: &Config) -> Config {
        let mut config = config.clone();
        let slots = self.clone();
        let slot = Mutex::new(Some(slot));
        config.callbacks.internal_open = Some(Arc::new(move |sock: &Sock| {
            let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(slot) = taken {
                slots.attach(slot, sock);
            }
        }));
        config
    }

    /// Registers the connection holding `slot`, and has it hold the slot until it has fully
    /// closed.
    fn attach(&self, slot: Slot, sock: &Sock) {
        let closing = {
            let mut s = self.lock();
            s.open.insert(
                slot.id,
                Open {
                    sock: sock.clone(),
                    evicted: false,
                },
            );
            s.closing
        };
        sock.hold_until_closed(Box::new(slot));
        if closing {
            sock.close();
        }
    }

    /// The connections open right now.
    pub(crate) fn connections(&self) -> Vec<Sock> {
        self.lock().open.values().map(|o| o.sock.clone()).collect()
    }

    /// How many connections are open right now.
    pub(crate) fn count(&self) -> usize {
        self.lock().open.len()
    }

    /// Closes every open connection, and every one registered from now on.
    pub(crate) fn close_all(&self) -> Vec<Sock> {
        let socks = {
            let mut s = self.lock();
            s.closing = true;
            s.open.values().map(|o| o.sock.clone()).collect::<Vec<_>>()
        };
        for sock in &socks {
            sock.close();
        }
        socks
    }

    /// Waits until no registered connection is left.
    pub(crate) async fn until_empty(&self) {
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if self.lock().open.is_empty() {
                return;
            }
            released.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        match s.open.remove(&self.id) {
            Some(Open { evicted: true, .. }) => s.evicting -= 1,
            _ => s.taken -= 1,
        }
        if let Some(key) = self.address {
            if let Some(n) = s.per_address.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    s.per_address.remove(&key);
                }
            }
        }
        drop(s);
        self.slots.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn addresses_count_by_host_and_ipv6_by_64() {
        let k = |s: &str| AddrKey::of(s.parse().unwrap());
        assert_eq!(k("10.0.0.1"), k("::ffff:10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        // An IPv6 /64 never meets an IPv4 address.
        assert_ne!(k("::"), k("0.0.0.0"));
    }

    fn limits(max: usize, per_address: Option<usize>) -> SlotLimits {
        SlotLimits {
            max,
            per_address,
            evict_idle_after: Some(Duration::ZERO),
        }
    }

    #[test]
    fn slots_count_per_address_and_in_total() {
        let slots = Slots::new(limits(3, Some(2)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = slots.admit(Some(a)).unwrap();
        let _a2 = slots.admit(Some(a)).unwrap();
        assert_eq!(slots.admit(Some(a)).unwrap_err(), Refusal::Address);
        let _b1 = slots.admit(Some(b)).unwrap();
        // Full, and nothing registered that could make room.
        assert_eq!(slots.admit(None).unwrap_err(), Refusal::Full);
        drop(a1);
        let _a3 = slots.admit(Some(a)).unwrap();
        assert_eq!(slots.lock().per_address.len(), 2);
    }

    #[test]
    fn socket_addr_of_a_mapped_address() {
        let sa: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(
            AddrKey::of(sa.ip()),
            AddrKey::of("127.0.0.1".parse().unwrap())
        );
    }
}
