//! [`RedisAdapter`]: broadcasts between the hubs of several processes through Redis pub/sub.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Msg, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{watch, Notify};

use super::adapter::{Adapter, AdapterStats, Inbox};
use crate::error::{Error, Result};

/// Carries a [`super::Hub`]'s broadcasts to the hubs of other processes through Redis pub/sub
/// (feature `redis`), and theirs to it.
///
/// Every hub publishes to, and subscribes to, one channel (`gotalk:rooms` unless
/// [`RedisAdapter::channel`] says otherwise), over two connections of its own: one that only
/// publishes, one that only receives. Broadcasts are published in order by one task, a batch
/// per round trip; those received are delivered to local members on the receiving
/// connection's task, as they are read, so a slow process is held back by TCP and Redis (which
/// disconnects a subscriber too far behind: its `client-output-buffer-limit pubsub`) instead
/// of queueing without bound.
///
/// When Redis is unreachable, broadcasts stay on their process (those published meanwhile are
/// dropped and counted, not kept for later), the failure is logged (`tracing`, target
/// `gotalk::rooms::redis`) and counted ([`AdapterStats::failures`]), and the adapter connects
/// again after a back-off that doubles from [`RedisAdapter::retry`]'s least wait to its most,
/// with jitter. Needs Redis 6 or later (RESP3).
///
/// ```no_run
/// use gotalk::rooms::{Hub, RedisAdapter};
///
/// # #[tokio::main] async fn main() -> gotalk::Result<()> {
/// let hub = Hub::builder()
///     .adapter(RedisAdapter::new("redis://127.0.0.1:6379")?.channel("chat"))
///     .build()?;
/// # Ok(()) }
/// ```
pub struct RedisAdapter {
    client: redis::Client,
    shared: Arc<Shared>,
    /// Dropped with the adapter (with its hub): the task stops.
    stop: watch::Sender<()>,
    started: AtomicBool,
}

struct Shared {
    /// Where Redis is, for the logs (without a password).
    addr: String,
    channel: String,
    timeout: Duration,
    retry_min: Duration,
    retry_max: Duration,
    ping_every: Duration,
    queue_limit: usize,
    queue: Mutex<Queue>,
    queued: Notify,
    connected: AtomicBool,
    published: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    failures: AtomicU64,
    reconnects: AtomicU64,
}

/// Broadcasts waiting for the publishing task.
#[derive(Default)]
struct Queue {
    messages: VecDeque<Bytes>,
    bytes: usize,
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("addr", &self.shared.addr)
            .field("channel", &self.shared.channel)
            .field("connected", &self.shared.connected.load(Ordering::Relaxed))
            .finish()
    }
}

impl RedisAdapter {
    /// An adapter for the Redis server at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` is not supported). Nothing is connected before the hub starts it.
    pub fn new(url: &str) -> Result<RedisAdapter> {
        let invalid = |reason: String| Error::InvalidAddress {
            addr: url.to_owned(),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| invalid(e.to_string()))?;
        let info = client.get_connection_info().clone();
        if !matches!(info.addr(), redis::ConnectionAddr::Tcp(..)) {
            return Err(invalid("only redis://host:port is supported".into()));
        }
        let addr = info.addr().to_string();
        // Pushed messages (RESP3) come to a callback on the connection's task: no queue of
        // our own, and none without bound in the client (its RESP2 pub/sub has one).
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(redis))
            .map_err(|e| invalid(e.to_string()))?;
        Ok(RedisAdapter {
            client,
            shared: Arc::new(Shared {
                addr,
                channel: "gotalk:rooms".into(),
                timeout: Duration::from_secs(2),
                retry_min: Duration::from_millis(100),
                retry_max: Duration::from_secs(5),
                ping_every: Duration::from_secs(5),
                queue_limit: 4 << 20,
                queue: Mutex::new(Queue::default()),
                queued: Notify::new(),
                connected: AtomicBool::new(false),
                published: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                received: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
            }),
            stop: watch::channel(()).0,
            started: AtomicBool::new(false),
        })
    }

    /// The pub/sub channel shared by the hubs that broadcast to each other (`gotalk:rooms` by
    /// default). Hubs on other channels of the same Redis do not see each other.
    pub fn channel(mut self, name: &str) -> RedisAdapter {
        self.shared_mut().channel = name.to_owned();
        self
    }

    /// The back-off between connection attempts: from `least`, doubling after each failure
    /// up to `most` (100 ms to 5 s by default), each wait varied by ±25 %.
    pub fn retry(mut self, least: Duration, most: Duration) -> RedisAdapter {
        let s = self.shared_mut();
        s.retry_min = least.max(Duration::from_millis(1));
        s.retry_max = most.max(s.retry_min);
        self
    }

    /// How long connecting, or a reply, may take before the connection counts as failed (2 s
    /// by default); the receiving connection is checked with a PING every `ping_every` (5 s).
    pub fn timeouts(mut self, timeout: Duration, ping_every: Duration) -> RedisAdapter {
        let s = self.shared_mut();
        s.timeout = timeout;
        s.ping_every = ping_every.max(Duration::from_millis(10));
        self
    }

    /// Bytes of broadcasts that may wait to be published (4 MiB by default); past it, a
    /// broadcast is dropped for the other processes (and counted).
    pub fn queue_limit(mut self, bytes: usize) -> RedisAdapter {
        self.shared_mut().queue_limit = bytes;
        self
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("set up before the hub starts the adapter")
    }
}

