//! Connection slots under attack, with the default [`gotalk::ServerOptions`] (only the total is
//! lowered where filling 10 000 slots would make the test slow): one address cannot take more
//! than its share, a refused connection is closed at once rather than left in the backlog, and
//! when the server is full a connection that only sends heartbeats makes room for a new one.

mod hostile_support;

use std::time::Duration;

use gotalk::server::{DEFAULT_EVICT_IDLE_AFTER, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS};
use gotalk::{Config, Sock};
use hostile_support::*;
use tokio::io::AsyncReadExt;

child_server_test!();

/// Connects from `local` and expects the server to close the connection without a word: no
/// protocol version, just the end of the stream (or a reset). Bounded by [`HANG`] only: a
/// connection left waiting in the backlog would hang here.
async fn expect_refused(local: &str, addr: &str) {
    let mut s = tcp_from(local, addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = within("the refused connection is closed", s.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "a refused connection got {:?}", &buf[..n]);
}

/// A gotalk client connected from `local`.
async fn client_from(local: &str, addr: &str, config: &Config) -> gotalk::Result<Sock> {
    let tcp = tcp_from(local, addr).await?;
    Sock::adopt(tcp, config, None).await
}

fn quiet() -> Config {
    Config::new().heartbeat_interval(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_and_no_more() {
    let share = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
    let server = ChildServer::start(&ServerSpec::default());
    check_well_behaved(&server.addr).await;

    let mut held = Vec::with_capacity(share);
    for _ in 0..share {
        held.push(RawPeer::connect_from("127.0.0.1", &server.addr).await);
    }
    // Over the share: closed at once, again and again.
    for _ in 0..20 {
        expect_refused("127.0.0.1", &server.addr).await;
    }
    // Another address is let in and served.
    let other = within(
        "another address",
        client_from("127.0.0.2", &server.addr, &quiet()),
    )
    .await
    .expect("127.0.0.2 refused");
    let out = within("echo", other.buffer_request("echo", "hi"))
        .await
        .unwrap();
    assert_eq!(&out[..], b"hi");
    // The server counts every held connection and this one (once their handshakes are in).
    within("the server counts them all", async {
        loop {
            let now: Stats = other.request("stats", &()).await.unwrap();
            assert!(
                now.connections <= share + 1,
                "{} connections",
                now.connections
            );
            if now.connections == share + 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    other.close();

    // Letting go of one makes room for one more from the first address.
    drop(held.pop());
    within("a slot comes back", async {
        loop {
            let p = tcp_from("127.0.0.1", &server.addr).await.unwrap();
            let Ok(sock) = Sock::adopt(p, &quiet(), None).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            assert_eq!(&sock.buffer_request("echo", "x").await.unwrap()[..], b"x");
            sock.close();
            break;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_closes_its_idlest_heartbeat_only_connection_for_a_new_one() {
    const MAX: usize = 12;
    let server = ChildServer::start(&ServerSpec {
        max_connections: Some(MAX),
        ..Default::default()
    });
    // The idle one sends heartbeats often, which must not count as activity.
    let beating = Config::new().heartbeat_interval(Some(Duration::from_millis(100)));
    let idle = within("connect", client_from("127.0.0.1", &server.addr, &beating))
        .await
        .unwrap();
    // The others make a request every 200 ms.
    let mut busy = vec![];
    for i in 0..MAX - 1 {
        let sock = within(
            "connect",
            client_from(&format!("127.0.0.{}", 2 + i % 3), &server.addr, &quiet()),
        )
        .await
        .unwrap();
        let s = sock.clone();
        tokio::spawn(async move {
            while s.buffer_request("echo", "tick").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        busy.push(sock);
    }
    // Full, and nobody idle long enough yet: refused at once.
    expect_refused("127.0.0.9", &server.addr).await;

    tokio::time::sleep(DEFAULT_EVICT_IDLE_AFTER + Duration::from_millis(500)).await;
    assert!(!idle.is_closed(), "closed before anyone needed its place");
    let newcomer = within("newcomer", client_from("127.0.0.9", &server.addr, &quiet()))
        .await
        .expect("the newcomer was refused although a connection only sent heartbeats");
    let out = within("echo", newcomer.buffer_request("echo", "new"))
        .await
        .unwrap();
    assert_eq!(&out[..], b"new");
    within("the idle connection is closed", idle.closed()).await;
    for s in &busy {
        assert!(!s.is_closed(), "a busy connection was closed");
    }
    // Full again, every connection busy or too new: the next one is refused.
    expect_refused("127.0.0.10", &server.addr).await;
    for s in busy {
        s.close();
    }
    newcomer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_has_given_its_slot_back_once_closed_returns() {
    let server = bind(&ServerSpec {
        max_connections: Some(1),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr().to_string();
    for _ in 0..50 {
        let client = within("connect", gotalk::connect_with(&addr, &quiet()))
            .await
            .expect("the only slot was not given back");
        assert_eq!(&client.buffer_request("echo", "x").await.unwrap()[..], b"x");
        let conn = server.connections().pop().expect("registered");
        conn.close();
        within("closed", conn.closed()).await;
        assert_eq!(server.connection_count(), 0);
        within("client sees the end", client.closed()).await;
    }
}
