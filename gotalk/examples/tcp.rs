//! The seed's greet example: a server exposing "greet" over TCP, and a client calling it.
//!
//! Run with `cargo run --example tcp`.

use gotalk::{Config, Handlers, Server};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct GreetOut {
    greeting: String,
}

async fn server() -> gotalk::Result<Server> {
    let mut handlers = Handlers::new();
    handlers.handle("greet", |input: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", input.name),
        })
    });
    Server::bind("tcp://127.0.0.1:0", Config::new().handlers(handlers)).await
}

async fn client(addr: &str) -> gotalk::Result<()> {
    let s = gotalk::connect(addr).await?;
    let greeting: GreetOut = s
        .request(
            "greet",
            &GreetIn {
                name: "Rasmus".into(),
            },
        )
        .await?;
    println!("greeting: {greeting:?}");
    s.close();
    Ok(())
}

#[tokio::main]
async fn main() -> gotalk::Result<()> {
    let server = server().await?;
    println!("listening on {}", server.local_addr());
    client(&server.local_addr().to_string()).await?;
    server.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
