//! Where a responder is chosen: what the chooser knows about each responder, and the choice.
//!
//! Every responder — a keep-alive connection of a [`Pool`](super::Pool) or a [`KeepAlive`](
//! super::KeepAlive), a worker connected to a [`Workers`](super::Workers) set — is a
//! [`Responder`]: its connection (when it has one), the requests we have in flight on it, the
//! `load` of the last heartbeat it sent, and the time until which it asked us to wait (a
//! RetryResult).
//!
//! [`Balance::LeastLoaded`] (the default) is the *power of two choices*: draw two usable
//! responders at random and take the one with the lower cost,
//!
//! ```text
//! cost = (in_flight + 1) / (1 - load / 65536)
//! ```
//!
//! where `in_flight` counts our requests waiting on it and `load` is its last heartbeat's
//! (0 = idle … 0xffff = saturated, clamped at 0xff00 so the factor stays finite: at most 256).
//! A slow responder collects in-flight requests and loses comparisons; one that reports a high
//! load loses them in proportion — a responder at half load costs twice as much per request as
//! an idle one. Two random draws rather than the global minimum keep many clients from
//! stampeding the same least-loaded responder between two heartbeats (Mitzenmacher; tower's
//! `balance::p2c`, Finagle's least-loaded P2C). [`Balance::RoundRobin`] ignores the load, for
//! comparison.
//!
//! A responder is *usable* when its connection is up and it has not asked us to wait; one whose
//! heartbeats stopped has its connection closed by whoever watches it (see
//! `Responder::is_stale`), so it is out until it reconnects.
//!
//! **Room.** A responder that refuses a request with a RetryResult while `k` of ours are in
//! flight on it has shown how many it takes: for the next second, it is chosen only while
//! fewer than `k - 1` of ours are in flight there, as long as another usable responder has
//! room (when none has, the choice is made among all usable ones, and the responders decide).
//! Without this, a client keeping its responders exactly at their limit would keep drawing two
//! full ones while a third has a free slot, and every such request would bounce, leaving the
//! responder that refused it idle for its wait.
//!
//! The hot path of a choice reads a few atomics and draws two random numbers: no clock, no
//! allocation, no lock but the one that hands out the chosen connection.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::sock::Sock;

/// How a responder is chosen among the usable ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Power of two choices over in-flight requests weighted by the responder's heartbeat load
    /// (see the [`pool` module docs](super)).
    #[default]
    LeastLoaded,
    /// Each usable responder in turn, whatever its load.
    RoundRobin,
}

/// Milliseconds on a process-wide monotonic clock, from 1 (0 means "never").
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// Highest load taken at face value: the cost factor `65536 / (65536 - load)` stays ≤ 256.
const LOAD_CLAMP: u64 = 0xff00;

/// How long the room a responder showed by refusing a request is remembered, in ms.
const ROOM_KEPT_MS: u64 = 1000;

/// One responder as the chooser sees it: what it told us (a wait, how many requests it takes)
/// and its current connection (whose [`Sock::peer_load`] is the load of its last heartbeat).
///
/// A request writes nothing here, only to its [`Conn`]: what every request reads stays in
/// every core's cache.
#[derive(Debug)]
pub(crate) struct Responder {
    /// Until when it asked us to wait ([`now_ms`]); 0: it did not.
    retry_until: AtomicU64,
    /// How many of our requests it took when it last refused one (0: unknown), and until when
    /// that holds ([`now_ms`]).
    room: AtomicU32,
    room_until: AtomicU64,
    /// Requests sent on its earlier connections.
    past_requests: AtomicU64,
    conn: ArcSwapOption<Conn>,
    /// Where it is (an address, or a worker's peer address), for stats and errors.
    pub(crate) label: String,
}

/// A responder's connection and our requests on it. What a request writes (the count of the
/// `Arc`, the counters) sits together at the start.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Conn {
    /// Our requests on it: in flight in the low 32 bits, sent in the high 32 (one write per
    /// request for both).
    counts: AtomicU64,
    pub(crate) sock: Sock,
    responder: Weak<Responder>,
}

/// One more request in flight, and one more sent, in [`Conn::counts`].
const ONE_SENT: u64 = (1 << 32) | 1;

impl Conn {
    fn in_flight(&self) -> u32 {
        self.counts.load(Ordering::Relaxed) as u32
    }

