//! Many peers under faults, with real server processes: one of three responders killed with
//! SIGKILL under load, and a server restarted under a keep-alive client. Every request ends in
//! a result or an error; requests safe to repeat complete elsewhere; the client comes back by
//! itself and runs its hook again.

mod hostile_support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gotalk::pool::{KeepAlive, Pool, PoolOptions, RequestOptions};
use gotalk::{Config, Error};
use hostile_support::*;

child_server_test!();

/// No heartbeats (the child servers send none either): a dead peer must be noticed by its
/// connection, not by a timer.
fn client_config() -> Config {
    Config::new().heartbeat_interval(None)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[derive(Debug, Default)]
struct Tally {
    repeat_ok: usize,
    repeat_failed: Vec<Error>,
    once_ok: usize,
    once_failed: Vec<Error>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_responders_under_load_loses_nothing_silently() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 30;
    let mut children: Vec<ChildServer> = (0..3)
        .map(|_| ChildServer::start(&ServerSpec::default()))
        .collect();
    let addrs: Vec<String> = children.iter().map(|c| c.addr.clone()).collect();
    let pool = Pool::open(
        &addrs,
        client_config(),
        PoolOptions::new()
            .reconnect(Duration::from_millis(50), Duration::from_millis(500))
            .timeout(Some(HANG / 2)),
    )
    .unwrap();
    until("three responders up", || {
        pool.stats().iter().filter(|s| s.up).count() == 3
    })
    .await;

    let answered = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (pool, answered) = (pool.clone(), answered.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for i in 0..PER_TASK {
                    // Every other request is marked safe to repeat.
                    let repeat = (t + i) % 2 == 0;
                    let opts = RequestOptions::new().safe_to_repeat(repeat);
                    let res = pool.buffer_request_with("sleep", "50", opts).await;
                    match (repeat, res) {
                        (true, Ok(b)) => {
                            assert_eq!(&b[..], b"slept");
                            tally.repeat_ok += 1
                        }
                        (true, Err(e)) => tally.repeat_failed.push(e),
                        (false, Ok(b)) => {
                            assert_eq!(&b[..], b"slept");
                            tally.once_ok += 1
                        }
                        (false, Err(e)) => tally.once_failed.push(e),
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                tally
            })
        })
        .collect();

    // A third of the way in, with requests in flight on it, the second responder dies.
    until("a third of the requests answered", || {
        answered.load(Ordering::Relaxed) >= TASKS * PER_TASK / 3
    })
    .await;
    until("requests in flight on the victim", || {
        pool.stats()[1].in_flight >= 2
    })
    .await;
    children[1].kill9();
    until("the victim is seen down", || !pool.stats()[1].up).await;
    let after_kill = pool.stats();

    let mut total = Tally::default();
    for t in tasks {
        let t = within("load task", t).await.unwrap();
        total.repeat_ok += t.repeat_ok;
        total.once_ok += t.once_ok;
        total.repeat_failed.extend(t.repeat_failed);
        total.once_failed.extend(t.once_failed);
    }
    let sent = TASKS * PER_TASK;
    let ok = total.repeat_ok + total.once_ok;
    let failed = total.repeat_failed.len() + total.once_failed.len();
    eprintln!(
        "sent {sent}: {ok} answered, {failed} failed ({} not safe to repeat)",
        total.once_failed.len()
    );
    for e in &total.repeat_failed {
        eprintln!("safe to repeat, failed: {e}");
    }
    assert_eq!(
        sent,
        ok + failed,
        "every request ends in a result or an error"
    );
    assert!(
        total.repeat_failed.is_empty(),
        "requests safe to repeat must complete on the other responders: {:?}",
        total.repeat_failed
    );
    for e in &total.once_failed {
        assert!(
            matches!(e, Error::Closed(_)),
            "a request lost with its connection fails with Error::Closed, not {e:?}"
        );
    }
    // Only requests that were on the victim when it died can have failed: at most one per task.
    assert!(total.once_failed.len() <= TASKS);
    // The requests in flight there all ended somehow: failed, or sent again elsewhere.
    let stats = pool.stats();
    let attempts: u64 = stats.iter().map(|s| s.requests).sum();
    let repeated = attempts as usize - sent;
    assert!(
        total.once_failed.len() + repeated >= 1,
        "the requests in flight on the killed responder must have failed or moved"
    );
    // Once it was seen down, the survivors took everything.
    assert!(!stats[1].up);
    assert_eq!(stats[1].requests, after_kill[1].requests);
    assert!(stats.iter().all(|s| s.in_flight == 0));
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_client_resumes_after_a_server_restart_and_runs_its_hook_again() {
    let mut server = ChildServer::start(&ServerSpec::default());
    let addr = server.addr.clone();
    let hooks = Arc::new(AtomicU32::new(0));
    let counter = hooks.clone();
    let conn = KeepAlive::open(
        &addr,
        client_config(),
        PoolOptions::new()
            .reconnect(Duration::from_millis(20), Duration::from_millis(200))
            .timeout(Some(HANG / 2))
            .on_connect(move |sock| {
                counter.fetch_add(1, Ordering::Relaxed);
                // The hook may talk on the new connection before anyone else does.
                async move { sock.buffer_request("echo", "hello").await.map(drop) }
            }),
    )
    .unwrap();
    assert_eq!(
        &conn.buffer_request("echo", "one").await.unwrap()[..],
        b"one"
    );
    assert_eq!(hooks.load(Ordering::Relaxed), 1);

    // Two requests in flight when the server dies: one not safe to repeat, one safe.
    let once = {
        let c = conn.clone();
        tokio::spawn(async move {
            let opts = RequestOptions::new().safe_to_repeat(false);
            c.buffer_request_with("hold", "", opts).await
        })
    };
    let again = {
        let c = conn.clone();
        tokio::spawn(async move {
            let opts = RequestOptions::new().safe_to_repeat(true);
            c.buffer_request_with("hold", "", opts).await
        })
    };
    until("both requests in flight", || conn.stats().in_flight == 2).await;
    server.kill9();

    match within("request lost with the connection", once)
        .await
        .unwrap()
    {
        Err(Error::Closed(reason)) => eprintln!("not repeated: {reason}"),
        other => panic!("expected Error::Closed, got {other:?}"),
    }
    until("the connection is seen down", || !conn.is_up()).await;
    until("a redial has failed", || conn.last_error().is_some()).await;
    // While it is down, a request that will not wait fails at once, saying why.
    let e = conn
        .buffer_request_with(
            "echo",
            "x",
            RequestOptions::new().wait_for_connection(false),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains(&addr), "{e}");
    // One that waits is sent once the server is back.
    let waiting = {
        let c = conn.clone();
        tokio::spawn(async move { c.buffer_request("echo", "back").await })
    };

    let server = ChildServer::start(&ServerSpec {
        bind: Some(addr.clone()),
        ..Default::default()
    });
    assert_eq!(server.addr, addr);
    let back = within("request issued while down", waiting).await.unwrap();
    assert_eq!(&back.unwrap()[..], b"back");
    // The request safe to repeat was sent again on the new connection, where it holds until
    // released.
    conn.buffer_request("release", "").await.unwrap();
    let held = within("repeated request", again).await.unwrap().unwrap();
    assert_eq!(&held[..], b"held");
    assert_eq!(
        hooks.load(Ordering::Relaxed),
        2,
        "the hook runs on every connection"
    );
    assert_eq!(conn.connects(), 2);
    conn.close();
}
