//! A whole connection (a `Sock` with handlers, limits and streams enabled) fed arbitrary bytes
//! as its peer, over an in-memory duplex, on a current-thread runtime with the clock paused (so
//! read timeouts fire at once instead of waiting). The connection must not panic, must not
//! hang, and must close once the input ends.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use gotalk::{Config, Handlers, Limits, Sock};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle("greet", |name: String| async move {
        Ok(format!("Hello {name}"))
    });
    h.handle_buffer("fail", |_s, _op, _p| async move {
        Err::<Bytes, _>(gotalk::HandlerError::msg("nope"))
    });
    h.handle_buffer("call-back", |sock, _op, p| async move {
        // A request back to the peer, which answers with whatever the input says (or not).
        Ok(sock
            .buffer_request("client-op", p)
            .await
            .unwrap_or_default())
    });
    h.handle_stream("stream-echo", |_s, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part).await?;
        }
        output.end().await?;
        Ok(())
    });
    h.handle_buffer_notification("ping", |_s, _name, _p| {});
    h
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut peer, ours) = tokio::io::duplex(4096);
        let config = Config::new()
            .handlers(handlers())
            .heartbeat_interval(Some(Duration::from_secs(1)))
            .limits(
                Limits::default()
                    .max_payload(1024)
                    .buffer_requests(8)
                    .stream_requests(2)
                    .stream_queue(2)
                    .write_queue(4)
                    .read_timeout(Some(Duration::from_secs(5))),
            );
        let input = data.to_vec();
        let run = async move {
            let server = tokio::spawn(async move { Sock::adopt(ours, &config, None).await });
            let (mut rd, mut wr) = tokio::io::split(&mut peer);
            let write = async {
                let _ = wr.write_all(&input).await;
                let _ = wr.shutdown().await;
            };
            let read = async {
                let mut sink = vec![0u8; 4096];
                while let Ok(n) = rd.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            tokio::join!(write, read);
            if let Ok(Ok(sock)) = server.await {
                assert!(sock.is_closed(), "the connection outlived its input");
                sock.closed().await;
            }
        };
        // Virtual time: an hour passes instantly unless something is truly stuck.
        tokio::time::timeout(Duration::from_secs(3600), run)
            .await
            .expect("connection hung");
    });
});
