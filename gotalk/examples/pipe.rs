//! Two sockets connected to each other in memory, each calling the other.
//!
//! Run with `cargo run --example pipe`.

use gotalk::{Config, Handlers};

#[tokio::main]
async fn main() -> gotalk::Result<()> {
    let mut handlers = Handlers::new();
    handlers.handle("echo", |s: String| async move { Ok(s) });
    handlers.handle("shout", |s: String| async move { Ok(s.to_uppercase()) });
    let config = Config::new().handlers(handlers);
    let (a, b) = gotalk::pipe_with(&config, &config).await?;

    let r: String = a.request("echo", "hello from a").await?;
    println!("a -> b echo: {r}");
    let r: String = b.request("shout", "hello from b").await?;
    println!("b -> a shout: {r}");

    a.close();
    println!("b closed: {}", b.closed().await);
    Ok(())
}
