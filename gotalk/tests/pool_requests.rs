//! Requests through pools and keep-alive connections, over real loopback sockets: responders
//! that report a high load or answer slowly get fewer requests, a RetryResult moves a request
//! and only its responder waits, deadlines fire, dropped requests give their slots back, a
//! handler learns that its requestor's connection closed, requests wait for a responder or
//! fail at once, host names resolve to members. Counts are taken on the server side; the only
//! time assertions are lower bounds and hang guards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use gotalk::pool::{Balance, KeepAlive, Pool, PoolOptions, RequestOptions};
use gotalk::{Config, Error, HandlerError, Handlers, Limits, Server};

const HANG: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what} did not finish within {HANG:?}"))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A responder whose `work` takes `delay` and is counted, and whose heartbeats (every
/// `heartbeat`, if any) report `load`.
async fn responder(
    delay: Duration,
    load: u16,
    heartbeat: Option<Duration>,
) -> (Server, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let mut h = Handlers::new();
    h.handle_buffer("work", move |_s, _op, p| {
        c.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(delay).await;
            Ok(p)
        }
    });
    let config = Config::new()
        .handlers(h)
        .heartbeat_interval(heartbeat)
        .on_open(move |sock| sock.set_heartbeat_load(Some(load)));
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    (server, count)
}

fn addr(s: &Server) -> String {
    s.local_addr().to_string()
}

/// `tasks` tasks each sending `each` `work` requests through `pool`, one at a time.
async fn load(pool: &Pool, tasks: usize, each: usize) {
    let running: Vec<_> = (0..tasks)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    pool.buffer_request("work", "x").await.unwrap();
                }
            })
        })
        .collect();
    for t in running {
        within("load", t).await.unwrap();
    }
}

