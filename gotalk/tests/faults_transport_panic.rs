//! A transport that panics while being written to fails the connection's requests with a
//! reason; nothing waits forever (whichever task was writing when it panicked).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gotalk::{Config, Error, Handlers, Sock};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

struct PanicOnWrite {
    inner: DuplexStream,
    armed: Arc<AtomicBool>,
}

impl AsyncRead for PanicOnWrite {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PanicOnWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.armed.load(Ordering::Relaxed) {
            panic!("transport exploded");
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_panicking_transport_fails_requests_instead_of_hanging_them() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    let server =
        tokio::spawn(async move { Sock::adopt(b, &Config::new().handlers(h), None).await });
    let armed = Arc::new(AtomicBool::new(false));
    let io = PanicOnWrite {
        inner: a,
        armed: armed.clone(),
    };
    let client = Sock::adopt(io, &Config::new(), None).await.unwrap();
    let _server = server.await.unwrap().unwrap();
    assert_eq!(
        &client.buffer_request("echo", "hi").await.unwrap()[..],
        b"hi"
    );

    armed.store(true, Ordering::Relaxed);
    let res = tokio::time::timeout(Duration::from_secs(5), client.buffer_request("echo", "x"))
        .await
        .expect("the request must end, not hang");
    match res {
        Err(Error::Closed(reason)) => assert!(reason.to_string().contains("transport panicked")),
        other => panic!("expected Closed, got {other:?}"),
    }
    // Later requests fail at once too.
    assert!(matches!(
        client.buffer_request("echo", "y").await,
        Err(Error::Closed(_))
    ));
}
