//! Rooms across processes through a real `redis-server` (started by each test on a free
//! loopback port, without persistence, and killed after): two servers, each with its own hub
//! and Redis adapter, share broadcasts; Redis going away and coming back.

mod rooms_support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gotalk::rooms::{Hub, RedisAdapter};
use gotalk::{Limits, Server};
use rooms_support::{free_port, server, until, within, Client, RedisServer};

/// An adapter for the Redis at `url` that retries quickly (for tests).
fn quick_adapter(url: &str) -> RedisAdapter {
    RedisAdapter::new(url)
        .unwrap()
        .retry(Duration::from_millis(20), Duration::from_millis(200))
        .timeouts(Duration::from_millis(500), Duration::from_millis(200))
}

/// A hub with a [`quick_adapter`].
fn hub(url: &str) -> Hub {
    Hub::builder().adapter(quick_adapter(url)).build().unwrap()
}

fn connected(hub: &Hub) -> bool {
    hub.stats().adapter.expect("an adapter").connected
}

/// One "process": a server whose connections join `hub`.
struct Node {
    hub: Hub,
    server: Server,
}

impl Node {
    async fn start(url: &str) -> Node {
        let hub = hub(url);
        let server = server(&hub, Limits::default()).await;
        Node { hub, server }
    }

    async fn client(&self, room: &str) -> Client {
        let c = Client::connect(&self.server).await;
        c.join(room).await;
        c
    }
}

