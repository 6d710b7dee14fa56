//! The long-form run of issue 11, kept out of the suite (`#[ignore]`, minutes long): the attacks
//! of `hostile_defaults.rs` all at once, round after round, against one server with the default
//! limits (a child process), while a well-behaved client keeps being served. The server's
//! resident memory is sampled every 250 ms; its peak must stay under the formula of SECURITY.md
//! for the attacking connections alive at once, and rounds must not add up (nothing kept from
//! one round to the next).
//!
//! ```text
//! GT_LONG_SECS=180 cargo test --release -p gotalk --test hostile_long -- --ignored --nocapture long_form
//! ```

mod hostile_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gotalk::frame::Message;
use gotalk::Limits;
use hostile_support::*;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

child_server_test!();

/// How long each round's attackers hold their connections before they go and new ones come.
const ROUND: Duration = Duration::from_secs(10);
/// The result size the no-read attacker asks for.
const RESULT: usize = 100_000;
/// Connections that each send half of the largest payload allowed, per round.
const HALF_CONNS: u64 = 20;

/// Writes `bytes` until the server stops taking them for `stall` or `until` passes.
async fn write_until_stalled(
    w: &mut (impl AsyncWriteExt + Unpin),
    bytes: &[u8],
    stall: Duration,
    until: Instant,
) -> usize {
    let mut written = 0;
    for piece in bytes.chunks(16 << 10) {
        if Instant::now() > until {
            break;
        }
        match tokio::time::timeout(stall, w.write_all(piece)).await {
            Ok(Ok(())) => written += piece.len(),
            _ => break,
        }
    }
    written
}

