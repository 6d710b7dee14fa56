//! Workers that dial in to a coordinator, over real loopback sockets: jobs go to the least
//! loaded worker offering the operation, workers leave and come back (their hook offers
//! again after the coordinator restarts), a peer speaking plain protocol v1 by hand is a valid
//! worker, bad offers are refused, and a peer whose heartbeats stop is taken out.

mod hostile_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gotalk::frame::Message;
use gotalk::pool::{KeepAlive, PoolOptions, RequestOptions, Workers, OFFER_OP};
use gotalk::{Config, Error, HandlerError, Handlers, ProtocolErrorCode, Server};
use hostile_support::{req, rid, within, RawPeer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A coordinator on `bind`: its worker set and its server.
async fn coordinator(bind: &str, options: PoolOptions) -> (Workers, Server) {
    let workers = Workers::new(options);
    let mut h = Handlers::new();
    workers.install(&mut h);
    let server = Server::bind(bind, Config::new().handlers(h)).await.unwrap();
    (workers, server)
}

/// A worker process's connection: offers `work` (taking `delay`, counted) on every connect.
fn worker(addr: &str, delay: Duration, hooks: Arc<AtomicUsize>) -> (KeepAlive, Arc<AtomicUsize>) {
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
    let options = PoolOptions::new()
        .reconnect(Duration::from_millis(20), Duration::from_millis(200))
        .on_connect(move |sock| {
            hooks.fetch_add(1, Ordering::Relaxed);
            async move { Workers::offer(&sock, &["work"]).await }
        });
    let conn = KeepAlive::open(addr, Config::new().handlers(h), options).unwrap();
    (conn, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_to_the_least_loaded_worker_that_dialed_in() {
    let (workers, server) = coordinator("127.0.0.1:0", PoolOptions::new()).await;
    let addr = server.local_addr().to_string();
    let hooks = Arc::new(AtomicUsize::new(0));
    let fast = Duration::from_millis(2);
    let (w1, c1) = worker(&addr, fast, hooks.clone());
    let (w2, c2) = worker(&addr, fast, hooks.clone());
    let (w3, c3) = worker(&addr, Duration::from_millis(40), hooks.clone());
    workers.wait_for("work", 3, HANG_WAIT).await.unwrap();
    assert_eq!(workers.offering("nothing"), 0);

    let tasks: Vec<_> = (0..12)
        .map(|t| {
            let workers = workers.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let job = format!("{t}/{i}");
                    let out = workers.buffer_request("work", job.clone()).await.unwrap();
                    assert_eq!(out, Bytes::from(job));
                }
            })
        })
        .collect();
    for t in tasks {
        within("jobs", t).await.unwrap();
    }
    let n: Vec<usize> = [c1, c2, c3]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    eprintln!("jobs per worker (2, 2, 40 ms): {n:?}");
    assert_eq!(n.iter().sum::<usize>(), 360);
    assert!(
        n[2] * 2 < 120,
        "the slow worker gets under half an even share: {n:?}"
    );
    assert!(workers.stats().iter().all(|s| s.in_flight == 0));
    for w in [w1, w2, w3] {
        w.close();
    }
}

