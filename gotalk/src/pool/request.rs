//! One request through a set of responders: choosing, waiting, moving, repeating, within a
//! deadline. The same steps serve a [`KeepAlive`](super::KeepAlive) (a set of one), a
//! [`Pool`](super::Pool) and a [`Workers`](super::Workers) set; see the
//! [`pool` docs](super) for the rules.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::stream::{StreamReceiver, StreamSender};

use super::choose::{now_ms, Checkout, Choice};
use super::options::Policy;

/// A set of responders requests can be sent to.
pub(crate) trait Roster: Send + Sync {
    /// Chooses a responder for `op`.
    fn choose(&self, op: &str) -> Choice;

    /// A receiver that sees a change whenever a responder comes up, goes down, joins or
    /// leaves, or the set is closed (its current value counts as seen).
    fn watch(&self) -> watch::Receiver<u64>;

    /// Whether the set was closed for good (no responder will come).
    fn is_closed(&self) -> bool;

    /// Why no responder can take `op` now, in words, for [`Error::Unavailable`].
    fn why_unavailable(&self, op: &str) -> String;
}

/// Sends request `op` with `payload` to a responder of `roster`, following `policy`.
pub(crate) async fn buffer_request(
    roster: &impl Roster,
    op: &str,
    payload: Bytes,
    policy: Policy,
) -> Result<Bytes> {
    within(policy.timeout, attempts(roster, op, payload, policy)).await
}

/// Starts stream request `op` on a responder of `roster`. Only the start is subject to the
/// policy: a stream under way is not moved or repeated.
pub(crate) async fn stream_request(
    roster: &impl Roster,
    op: &str,
    policy: Policy,
) -> Result<(StreamSender, StreamReceiver)> {
    let deadline = deadline(policy);
    within(policy.timeout, async {
        let c = check_out(roster, op, policy.wait, deadline, None).await?;
        c.sock.stream_request(op).await
    })
    .await
}

/// Sends notification `name` to a responder of `roster`. A notification that could not be
/// queued because its connection had closed is sent to another responder; once queued, it is
/// delivered at most once.
pub(crate) async fn notify(
    roster: &impl Roster,
    name: &str,
    payload: Bytes,
    policy: Policy,
) -> Result<()> {
    let deadline = deadline(policy);
    within(policy.timeout, async {
        let mut lost = None;
        for _ in 0..policy.max_attempts {
            let c = check_out(roster, name, policy.wait, deadline, lost.take()).await?;
            match c.sock.buffer_notify(name, payload.clone()).await {
                // A closed connection refuses before queueing: nothing was sent.
                Err(e @ Error::Closed(_)) => {
                    c.responder.disconnected(Some(&c.sock));
                    lost = Some(e);
                }
                other => return other,
            }
        }
        Err(lost.unwrap_or_else(|| Error::Unavailable(roster.why_unavailable(name))))
    })
    .await
}

/// When the request must be done by ([`now_ms`]), if it has a deadline.
fn deadline(policy: Policy) -> Option<u64> {
    policy.timeout.map(|t| now_ms() + t.as_millis() as u64)
}

/// Runs `f` within `timeout`, if there is one.
async fn within<T>(
    timeout: Option<Duration>,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, f)
            .await
            .unwrap_or(Err(Error::Timeout("request deadline"))),
        None => f.await,
    }
}

async fn attempts(roster: &impl Roster, op: &str, payload: Bytes, policy: Policy) -> Result<Bytes> {
    let deadline = deadline(policy);
    let mut tries = 0;
    let mut lost = None;
    loop {
        let c = check_out(roster, op, policy.wait, deadline, lost.take()).await?;
        tries += 1;
        match c.sock.buffer_request(op, payload.clone()).await {
            Err(Error::Retry { wait, message }) if tries < policy.max_attempts => {
                // Honoured for this responder only; the request moves on at once.
                tracing::debug!(op, to = %c.responder.label, ?wait, "RetryResult: moving the request");
                c.responder.back_off(wait);
                let _ = message;
            }
            Err(e @ Error::Closed(_)) => {
                // Out of the choice now, not only once its link hears of it: a repeat must not
                // find the same dead connection.
                c.responder.disconnected(Some(&c.sock));
                if !policy.repeat || tries >= policy.max_attempts {
                    return Err(e);
                }
                tracing::debug!(op, to = %c.responder.label, "connection lost: repeating the request");
                lost = Some(e);
            }
            other => return other,
        }
    }
}

/// A responder for `op`: chosen now if one is usable; else, when every responder that is up
/// asked us to wait, after the first wait ends (or fails with [`Error::Retry`] if `wait` is
/// false or the wait ends after the `deadline`); else, when none is up, after one comes up (or
/// fails at once if `wait` is false, with `lost` if a connection was just lost, else with
/// [`Error::Unavailable`]).
async fn check_out(
    roster: &impl Roster,
    op: &str,
    wait: bool,
    deadline: Option<u64>,
    lost: Option<Error>,
) -> Result<Checkout> {
    let mut changes: Option<watch::Receiver<u64>> = None;
    loop {
        let choice = roster.choose(op);
        let too_late =
            matches!(choice, Choice::WaitUntil(until) if deadline.is_some_and(|d| until > d));
        let until = match choice {
            Choice::Use(c) => return Ok(c),
            Choice::WaitUntil(_) | Choice::Nobody if !wait || too_late => {
                return Err(match (choice, lost) {
                    (Choice::WaitUntil(until), _) => Error::Retry {
                        wait: Duration::from_millis(until.saturating_sub(now_ms())),
                        message: "every responder asked to wait".into(),
                    },
                    (_, Some(e)) => e,
                    _ => Error::Unavailable(roster.why_unavailable(op)),
                });
            }
            Choice::WaitUntil(until) => Some(until),
            Choice::Nobody => None,
        };
        if roster.is_closed() {
            return Err(Error::Unavailable(roster.why_unavailable(op)));
        }
        let Some(rx) = changes.as_mut() else {
            // Watch first, then look again: a change between the two is not missed.
            changes = Some(roster.watch());
            continue;
        };
        let sleep = until.map(|u| Duration::from_millis(u.saturating_sub(now_ms())));
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return Err(Error::Unavailable(roster.why_unavailable(op)));
                }
            }
            _ = async { tokio::time::sleep(sleep.unwrap_or_default()).await }, if sleep.is_some() => {}
        }
    }
}
