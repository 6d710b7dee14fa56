//! Automatic retries honour the wait of each RetryResult and give up with a clear error after
//! the configured number of tries. Attempts are counted and timed on the server side; the
//! only time assertions are lower bounds (a retry must not come before the wait), which
//! cannot be flaky.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gotalk::{Config, Error, HandlerError, Handlers, Server};

const WAIT: Duration = Duration::from_millis(150);

/// A server whose `busy` operation asks for a retry (after [`WAIT`]) until it has been tried
/// `ok_after` times; returns it and the times of the attempts it saw.
async fn server(ok_after: usize) -> (Server, Arc<Mutex<Vec<Instant>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut h = Handlers::new();
    h.handle_buffer("busy", move |_sock, _op, _p| {
        let s = s.clone();
        async move {
            let n = {
                let mut v = s.lock().unwrap();
                v.push(Instant::now());
                v.len()
            };
            if n > ok_after {
                Ok(Bytes::from_static(b"done"))
            } else {
                Err(HandlerError::retry(WAIT, "busy, try later"))
            }
        }
    });
    let server = Server::bind("127.0.0.1:0", Config::new().handlers(h))
        .await
        .unwrap();
    (server, seen)
}

fn assert_waited(seen: &[Instant]) {
    for w in seen.windows(2) {
        assert!(
            w[1] - w[0] >= WAIT,
            "retried after {:?}, before the {WAIT:?} the server asked for",
            w[1] - w[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_the_configured_retries_with_a_clear_error() {
    let (server, seen) = server(usize::MAX).await;
    let sock = gotalk::connect_with(
        &server.local_addr().to_string(),
        &Config::new().auto_retry(3),
    )
    .await
    .unwrap();
    match sock.buffer_request("busy", "").await {
        Err(e @ Error::Retry { .. }) => {
            assert_eq!(e.retry_after(), Some(WAIT));
            assert!(e.to_string().contains("busy, try later"), "{e}");
        }
        other => panic!("expected Error::Retry, got {other:?}"),
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one try and three retries");
    assert_waited(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeds_once_the_server_lets_it_through() {
    let (server, seen) = server(2).await;
    let sock = gotalk::connect_with(
        &server.local_addr().to_string(),
        &Config::new().auto_retry(5),
    )
    .await
    .unwrap();
    let out = sock.buffer_request("busy", "").await.unwrap();
    assert_eq!(&out[..], b"done");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_waited(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_when_disabled() {
    let (server, seen) = server(usize::MAX).await;
    let sock = gotalk::connect_with(
        &server.local_addr().to_string(),
        &Config::new().auto_retry(0),
    )
    .await
    .unwrap();
    assert!(matches!(
        sock.buffer_request("busy", "").await,
        Err(Error::Retry { .. })
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
}
