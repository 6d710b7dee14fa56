//! Many peers: a connection that reconnects ([`KeepAlive`]), a load-aware pool over several
//! addresses ([`Pool`]), and a coordinator's set of workers that dial in ([`Workers`]).
//!
//! All three are layers over [`Sock`]: the wire stays gotalk protocol version 1 with no new
//! message types, so a plain gotalk peer (the reference Go one, gotalk.js) is a valid
//! responder, worker or client. Requests go through them with the API of a `Sock` —
//! `request`, `buffer_request`, `stream_request`, `notify` — plus per-request
//! [`RequestOptions`].
//!
//! | you want | use |
//! |---|---|
//! | one server, reconnecting when the connection drops | [`KeepAlive`] |
//! | requests spread over several servers by their load | [`Pool`] |
//! | workers that connect to you, jobs sent to the least loaded | [`Workers`] (and a [`KeepAlive`] in each worker) |
//!
//! ## Choosing a responder
//! One rule for all three, in [`choose`](self#layout): among the responders that are up, have
//! not asked us to wait, and still send heartbeats, the power of two choices over our requests
//! in flight weighted by the responder's last heartbeat `load` ([`Balance::LeastLoaded`]).
//! A responder that answers slowly collects requests in flight and is chosen less; one that
//! reports a high load is chosen less in proportion. The load is what [`Sock::peer_load`]
//! says: our own heartbeats report, unless [set] otherwise, the
//! requests in progress against the request limit. A responder should send heartbeats often
//! enough for its load to matter (say every second:
//! [`Config::heartbeat_interval`](crate::Config::heartbeat_interval)).
//!
//! ## What happens to a request
//! 1. **Deadline.** A request can have one ([`PoolOptions::timeout`] for all, or
//!    [`RequestOptions::timeout`]); it covers everything below. When it passes, the request
//!    fails with [`Error::Timeout`](crate::Error::Timeout). Without one (the default, which
//!    spares a timer per request), a request waits for a responder at most
//!    [`PoolOptions::connect_timeout`], and for its result as long as its connection lives,
//!    as on a [`Sock`]. Protocol version 1 has no message to
//!    cancel a request: the responder finishes it anyway, and its result, if it comes later,
//!    is dropped (and counted: [`Sock::late_results`]). The same holds for a request future
//!    dropped by its caller: its slot (in flight on the responder, pending on the
//!    connection) is given back at once. A handler can stop long work when its requestor's
//!    connection closes by selecting on [`Sock::closing`].
//! 2. **No responder up.** The request waits for one, up to its deadline (or
//!    `connect_timeout`), or — with
//!    [`wait_for_connection(false)`](PoolOptions::wait_for_connection) — fails at once with
//!    [`Error::Unavailable`](crate::Error::Unavailable), which names every responder and why
//!    it is down.
//! 3. **RetryResult.** The responder that answered so is left alone for the wait it asked
//!    for; the request moves at once to another responder (for a [`KeepAlive`], the one
//!    responder there is: after the wait). It was not run, so this is done for every request.
//!    When every responder that is up asked to wait, the request waits for the first wait to
//!    end (or, not waiting, fails with [`Error::Retry`](crate::Error::Retry)).
//! 4. **Connection lost while in flight.** The request may or may not have run on the
//!    responder. If its operation is [safe to repeat](PoolOptions::safe_to_repeat) (or
//!    [`RequestOptions::safe_to_repeat`] says so), it is sent again — to another responder,
//!    or to the same one once reconnected; otherwise it fails with
//!    [`Error::Closed`](crate::Error::Closed) and the reason. A request that finds its
//!    connection closed the instant it is sent is treated the same way.
//! 5. **Anything else** — a result, an ErrorResult ([`Error::Remote`](crate::Error::Remote)),
//!    a payload over the limit — is the answer, returned as is.
//!
//! Repeats are bounded by [`PoolOptions::max_attempts`]; moves after RetryResults by the
//! request's deadline (without one, by [`PoolOptions::connect_timeout`] from the first
//! refusal). Nothing is lost silently: every request ends in its result or an error.
//!
//! **Order.** Requests sent one after the other from one task reach their responders in that
//! order, but two of them may go to different responders and run concurrently; a moved or
//! repeated request runs after requests sent later. Use one [`Sock`] (or a [`KeepAlive`]
//! without repeats) where order matters.
//!
//! **Streams and notifications.** A stream request is placed like a request (waiting for a
//! responder up to the deadline), but once started it is not moved or repeated: if its
//! connection drops, its receiver returns `Error::Closed`. It counts as in flight only through
//! the responder's own reported load. A notification goes to one responder, chosen the same
//! way; one refused because its connection had just closed goes to another; once queued, it is
//! delivered at most once.
//!
//! ## Layout
//!
//! | file | what lives there |
//! |---|---|
//! | `choose.rs` | what the chooser knows about a responder, and the choice ([`Balance`]) |
//! | `request.rs` | one request's way through a set of responders: wait, move, repeat, deadline |
//! | `options.rs` | [`PoolOptions`], [`RequestOptions`] |
//! | `keepalive.rs` | [`KeepAlive`] and the dial loop every pool member runs |
//! | `mod.rs` | [`Pool`] |
//! | `workers.rs` | [`Workers`]: the workers that dialed in, by operation offered |
//!
//! [`Sock`]: crate::Sock
//! [`Sock::peer_load`]: crate::Sock::peer_load
//! [`Sock::late_results`]: crate::Sock::late_results
//! [`Sock::closing`]: crate::Sock::closing
//! [set]: crate::Sock::set_heartbeat_load

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::addr::Addr;
use crate::config::Config;
use crate::error::Result;
use crate::stream::{StreamReceiver, StreamSender};