fn counts(c: &[Arc<AtomicUsize>]) -> Vec<usize> {
    c.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_reporting_high_load_receives_fewer_requests() {
    let beat = Some(Duration::from_millis(20));
    let (a, ca) = responder(Duration::from_millis(2), 0, beat).await;
    let (b, cb) = responder(Duration::from_millis(2), 0, beat).await;
    let (c, cc) = responder(Duration::from_millis(2), 0xc000, beat).await;
    let pool = Pool::open(
        [addr(&a), addr(&b), addr(&c)],
        Config::new(),
        PoolOptions::new(),
    )
    .unwrap();
    until("the loaded responder's heartbeat", || {
        let s = pool.stats();
        s.iter().filter(|s| s.up).count() == 3 && s[2].load == 0xc000
    })
    .await;
    load(&pool, 12, 50).await;
    let n = counts(&[ca, cb, cc]);
    eprintln!("requests per responder (loads 0, 0, 0xc000): {n:?}");
    assert_eq!(n.iter().sum::<usize>(), 600);
    assert!(
        n[2] * 2 < n[0].min(n[1]),
        "the responder at 75 % load should get well under half of an idle one's share: {n:?}"
    );
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_responder_receives_fewer_requests_than_round_robin_gives_it() {
    let fast = Duration::from_millis(2);
    let (a, ca) = responder(fast, 0, None).await;
    let (b, cb) = responder(fast, 0, None).await;
    let (c, cc) = responder(Duration::from_millis(40), 0, None).await;
    let addrs = [addr(&a), addr(&b), addr(&c)];
    let mut seen = Vec::new();
    for balance in [Balance::RoundRobin, Balance::LeastLoaded] {
        let before = counts(&[ca.clone(), cb.clone(), cc.clone()]);
        let pool = Pool::open(&addrs, Config::new(), PoolOptions::new().balance(balance)).unwrap();
        until("three up", || pool.stats().iter().all(|s| s.up)).await;
        load(&pool, 12, 30).await;
        let after = counts(&[ca.clone(), cb.clone(), cc.clone()]);
        let n: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        eprintln!("{balance:?}: requests per responder (2, 2, 40 ms): {n:?}");
        assert_eq!(n.iter().sum::<usize>(), 360);
        seen.push(n[2]);
        pool.close();
    }
    let (round_robin, least_loaded) = (seen[0], seen[1]);
    assert!(
        round_robin >= 360 / 3 - 12,
        "round robin gives each its turn"
    );
    assert!(
        least_loaded * 2 < round_robin,
        "the slow responder should get under half of its round-robin share: {least_loaded} vs {round_robin}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_result_moves_the_request_and_only_that_responder_waits() {
    let busy_count = Arc::new(AtomicUsize::new(0));
    let bc = busy_count.clone();
    let mut h = Handlers::new();
    h.handle_buffer("work", move |_s, _op, _p| {
        bc.fetch_add(1, Ordering::Relaxed);
        async { Err(HandlerError::retry(Duration::from_secs(30), "busy")) }
    });
    let busy = Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap();
    let (ok, ok_count) = responder(Duration::ZERO, 0, None).await;

    // Round robin so that the first request goes to the busy one for sure.
    let pool = Pool::open(
        [addr(&busy), addr(&ok)],
        Config::new(),
        PoolOptions::new().balance(Balance::RoundRobin),
    )
    .unwrap();
    until("both up", || pool.stats().iter().all(|s| s.up)).await;
    for i in 0..20 {
        let out = pool.buffer_request("work", format!("{i}")).await.unwrap();
        assert_eq!(out, Bytes::from(format!("{i}")));
    }
    assert_eq!(
        busy_count.load(Ordering::Relaxed),
        1,
        "asked once, then left alone"
    );
    assert_eq!(ok_count.load(Ordering::Relaxed), 20);
    let waiting = pool.stats()[0].waiting.expect("the busy responder's wait");
    assert!(waiting > Duration::from_secs(20), "{waiting:?}");
    pool.close();

    // When every responder asked for a wait that ends after the deadline, the request fails
    // at once with the wait, rather than sleeping into its timeout.
    let only_busy = Pool::open(
        [addr(&busy)],
        Config::new(),
        PoolOptions::new().timeout(Some(Duration::from_secs(5))),
    )
    .unwrap();
    until("up", || only_busy.stats()[0].up).await;
    let first = within("asked to wait", only_busy.buffer_request("work", ""))
        .await
        .unwrap_err();
    assert!(first.retry_after().is_some(), "{first:?}");
    for opts in [
        RequestOptions::new().wait_for_connection(false),
        RequestOptions::new().timeout(Some(Duration::from_millis(100))),
    ] {
        let e = only_busy
            .buffer_request_with("work", "", opts)
            .await
            .unwrap_err();
        assert!(
            e.retry_after().is_some_and(|w| w > Duration::from_secs(20)),
            "{e:?}"
        );
    }
    assert_eq!(busy_count.load(Ordering::Relaxed), 2);
    only_busy.close();
}

/// A refused request was not run: without a deadline it keeps moving (and waiting when every
/// responder asked to) for `connect_timeout` from the first refusal, whatever `max_attempts`
/// says, and only then fails with the wait asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_use_up_the_attempts() {
    const WAIT: Duration = Duration::from_millis(20);
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let mut h = Handlers::new();
    h.handle_buffer("work", move |_s, _op, p| {
        let n = t.fetch_add(1, Ordering::Relaxed);
        async move {
            if n < 6 || &p[..] == b"never" {
                Err(HandlerError::retry(WAIT, "busy"))
            } else {
                Ok(p)
            }
        }
    });
    let server = Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap();
    let options = PoolOptions::new()
        .max_attempts(2)
        .connect_timeout(Duration::from_millis(400));
    let pool = Pool::open([addr(&server)], Config::new(), options).unwrap();
    until("up", || pool.stats()[0].up).await;
    let out = within("refused six times", pool.buffer_request("work", "done"))
        .await
        .unwrap();
    assert_eq!(&out[..], b"done");
    assert_eq!(tries.load(Ordering::Relaxed), 7);

    let t0 = Instant::now();
    let e = within("refused for good", pool.buffer_request("work", "never"))
        .await
        .unwrap_err();
    assert!(e.retry_after().is_some(), "{e:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_connection_waits_out_a_retry_result() {
    const WAIT: Duration = Duration::from_millis(100);
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let mut h = Handlers::new();
    h.handle_buffer("work", move |_s, _op, p| {
        let first = t.fetch_add(1, Ordering::Relaxed) == 0;
        async move {
            if first {
                Err(HandlerError::retry(WAIT, "not yet"))
            } else {
                Ok(p)
            }
        }
    });
    let server = Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap();
    let conn = KeepAlive::open(&addr(&server), Config::new(), PoolOptions::new()).unwrap();
    conn.connected(HANG).await.unwrap();
    let t0 = Instant::now();
    let out = conn.buffer_request("work", "done").await.unwrap();
    assert_eq!(&out[..], b"done");
    assert!(t0.elapsed() >= WAIT, "sent again before the wait was over");
    assert_eq!(tries.load(Ordering::Relaxed), 2);
    conn.close();
}

/// A server with `hold` (answers once `release` is called), `echo`, and `long` (runs until
/// its requestor's connection closes, then reports it on the channel).
async fn holding_server() -> (Server, tokio::sync::mpsc::UnboundedReceiver<&'static str>) {
    let gate = Arc::new(tokio::sync::watch::channel(false).0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut h = Handlers::new();
    let g = gate.clone();
    h.handle_buffer("hold", move |_s, _op, _p| {
        let mut open = g.subscribe();
        async move {
            let _ = open.wait_for(|o| *o).await;
            Ok(Bytes::from_static(b"held"))
        }
    });
    h.handle_buffer("release", move |_s, _op, _p| {
        gate.send_replace(true);
        async { Ok(Bytes::new()) }
    });
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle_with_sock("long", move |sock, (): ()| {
        let tx = tx.clone();
        async move {
            tokio::select! {
                _ = sock.closing() => {
                    let _ = tx.send("requestor gone");
                    Err::<(), _>(HandlerError::msg("nobody waits"))
                }
                _ = tokio::time::sleep(HANG) => Ok(()),
            }
        }
    });
    let server = Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap();
    (server, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_fire_and_dropped_requests_give_their_slots_back() {
    let (server, _rx) = holding_server().await;
    let conn = KeepAlive::open(
        &addr(&server),
        Config::new(),
        PoolOptions::new().timeout(Some(Duration::from_millis(100))),
    )
    .unwrap();
    let sock = conn.connected(HANG).await.unwrap();

    let t0 = Instant::now();
    let e = within("deadline", conn.buffer_request("hold", ""))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(conn.stats().in_flight, 0);
    assert_eq!(sock.requests_pending(), 0);

    // Ten requests without a deadline, dropped by their caller while in flight.
    let no_deadline = RequestOptions::new().timeout(None);
    let mut running: FuturesUnordered<_> = (0..10)
        .map(|_| conn.buffer_request_with("hold", "", no_deadline))
        .collect();
    tokio::select! {
        r = running.next() => panic!("a held request returned: {r:?}"),
        _ = until("ten in flight", || conn.stats().in_flight == 10) => {}
    }
    assert_eq!(sock.requests_pending(), 10);
    drop(running);
    assert_eq!(conn.stats().in_flight, 0);
    assert_eq!(sock.requests_pending(), 0);

    // Protocol v1 cannot cancel: the server still runs all eleven.
    let server_side = server.connections();
    assert_eq!(server_side.len(), 1);
    until("all eleven reach the server", || {
        server_side[0].requests_in_progress() == 11
    })
    .await;
    // Their results arrive late and are dropped (and counted); the connection carries on.
    conn.buffer_request("release", "").await.unwrap();
    until("the late results came", || sock.late_results() == 11).await;
    assert_eq!(&conn.buffer_request("echo", "on").await.unwrap()[..], b"on");
    assert_eq!(sock.requests_pending(), 0);
    conn.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_its_requestor_go_away() {
    let (server, mut rx) = holding_server().await;
    let conn = KeepAlive::open(&addr(&server), Config::new(), PoolOptions::new()).unwrap();
    let short = RequestOptions::new().timeout(Some(Duration::from_millis(50)));
    let e = conn
        .request_with::<_, ()>("long", &(), short)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    // The handler is still at work: nobody told it.
    assert!(rx.try_recv().is_err());
    conn.close();
    assert_eq!(
        within("handler notices", rx.recv()).await,
        Some("requestor gone")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_responder_down_requests_fail_at_once_or_wait_for_one() {
    // Two addresses where nothing listens (yet).
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (x, y) = (free(), free());
    let pool = Pool::open(
        [format!("tcp://{x}"), format!("tcp://{y}")],
        Config::new(),
        PoolOptions::new().reconnect(Duration::from_millis(20), Duration::from_millis(100)),
    )
    .unwrap();
    let now = RequestOptions::new().wait_for_connection(false);
    let e = loop {
        let e = pool.buffer_request_with("work", "", now).await.unwrap_err();
        // Wait for both failures to be on record, so the message can name them.
        if !e.to_string().contains("connecting") {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&x.to_string()) && text.contains(&y.to_string()),
        "{text}"
    );

    let short = RequestOptions::new().timeout(Some(Duration::from_millis(100)));
    let e = pool
        .buffer_request_with("work", "", short)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");

    // A request that waits goes out once a responder comes up.
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.buffer_request("work", "late").await })
    };
    let mut h = Handlers::new();
    h.handle_buffer("work", |_s, _op, p| async move { Ok(p) });
    let server = Server::bind(&y.to_string(), Config::new().handlers(h))
        .await
        .unwrap();
    let out = within("waiting request", waiting).await.unwrap().unwrap();
    assert_eq!(&out[..], b"late");
    pool.close();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_notifications_and_host_names_go_through_the_pool() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut h = Handlers::new();
    h.handle_stream("sum", |_s, _op, mut input, mut output| async move {
        let mut total = 0usize;
        while let Some(part) = input.recv().await? {
            total += part.len();
        }
        output.write(total.to_string()).await?;
        Ok(())
    });
    h.handle_notification("note", move |s: String| {
        let _ = tx.send(s);
    });
    let config = Config::new()
        .handlers(h)
        .limits(Limits::default().stream_requests(4));
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let port = server.local_addr().to_string();
    let port = port.rsplit(':').next().unwrap();

    // A host name: one member per address it resolves to (only 127.0.0.1 answers here).
    let by_name = format!("tcp://localhost:{port}");
    let pool = Pool::open(
        [&by_name],
        Config::new(),
        PoolOptions::new().resolve_every(Some(Duration::from_millis(50))),
    )
    .unwrap();
    until("the name's IPv4 member is up", || {
        pool.stats()
            .iter()
            .any(|s| s.up && s.addr == format!("tcp://127.0.0.1:{port}"))
    })
    .await;

    let (mut parts, mut results) = pool.stream_request("sum").await.unwrap();
    parts.write("abc").await.unwrap();
    parts.write("de").await.unwrap();
    parts.end().await.unwrap();
    assert_eq!(results.collect().await.unwrap(), b"5");

    pool.notify("note", &"hello").await.unwrap();
    assert_eq!(within("notification", rx.recv()).await.unwrap(), "hello");

    // Removing the name empties the pool.
    assert!(pool.remove(&by_name).unwrap());
    until("members gone", || pool.stats().is_empty()).await;
    let now = RequestOptions::new().wait_for_connection(false);
    let e = pool.buffer_request_with("sum", "", now).await.unwrap_err();
    assert!(e.to_string().contains("no addresses"), "{e}");
    pool.close();
}
