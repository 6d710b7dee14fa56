//! Limits: a server that handles one request at a time answers the rest with RetryResult; the
//! client retries automatically after the wait the server asks for.
//!
//! Run with `cargo run --example limits`.

use std::time::{Duration, Instant};

use gotalk::{Config, Handlers, Limits, Server};

#[tokio::main]
async fn main() -> gotalk::Result<()> {
    let mut handlers = Handlers::new();
    handlers.handle("slow", |ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(format!("slept {ms} ms"))
    });
    let limits = Limits::default()
        .buffer_requests(1)
        .retry_wait(Duration::from_millis(50), Duration::from_millis(150));
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new().handlers(handlers).limits(limits),
    )
    .await?;
    let addr = server.local_addr().to_string();

    // Without automatic retries, the second request sees the RetryResult itself.
    let plain = gotalk::connect_with(&addr, &Config::new().auto_retry(0)).await?;
    let (first, second) = tokio::join!(plain.request::<_, String>("slow", &200), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        plain.request::<_, String>("slow", &1).await
    });
    println!("first: {}", first?);
    match second {
        Err(e) => println!(
            "second (no auto-retry): {e} (retry after {:?})",
            e.retry_after()
        ),
        Ok(r) => println!("second got through: {r}"),
    }

    // With automatic retries (the default), both requests succeed.
    let sock = gotalk::connect(&addr).await?;
    let started = Instant::now();
    let (a, b) = tokio::join!(
        sock.request::<_, String>("slow", &200),
        sock.request::<_, String>("slow", &10)
    );
    println!("a: {}, b: {} after {:?}", a?, b?, started.elapsed());
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
