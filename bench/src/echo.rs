//! The gotalk side of the matrix: a server with a buffer handler `echo`, and a client that
//! keeps `inflight` echo requests outstanding on each connection through the public API
//! ([`gotalk::Sock::buffer_request`]), one task per request slot.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gotalk::{Config, Handlers, Sock};

use crate::load::{payload, Control, LoadOptions, LoadResult, Tally};

/// The server's configuration: defaults (limits, heartbeats) plus the `echo` operation.
pub fn server_config() -> Config {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_sock, _op, p| async move { Ok(p) });
    Config::new().handlers(h)
}

/// Runs the gotalk load against `addr` (any address [`gotalk::connect`] takes) and returns
/// what it measured; `proto` names the result.
pub async fn load(proto: &str, addr: &str, opts: &LoadOptions) -> gotalk::Result<LoadResult> {
    let ctl = Arc::new(Control::default());
    let body = payload(opts.size);
    let mut socks = Vec::new();
    for _ in 0..opts.conns {
        socks.push(gotalk::connect(addr).await?);
    }
    let mut tasks = Vec::new();
    for sock in &socks {
        for _ in 0..opts.inflight {
            tasks.push(tokio::spawn(request_loop(
                sock.clone(),
                body.clone(),
                ctl.clone(),
            )));
        }
    }
    let (window, cpu) = ctl.run(opts).await;
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(&t.await.expect("request loop task")?);
    }
    for s in &socks {
        s.close();
    }
    Ok(LoadResult {
        proto: proto.into(),
        opts: opts.clone(),
        window,
        tally,
        cpu,
    })
}

async fn request_loop(sock: Sock, body: Bytes, ctl: Arc<Control>) -> gotalk::Result<Tally> {
    let mut tally = Tally::default();
    while !ctl.stopped() {
        let t = Instant::now();
        let out = sock.buffer_request("echo", body.clone()).await?;
        if ctl.recording() {
            tally.hist.record(t.elapsed());
        }
        if out.len() != body.len() {
            tally.bad += 1;
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn gotalk_echo_round_trips() {
        let server = gotalk::Server::bind("127.0.0.1:0", server_config())
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let opts = LoadOptions {
            conns: 2,
            inflight: 4,
            size: 3000,
            duration: Duration::from_millis(100),
            warmup: Duration::from_millis(10),
            server_pid: None,
        };
        let r = load("gotalk", &addr, &opts).await.unwrap();
        assert!(r.tally.hist.count() > 0);
        assert_eq!(r.tally.bad, 0);
    }
}
