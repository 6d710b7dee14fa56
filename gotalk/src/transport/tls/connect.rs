//! The TLS handshakes: a client's over a TCP connection (for `tls://` and `wss://`), and a
//! server's over an accepted one.

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::config::tls_err;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sock::Sock;

/// Performs the server side of the TLS handshake on an accepted TCP connection (within the
/// [`Limits::handshake_timeout`](crate::Limits::handshake_timeout)), then serves gotalk over it.
pub async fn accept(stream: TcpStream, acceptor: &TlsAcceptor, config: &Config) -> Result<Sock> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr().ok().map(|a| a.to_string());
    let tls = tokio::time::timeout(config.limits.handshake_wait(), acceptor.accept(stream))
        .await
        .map_err(|_| Error::Timeout("TLS handshake"))?
        .map_err(|e| {
            tls_err(format!(
                "handshake with {} failed: {e}",
                peer.as_deref().unwrap_or("client")
            ))
        })?;
    Sock::adopt(tls, config, peer).await
}

/// Connects to `host:port` over TCP, performs the TLS handshake with the settings of
/// [`Config::tls`] (or the defaults of [`TlsClientConfig::new`](super::TlsClientConfig::new))
/// and starts serving gotalk.
pub async fn connect(host_port: &str, config: &Config) -> Result<Sock> {
    let stream = TcpStream::connect(host_port).await?;
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr().ok().map(|a| a.to_string());
    let stream = client_handshake(host_port, stream, config).await?;
    Sock::adopt(stream, config, peer).await
}

/// The host part of `host:port` (without the brackets of an IPv6 address).
fn host_of(host_port: &str) -> &str {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The client side of the TLS handshake over a connected TCP stream to `host_port`, within the
/// [`Limits::handshake_timeout`](crate::Limits::handshake_timeout), with the settings of [`Config::tls`]: the server's
/// certificate is checked against their server name, else against the host of `host_port`.
pub(crate) async fn client_handshake(
    host_port: &str,
    tcp: TcpStream,
    config: &Config,
) -> Result<TlsStream<TcpStream>> {
    let tls = config.tls.clone().unwrap_or_default();
    let name = tls
        .name_override()
        .unwrap_or_else(|| host_of(host_port))
        .to_owned();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| tls_err(format!("{name:?} is not a valid TLS server name: {e}")))?;
    let connector = TlsConnector::from(tls.build()?);
    tokio::time::timeout(
        config.limits.handshake_wait(),
        connector.connect(server_name, tcp),
    )
    .await
    .map_err(|_| Error::Timeout("TLS handshake"))?
    .map_err(|e| {
        let hint = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(_)) => {
                "; the server's certificate is not trusted for this name: trust its CA \
                 (TlsClientConfig::trust_only_pem_file, gotalk --cacert) or check the host name"
            }
            Some(rustls::Error::AlertReceived(_)) => {
                "; the server refused the handshake (does it require a client certificate?)"
            }
            _ => "",
        };
        tls_err(format!("handshake with {host_port} failed: {e}{hint}"))
    })
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
    }
}
