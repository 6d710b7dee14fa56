//! Thousands of connections opened and dropped in a loop, in every state a connection can be
//! dropped in (before the handshake, after it, mid-message, mid-request, after garbage, or
//! closed properly): afterwards the server holds no connection, no task and no file descriptor
//! more than before, and its memory does not grow from one round to the next.

mod hostile_support;

use std::time::Duration;

use hostile_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ROUNDS: usize = 3;
const PER_ROUND: usize = 1_500;
const WORKERS: usize = 8;

fn self_fds() -> usize {
    fd_count(std::process::id())
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn one(addr: &str, kind: usize) {
    let hp = addr.trim_start_matches("tcp://");
    match kind {
        // Dropped before the handshake.
        0 => drop(TcpStream::connect(hp).await.unwrap()),
        // Dropped right after it.
        1 => drop(RawPeer::connect(addr).await),
        // Dropped in the middle of a message.
        2 => {
            let mut p = RawPeer::connect(addr).await;
            let _ = p.send(b"r0001004echo000000ffhalf").await;
        }
        // Dropped with a request in progress.
        3 => {
            let mut p = RawPeer::connect(addr).await;
            let _ = p.send(&req(rid(1), "sleep", b"20")).await;
        }
        // Garbage: the server answers with a protocol error and closes.
        4 => {
            let mut s = TcpStream::connect(hp).await.unwrap();
            let _ = s.write_all(b"01zzzz").await;
            let mut sink = vec![];
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink).await;
        }
        // A proper client: a request, then close.
        _ => {
            let sock = gotalk::connect_with(addr, &gotalk::Config::new().heartbeat_interval(None))
                .await
                .unwrap();
            sock.buffer_request("echo", "x").await.unwrap();
            sock.close();
            sock.closed().await;
        }
    }
}

async fn round(addr: &str) {
    let mut workers = vec![];
    for w in 0..WORKERS {
        let addr = addr.to_owned();
        workers.push(tokio::spawn(async move {
            for i in 0..PER_ROUND / WORKERS {
                one(&addr, (w + i) % 6).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_and_dropped_leave_nothing_behind() {
    let server = bind(&ServerSpec {
        read_timeout_ms: Some(2_000),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr().to_string();
    check_well_behaved(&addr).await;
    // Let the well-behaved connection's tasks finish before the baseline is taken.
    settle(&server, usize::MAX, usize::MAX).await;
    let (fds0, tasks0) = (self_fds(), alive_tasks());

    let mut rss = vec![];
    for r in 0..ROUNDS {
        within("churn round", round(&addr)).await;
        check_well_behaved(&addr).await;
        settle(&server, fds0, tasks0).await;
        rss.push(rss_kb(std::process::id()));
        eprintln!(
            "round {r}: {PER_ROUND} connections; after: {} connections, {} fds (baseline {fds0}), \
             {} tasks (baseline {tasks0}), RSS {} KiB",
            server.connection_count(),
            self_fds(),
            alive_tasks(),
            rss[r]
        );
    }
    // The first round warms up allocator pools; later rounds must not keep growing.
    let growth = rss[ROUNDS - 1].saturating_sub(rss[1]);
    assert!(
        growth < 8 * 1024,
        "memory grew by {growth} KiB over {} rounds of {PER_ROUND} connections: {rss:?}",
        ROUNDS - 2
    );
}

/// Waits until the server has no connection left and the process is back to `fds` file
/// descriptors and `tasks` live tasks (or fewer).
async fn settle(server: &gotalk::Server, fds: usize, tasks: usize) {
    let res = tokio::time::timeout(HANG, async {
        loop {
            if server.connection_count() == 0 && self_fds() <= fds && alive_tasks() <= tasks {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if res.is_err() {
        panic!(
            "leak: {} connections, {} fds (baseline {fds}), {} tasks (baseline {tasks})",
            server.connection_count(),
            self_fds(),
            alive_tasks()
        );
    }
}