/// Everything logged by the library in this test binary, as text.
fn log() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_broadcasts_once_each_and_in_order_per_sender() {
    let redis = RedisServer::start().await;
    let n1 = Node::start(&redis.url()).await;
    // Node 2 also records what other processes broadcast (as a chat keeps its history).
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let hub2 = Hub::builder()
        .adapter(quick_adapter(&redis.url()))
        .on_remote(move |room, n| {
            h.lock()
                .unwrap()
                .push((room.map(str::to_owned), n.name().to_owned()))
        })
        .build()
        .unwrap();
    let n2 = Node {
        server: server(&hub2, Limits::default()).await,
        hub: hub2,
    };
    assert_ne!(n1.hub.node_id(), n2.hub.node_id());
    until("both adapters connected", || {
        connected(&n1.hub) && connected(&n2.hub)
    })
    .await;
    let a = n1.client("r").await;
    let b = n2.client("r").await;
    let c = n2.client("other").await;

    // A room broadcast on node 1 reaches its member there (locally) and on node 2 (via Redis).
    let sent = n1.hub.to("r").notify("news", "one").unwrap();
    assert_eq!((sent.delivered, sent.published), (1, true));
    until("b got one", || b.count() >= 1).await;
    // Node 2 broadcasts to everyone; once it reaches a, node 1's own "one" would have come
    // back before it (Redis keeps one subscriber's messages in order): none did.
    let sent = n2.hub.all().notify("news", "two").unwrap();
    assert_eq!(sent.delivered, 2);
    until("everyone got two", || {
        a.count() >= 2 && b.count() >= 2 && c.count() >= 1
    })
    .await;
    assert_eq!(a.got(), ["one", "two"]);
    assert_eq!(b.got(), ["one", "two"]);
    assert_eq!(c.got(), ["two"]);

    // "All but the sender" skips the sender on its node; the other node delivers to all.
    let a_here = n1.hub.members(Some("r")).pop().unwrap();
    let sent = n1
        .hub
        .to("r")
        .except(&a_here)
        .notify("news", "three")
        .unwrap();
    assert_eq!((sent.delivered, sent.published), (0, true));
    // .local() stays on this node.
    let sent = n1.hub.all().local().notify("news", "four").unwrap();
    assert_eq!((sent.delivered, sent.published), (1, false));

    // 500 broadcasts in a burst from node 1: node 2's member gets them all, in order.
    for i in 0..500 {
        n1.hub
            .to("r")
            .notify("news", &format!("burst {i:03}"))
            .unwrap();
    }
    until("the burst", || b.count() >= 3 + 500).await;
    let got = b.got();
    assert_eq!(got[2], "three");
    for (i, s) in got[3..].iter().enumerate() {
        assert_eq!(s, &format!("burst {i:03}"));
    }
    until("a's burst", || a.count() == 3 + 500).await;
    assert_eq!(a.got()[2], "four");

    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 502);
    assert_eq!(heard[0], (Some("r".to_owned()), "news".to_owned()));
    let (s1, s2) = (n1.hub.stats(), n2.hub.stats());
    assert_eq!((s1.published, s1.unpublished), (502, 0));
    assert_eq!((s2.received, s2.missed, s2.ignored), (502, 0, 0));
    assert_eq!((s1.received, s1.missed), (1, 0));
    let ad = s1.adapter.unwrap();
    assert_eq!((ad.published, ad.dropped, ad.failures), (502, 0, 0));
    // Node 1 hears its own 502 back (and drops them) and node 2's one.
    assert_eq!(ad.received, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_dies_local_broadcast_goes_on_and_cross_process_resumes_after_a_restart() {
    capture_logs();
    let mut redis = RedisServer::start().await;
    let n1 = Node::start(&redis.url()).await;
    let n2 = Node::start(&redis.url()).await;
    until("both connected", || {
        connected(&n1.hub) && connected(&n2.hub)
    })
    .await;
    let a1 = n1.client("r").await;
    let a2 = n1.client("r").await;
    let b = n2.client("r").await;
    n1.hub.to("r").notify("news", "before").unwrap();
    until("b got before", || b.count() == 1).await;

    redis.kill();
    until("node 1 notices", || !connected(&n1.hub)).await;
    until("node 2 notices", || !connected(&n2.hub)).await;
    // Members on the same node still get every broadcast; nothing waits, nothing panics.
    for i in 0..20 {
        let sent = n1
            .hub
            .to("r")
            .notify("news", &format!("local {i}"))
            .unwrap();
        assert_eq!((sent.delivered, sent.published), (2, false));
    }
    until("a1 and a2 got the local ones", || {
        a1.count() == 21 && a2.count() == 21
    })
    .await;
    let s1 = n1.hub.stats();
    assert_eq!(s1.unpublished, 20);
    let ad = s1.adapter.unwrap();
    assert!(ad.failures >= 1, "{ad:?}");
    assert_eq!(ad.dropped, 20);
    // The failure is logged, with where Redis was.
    let port = format!("127.0.0.1:{}", redis.port);
    until("the warning", || {
        log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("Redis unreachable") && l.contains(&port))
    })
    .await;
    // A few retries while it is down (the back-off is 20-200 ms here).
    until("retries", || n1.hub.stats().adapter.unwrap().failures >= 3).await;

    let _redis = RedisServer::start_on(redis.port).await;
    until("both connected again", || {
        connected(&n1.hub) && connected(&n2.hub)
    })
    .await;
    assert!(n1.hub.stats().adapter.unwrap().reconnects >= 1);
    n1.hub.to("r").notify("news", "after").unwrap();
    until("b got after", || b.count() >= 2).await;
    // At most once: what was sent while Redis was away is not delivered late.
    assert_eq!(b.got(), ["before", "after"]);
    // Node 2 saw the gap in node 1's numbers.
    let s2 = n2.hub.stats();
    assert_eq!((s2.received, s2.missed), (2, 20));
    assert!(log()
        .lines()
        .any(|l| l.contains("connected to Redis again") && l.contains(&port)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_not_up_yet_is_retried_and_used_once_it_is() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let n1 = Node::start(&url).await;
    let a1 = n1.client("r").await;
    let a2 = n1.client("r").await;
    let sent = n1.hub.to("r").notify("news", "alone").unwrap();
    assert_eq!((sent.delivered, sent.published), (2, false));
    until("a few failed attempts", || {
        n1.hub.stats().adapter.unwrap().failures >= 2
    })
    .await;
    assert!(!connected(&n1.hub));

    let _redis = RedisServer::start_on(port).await;
    let n2 = Node::start(&url).await;
    let b = n2.client("r").await;
    until("both connected", || {
        connected(&n1.hub) && connected(&n2.hub)
    })
    .await;
    n2.hub.to("r").notify("news", "hello").unwrap();
    until("a1 and a2 got hello", || a1.count() == 2 && a2.count() == 2).await;
    assert_eq!(a1.got(), ["alone", "hello"]);
    assert_eq!(b.got(), ["hello"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_messages_on_the_channel_are_ignored_and_a_dropped_hub_leaves_redis() {
    let redis = RedisServer::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let clients = |list: String| list.lines().count();
    let before: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw)
        .await
        .unwrap();

    let n1 = Node::start(&redis.url()).await;
    let a = n1.client("r").await;
    until("connected", || connected(&n1.hub)).await;
    for junk in [&b""[..], b"hello", &[1; 40], &[0xff; 3]] {
        let _: () = redis::cmd("PUBLISH")
            .arg("gotalk:rooms")
            .arg(junk)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    // Another hub (no server: just its adapter) broadcasts.
    let n2 = hub(&redis.url());
    until("n2 connected", || connected(&n2)).await;
    n2.to("r").notify("news", "real").unwrap();
    until("a got the real one", || a.count() == 1).await;
    assert_eq!(a.got(), ["real"]);
    assert_eq!(n1.hub.stats().ignored, 4);

    // Two connections per hub while it lives, none once it is dropped.
    let list = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            redis::cmd("CLIENT")
                .arg("LIST")
                .query_async::<String>(&mut raw)
                .await
                .unwrap()
        }
    };
    assert_eq!(clients(list(&mut raw).await), clients(before.clone()) + 4);
    drop(n2);
    within("the dropped hub's connections closing", async {
        while clients(list(&mut raw).await) != clients(before.clone()) + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
