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
///
/// The way of a request without a deadline that finds a responder and gets its answer at
/// once is kept apart and small (a request's future is moved around as it is started);
/// everything else — a deadline's timer, waiting, moving, repeating — is boxed.
pub(crate) async fn buffer_request(
    roster: &impl Roster,
    op: &str,
    payload: Bytes,
    policy: Policy,
) -> Result<Bytes> {
    if let Some(t) = policy.timeout {
        return Box::pin(tokio::time::timeout(
            t,
            attempts(roster, op, payload, policy, None),
        ))
        .await
        .unwrap_or(Err(Error::Timeout("request deadline")));
    }
    let first = match roster.choose(op) {
        Choice::Use(c) => match c.sock().request_once(op, &payload).await {
            Err(e @ (Error::Retry { .. } | Error::Closed(_))) => Some((c, e)),
            other => return other,
        },
        _ => None,
    };
    Box::pin(attempts(roster, op, payload, policy, first)).await
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
        let c = check_out(roster, op, policy, deadline, None).await?;
        c.sock().stream_request(op).await
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
            let c = check_out(roster, name, policy, deadline, lost.take()).await?;
            match c.sock().buffer_notify(name, payload.clone()).await {
                // A closed connection refuses before queueing: nothing was sent.
                Err(e @ Error::Closed(_)) => {
                    c.lost();
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

/// The rest of [`buffer_request`]: tries until an answer, an error to return, or the end of
/// the attempts; `first` is the outcome of a first attempt made already.
async fn attempts(
    roster: &impl Roster,
    op: &str,
    payload: Bytes,
    policy: Policy,
    mut first: Option<(Checkout, Error)>,
) -> Result<Bytes> {
    let deadline = deadline(policy);
    // Attempts that ended with the connection lost (the only ones that may have run).
    let mut tries = 0;
    let mut lost = None;
    // When the first RetryResult came, for a request without a deadline: refused requests
    // move on for `policy.wait_limit` from then, however many times.
    let mut refused_since: Option<u64> = None;
    loop {
        let (c, res) = match first.take() {
            Some((c, e)) => (c, Err(e)),
            None => {
                let c = match roster.choose(op) {
                    Choice::Use(c) => c,
                    _ => check_out(roster, op, policy, deadline, lost.take()).await?,
                };
                let res = c.sock().request_once(op, &payload).await;
                (c, res)
            }
        };
        match res {
            Err(Error::Retry { wait, message }) => {
                // Honoured for this responder only; the request moves on at once. It was not
                // run, so it may move for as long as its deadline allows (without one, for
                // `wait_limit` from the first refusal), and it does not count as an attempt.
                c.refused(wait);
                if deadline.is_none() {
                    let since = *refused_since.get_or_insert_with(now_ms);
                    if now_ms().saturating_sub(since) >= policy.wait_limit.as_millis() as u64 {
                        return Err(Error::Retry { wait, message });
                    }
                }
                tracing::debug!(op, to = %c.label(), ?wait, "RetryResult: moving the request");
            }
            Err(e @ Error::Closed(_)) => {
                // Out of the choice now, not only once its link hears of it: a repeat must not
                // find the same dead connection.
                c.lost();
                tries += 1;
                if !policy.repeat || tries >= policy.max_attempts {
                    return Err(e);
                }
                tracing::debug!(op, to = %c.label(), "connection lost: repeating the request");
                lost = Some(e);
            }
            other => return other,
        }
    }
}

/// A responder for `op`: chosen now if one is usable; else, when every responder that is up
/// asked us to wait, after the first wait ends; else, when none is up, after one comes up.
/// Not waiting (`wait` false), or past the `deadline` (without one, past `policy.wait_limit`
/// from now), it fails: with [`Error::Retry`] if responders asked to wait, else with `lost`
/// if a connection was just lost, else with [`Error::Unavailable`].
async fn check_out(
    roster: &impl Roster,
    op: &str,
    policy: Policy,
    deadline: Option<u64>,
    mut lost: Option<Error>,
) -> Result<Checkout> {
    let mut changes: Option<watch::Receiver<u64>> = None;
    // Set once there is something to wait for: no clock read on the way of a request that
    // finds a responder at once.
    let mut give_up: Option<u64> = None;
    loop {
        let choice = roster.choose(op);
        if let Choice::Use(c) = choice {
            return Ok(c);
        }
        let give_up = *give_up.get_or_insert_with(|| {
            deadline.unwrap_or_else(|| now_ms() + policy.wait_limit.as_millis() as u64)
        });
        let until = match choice {
            Choice::WaitUntil(until) => Some(until),
            _ => None,
        };
        let over = |lost: Option<Error>| match until {
            Some(until) => Error::Retry {
                wait: Duration::from_millis(until.saturating_sub(now_ms())),
                message: "every responder asked to wait".into(),
            },
            None => lost.unwrap_or_else(|| Error::Unavailable(roster.why_unavailable(op))),
        };
        if !policy.wait || until.is_some_and(|u| u > give_up) || roster.is_closed() {
            return Err(over(lost.take()));
        }
        let Some(rx) = changes.as_mut() else {
            // Watch first, then look again: a change between the two is not missed.
            changes = Some(roster.watch());
            continue;
        };
        let ms_until = |t: u64| Duration::from_millis(t.saturating_sub(now_ms()));
        let wake = until.map_or(give_up, |u| u.min(give_up));
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return Err(over(lost.take()));
                }
            }
            _ = tokio::time::sleep(ms_until(wake)) => {
                if now_ms() >= give_up {
                    // With a deadline, the caller's timer says so (as a timeout) at the same
                    // moment; without one, the wait for a responder ends here.
                    return Err(match deadline {
                        Some(_) => Error::Timeout("request deadline"),
                        None => over(lost.take()),
                    });
                }
            }
        }
    }
}