const HANG_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_leave_and_offer_again_after_the_coordinator_restarts() {
    let (workers, server) = coordinator("127.0.0.1:0", PoolOptions::new()).await;
    let addr = server.local_addr().to_string();
    let hooks = Arc::new(AtomicUsize::new(0));
    let (w, count) = worker(&addr, Duration::ZERO, hooks.clone());
    workers.wait_for("work", 1, HANG_WAIT).await.unwrap();
    assert_eq!(
        &workers.buffer_request("work", "a").await.unwrap()[..],
        b"a"
    );

    // The coordinator goes away and comes back on the same address: the worker redials and
    // its hook offers again, without any code of its own.
    server.shutdown(Duration::from_millis(100)).await;
    until("the worker sees its connection gone", || !w.is_up()).await;
    let (workers, server) = coordinator(&addr, PoolOptions::new()).await;
    workers.wait_for("work", 1, HANG_WAIT).await.unwrap();
    assert_eq!(
        &workers.buffer_request("work", "b").await.unwrap()[..],
        b"b"
    );
    assert_eq!(hooks.load(Ordering::Relaxed), 2);
    assert_eq!(count.load(Ordering::Relaxed), 2);

    // A worker that leaves is out at once; jobs wait for another or fail, as asked.
    w.close();
    until("the worker is gone", || workers.offering("work") == 0).await;
    let now = RequestOptions::new().wait_for_connection(false);
    let e = workers
        .buffer_request_with("work", "c", now)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("no worker offers \"work\""), "{e}");
    let waiting = {
        let workers = workers.clone();
        tokio::spawn(async move { workers.buffer_request("work", "d").await })
    };
    let (w2, count2) = worker(
        &server.local_addr().to_string(),
        Duration::ZERO,
        hooks.clone(),
    );
    let out = within("job waiting for a worker", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&out[..], b"d");
    assert_eq!(count2.load(Ordering::Relaxed), 1);
    w2.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_result_moves_the_job_to_another_worker() {
    let (workers, server) = coordinator("127.0.0.1:0", PoolOptions::new()).await;
    let addr = server.local_addr().to_string();
    let busy = Arc::new(AtomicUsize::new(0));
    let b = busy.clone();
    let mut h = Handlers::new();
    h.handle_buffer("work", move |_s, _op, _p| {
        b.fetch_add(1, Ordering::Relaxed);
        async { Err(HandlerError::retry(Duration::from_secs(30), "full")) }
    });
    let busy_worker = KeepAlive::open(
        &addr,
        Config::new().handlers(h),
        PoolOptions::new().on_connect(|s| async move { Workers::offer(&s, &["work"]).await }),
    )
    .unwrap();
    workers.wait_for("work", 1, HANG_WAIT).await.unwrap();
    // Only the busy worker: the job cannot wait 30 s within its deadline.
    let short = RequestOptions::new().timeout(Some(Duration::from_secs(2)));
    let e = workers
        .buffer_request_with("work", "x", short)
        .await
        .unwrap_err();
    assert!(e.retry_after().is_some(), "{e:?}");
    // A second worker: every job goes there, the busy one is left alone.
    let (ok_worker, ok_count) = worker(&addr, Duration::ZERO, Arc::default());
    workers.wait_for("work", 2, HANG_WAIT).await.unwrap();
    for i in 0..10 {
        let out = workers
            .buffer_request("work", format!("{i}"))
            .await
            .unwrap();
        assert_eq!(out, Bytes::from(format!("{i}")));
    }
    assert_eq!(busy.load(Ordering::Relaxed), 1);
    assert_eq!(ok_count.load(Ordering::Relaxed), 10);
    busy_worker.close();
    ok_worker.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_plain_protocol_v1_is_a_valid_worker() {
    let (workers, server) = coordinator("127.0.0.1:0", PoolOptions::new()).await;
    let mut raw = RawPeer::connect(&server.local_addr().to_string()).await;
    raw.send(&req(rid(1), OFFER_OP, br#"["shout"]"#))
        .await
        .unwrap();
    match raw.next().await {
        Some(Message::SingleResult { payload, .. }) => assert_eq!(&payload[..], b"null"),
        other => panic!("expected the offer's result, got {other:?}"),
    }
    workers.wait_for("shout", 1, HANG_WAIT).await.unwrap();
    let job = {
        let workers = workers.clone();
        tokio::spawn(async move { workers.buffer_request("shout", "hey").await })
    };
    let (id, payload) = match within("the job", raw.next()).await {
        Some(Message::SingleRequest { id, op, payload }) => {
            assert_eq!(&*op, "shout");
            (id, payload)
        }
        other => panic!("expected a request, got {other:?}"),
    };
    let answer = Message::SingleResult {
        id,
        payload: Bytes::from(payload.to_ascii_uppercase()),
    };
    raw.send(&answer.to_bytes()).await.unwrap();
    assert_eq!(&within("job", job).await.unwrap().unwrap()[..], b"HEY");

    // Offering again so soon is refused with a wait (a peer must not make the coordinator
    // redo its tables in a loop); once it is over, offering nothing withdraws.
    raw.send(&req(rid(2), OFFER_OP, b"[]")).await.unwrap();
    let wait = match raw.next().await {
        Some(Message::RetryResult { wait_ms, .. }) => Duration::from_millis(wait_ms.into()),
        other => panic!("expected a RetryResult, got {other:?}"),
    };
    assert_eq!(workers.offering("shout"), 1);
    tokio::time::sleep(wait).await;
    raw.send(&req(rid(3), OFFER_OP, b"[]")).await.unwrap();
    assert!(matches!(
        raw.next().await,
        Some(Message::SingleResult { .. })
    ));
    assert_eq!(workers.offering("shout"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_with_a_clear_error() {
    let (workers, server) = coordinator("127.0.0.1:0", PoolOptions::new()).await;
    let mut raw = RawPeer::connect(&server.local_addr().to_string()).await;
    let too_many =
        serde_json::to_vec(&(0..300).map(|i| format!("op{i}")).collect::<Vec<_>>()).unwrap();
    let names = (0..5).map(|i| format!("{i}{}", "x".repeat(4000)));
    let too_long = serde_json::to_vec(&names.collect::<Vec<_>>()).unwrap();
    let cases: [(&[u8], &str); 5] = [
        (&too_many, "at most 256 operations"),
        (&too_long, "bytes of operation names"),
        (br#"["ok", ""]"#, "not an operation name"),
        (br#"{"ops": 1}"#, "unexpected parameter type"),
        (b"garbage", "unexpected parameter type"),
    ];
    for (i, (offer, why)) in cases.iter().enumerate() {
        raw.send(&req(rid(i as u32), OFFER_OP, offer))
            .await
            .unwrap();
        match raw.next().await {
            Some(Message::ErrorResult { payload, .. }) => {
                let text = String::from_utf8_lossy(&payload);
                assert!(text.contains(why), "{text}");
            }
            other => panic!("expected an error for {why}, got {other:?}"),
        }
    }
    assert!(workers.stats().is_empty());
    // The connection is fine: a good offer goes through.
    raw.send(&req(rid(9), OFFER_OP, br#"["ok"]"#))
        .await
        .unwrap();
    assert!(matches!(
        raw.next().await,
        Some(Message::SingleResult { .. })
    ));
    assert_eq!(workers.offering("ok"), 1);
}

fn heartbeat() -> Bytes {
    Message::Heartbeat {
        load: 1,
        time: 1_700_000_000,
    }
    .to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_heartbeats_stop_is_taken_out() {
    let options = PoolOptions::new().heartbeat_timeout(Some(Duration::from_millis(150)));
    let (workers, server) = coordinator("127.0.0.1:0", options).await;
    let mut raw = RawPeer::connect(&server.local_addr().to_string()).await;
    raw.send(&req(rid(1), OFFER_OP, br#"["x"]"#)).await.unwrap();
    assert!(matches!(
        raw.next().await,
        Some(Message::SingleResult { .. })
    ));
    raw.send(&heartbeat()).await.unwrap();
    until("the heartbeat's load is seen", || {
        workers.stats().first().is_some_and(|s| s.load == 1)
    })
    .await;
    // Then silence: the coordinator closes with ProtocolError 3 and drops the worker.
    match within("closed for silence", raw.next()).await {
        Some(Message::ProtocolError { code }) => assert_eq!(code, ProtocolErrorCode::TIMEOUT),
        other => panic!("expected ProtocolError 3, got {other:?}"),
    }
    until("the worker is gone", || workers.offering("x") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_connection_whose_peer_stops_its_heartbeats_redials() {
    // A hand-made server: handshake, one heartbeat, then silence (while still reading).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                s.write_all(b"01").await.unwrap();
                s.write_all(&heartbeat()).await.unwrap();
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let conn = KeepAlive::open(
        &addr.to_string(),
        Config::new().heartbeat_interval(None),
        PoolOptions::new()
            .reconnect(Duration::from_millis(10), Duration::from_millis(50))
            .heartbeat_timeout(Some(Duration::from_millis(100))),
    )
    .unwrap();
    until("closed for silence and dialed again", || {
        conn.connects() >= 2
    })
    .await;
    assert!(accepted.load(Ordering::Relaxed) >= 2);
    conn.close();
}
