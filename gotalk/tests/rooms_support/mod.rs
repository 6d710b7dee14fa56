//! Shared by the rooms tests: a server whose connections join a hub, clients that record
//! the notifications they get, a peer that never reads, and hang guards.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gotalk::rooms::Hub;
use gotalk::{Config, HandlerError, Handlers, Limits, Notification, Server, Sock};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Only a guard against hanging forever, never a performance assertion.
pub const HANG: Duration = Duration::from_secs(20);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what} did not finish within {HANG:?}"))
}

/// Polls `cond` every 5 ms until it holds (or the test hangs).
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A server whose connections are added to `hub` as they open; `join`/`leave` requests put
/// the calling connection in and out of a room.
pub async fn server(hub: &Hub, limits: Limits) -> Server {
    let mut h = Handlers::new();
    let hb = hub.clone();
    h.handle_with_sock("join", move |sock: Sock, room: String| {
        let hub = hb.clone();
        async move { hub.join(&sock, &room).map_err(HandlerError::msg) }
    });
    let hb = hub.clone();
    h.handle_with_sock("leave", move |sock: Sock, room: String| {
        let hub = hb.clone();
        async move { Ok::<_, HandlerError>(hub.leave(&sock, &room)) }
    });
    let hb = hub.clone();
    let config = Config::new()
        .handlers(h)
        .limits(limits)
        .on_open(move |s| hb.add(s).expect("open connection"));
    Server::bind("127.0.0.1:0", config).await.unwrap()
}

/// A client that records every `news` notification it gets (a JSON string; of a long one,
/// the first 16 characters).
pub struct Client {
    pub sock: Sock,
    pub got: Arc<Mutex<Vec<String>>>,
    pub arrived: Arc<Notify>,
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        let got = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let mut h = Handlers::new();
        let (g, a) = (got.clone(), arrived.clone());
        h.handle_buffer_notification("news", move |_, _, p| {
            let text = String::from_utf8_lossy(&p[..p.len().min(17)]);
            g.lock().unwrap().push(text.trim_matches('"').to_owned());
            a.notify_one();
        });
        let sock =
            gotalk::connect_with(&server.local_addr().to_string(), &Config::new().handlers(h))
                .await
                .unwrap();
        Client { sock, got, arrived }
    }

    pub async fn join(&self, room: &str) {
        self.sock.request::<_, ()>("join", room).await.unwrap();
    }

    pub fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// A member whose peer never reads: raw TCP that sends its protocol version and nothing else.
pub async fn never_reads(server: &Server) -> TcpStream {
    let addr = server.local_addr().to_string();
    let mut s = TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    s.write_all(b"01").await.unwrap();
    s
}

/// Sends `total` broadcasts of `size` bytes to everyone, never more than a few ahead of what
/// the reading clients have received. Returns the sum of the `Sent`s.
pub async fn broadcast_paced(
    hub: &Hub,
    readers: &[&Client],
    total: usize,
    size: usize,
) -> (usize, usize) {
    let (mut delivered, mut full) = (0, 0);
    for i in 0..total {
        let n = Notification::json("news", &format!("{i:06}{}", "x".repeat(size))).unwrap();
        let sent = hub.all().send(&n);
        delivered += sent.delivered;
        full += sent.full;
        let behind = i.saturating_sub(4);
        within("the readers keep up", async {
            for c in readers {
                while c.count() < behind {
                    c.arrived.notified().await;
                }
            }
        })
        .await;
    }
    (delivered, full)
}

// ---- a real redis-server --------------------------------------------------------------------

/// A `redis-server` child process on a loopback port, without persistence; killed when
/// dropped. `$REDIS_SERVER` names another binary.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub async fn start() -> RedisServer {
        RedisServer::start_on(free_port()).await
    }

    /// Starts one on `port` (say, again after [`RedisServer::kill`]).
    pub async fn start_on(port: u16) -> RedisServer {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin}: {e}. Install Debian's redis-server \
                     (apt-get install redis-server; scripts/test does it)"
                )
            });
        let mut server = RedisServer {
            port,
            child: Some(child),
        };
        within("redis-server answering PING", server.ping()).await;
        server
    }

    async fn ping(&mut self) {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(c) = &mut self.child {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("redis-server exited at start: {status}");
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut buf = [0; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && s.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on (free when asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