    fn requests(&self) -> u64 {
        self.counts.load(Ordering::Relaxed) >> 32
    }

    /// The load of the peer's last heartbeat on it (0 before the first).
    fn load(&self) -> u16 {
        self.sock.peer_load().map_or(0, |(load, _)| load)
    }
}

impl Responder {
    pub(crate) fn new(label: impl Into<String>) -> Responder {
        Responder {
            retry_until: AtomicU64::new(0),
            room: AtomicU32::new(0),
            room_until: AtomicU64::new(0),
            past_requests: AtomicU64::new(0),
            conn: ArcSwapOption::empty(),
            label: label.into(),
        }
    }

    /// Its connection is `sock` from now on.
    pub(crate) fn connected(self: &Arc<Self>, sock: Sock) {
        self.retry_until.store(0, Ordering::Relaxed);
        self.room.store(0, Ordering::Relaxed);
        let conn = Conn {
            counts: AtomicU64::new(0),
            sock,
            responder: Arc::downgrade(self),
        };
        if let Some(old) = self.conn.swap(Some(Arc::new(conn))) {
            self.retire(&old);
        }
    }

    /// It has no connection any more (`sock`, if given, must be the one that went).
    pub(crate) fn disconnected(&self, sock: Option<&Sock>) {
        let current = self.conn.load();
        match (sock, current.as_ref()) {
            // Down already, or up again on another connection: nothing to do.
            (_, None) => return,
            (Some(gone), Some(now)) if !gone.same_as(&now.sock) => return,
            _ => {}
        }
        let prev = self.conn.compare_and_swap(&*current, None);
        let swapped = match (prev.as_ref(), current.as_ref()) {
            (Some(p), Some(c)) => Arc::ptr_eq(p, c),
            _ => false,
        };
        if swapped {
            if let Some(old) = current.as_ref() {
                self.retire(old);
            }
        }
    }

    /// Keeps the count of requests of a connection that went.
    fn retire(&self, old: &Conn) {
        self.past_requests
            .fetch_add(old.requests(), Ordering::Relaxed);
    }

    /// It refused one of our requests with a RetryResult asking for `wait` before we send it
    /// anything more, with `in_flight` of ours on it (the refused one included).
    fn refused(&self, wait: Duration, in_flight: u32) {
        let now = now_ms();
        let until = now + wait.as_millis().min(u128::from(u32::MAX)) as u64;
        self.retry_until.fetch_max(until, Ordering::Relaxed);
        let took = in_flight.saturating_sub(1);
        if took > 0 {
            self.room.store(took, Ordering::Relaxed);
            self.room_until.store(now + ROOM_KEPT_MS, Ordering::Relaxed);
        }
    }

