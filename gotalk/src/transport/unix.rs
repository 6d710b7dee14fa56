//! Unix domain sockets.

use std::path::Path;

use tokio::net::UnixStream;

use crate::config::Config;
use crate::error::Result;
use crate::sock::Sock;

/// Connects to the Unix socket at `path`.
pub async fn connect(path: &Path, config: &Config) -> Result<Sock> {
    let stream = UnixStream::connect(path).await?;
    adopt(stream, config, Some(format!("unix:{}", path.display()))).await
}

/// Serves gotalk over a connected Unix stream.
pub async fn adopt(stream: UnixStream, config: &Config, peer: Option<String>) -> Result<Sock> {
    let (r, w) = stream.into_split();
    Sock::adopt_split(r, w, config, peer).await
}
