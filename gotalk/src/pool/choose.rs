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
//! The hot path of a choice reads a few atomics and draws two random numbers: no clock, no
//! allocation, no lock but the one that hands out the chosen connection.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::sock::Sock;

/// How a responder is chosen among the usable ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Power of two choices over in-flight requests weighted by the responder's heartbeat load
    /// (see the [module docs](self)).
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

/// One responder as the chooser sees it.
#[derive(Debug)]
pub(crate) struct Responder {
    /// Where it is (an address, or a worker's peer address), for stats and errors.
    pub(crate) label: String,
    /// Our requests in flight on it.
    in_flight: AtomicU32,
    /// Requests sent to it, ever.
    requests: AtomicU64,
    /// Load of its last heartbeat.
    load: AtomicU32,
    /// When its last heartbeat arrived ([`now_ms`]); 0: none on this connection.
    heard: AtomicU64,
    /// Until when it asked us to wait ([`now_ms`]); 0: it did not.
    retry_until: AtomicU64,
    /// Whether `sock` is set and open (read without the lock).
    up: AtomicBool,
    sock: parking_lot::Mutex<Option<Sock>>,
}

impl Responder {
    pub(crate) fn new(label: impl Into<String>) -> Responder {
        Responder {
            label: label.into(),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            load: AtomicU32::new(0),
            heard: AtomicU64::new(0),
            retry_until: AtomicU64::new(0),
            up: AtomicBool::new(false),
            sock: parking_lot::Mutex::new(None),
        }
    }

    /// Its connection is `sock` from now on (heartbeats on it may have been heard already:
    /// they can arrive with the handshake).
    pub(crate) fn connected(&self, sock: Sock) {
        self.retry_until.store(0, Ordering::Relaxed);
        *self.sock.lock() = Some(sock);
        self.up.store(true, Ordering::Release);
    }

    /// It has no connection any more (`sock`, if given, must be the one that went): what its
    /// heartbeats said is forgotten.
    pub(crate) fn disconnected(&self, sock: Option<&Sock>) {
        let mut cur = self.sock.lock();
        match (sock, cur.as_ref()) {
            // Down already, or up again on another connection (whose first heartbeat may
            // have come before it was offered): nothing to forget.
            (Some(_), None) => return,
            (Some(gone), Some(now)) if !gone.same_as(now) => return,
            _ => {}
        }
        self.up.store(false, Ordering::Release);
        *cur = None;
        self.load.store(0, Ordering::Relaxed);
        self.heard.store(0, Ordering::Relaxed);
    }

    /// A heartbeat arrived with `load`.
    pub(crate) fn heard(&self, load: u16) {
        self.load.store(u32::from(load), Ordering::Relaxed);
        self.heard.store(now_ms(), Ordering::Relaxed);
    }

