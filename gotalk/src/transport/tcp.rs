//! TCP.

use tokio::net::TcpStream;

use crate::config::Config;
use crate::error::Result;
use crate::sock::Sock;

/// Connects to `host:port` over TCP.
pub async fn connect(host_port: &str, config: &Config) -> Result<Sock> {
    let stream = TcpStream::connect(host_port).await?;
    adopt(stream, config).await
}

/// Serves gotalk over a connected TCP stream.
pub async fn adopt(stream: TcpStream, config: &Config) -> Result<Sock> {
    // Requests are small and latency matters more than packet count; the writer already
    // coalesces queued messages into one write.
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr().ok().map(|a| a.to_string());
    let (r, w) = stream.into_split();
    Sock::adopt_split(r, w, config, peer).await
}
