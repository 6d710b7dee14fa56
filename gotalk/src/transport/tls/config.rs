//! TLS settings: certificates and keys from PEM, what a server asks of its clients
//! ([`ClientAuth`]), and the configurations of a server ([`TlsServerConfig`]) and a client
//! ([`TlsClientConfig`]). Connecting and accepting are in `connect.rs`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

pub(super) fn tls_err(what: impl fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_err(format!("cannot read {what} {}: {e}", path.display())))
}

/// Parses every certificate of a PEM document (e.g. a chain: leaf first, then intermediates).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(
            "no certificate found (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM document.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        tls_err(format!(
            "no usable private key found (expected -----BEGIN PRIVATE KEY----- or similar): {e}"
        ))
    })
}

/// A root certificate store holding every certificate of a PEM document.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem)? {
        roots
            .add(cert)
            .map_err(|e| tls_err(format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Like [`roots_from_pem`], reading a file.
pub fn roots_from_pem_file(path: impl AsRef<Path>) -> Result<RootCertStore> {
    let path = path.as_ref();
    roots_from_pem(&read_file(path, "CA certificate file")?)
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))
}

/// The Mozilla root certificates (from the `webpki-roots` crate), the client default.
pub fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---- server ---------------------------------------------------------------------------------

/// Whether a TLS server asks clients for a certificate.
#[derive(Clone, Debug, Default)]
pub enum ClientAuth {
    /// Clients are not asked for a certificate (the default).
    #[default]
    None,
    /// Clients may present a certificate; when they do it must be signed by one of these CAs.
    Optional(RootCertStore),
    /// Clients must present a certificate signed by one of these CAs.
    Required(RootCertStore),
}

impl ClientAuth {
    /// [`ClientAuth::Required`] with the CA certificates of a PEM file.
    pub fn required_from_pem_file(path: impl AsRef<Path>) -> Result<ClientAuth> {
        Ok(ClientAuth::Required(roots_from_pem_file(path)?))
    }

    /// [`ClientAuth::Optional`] with the CA certificates of a PEM file.
    pub fn optional_from_pem_file(path: impl AsRef<Path>) -> Result<ClientAuth> {
        Ok(ClientAuth::Optional(roots_from_pem_file(path)?))
    }
}

enum ServerSource {
    Parts {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_auth: ClientAuth,
    },
    Rustls(Arc<ServerConfig>),
}

/// TLS settings of a server: its certificate chain and key, and [`ClientAuth`].
pub struct TlsServerConfig {
    source: ServerSource,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            ServerSource::Parts {
                chain, client_auth, ..
            } => f
                .debug_struct("TlsServerConfig")
                .field("chain_len", &chain.len())
                .field("client_auth", client_auth)
                .finish_non_exhaustive(),
            ServerSource::Rustls(_) => f.write_str("TlsServerConfig(rustls::ServerConfig)"),
        }
    }
}

impl TlsServerConfig {
    /// A certificate chain (leaf first) and its private key, both PEM.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<TlsServerConfig> {
        Ok(TlsServerConfig {
            source: ServerSource::Parts {
                chain: certs_from_pem(chain)?,
                key: key_from_pem(key)?,
                client_auth: ClientAuth::None,
            },
        })
    }

    /// Like [`TlsServerConfig::from_pem`], reading two files.
    pub fn from_pem_files(
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsServerConfig> {
        let (chain, key) = (chain.as_ref(), key.as_ref());
        let chain_pem = read_file(chain, "certificate file")?;
        let key_pem = read_file(key, "key file")?;
        let chain =
            certs_from_pem(&chain_pem).map_err(|e| tls_err(format!("{}: {e}", chain.display())))?;
        let key = key_from_pem(&key_pem).map_err(|e| tls_err(format!("{}: {e}", key.display())))?;
        Ok(TlsServerConfig {
            source: ServerSource::Parts {
                chain,
                key,
                client_auth: ClientAuth::None,
            },
        })
    }

    /// A rustls configuration made by the caller, used as is.
    pub fn from_rustls(config: Arc<ServerConfig>) -> TlsServerConfig {
        TlsServerConfig {
            source: ServerSource::Rustls(config),
        }
    }

    /// Whether clients are asked for a certificate (ignored for [`TlsServerConfig::from_rustls`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> TlsServerConfig {
        if let ServerSource::Parts { client_auth, .. } = &mut self.source {
            *client_auth = auth;
        }
        self
    }

    /// The rustls configuration (checks that the key matches the certificate).
    pub fn build(self) -> Result<Arc<ServerConfig>> {
        let (chain, key, client_auth) = match self.source {
            ServerSource::Rustls(c) => return Ok(c),
            ServerSource::Parts {
                chain,
                key,
                client_auth,
            } => (chain, key, client_auth),
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(roots) | ClientAuth::Required(roots) if roots.is_empty() => {
                return Err(tls_err(
                    "client certificate verification needs at least one CA",
                ))
            }
            ClientAuth::Optional(roots) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(tls_err)?,
            ),
            ClientAuth::Required(roots) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(tls_err)?,
            ),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| tls_err(format!("certificate and key do not go together: {e}")))?;
        Ok(Arc::new(config))
    }

    pub(crate) fn acceptor(self) -> Result<TlsAcceptor> {
        Ok(TlsAcceptor::from(self.build()?))
    }
}

