//! Rooms and broadcast on one server (`gotalk::rooms::Hub`), over real TCP connections: who
//! gets a broadcast, membership ending with the connection, and members that do not read.

mod rooms_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gotalk::rooms::{Hub, Overflow};
use gotalk::{Config, Error, HandlerError, Handlers, Limits, Notification, Server, Sock};
use rooms_support::{broadcast_paced, never_reads, server, until, within, Client};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_reaches_its_members_all_reaches_everyone_and_except_skips_the_sender() {
    let hub = Hub::new();
    let srv = server(&hub, Limits::default()).await;
    let (a, b, c) = (
        Client::connect(&srv).await,
        Client::connect(&srv).await,
        Client::connect(&srv).await,
    );
    a.join("lobby").await;
    b.join("lobby").await;
    c.join("kitchen").await;
    until("three connections", || hub.member_count(None) == 3).await;
    assert_eq!(hub.member_count(Some("lobby")), 2);
    assert_eq!(hub.member_count(Some("kitchen")), 1);
    assert_eq!(hub.member_count(Some("attic")), 0);

    let sent = hub.to("lobby").notify("news", "lobby 1").unwrap();
    assert_eq!(
        (sent.delivered, sent.full, sent.closed, sent.published),
        (2, 0, 0, false)
    );
    let sent = hub.all().notify("news", "all 1").unwrap();
    assert_eq!(sent.delivered, 3);
    // Nobody in the attic: nothing to do, and no error.
    assert_eq!(hub.to("attic").notify("news", "x").unwrap().delivered, 0);

    // "All but the sender": the sender is a connection's server side.
    let kitchen = hub.members(Some("kitchen"));
    assert_eq!(kitchen.len(), 1);
    let lobby = hub.members(Some("lobby"));
    let n = Notification::json("news", "lobby 2").unwrap();
    let sent = hub.to("lobby").except(&lobby[0]).send(&n);
    assert_eq!(sent.delivered, 1);
    let sent = hub.all().except(&kitchen[0]).send(&n);
    assert_eq!(sent.delivered, 2);

    until("every notification", || {
        a.count() + b.count() + c.count() == 2 + 3 + 1 + 2
    })
    .await;
    let (ga, gb, gc) = (a.got(), b.got(), c.got());
    // c is in the kitchen: it got "all 1" only, and not the copy that skipped it.
    assert_eq!(gc, ["all 1"]);
    // a and b got both lobby broadcasts in order; one of them was skipped for "lobby 2" once.
    for g in [&ga, &gb] {
        assert_eq!(&g[..2], ["lobby 1", "all 1"]);
    }
    let lobby2 = ga.iter().chain(&gb).filter(|s| *s == "lobby 2").count();
    assert_eq!(
        lobby2, 3,
        "once to one of them, once to both: {ga:?} {gb:?}"
    );
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.rooms), (3, 2));
    assert_eq!(stats.delivered, 2 + 3 + 1 + 2);
    assert_eq!((stats.skipped, stats.closed, stats.published), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_ends_when_a_connection_closes_and_leave_keeps_the_connection() {
    let hub = Hub::new();
    let srv = server(&hub, Limits::default()).await;
    let a = Client::connect(&srv).await;
    let b = Client::connect(&srv).await;
    a.join("r1").await;
    a.join("r2").await;
    a.join("r2").await; // joining twice is one membership
    a.join("mine").await;
    b.join("r1").await;
    until("two connections", || hub.member_count(None) == 2).await;
    assert_eq!(hub.stats().rooms, 3);
    assert_eq!(hub.member_count(Some("r2")), 1);

    // Leaving a room keeps the connection in the hub; an empty room is gone.
    assert!(a.sock.request::<_, bool>("leave", "r2").await.unwrap());
    assert!(!a.sock.request::<_, bool>("leave", "r2").await.unwrap());
    assert_eq!(hub.member_count(Some("r2")), 0);
    assert_eq!(hub.stats().rooms, 2);
    assert_eq!(hub.member_count(None), 2);
    let a_here = hub.members(Some("mine")).pop().unwrap();
    let mut rooms = hub.rooms_of(&a_here);
    rooms.sort();
    assert_eq!(rooms, ["mine", "r1"]);
    hub.leave_all(&a_here);
    assert_eq!(hub.stats().rooms, 1);
    assert_eq!(hub.member_count(Some("r1")), 1);
    assert!(hub.rooms_of(&a_here).is_empty());
    assert_eq!(hub.member_count(None), 2);

    // The client closes: the server's side leaves everything by itself.
    b.sock.close();
    until("b gone from the hub", || hub.member_count(None) == 1).await;
    assert_eq!(hub.stats().rooms, 0);
    // The server closes a connection: the same.
    a_here.close();
    until("a gone from the hub", || hub.member_count(None) == 0).await;
    // A closed connection cannot join.
    let err = hub.join(&a_here, "r1").unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(hub.member_count(Some("r1")), 0);
    let err = hub.join(&a_here, &"x".repeat(4096)).unwrap_err();
    assert!(matches!(err, Error::InvalidName(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_is_skipped_and_counted_and_holds_no_more_than_its_write_buffer()
{
    const TOTAL: usize = 600;
    const SIZE: usize = 64 << 10;
    /// Room for 16 of these broadcasts (and one more: the one that reaches the limit).
    const WRITE_QUEUE: usize = 16 + 1;
    let full_seen = Arc::new(Mutex::new(Vec::new()));
    let f = full_seen.clone();
    let hub = Hub::builder()
        .on_full(move |s| f.lock().unwrap().push(s.clone()))
        .build()
        .unwrap();
    let srv = server(&hub, Limits::default().write_buffer(16 * SIZE)).await;
    let a = Client::connect(&srv).await;
    let b = Client::connect(&srv).await;
    let _slow = never_reads(&srv).await;
    until("three connections", || hub.member_count(None) == 3).await;

    let (delivered, full) = within(
        "the broadcasts (a member that does not read must not hold them up)",
        broadcast_paced(&hub, &[&a, &b], TOTAL, SIZE),
    )
    .await;
    until("the readers got everything", || {
        a.count() == TOTAL && b.count() == TOTAL
    })
    .await;
    // The readers got every broadcast, in order.
    for c in [&a, &b] {
        let got = c.got();
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, s)| s.starts_with(&format!("{i:06}"))));
    }
    // The slow member took what its write buffer and the kernel's socket buffers hold (at most
    // 16 MiB on Linux, 256 of these), then was skipped: most of the 600 × 64 KiB were not held.
    let taken = TOTAL - full;
    assert!(
        taken <= WRITE_QUEUE + 256,
        "the slow member was given {taken} notifications"
    );
    assert!(full >= TOTAL - WRITE_QUEUE - 256);
    assert_eq!(delivered, 2 * TOTAL + taken);
    let stats = hub.stats();
    assert_eq!(stats.skipped, full as u64);
    assert_eq!(stats.delivered, delivered as u64);
    assert_eq!((stats.closed, stats.connections), (0, 3));
    // on_full saw the slow member, and only it, each time.
    let full_seen = full_seen.lock().unwrap();
    assert_eq!(full_seen.len(), full);
    assert!(full_seen.iter().all(|s| s.same_as(&full_seen[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_overflow_close_a_member_that_never_reads_is_closed_and_the_others_carry_on() {
    const TOTAL: usize = 600;
    const SIZE: usize = 64 << 10;
    let hub = Hub::builder().overflow(Overflow::Close).build().unwrap();
    let srv = server(&hub, Limits::default().write_buffer(8 * SIZE)).await;
    let a = Client::connect(&srv).await;
    let b = Client::connect(&srv).await;
    let _slow = never_reads(&srv).await;
    until("three connections", || hub.member_count(None) == 3).await;

    let (_, full) = within(
        "the broadcasts",
        broadcast_paced(&hub, &[&a, &b], TOTAL, SIZE),
    )
    .await;
    until("the readers got everything", || {
        a.count() == TOTAL && b.count() == TOTAL
    })
    .await;
    // Full once: closed then, and not a member any more.
    assert_eq!(full, 1);
    assert_eq!(hub.stats().closed, 1);
    assert_eq!(hub.stats().skipped, 0);
    until("the slow member gone", || hub.member_count(None) == 2).await;
    assert!(!a.sock.is_closed() && !b.sock.is_closed());
}

/// A connection's close callback that uses the hub, run while a broadcast is writing to that
/// connection (a write that fails closes it right there): no deadlock, and the hub ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_may_use_the_hub_while_it_broadcasts_and_churn_leaves_it_consistent() {
    let hub = Hub::new();
    let hb = hub.clone();
    let closes = Arc::new(Mutex::new(0usize));
    let cl = closes.clone();
    let mut h = Handlers::new();
    let hj = hub.clone();
    h.handle_with_sock("join", move |sock: Sock, room: String| {
        let hub = hj.clone();
        async move { hub.join(&sock, &room).map_err(HandlerError::msg) }
    });
    let config = Config::new()
        .handlers(h)
        .on_open({
            let hub = hub.clone();
            move |s| hub.add(s).unwrap()
        })
        .on_close(move |s, _| {
            hb.leave_all(s);
            let _ = hb.member_count(None);
            let _ = hb.all().local().notify("news", "someone left");
            *cl.lock().unwrap() += 1;
        });
    let srv = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = srv.local_addr().to_string();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let broadcaster = {
        let (hub, stop) = (hub.clone(), stop.clone());
        tokio::spawn(async move {
            let n = Notification::json("news", &"x".repeat(2000)).unwrap();
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 200_000 {
                hub.to("r").send(&n);
                hub.all().send(&n);
                rounds += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    // 200 connections that join, some leave by closing, some by reset (SO_LINGER 0).
    let mut clients = Vec::new();
    for i in 0..200 {
        if i % 2 == 0 {
            let c = gotalk::connect(&addr).await.unwrap();
            c.request::<_, ()>("join", "r").await.unwrap();
            if i % 4 == 0 {
                c.close();
            } else {
                clients.push(c);
            }
        } else {
            let mut s = TcpStream::connect(addr.trim_start_matches("tcp://"))
                .await
                .unwrap();
            s.write_all(b"01").await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            s.set_zero_linger().unwrap();
            drop(s);
        }
    }
    for c in &clients {
        c.close();
    }
    until("every connection closed on the server", || {
        *closes.lock().unwrap() == 200
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    within("the broadcaster", broadcaster).await.unwrap();
    until("an empty hub", || hub.member_count(None) == 0).await;
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.rooms), (0, 0));
}
