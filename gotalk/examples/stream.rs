//! Streaming requests and results: the client sends a request in parts, the server answers
//! each part as it arrives.
//!
//! Run with `cargo run --example stream`.

use gotalk::{Config, Handlers, Limits, Server};

#[tokio::main]
async fn main() -> gotalk::Result<()> {
    let mut handlers = Handlers::new();
    handlers.handle_stream("upper", |_sock, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part.to_ascii_uppercase()).await?;
        }
        Ok(())
    });
    // Stream requests are disabled unless limits allow them.
    let config = Config::new()
        .handlers(handlers)
        .limits(Limits::default().stream_requests(8));
    let server = Server::bind("127.0.0.1:0", config).await?;

    let sock = gotalk::connect(&server.local_addr().to_string()).await?;
    let (mut tx, mut rx) = sock.stream_request("upper").await?;
    for word in ["hello ", "streaming ", "world"] {
        tx.write(word).await?;
        let part = rx.recv().await?.expect("a part per part");
        println!("got part: {:?}", String::from_utf8_lossy(&part));
    }
    tx.end().await?;
    assert!(rx.recv().await?.is_none());
    println!("stream ended");
    sock.close();
    server.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