mod caller;
mod choose;
mod keepalive;
mod options;
mod request;
mod workers;

pub use choose::{Balance, ResponderStats};
pub use keepalive::KeepAlive;
pub use options::{PoolOptions, RequestOptions};
pub use workers::{Workers, OFFER_OP};

use choose::{Choice, Responder};
use keepalive::Link;
use request::Roster;

/// Requests spread over several responders by their load, each reached through a connection
/// that reconnects (see the [module docs](self) for the rules).
///
/// ```
/// use std::time::Duration;
/// use gotalk::pool::{Pool, PoolOptions};
/// use gotalk::{Config, Handlers, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> gotalk::Result<()> {
/// let mut h = Handlers::new();
/// h.handle("square", |n: u64| async move { Ok(n * n) });
/// let config = Config::new().handlers(h);
/// let a = Server::bind("127.0.0.1:0", config.clone()).await?;
/// let b = Server::bind("127.0.0.1:0", config).await?;
///
/// let addrs = [a.local_addr().to_string(), b.local_addr().to_string()];
/// let options = PoolOptions::new()
///     .safe_to_repeat(["square"])
///     .timeout(Some(Duration::from_secs(5)));
/// let pool = Pool::open(&addrs, Config::new(), options)?;
/// let n: u64 = pool.request("square", &7).await?;
/// assert_eq!(n, 49);
/// pool.close();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    owner: Arc<PoolOwner>,
}

/// Closes the pool when the last [`Pool`] handle goes.
struct PoolOwner {
    inner: Arc<PoolInner>,
}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        self.inner.close();
    }
}

struct PoolInner {
    config: Config,
    options: PoolOptions,
    changes: Arc<watch::Sender<u64>>,
    /// The addresses asked for (as parsed), in order.
    sources: parking_lot::Mutex<Vec<String>>,
    /// One link per member address, and the chooser's view of the same, in the same order.
    links: parking_lot::Mutex<Vec<Arc<Link>>>,
    /// Swapped whole when members change; read without a lock (nor a shared write) by every
    /// request.
    responders: ArcSwap<Vec<Arc<Responder>>>,
    /// Where the last host name lookups failed, by source.
    lookup_errors: parking_lot::Mutex<Vec<(String, String)>>,
    /// Wakes the resolver when the sources change.
    resolve_now: Notify,
    turn: AtomicUsize,
    closed: AtomicBool,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("responders", &self.stats())
            .field("options", &self.inner().options)
            .finish()
    }
}

