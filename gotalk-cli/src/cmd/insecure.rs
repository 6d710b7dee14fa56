//! `--insecure`: TLS that checks nothing about the server's certificate.
//!
//! The handshake signatures are still verified (the server must hold the key of the certificate
//! it shows); only the question of whom that certificate belongs to is skipped.

use std::sync::Arc;

use gotalk::transport::tls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use gotalk::transport::tls::rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use gotalk::transport::tls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use gotalk::transport::tls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use gotalk::transport::tls::{certs_from_pem, key_from_pem, TlsClientConfig};

use super::{usage, ClientTls, Fail};

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, gotalk::transport::tls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, gotalk::transport::tls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, gotalk::transport::tls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS settings of `--insecure` (with `--cert`/`--key` and `--servername` still applied).
pub fn config(flags: &ClientTls) -> Result<TlsClientConfig, Fail> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(usage)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)));
    let config = match (&flags.cert, &flags.key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))
            };
            let chain = certs_from_pem(&read(cert)?).map_err(usage)?;
            let key = key_from_pem(&read(key)?).map_err(usage)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| usage(format!("--cert and --key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut tls = TlsClientConfig::from_rustls(Arc::new(config));
    if let Some(name) = &flags.servername {
        tls = tls.server_name(name.clone());
    }
    Ok(tls)
}
