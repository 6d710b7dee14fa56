//! Server memory per idle connection: open many connections, leave them idle, and compare the
//! server's resident set size (`VmRSS` in `/proc/PID/status`) before and after.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The resident set size of process `pid` in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

/// Connections held open by [`open`]; dropping them closes them.
#[derive(Debug)]
pub enum Held {
    /// Raw TCP connections (the floor: the server reads, nothing more happens).
    Tcp(Vec<TcpStream>),
    /// gotalk connections, handshake done.
    Gotalk(Vec<gotalk::Sock>),
}

impl Held {
    /// How many connections are held.
    pub fn len(&self) -> usize {
        match self {
            Held::Tcp(v) => v.len(),
            Held::Gotalk(v) => v.len(),
        }
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens `n` connections to `addr`, at most 128 being set up at a time (the listen backlog is
/// finite). `gotalk` chooses gotalk connections (each waits for the server's handshake) over
/// raw TCP ones.
pub async fn open(addr: &str, n: usize, gotalk: bool) -> std::io::Result<Held> {
    const AT_ONCE: usize = 128;
    let mut set = JoinSet::new();
    let mut tcp = Vec::with_capacity(if gotalk { 0 } else { n });
    let mut socks = Vec::with_capacity(if gotalk { n } else { 0 });
    let mut started = 0;
    while tcp.len() + socks.len() < n {
        while started < n && set.len() < AT_ONCE {
            let addr = addr.to_owned();
            started += 1;
            set.spawn(async move {
                if gotalk {
                    let config = gotalk::Config::new().heartbeat_interval(None);
                    gotalk::connect_with(&addr, &config)
                        .await
                        .map(|s| (None, Some(s)))
                        .map_err(|e| std::io::Error::other(e.to_string()))
                } else {
                    TcpStream::connect(&addr).await.map(|s| (Some(s), None))
                }
            });
        }
        match set.join_next().await {
            Some(res) => match res.expect("connect task")? {
                (Some(s), _) => tcp.push(s),
                (_, Some(s)) => socks.push(s),
                _ => unreachable!(),
            },
            None => break,
        }
    }
    // Let the server finish setting up the last ones.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(if gotalk {
        Held::Gotalk(socks)
    } else {
        Held::Tcp(tcp)
    })
}
