//! TLS over TCP through rustls (cargo feature `tls`, on by default).
//!
//! A client connects to a `tls://host:port` address with [`crate::connect_with`] (or to a
//! `wss://` URL); the TLS settings travel in [`Config::tls`](crate::Config::tls) (without them
//! the Mozilla root certificates of `webpki-roots` are trusted). A server is started with
//! [`crate::Server::bind_tls`] and a [`TlsServerConfig`] loaded from PEM files, optionally
//! verifying client certificates.
//!
//! The settings are in `config.rs`; connecting and accepting (the handshakes, shared by
//! `tls://` and `wss://`) in `connect.rs`.
//!
//! ```no_run
//! # async fn run() -> gotalk::Result<()> {
//! use gotalk::transport::tls::{ClientAuth, TlsClientConfig, TlsServerConfig};
//! use gotalk::{Config, Server};
//!
//! // Server: a certificate chain and its key; clients must show a certificate signed by ca.pem.
//! let tls = TlsServerConfig::from_pem_files("server.pem", "server.key")?
//!     .client_auth(ClientAuth::required_from_pem_file("ca.pem")?);
//! let server = Server::bind_tls("127.0.0.1:8443", Config::new(), tls).await?;
//!
//! // Client: trust only our own CA, and present a client certificate.
//! let tls = TlsClientConfig::new()
//!     .trust_only_pem_file("ca.pem")?
//!     .client_cert_pem_files("client.pem", "client.key")?;
//! let sock = gotalk::connect_with("tls://localhost:8443", &Config::new().tls(tls)).await?;
//! # let _ = (server, sock); Ok(()) }
//! ```

pub(crate) mod config;
pub(crate) mod connect;

pub use config::{
    certs_from_pem, key_from_pem, roots_from_pem, roots_from_pem_file, webpki_roots, ClientAuth,
    TlsClientConfig, TlsServerConfig,
};
pub use connect::{accept, connect};

/// The rustls crate this module is built on, for callers who need its full configuration.
pub use tokio_rustls::rustls;