// ---- client ---------------------------------------------------------------------------------

/// TLS settings of a client: which certificate authorities to trust, an optional client
/// certificate, and the name to verify the server's certificate against.
///
/// ```
/// use gotalk::transport::tls::TlsClientConfig;
/// use gotalk::Config;
/// let config = Config::new().tls(TlsClientConfig::new().server_name("example.com"));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct TlsClientConfig {
    roots: RootCertStore,
    client_cert: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    server_name: Option<String>,
    custom: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("server_name", &self.server_name)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Default for TlsClientConfig {
    fn default() -> TlsClientConfig {
        TlsClientConfig::new()
    }
}

impl TlsClientConfig {
    /// Trusts the Mozilla root certificates ([`webpki_roots()`]), no client certificate.
    pub fn new() -> TlsClientConfig {
        TlsClientConfig {
            roots: webpki_roots(),
            client_cert: None,
            server_name: None,
            custom: None,
        }
    }

    /// A rustls configuration made by the caller, used as is (a [`TlsClientConfig::server_name`]
    /// still applies).
    pub fn from_rustls(config: Arc<ClientConfig>) -> TlsClientConfig {
        TlsClientConfig {
            custom: Some(config),
            ..TlsClientConfig::new()
        }
    }

    /// Trusts only these certificate authorities.
    pub fn trust_only(mut self, roots: RootCertStore) -> TlsClientConfig {
        self.roots = roots;
        self
    }

    /// Trusts only the CA certificates of a PEM file (e.g. a private CA).
    pub fn trust_only_pem_file(self, path: impl AsRef<Path>) -> Result<TlsClientConfig> {
        Ok(self.trust_only(roots_from_pem_file(path)?))
    }

    /// Trusts the CA certificates of a PEM document in addition to those trusted already.
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<TlsClientConfig> {
        for cert in certs_from_pem(pem)? {
            self.roots
                .add(cert)
                .map_err(|e| tls_err(format!("unusable CA certificate: {e}")))?;
        }
        Ok(self)
    }

    /// Presents this certificate chain (leaf first) and key to servers that ask for one.
    pub fn client_cert_pem(mut self, chain: &[u8], key: &[u8]) -> Result<TlsClientConfig> {
        self.client_cert = Some((certs_from_pem(chain)?, Arc::new(key_from_pem(key)?)));
        Ok(self)
    }

    /// Like [`TlsClientConfig::client_cert_pem`], reading two files.
    pub fn client_cert_pem_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsClientConfig> {
        let chain_pem = read_file(chain.as_ref(), "client certificate file")?;
        let key_pem = read_file(key.as_ref(), "client key file")?;
        self.client_cert_pem(&chain_pem, &key_pem)
    }

    /// Verifies the server's certificate against `name` (and sends it as SNI) instead of the
    /// host of the address.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsClientConfig {
        self.server_name = Some(name.into());
        self
    }

    /// The name given with [`TlsClientConfig::server_name`], if any.
    pub(super) fn name_override(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The rustls configuration.
    pub fn build(&self) -> Result<Arc<ClientConfig>> {
        if let Some(c) = &self.custom {
            return Ok(c.clone());
        }
        if self.roots.is_empty() {
            return Err(tls_err("no trusted certificate authorities configured"));
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(self.roots.clone());
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| tls_err(format!("client certificate and key: {e}")))?,
        };
        Ok(Arc::new(config))
    }
}