    /// It asked us to wait `wait` before sending it anything more.
    pub(crate) fn back_off(&self, wait: Duration) {
        let until = now_ms() + wait.as_millis().min(u128::from(u32::MAX)) as u64;
        self.retry_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether it has sent heartbeats on this connection and the last is older than `timeout`.
    pub(crate) fn is_stale(&self, timeout: Duration) -> bool {
        let heard = self.heard.load(Ordering::Relaxed);
        heard != 0 && now_ms().saturating_sub(heard) > timeout.as_millis() as u64
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
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

    fn usable(&self) -> bool {
        self.is_up() && self.waiting_until().is_none()
    }

    /// Its current connection, counting a request in flight on it until the [`Checkout`]
    /// is dropped. `None` if it went down meanwhile.
    fn check_out(self: &Arc<Self>) -> Option<Checkout> {
        let sock = self.sock.lock().clone()?;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(Checkout {
            responder: self.clone(),
            sock,
        })
    }

    /// Its connection, if it has one (not counted as a request).
    pub(crate) fn sock(&self) -> Option<Sock> {
        self.sock.lock().clone()
    }

    /// What it looks like now.
    pub(crate) fn stats(&self) -> ResponderStats {
        ResponderStats {
            addr: self.label.clone(),
            up: self.is_up(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            load: self.load.load(Ordering::Relaxed) as u16,
            waiting: self
                .waiting_until()
                .map(|until| Duration::from_millis(until - now_ms())),
        }
    }

    /// `cost(self) < cost(other)`, without dividing (see the module docs).
    fn cheaper_than(&self, other: &Responder) -> bool {
        let (ia, la) = self.cost_terms();
        let (ib, lb) = other.cost_terms();
        // (ia+1)/(1-la) < (ib+1)/(1-lb)  ⇔  (ia+1)·(65536-lb) < (ib+1)·(65536-la)
        (ia + 1) * (65536 - lb) < (ib + 1) * (65536 - la)
    }

    fn cost_terms(&self) -> (u64, u64) {
        (
            u64::from(self.in_flight.load(Ordering::Relaxed)),
            u64::from(self.load.load(Ordering::Relaxed)).min(LOAD_CLAMP),
        )
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
}

/// A chosen responder's connection, with a request counted in flight on it until dropped.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub(crate) responder: Arc<Responder>,
    pub(crate) sock: Sock,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.responder.in_flight.fetch_sub(1, Ordering::Relaxed);
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
        (1, _) => Some(&members[0]).filter(|r| r.usable()),
        (_, Balance::LeastLoaded) => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let (ra, rb) = (&members[a], &members[b]);
            match (ra.usable(), rb.usable()) {
                (true, true) => Some(if rb.cheaper_than(ra) { rb } else { ra }),
                // One of the two is out: choose among those that are not.
                _ => two_of_usable(members),
            }
        }
        (_, Balance::RoundRobin) => {
            let start = turn.fetch_add(1, Ordering::Relaxed);
            (0..n)
                .map(|i| &members[(start + i) % n])
                .find(|r| r.usable())
        }
    };
    if let Some(r) = pick {
        if let Some(c) = r.check_out() {
            return Choice::Use(c);
        }
    }
    // Nothing usable (or the one chosen went down just now): say why.
    let mut first_wait = None::<u64>;
    for r in members.iter().filter(|r| r.is_up()) {
        match r.waiting_until() {
            None => {
                // Came back meanwhile (a race with a connect or the end of a wait).
                if let Some(c) = r.check_out() {
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

/// The power of two choices among the usable members only (some are out).
fn two_of_usable(members: &[Arc<Responder>]) -> Option<&Arc<Responder>> {
    let usable: Vec<&Arc<Responder>> = members.iter().filter(|r| r.usable()).collect();
    match usable.len() {
        0 => None,
        1 => Some(usable[0]),
        n => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            Some(if usable[b].cheaper_than(usable[a]) {
                usable[b]
            } else {
                usable[a]
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Responders marked up without a connection: enough for the arithmetic, not for
    /// `check_out` (so these tests call the parts of `choose` that need no `Sock`).
    fn up(label: &str, in_flight: u32, load: u16) -> Arc<Responder> {
        let r = Responder::new(label);
        r.up.store(true, Ordering::Relaxed);
        r.in_flight.store(in_flight, Ordering::Relaxed);
        r.load.store(u32::from(load), Ordering::Relaxed);
        Arc::new(r)
    }

    #[test]
    fn cost_weighs_in_flight_by_load() {
        let idle = up("idle", 3, 0);
        let half = up("half", 1, 0x8000);
        // 4 / 1 vs 2 / 0.5: a tie is not cheaper either way.
        assert!(!idle.cheaper_than(&half) && !half.cheaper_than(&idle));
        let busy = up("busy", 0, 0xc000); // 1 / 0.25 = 4
        let calm = up("calm", 2, 0); // 3
        assert!(calm.cheaper_than(&busy));
        // Saturation is clamped: a finite factor of 256.
        let dying = up("dying", 0, 0xffff);
        assert!(up("x", 254, 0).cheaper_than(&dying));
        assert!(dying.cheaper_than(&up("y", 256, 0)));
    }

    #[test]
    fn power_of_two_prefers_the_lighter_responder_in_proportion() {
        let members = vec![up("a", 0, 0), up("b", 0, 0), up("c", 0, 0xc000)];
        let mut wins = [0u32; 3];
        for _ in 0..3000 {
            let r = two_of_usable(&members).unwrap();
            let i = members.iter().position(|m| Arc::ptr_eq(m, r)).unwrap();
            wins[i] += 1;
        }
        // With nothing in flight, the loaded one loses every comparison it is in.
        assert_eq!(wins[2], 0, "{wins:?}");
        assert!(wins[0] > 1000 && wins[1] > 1000, "{wins:?}");
    }

    #[test]
    fn responders_out_are_skipped_and_waits_reported() {
        let members = vec![up("a", 0, 0), up("b", 0, 0)];
        members[0].up.store(false, Ordering::Relaxed);
        members[1].back_off(Duration::from_secs(60));
        assert!(two_of_usable(&members).is_none());
        let turn = AtomicUsize::new(0);
        match choose(&members, Balance::LeastLoaded, &turn) {
            Choice::WaitUntil(until) => assert!(until > now_ms() + 50_000),
            other => panic!("expected a wait, got {other:?}"),
        }
        members[1].up.store(false, Ordering::Relaxed);
        assert!(matches!(
            choose(&members, Balance::RoundRobin, &turn),
            Choice::Nobody
        ));
    }

    #[test]
    fn a_wait_that_is_over_is_forgotten() {
        let r = up("a", 0, 0);
        r.back_off(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert!(r.usable());
        assert_eq!(r.retry_until.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn staleness_needs_a_heartbeat_first() {
        let r = up("a", 0, 0);
        assert!(!r.is_stale(Duration::ZERO));
        r.heard(7);
        std::thread::sleep(Duration::from_millis(3));
        assert!(r.is_stale(Duration::from_millis(1)));
        assert!(!r.is_stale(Duration::from_secs(60)));
    }
}
