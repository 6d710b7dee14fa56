//! The smallest web page that talks gotalk: type a message, the server echoes it back.
//!
//! ```text
//! cargo run --example websocket-minimal            # a free port; open the URL it prints
//! cargo run --example websocket-minimal -- --addr 127.0.0.1:8080
//! cargo run --example websocket-minimal -- --check # self-test: serve, connect, echo, exit
//! ```
//!
//! The page loads `gotalk.js` from the server (`/gotalk/gotalk.js`), which then knows where
//! to connect: `gotalk.connection()` needs no address.

use std::net::SocketAddr;

use gotalk::ws::axum::{response::Html, routing::get, Router};
use gotalk::ws::{Endpoint, OriginPolicy};
use gotalk::{Config, Handlers};

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gotalk: echo</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { white-space: pre-wrap; background: #f4f4f4; padding: 1em; min-height: 6em; }
</style>
<script src="/gotalk/gotalk.js"></script>
</head>
<body>
<h1>Echo</h1>
<p>Status: <b id="status">connecting…</b></p>
<form id="form"><input id="text" value="Hello, gotalk" autofocus> <button>Send</button></form>
<div id="log"></div>
<script>
  const log = (line) => { document.getElementById('log').textContent += line + '\n'; };
  const status = document.getElementById('status');
  // Connects to the endpoint this script came from, and reconnects if the server restarts.
  const sock = gotalk.connection()
    .on('open', () => { status.textContent = 'connected'; })
    .on('close', (err) => { status.textContent = 'disconnected' + (err ? ': ' + err.message : ''); });
  document.getElementById('form').onsubmit = async (ev) => {
    ev.preventDefault();
    const text = document.getElementById('text').value;
    try {
      log('echo → ' + await sock.request('echo', text));
    } catch (err) {
      log('error: ' + err.message);
    }
  };
</script>
</body>
</html>
"#;

fn app() -> Router {
    let mut handlers = Handlers::new();
    handlers.handle("echo", |text: String| async move { Ok(text) });
    // Only pages served here (and programs, which send no Origin) may connect.
    let endpoint = Endpoint::new(Config::new().handlers(handlers)).origin(OriginPolicy::SameHost);
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .merge(endpoint.router("/gotalk/"))
}

async fn serve(addr: &str) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // gotalk::ws::serve, not axum::serve: it times out slow request heads and caps the
        // HTTP connections waiting for one.
        if let Err(e) = gotalk::ws::serve(listener, app()).await {
            eprintln!("server failed: {e}");
        }
    });
    Ok((local, task))
}

/// Serves on a free port, then plays the page's part with the Rust WebSocket client.
async fn check() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, task) = serve("127.0.0.1:0").await?;
    let sock = gotalk::connect(&format!("ws://{addr}/gotalk/")).await?;
    let echoed: String = sock.request("echo", "Hello, gotalk").await?;
    assert_eq!(echoed, "Hello, gotalk");
    println!("echo → {echoed}");
    sock.close();
    task.abort();
    println!("check ok");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--check") {
        return check().await;
    }
    let addr = args
        .iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        // A free port by default: a fixed one fails when something (the demo, on 1235) has it.
        .map_or("127.0.0.1:0", String::as_str);
    let (local, task) = serve(addr).await?;
    println!("open http://{local}/ in a web browser (Ctrl-C to stop)");
    task.await?;
    Ok(())
}