impl Adapter for RedisAdapter {
    fn start(&self, inbox: Inbox) -> Result<()> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Io(std::io::Error::other(format!("RedisAdapter: {e}"))))?;
        if self.started.swap(true, Ordering::Relaxed) {
            return Err(Error::Io(std::io::Error::other(
                "RedisAdapter: already started by another hub",
            )));
        }
        rt.spawn(run(
            self.shared.clone(),
            self.client.clone(),
            inbox,
            self.stop.subscribe(),
        ));
        Ok(())
    }

    fn publish(&self, message: Bytes) -> bool {
        let s = &self.shared;
        if !s.connected.load(Ordering::Acquire) {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        {
            let mut q = s.queue.lock();
            if q.bytes + message.len() > s.queue_limit {
                drop(q);
                s.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            q.bytes += message.len();
            q.messages.push_back(message);
        }
        s.queued.notify_one();
        true
    }

    fn stats(&self) -> AdapterStats {
        let s = &self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdapterStats {
            connected: s.connected.load(Ordering::Relaxed),
            published: get(&s.published),
            dropped: get(&s.dropped),
            received: get(&s.received),
            failures: get(&s.failures),
            reconnects: get(&s.reconnects),
        }
    }
}

/// Connects, serves until the connection fails, waits, connects again; until the adapter is
/// dropped or its hub is gone.
async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    inbox: Inbox,
    mut stop: watch::Receiver<()>,
) {
    let mut delay = shared.retry_min;
    let mut failed = false;
    loop {
        let outcome = tokio::select! {
            r = session(&shared, &client, &inbox, failed) => r,
            _ = stop.changed() => return,
        };
        let was_connected = shared.connected.swap(false, Ordering::AcqRel);
        let lost = {
            let mut q = shared.queue.lock();
            q.bytes = 0;
            std::mem::take(&mut q.messages).len()
        };
        shared.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        let Err(e) = outcome;
        shared.failures.fetch_add(1, Ordering::Relaxed);
        if was_connected {
            delay = shared.retry_min;
        }
        // Varied so that many processes that lost Redis together do not all come back at once.
        let wait = delay.mul_f64(0.75 + fastrand::f64() / 2.0);
        if was_connected || !failed {
            tracing::warn!(
                addr = %shared.addr, error = %e, retry_in = ?wait, lost_broadcasts = lost,
                "rooms: Redis unreachable; broadcasts stay on this process until it is back"
            );
        } else {
            tracing::debug!(addr = %shared.addr, error = %e, retry_in = ?wait, "rooms: Redis still unreachable");
        }
        failed = true;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(shared.retry_max);
    }
}

/// One connection to Redis, from connecting to failing (the task is dropped with the hub).
async fn session(
    shared: &Arc<Shared>,
    client: &redis::Client,
    inbox: &Inbox,
    after_failure: bool,
) -> std::result::Result<std::convert::Infallible, String> {
    let lost = Arc::new(Notify::new());
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout))
        .set_response_timeout(Some(shared.timeout));
    let receiving = {
        let (shared, inbox, lost) = (shared.clone(), inbox.clone(), lost.clone());
        config.clone().set_push_sender(move |info: PushInfo| {
            receive(&shared, &inbox, &lost, info);
            Ok::<(), std::convert::Infallible>(())
        })
    };
    let connect = |config| async move {
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())
    };
    let mut sub = connect(receiving).await?;
    sub.subscribe(&shared.channel)
        .await
        .map_err(|e| e.to_string())?;
    let mut publ = connect(config).await?;
    // Broadcasts queued in the moment the last connection failed: not published late.
    let stale = std::mem::take(&mut *shared.queue.lock()).messages.len();
    shared.dropped.fetch_add(stale as u64, Ordering::Relaxed);
    shared.connected.store(true, Ordering::Release);
    if after_failure {
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(addr = %shared.addr, "rooms: connected to Redis again");
    } else {
        tracing::debug!(addr = %shared.addr, channel = %shared.channel, "rooms: connected to Redis");
    }
    tokio::select! {
        _ = lost.notified() => Err("connection closed".into()),
        r = publish_queued(shared, &mut publ) => r,
        r = keep_checking(shared, &mut sub) => r,
    }
}

/// A push from the receiving connection: a broadcast for the hub, or the connection's end.
fn receive(shared: &Shared, inbox: &Inbox, lost: &Notify, info: PushInfo) {
    match info.kind {
        PushKind::Disconnection => lost.notify_one(),
        PushKind::Message => {
            if let Some(msg) = Msg::from_push_info(info) {
                shared.received.fetch_add(1, Ordering::Relaxed);
                inbox.deliver(msg.get_payload_bytes());
            }
        }
        _ => {}
    }
}

/// Publishes what is queued, everything queued at once in one pipeline: in order, one round
/// trip per batch.
async fn publish_queued(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> std::result::Result<std::convert::Infallible, String> {
    loop {
        shared.queued.notified().await;
        loop {
            let batch = {
                let mut q = shared.queue.lock();
                q.bytes = 0;
                std::mem::take(&mut q.messages)
            };
            if batch.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for m in &batch {
                pipe.cmd("PUBLISH")
                    .arg(&shared.channel)
                    .arg(&m[..])
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(conn).await {
                shared
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return Err(e.to_string());
            }
            shared
                .published
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }
}

/// PINGs the receiving connection now and then: a connection that died without closing (a
/// network cut) fails the PING's reply timeout.
async fn keep_checking(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> std::result::Result<std::convert::Infallible, String> {
    loop {
        tokio::time::sleep(shared.ping_every).await;
        redis::cmd("PING")
            .query_async::<()>(conn)
            .await
            .map_err(|e| format!("PING: {e}"))?;
    }
}