/// Requests for results that are never read, paced, until the server stops reading.
async fn no_read(addr: String, until: Instant) -> u64 {
    let mut p = RawPeer::connect(&addr).await;
    let mut sent = 0u64;
    let mut n = 0;
    while Instant::now() < until {
        let mut bytes = vec![];
        for _ in 0..50 {
            bytes.extend(req(rid(n), "big", RESULT.to_string().as_bytes()));
            n += 1;
        }
        match tokio::time::timeout(Duration::from_secs(1), p.send(&bytes)).await {
            Ok(Ok(())) => sent += 50,
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep_until(until).await;
    sent
}

/// Requests to a handler that never answers, far over the request limit, reading (and
/// dropping) the RetryResults.
async fn flood(addr: String, until: Instant) -> u64 {
    let (mut rd, mut wr) = RawPeer::connect(&addr).await.split();
    let reader = tokio::spawn(async move { while rd.next().await.is_some() {} });
    let mut sent = 0u64;
    let mut n = 0;
    while Instant::now() < until && sent < 200_000 {
        let mut bytes = vec![];
        for _ in 0..1000 {
            bytes.extend(req(rid(n), "hold", b""));
            n += 1;
        }
        match tokio::time::timeout(Duration::from_secs(1), wr.write_all(&bytes)).await {
            Ok(Ok(())) => sent += 1000,
            _ => break,
        }
    }
    tokio::time::sleep_until(until).await;
    reader.abort();
    sent
}

/// `HALF_CONNS` connections, each sending half of the largest payload allowed and stopping.
async fn half_payloads(addr: String, until: Instant) -> u64 {
    let max = Limits::default().max_payload as usize;
    let mut header = req(rid(1), "echo", b"");
    let n = header.len();
    header[n - 8..].copy_from_slice(format!("{max:08x}").as_bytes());
    let half = vec![b'x'; max / 2];
    let mut conns = vec![];
    for _ in 0..HALF_CONNS {
        let mut p = RawPeer::connect(&addr).await;
        if p.send(&header).await.is_ok() && p.send(&half).await.is_ok() {
            conns.push(p);
        }
    }
    tokio::time::sleep_until(until).await;
    conns.len() as u64
}

/// 64 stream requests that never end, to a handler that never reads, with 256 KiB parts.
async fn streams(addr: String, until: Instant) -> u64 {
    let mut p = RawPeer::connect(&addr).await;
    let mut bytes = vec![];
    for i in 0..64 {
        bytes.extend(sreq(rid(i), "stall", b""));
    }
    let _ = p.send(&bytes).await;
    let part = Bytes::from(vec![b'p'; 256 << 10]);
    let mut flood = vec![];
    for i in 0..64 {
        flood.extend(bytes_of(&Message::StreamRequestPart {
            id: rid(i),
            payload: part.clone(),
        }));
    }
    let mut written = 0u64;
    while Instant::now() < until {
        let w = write_until_stalled(&mut p.stream, &flood, Duration::from_secs(1), until).await;
        written += w as u64;
        if w < flood.len() {
            break;
        }
    }
    tokio::time::sleep_until(until).await;
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long-form run (minutes): cargo test --release -p gotalk --test hostile_long -- --ignored --nocapture long_form"]
async fn long_form_every_attack_at_once() {
    let secs: u64 = std::env::var("GT_LONG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    // The defaults, heartbeats included (the other hostile tests turn them off).
    let server = ChildServer::start(&ServerSpec {
        heartbeat_ms: Some(0),
        ..Default::default()
    });
    let addr = server.addr.clone();
    check_well_behaved(&addr).await;
    let base = stats(&addr).await;

    // Peak resident memory, sampled from /proc every 250 ms.
    let pid = server.pid();
    let peak = Arc::new(AtomicU64::new(base.rss_kb));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let l = Limits::default();
    let per_half = l.max_payload as u64 + (64 << 10) + (8 << 10);
    let bound_kib = (connection_bound(&l, RESULT)
        + connection_bound(&l, 64)
        + connection_bound(&l, 64 << 10)
        + HALF_CONNS * per_half
        + PROCESS_SLACK)
        >> 10;

    let end = Instant::now() + Duration::from_secs(secs);
    let (mut rounds, mut checks) = (0u32, 0u32);
    let (mut no_read_sent, mut flood_sent, mut half_sent, mut stream_bytes) = (0, 0, 0, 0);
    let mut peak_per_round = vec![];
    while Instant::now() < end {
        let until = Instant::now() + ROUND;
        let attacks = tokio::spawn(futures_join(addr.clone(), until));
        // The well-behaved client, served all along.
        while Instant::now() < until {
            check_well_behaved(&addr).await;
            checks += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (a, b, c, d) = within("the round's attackers", attacks).await.unwrap();
        no_read_sent += a;
        flood_sent += b;
        half_sent += c;
        stream_bytes += d;
        rounds += 1;
        let p = peak.swap(0, Ordering::Relaxed);
        peak_per_round.push(p.saturating_sub(base.rss_kb));
        eprintln!(
            "round {rounds}: peak +{} KiB (bound {bound_kib} KiB)",
            p.saturating_sub(base.rss_kb)
        );
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    // The attackers are gone. A connection whose reader waits for room in the stream budget
    // (its handler holds unread parts) learns that its peer left when a heartbeat write fails:
    // wait for that (at most two heartbeat intervals), and say how long it took.
    let gone = Instant::now();
    let after = loop {
        let s = stats(&addr).await;
        if s.connections <= 1 || gone.elapsed() > 3 * gotalk::Config::DEFAULT_HEARTBEAT_INTERVAL {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let drained = gone.elapsed();
    check_well_behaved(&addr).await;
    let worst = peak_per_round.iter().copied().max().unwrap_or(0);
    let first = peak_per_round.first().copied().unwrap_or(0);
    let last = peak_per_round.last().copied().unwrap_or(0);
    eprintln!(
        "{secs} s, {rounds} rounds of every attack at once: {no_read_sent} requests not read, \
         {flood_sent} over the limit, {half_sent} half payloads, {} MiB of stream parts offered; \
         {checks} well-behaved checks served",
        stream_bytes >> 20
    );
    eprintln!(
        "server RSS: base {} KiB, peak +{worst} KiB (first round +{first}, last +{last}), \
         after +{} KiB; bound {bound_kib} KiB; connections after {} ({drained:?} after the \
         attackers left), tasks {} -> {}",
        base.rss_kb,
        after.rss_kb.saturating_sub(base.rss_kb),
        after.connections,
        base.tasks,
        after.tasks
    );
    assert!(rounds >= 1);
    assert!(
        worst <= bound_kib,
        "peak growth {worst} KiB over the bound {bound_kib} KiB"
    );
    // Rounds do not add up: the last round's peak is within the first round's plus slack.
    assert!(
        last <= first + (PROCESS_SLACK >> 10),
        "memory grew from round to round: first +{first} KiB, last +{last} KiB"
    );
    assert_eq!(
        after.connections, 1,
        "connections still open after the attackers left"
    );
    assert_eq!(
        after.in_progress, 0,
        "requests still in progress after the attackers left"
    );
}

/// The four attackers of one round, together.
/// `GT_LONG_ONLY=no_read,flood,half,streams` runs only those (to look at one alone).
async fn futures_join(addr: String, until: Instant) -> (u64, u64, u64, u64) {
    let only = std::env::var("GT_LONG_ONLY").unwrap_or_default();
    let on = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let skip = || async { 0 };
    let (a, b, c, d) = (on("no_read"), on("flood"), on("half"), on("streams"));
    tokio::join!(
        async {
            if a {
                no_read(addr.clone(), until).await
            } else {
                skip().await
            }
        },
        async {
            if b {
                flood(addr.clone(), until).await
            } else {
                skip().await
            }
        },
        async {
            if c {
                half_payloads(addr.clone(), until).await
            } else {
                skip().await
            }
        },
        async {
            if d {
                streams(addr.clone(), until).await
            } else {
                skip().await
            }
        },
    )
}
