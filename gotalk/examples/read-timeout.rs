//! Read timeout: a server that expects to hear from its peers at least every 200 ms closes a
//! silent connection with ProtocolError 3 (timeout); a peer that sends heartbeats stays.
//!
//! Run with `cargo run --example read-timeout`.

use std::time::Duration;

use gotalk::{Config, Limits, Server};

#[tokio::main]
async fn main() -> gotalk::Result<()> {
    let limits = Limits::default().read_timeout(Some(Duration::from_millis(200)));
    let server = Server::bind(
        "127.0.0.1:0",
        Config::new().limits(limits).heartbeat_interval(None),
    )
    .await?;
    let addr = server.local_addr().to_string();

    let chatty = gotalk::connect_with(
        &addr,
        &Config::new().heartbeat_interval(Some(Duration::from_millis(50))),
    )
    .await?;
    let silent = gotalk::connect_with(&addr, &Config::new().heartbeat_interval(None)).await?;

    let reason = silent.closed().await;
    println!("silent client closed: {reason}");
    assert_eq!(
        reason.protocol_error_code(),
        Some(gotalk::ProtocolErrorCode::TIMEOUT)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("heartbeating client still open: {}", !chatty.is_closed());
    assert!(!chatty.is_closed());
    chatty.close();
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
