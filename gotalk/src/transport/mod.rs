//! Transports: how a byte stream is opened. Each is thin: it connects or accepts, then hands
//! the stream to [`Sock::adopt_split`]. Anything `AsyncRead + AsyncWrite` can carry gotalk via
//! [`Sock::adopt`].

use crate::addr::Addr;
use crate::config::Config;
use crate::error::Result;
use crate::sock::Sock;

pub mod tcp;
#[cfg(feature = "tls")]
pub mod tls;
pub mod unix;
#[cfg(feature = "websocket")]
pub mod ws;

/// Connects to `addr` (see [`Addr`]) with the default [`Config`].
pub async fn connect(addr: &str) -> Result<Sock> {
    connect_with(addr, &Config::default()).await
}

/// Connects to `addr` (see [`Addr`]) with the given [`Config`].
pub async fn connect_with(addr: &str, config: &Config) -> Result<Sock> {
    match addr.parse::<Addr>()? {
        Addr::Tcp(hp) => tcp::connect(&hp, config).await,
        Addr::Unix(path) => unix::connect(&path, config).await,
        #[cfg(feature = "tls")]
        Addr::Tls(hp) => tls::connect(&hp, config).await,
        #[cfg(feature = "websocket")]
        Addr::WebSocket(url) => ws::connect(&url, config).await,
        // Reachable when a transport's feature is off.
        #[allow(unreachable_patterns)]
        other => Err(crate::error::Error::InvalidAddress {
            addr: other.to_string(),
            reason: "this transport is not available in this build".into(),
        }),
    }
}

/// Two sockets connected to each other in memory, each configured by its own [`Config`].
pub async fn pipe_with(a: &Config, b: &Config) -> Result<(Sock, Sock)> {
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (sa, sb) = tokio::join!(
        Sock::adopt(x, a, Some("pipe".into())),
        Sock::adopt(y, b, Some("pipe".into()))
    );
    Ok((sa?, sb?))
}

/// Two sockets connected to each other in memory, with default configuration.
pub async fn pipe() -> Result<(Sock, Sock)> {
    pipe_with(&Config::default(), &Config::default()).await
}