    /// Whether it has room for one more of our requests, `in_flight` being on it, as far as we
    /// know.
    fn has_room(&self, in_flight: u32) -> bool {
        let room = self.room.load(Ordering::Relaxed);
        if room == 0 || in_flight < room {
            return true;
        }
        if now_ms() > self.room_until.load(Ordering::Relaxed) {
            // Long enough ago: it may take more now (others' requests may have gone).
            self.room.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether it has sent heartbeats on its connection and the last is older than `timeout`.
    pub(crate) fn is_stale(&self, timeout: Duration) -> bool {
        let conn = self.conn.load();
        let last = conn.as_ref().and_then(|c| c.sock.peer_load());
        last.is_some_and(|(_, at)| at.elapsed() > timeout)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Until when it asked us to wait, if that is still ahead.
    fn waiting_until(&self) -> Option<u64> {
        match self.retry_until.load(Ordering::Relaxed) {
            0 => None,
            until if until > now_ms() => Some(until),
            until => {
                // Over: later choices need not read the clock for it.
                let _ = self.retry_until.compare_exchange(
                    until,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                None
            }
        }
    }

    /// Its connection and our requests in flight there, if it is usable: up, and not asking
    /// us to wait.
    fn usable(&self) -> Option<View> {
        let conn = self.conn.load();
        let in_flight = conn.as_ref()?.in_flight();
        if self.waiting_until().is_some() {
            return None;
        }
        Some(View { conn, in_flight })
    }

    /// Usable, with room for one more.
    fn ready(&self) -> Option<View> {
        self.usable().filter(|v| self.has_room(v.in_flight))
    }

    /// Its connection, if it has one (not counted as a request).
    pub(crate) fn sock(&self) -> Option<Sock> {
        self.conn.load().as_ref().map(|c| c.sock.clone())
    }

    /// What it looks like now.
    pub(crate) fn stats(&self) -> ResponderStats {
        let conn = self.conn.load_full();
        let on_conn = |f: fn(&Conn) -> u64| conn.as_deref().map_or(0, f);
        ResponderStats {
            addr: self.label.clone(),
            up: conn.is_some(),
            in_flight: on_conn(|c| u64::from(c.in_flight())) as u32,
            requests: self.past_requests.load(Ordering::Relaxed) + on_conn(Conn::requests),
            load: on_conn(|c| u64::from(c.load())) as u16,
            waiting: self
                .waiting_until()
                .map(|until| Duration::from_millis(until.saturating_sub(now_ms()))),
            last_error: None,
        }
    }
}

/// A usable responder as one choice saw it.
struct View {
    conn: arc_swap::Guard<Option<Arc<Conn>>>,
    in_flight: u32,
}

impl View {
    /// `cost(self) < cost(other)`, without dividing (see the module docs).
    fn cheaper_than(&self, other: &View) -> bool {
        let (ia, la) = (u64::from(self.in_flight), self.load_term());
        let (ib, lb) = (u64::from(other.in_flight), other.load_term());
        // (ia+1)/(1-la) < (ib+1)/(1-lb)  ⇔  (ia+1)·(65536-lb) < (ib+1)·(65536-la)
        (ia + 1) * (65536 - lb) < (ib + 1) * (65536 - la)
    }

    fn load_term(&self) -> u64 {
        let load = self.conn.as_ref().map_or(0, |c| c.load());
        u64::from(load).min(LOAD_CLAMP)
    }

    /// The connection, with a request counted in flight on it until the [`Checkout`] is
    /// dropped.
    fn check_out(self) -> Option<Checkout> {
        let conn = arc_swap::Guard::into_inner(self.conn)?;
        conn.counts.fetch_add(ONE_SENT, Ordering::Relaxed);
        Some(Checkout { conn })
    }
}

/// A responder as seen by [`Pool::stats`](super::Pool::stats) and
/// [`Workers::stats`](super::Workers::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponderStats {
    /// Its address (for a worker: the peer address of its connection).
    pub addr: String,
    /// Whether it has an open connection.
    pub up: bool,
    /// Our requests waiting for its results.
    pub in_flight: u32,
    /// Requests sent to it so far (every attempt counts).
    pub requests: u64,
    /// The load of its last heartbeat on the current connection (0 if none yet).
    pub load: u16,
    /// How much longer it asked us to wait (a RetryResult), if it did.
    pub waiting: Option<Duration>,
    /// While it is down: why the last attempt to connect to it failed (for a pool's or a
    /// keep-alive connection's responders).
    pub last_error: Option<String>,
}

/// A chosen responder's connection, with a request counted in flight on it until dropped.
#[derive(Debug)]
pub(crate) struct Checkout {
    conn: Arc<Conn>,
}

impl Checkout {
    pub(crate) fn sock(&self) -> &Sock {
        &self.conn.sock
    }

    /// The responder it belongs to (gone if the set dropped it meanwhile).
    pub(crate) fn responder(&self) -> Option<Arc<Responder>> {
        self.conn.responder.upgrade()
    }

    /// The responder refused the request with a RetryResult asking for `wait`.
    pub(crate) fn refused(&self, wait: Duration) {
        if let Some(r) = self.responder() {
            r.refused(wait, self.conn.in_flight());
        }
    }

    /// The connection turned out closed: out of the choice at once, not only once whoever
    /// watches it hears of it.
    pub(crate) fn lost(&self) {
        if let Some(r) = self.responder() {
            r.disconnected(Some(&self.conn.sock));
        }
    }

    /// Where the request went, for logs.
    pub(crate) fn label(&self) -> String {
        self.responder()
            .map(|r| r.label.clone())
            .unwrap_or_default()
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.conn.counts.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The outcome of a choice.
#[derive(Debug)]
pub(crate) enum Choice {
    /// Send it here.
    Use(Checkout),
    /// Every responder that is up asked us to wait; the first wait ends at this [`now_ms`].
    WaitUntil(u64),
    /// No responder is up.
    Nobody,
}

/// Chooses among `members` by `balance`; `turn` is the round-robin position.
pub(crate) fn choose(members: &[Arc<Responder>], balance: Balance, turn: &AtomicUsize) -> Choice {
    let n = members.len();
    let pick = match (n, balance) {
        (0, _) => None,
        // No other to turn to: the responder decides whether it has room.
        (1, _) => members[0].usable(),
        (_, Balance::LeastLoaded) => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            match (members[a].ready(), members[b].ready()) {
                (Some(va), Some(vb)) => Some(if vb.cheaper_than(&va) { vb } else { va }),
                // One of the two is out or full: choose among those that are not, or else
                // among every usable one.
                _ => {
                    two_of(members, Responder::ready).or_else(|| two_of(members, Responder::usable))
                }
            }
        }
        (_, Balance::RoundRobin) => {
            let start = turn.fetch_add(1, Ordering::Relaxed);
            let in_turn = |ok: fn(&Responder) -> Option<View>| {
                (0..n).find_map(|i| ok(&members[(start + i) % n]))
            };
            in_turn(Responder::ready).or_else(|| in_turn(Responder::usable))
        }
    };
    if let Some(c) = pick.and_then(View::check_out) {
        return Choice::Use(c);
    }
    // Nothing usable: say why.
    let mut first_wait = None::<u64>;
    for r in members.iter().filter(|r| r.is_up()) {
        match r.waiting_until() {
            None => {
                // Came back meanwhile (a race with a connect or the end of a wait).
                if let Some(c) = r.usable().and_then(View::check_out) {
                    return Choice::Use(c);
                }
            }
            Some(until) => first_wait = Some(first_wait.map_or(until, |f| f.min(until))),
        }
    }
    match first_wait {
        Some(until) => Choice::WaitUntil(until),
        None => Choice::Nobody,
    }
}

/// The power of two choices among the members `ok` gives a view of (some are out).
fn two_of(members: &[Arc<Responder>], ok: fn(&Responder) -> Option<View>) -> Option<View> {
    let n = members.iter().filter(|r| ok(r).is_some()).count();
    let nth = |k: usize| members.iter().filter_map(|r| ok(r)).nth(k);
    match n {
        0 => None,
        1 => nth(0),
        n => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let (va, vb) = (nth(a)?, nth(b)?);
            Some(if vb.cheaper_than(&va) { vb } else { va })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A responder connected over an in-memory pipe (the other end is returned, to keep the
    /// connection open), with `in_flight` of ours on it and its last heartbeat's `load`.
    async fn up(label: &str, in_flight: u32, load: u16) -> (Arc<Responder>, Sock) {
        // The peer's own heartbeats off: only the one sent here says its load.
        let quiet = crate::Config::new().heartbeat_interval(None);
        let (ours, theirs) = crate::transport::pipe_with(&crate::Config::new(), &quiet)
            .await
            .unwrap();
        if load != 0 {
            theirs.send_heartbeat(load).await.unwrap();
            while ours.peer_load().map(|(l, _)| l) != Some(load) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let r = Arc::new(Responder::new(label));
        r.connected(ours);
        set_in_flight(&r, in_flight);
        (r, theirs)
    }

    fn set_in_flight(r: &Responder, n: u32) {
        r.conn
            .load()
            .as_ref()
            .unwrap()
            .counts
            .store(u64::from(n), Ordering::Relaxed);
    }

    /// Whether `v` is a view of `r`.
    fn is(v: &View, r: &Responder) -> bool {
        let (a, b) = (v.conn.as_ref().unwrap(), r.conn.load_full().unwrap());
        Arc::ptr_eq(a, &b)
    }

    fn cheaper(a: &Responder, b: &Responder) -> bool {
        a.usable().unwrap().cheaper_than(&b.usable().unwrap())
    }

    #[tokio::test]
    async fn cost_weighs_in_flight_by_load() {
        let (idle, _p1) = up("idle", 3, 0).await;
        let (half, _p2) = up("half", 1, 0x8000).await;
        // 4 / 1 vs 2 / 0.5: a tie is not cheaper either way.
        assert!(!cheaper(&idle, &half) && !cheaper(&half, &idle));
        let (busy, _p3) = up("busy", 0, 0xc000).await; // 1 / 0.25 = 4
        let (calm, _p4) = up("calm", 2, 0).await; // 3
        assert!(cheaper(&calm, &busy));
        // Saturation is clamped: a finite factor of 256.
        let (dying, _p5) = up("dying", 0, 0xffff).await;
        let (x, _p6) = up("x", 254, 0).await;
        let (y, _p7) = up("y", 256, 0).await;
        assert!(cheaper(&x, &dying) && cheaper(&dying, &y));
    }

    #[tokio::test]
    async fn power_of_two_prefers_the_lighter_responder_in_proportion() {
        let (a, _pa) = up("a", 0, 0).await;
        let (b, _pb) = up("b", 0, 0).await;
        let (c, _pc) = up("c", 0, 0xc000).await;
        let members = vec![a, b, c];
        let mut wins = [0u32; 3];
        for _ in 0..3000 {
            let v = two_of(&members, Responder::usable).unwrap();
            let i = members.iter().position(|m| is(&v, m)).unwrap();
            wins[i] += 1;
        }
        // With nothing in flight, the loaded one loses every comparison it is in.
        assert_eq!(wins[2], 0, "{wins:?}");
        assert!(wins[0] > 1000 && wins[1] > 1000, "{wins:?}");
    }

    #[tokio::test]
    async fn a_checkout_counts_a_request_in_flight_until_dropped() {
        let (a, _pa) = up("a", 0, 0).await;
        let members = vec![a];
        let turn = AtomicUsize::new(0);
        let Choice::Use(c) = choose(&members, Balance::LeastLoaded, &turn) else {
            panic!("expected a choice");
        };
        assert_eq!(members[0].stats().in_flight, 1);
        assert_eq!(members[0].stats().requests, 1);
        drop(c);
        assert_eq!(members[0].stats().in_flight, 0);
        // A connection that goes keeps its count of requests.
        members[0].disconnected(None);
        assert_eq!(members[0].stats().requests, 1);
        assert!(!members[0].stats().up);
    }

    #[tokio::test]
    async fn responders_out_are_skipped_and_waits_reported() {
        let (a, _pa) = up("a", 0, 0).await;
        let (b, _pb) = up("b", 0, 0).await;
        let members = vec![a, b];
        members[0].disconnected(None);
        members[1].refused(Duration::from_secs(60), 1);
        assert!(two_of(&members, Responder::usable).is_none());
        let turn = AtomicUsize::new(0);
        match choose(&members, Balance::LeastLoaded, &turn) {
            Choice::WaitUntil(until) => assert!(until > now_ms() + 50_000),
            other => panic!("expected a wait, got {other:?}"),
        }
        members[1].disconnected(None);
        assert!(matches!(
            choose(&members, Balance::RoundRobin, &turn),
            Choice::Nobody
        ));
    }

    #[tokio::test]
    async fn a_responder_that_refused_is_full_at_what_it_took_for_a_while() {
        let (a, _pa) = up("a", 8, 0).await;
        let (b, _pb) = up("b", 3, 0).await;
        let members = vec![a, b];
        // `a` refuses its 8th: it takes 7.
        members[0].refused(Duration::ZERO, 8);
        assert_eq!(members[0].room.load(Ordering::Relaxed), 7);
        std::thread::sleep(Duration::from_millis(2));
        set_in_flight(&members[0], 7);
        assert!(members[0].usable().is_some() && members[0].ready().is_none());
        // `b` is busier by cost but has room: it is the only choice with room.
        set_in_flight(&members[1], 20);
        for _ in 0..100 {
            let v = two_of(&members, Responder::ready).unwrap();
            assert!(is(&v, &members[1]));
        }
        // Below what it took, it has room again; and the memory fades.
        set_in_flight(&members[0], 6);
        assert!(members[0].ready().is_some());
        set_in_flight(&members[0], 7);
        members[0].room_until.store(1, Ordering::Relaxed);
        assert!(members[0].ready().is_some());
        assert_eq!(members[0].room.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_wait_that_is_over_is_forgotten() {
        let (r, _p) = up("a", 0, 0).await;
        r.refused(Duration::ZERO, 1);
        std::thread::sleep(Duration::from_millis(2));
        assert!(r.usable().is_some());
        assert_eq!(r.retry_until.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn staleness_needs_a_heartbeat_first() {
        let (r, _p) = up("a", 0, 0).await;
        assert!(!r.is_stale(Duration::ZERO));
        let (r, _p) = up("a", 0, 7).await;
        std::thread::sleep(Duration::from_millis(3));
        assert!(r.is_stale(Duration::from_millis(1)));
        assert!(!r.is_stale(Duration::from_secs(60)));
    }
}