impl Pool {
    /// Starts a pool over `addrs` (any addresses [`crate::connect`] takes), each dialed and
    /// kept connected in the background with `config` and `options`. Returns at once; fails
    /// only if an address
    /// does not parse. Must be called within a tokio runtime.
    pub fn open<I, S>(addrs: I, config: Config, options: PoolOptions) -> Result<Pool>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sources = addrs
            .into_iter()
            .map(|a| Ok(a.as_ref().parse::<Addr>()?.to_string()))
            .collect::<Result<Vec<_>>>()?;
        let inner = Arc::new(PoolInner {
            config,
            options,
            changes: Arc::new(watch::channel(0).0),
            sources: parking_lot::Mutex::new(Vec::new()),
            links: parking_lot::Mutex::new(Vec::new()),
            responders: ArcSwap::default(),
            lookup_errors: parking_lot::Mutex::new(Vec::new()),
            resolve_now: Notify::new(),
            turn: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        for s in sources {
            inner.add_source(s);
        }
        if let Some(every) = inner.options.resolve_every {
            tokio::spawn(resolver(Arc::downgrade(&inner), every));
        } else {
            inner.sync_members(inner.sources.lock().clone());
        }
        Ok(Pool {
            owner: Arc::new(PoolOwner { inner }),
        })
    }

    fn inner(&self) -> &Arc<PoolInner> {
        &self.owner.inner
    }

    /// Adds responder address `addr` (no-op if it is there already).
    pub fn add(&self, addr: &str) -> Result<()> {
        let addr = addr.parse::<Addr>()?.to_string();
        self.inner().add_source(addr);
        self.inner().sources_changed();
        Ok(())
    }

    /// Removes responder address `addr`: its connection is closed (requests in flight there
    /// end as if it had dropped). Returns whether it was there.
    pub fn remove(&self, addr: &str) -> Result<bool> {
        let addr = addr.parse::<Addr>()?.to_string();
        let removed = {
            let mut sources = self.inner().sources.lock();
            let before = sources.len();
            sources.retain(|s| *s != addr);
            sources.len() != before
        };
        if removed {
            self.inner().sources_changed();
        }
        Ok(removed)
    }

    /// Every responder as the chooser sees it now, in the order of the addresses.
    pub fn stats(&self) -> Vec<ResponderStats> {
        self.inner()
            .links
            .lock()
            .iter()
            .map(|l| l.stats())
            .collect()
    }

    /// Closes every connection and stops dialing; requests waiting for a responder fail with
    /// [`Error::Unavailable`](crate::Error::Unavailable), those in flight with
    /// [`Error::Closed`](crate::Error::Closed).
    pub fn close(&self) {
        self.inner().close();
    }

    /// Sends request `op` with `input` encoded as JSON to the responder chosen, and decodes
    /// the JSON result.
    pub async fn request<I, O>(&self, op: &str, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        self.request_with(op, input, RequestOptions::new()).await
    }

    /// Like [`Pool::request`], with options for this request.
    pub async fn request_with<I, O>(&self, op: &str, input: &I, opts: RequestOptions) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let out = self
            .buffer_request_with(op, serde_json::to_vec(input)?, opts)
            .await?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Sends request `op` with a raw payload and returns the raw result.
    ///
    /// (An `async fn` in all but name: what it returns is the request, to await. Written so
    /// that a request's future holds no more than it needs.)
    pub fn buffer_request<'a>(
        &'a self,
        op: &'a str,
        payload: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Bytes>> + Send + 'a {
        self.buffer_request_with(op, payload, RequestOptions::new())
    }

    /// Like [`Pool::buffer_request`], with options for this request.
    pub fn buffer_request_with<'a>(
        &'a self,
        op: &'a str,
        payload: impl Into<Bytes>,
        opts: RequestOptions,
    ) -> impl Future<Output = Result<Bytes>> + Send + 'a {
        let inner = &**self.inner();
        let policy = opts.resolve(op, &inner.options);
        request::buffer_request(inner, op, payload.into(), policy)
    }

    /// Starts stream request `op` on the responder chosen (see the [module docs](self) on
    /// streams).
    pub async fn stream_request(&self, op: &str) -> Result<(StreamSender, StreamReceiver)> {
        let inner = &**self.inner();
        let policy = RequestOptions::new().resolve(op, &inner.options);
        request::stream_request(inner, op, policy).await
    }

    /// Sends notification `name` with `value` encoded as JSON to the responder chosen.
    pub async fn notify<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.buffer_notify(name, serde_json::to_vec(value)?).await
    }

    /// Sends notification `name` with a raw payload to the responder chosen.
    pub async fn buffer_notify(&self, name: &str, payload: impl Into<Bytes>) -> Result<()> {
        let inner = &**self.inner();
        let policy = RequestOptions::new().resolve(name, &inner.options);
        request::notify(inner, name, payload.into(), policy).await
    }
}

impl PoolInner {
    fn add_source(&self, addr: String) {
        let mut sources = self.sources.lock();
        if !sources.contains(&addr) {
            sources.push(addr);
        }
    }

    fn sources_changed(&self) {
        if self.options.resolve_every.is_some() {
            self.resolve_now.notify_one();
        } else {
            let sources = self.sources.lock().clone();
            self.sync_members(sources);
        }
    }

    /// Makes the members exactly `want`: links for new addresses start, links for addresses
    /// no longer wanted stop.
    fn sync_members(&self, want: Vec<String>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut links = self.links.lock();
        let keep: HashSet<&str> = want.iter().map(String::as_str).collect();
        links.retain(|l| {
            let wanted = keep.contains(l.addr.as_str());
            if !wanted {
                l.stop();
            }
            wanted
        });
        for addr in &want {
            if !links.iter().any(|l| l.addr == *addr) {
                links.push(Link::start(
                    addr.clone(),
                    &self.config,
                    &self.options,
                    self.changes.clone(),
                ));
            }
        }
        self.responders.store(Arc::new(
            links.iter().map(|l| l.responder.clone()).collect(),
        ));
        drop(links);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for l in self.links.lock().drain(..) {
            l.stop();
        }
        self.responders.store(Arc::default());
        self.resolve_now.notify_one();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Roster for PoolInner {
    fn choose(&self, _op: &str) -> Choice {
        choose::choose(&self.responders.load(), self.options.balance, &self.turn)
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn why_unavailable(&self, _op: &str) -> String {
        if self.is_closed() {
            return "the pool was closed".into();
        }
        let links = self.links.lock();
        let mut why: Vec<String> = links.iter().map(|l| l.describe()).collect();
        why.extend(
            self.lookup_errors
                .lock()
                .iter()
                .map(|(s, e)| format!("{s}: lookup failed ({e})")),
        );
        if why.is_empty() {
            "the pool has no addresses".into()
        } else {
            format!("no responder is up ({})", why.join("; "))
        }
    }
}

/// Looks the pool's host names up every `every` (and whenever its addresses change) and makes
/// its members the addresses they resolve to.
async fn resolver(pool: std::sync::Weak<PoolInner>, every: std::time::Duration) {
    // What each source resolved to last: a failed lookup keeps it (a name server hiccup must
    // not empty the pool).
    let mut last: HashMap<String, Vec<String>> = HashMap::new();
    loop {
        let Some(inner) = pool.upgrade() else { return };
        if inner.is_closed() {
            return;
        }
        let sources = inner.sources.lock().clone();
        // Not holding the pool while looking names up: dropping it must end this task.
        drop(inner);
        let mut want = Vec::new();
        let mut errors = Vec::new();
        for s in &sources {
            match resolve(s).await {
                Ok(found) => {
                    want.extend(found.iter().cloned());
                    last.insert(s.clone(), found);
                }
                Err(e) => {
                    want.extend(last.get(s).into_iter().flatten().cloned());
                    errors.push((s.clone(), e));
                }
            }
        }
        last.retain(|s, _| sources.contains(s));
        let mut seen = HashSet::new();
        want.retain(|a| seen.insert(a.clone()));
        let Some(inner) = pool.upgrade() else { return };
        *inner.lookup_errors.lock() = errors;
        inner.sync_members(want);
        let wake = async { inner.resolve_now.notified().await };
        let _ = tokio::time::timeout(every, wake).await;
    }
}

/// The member addresses `source` stands for: every address a `tcp://` host name resolves to
/// (sorted); any other address as it is.
async fn resolve(source: &str) -> std::result::Result<Vec<String>, String> {
    let Ok(Addr::Tcp(hp)) = source.parse::<Addr>() else {
        return Ok(vec![source.to_owned()]);
    };
    let found = tokio::net::lookup_host(&hp)
        .await
        .map_err(|e| e.to_string())?;
    let mut found: Vec<String> = found.map(|a| format!("tcp://{a}")).collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err("no address".into());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolve_to_one_member_per_address() {
        let found = resolve("tcp://localhost:4000").await.unwrap();
        assert!(
            found.contains(&"tcp://127.0.0.1:4000".to_string()),
            "{found:?}"
        );
        assert_eq!(
            resolve("tcp://127.0.0.1:4001").await.unwrap(),
            ["tcp://127.0.0.1:4001"]
        );
        assert_eq!(
            resolve("unix:///tmp/x.sock").await.unwrap(),
            ["unix:///tmp/x.sock"]
        );
    }
}
