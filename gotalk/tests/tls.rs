//! TLS: handshakes and requests over real loopback TCP, untrusted certificates, and client
//! certificate verification (required and optional). Certificates are made by rcgen per test.
#![cfg(feature = "tls")]

use std::time::Duration;

use gotalk::transport::tls::{roots_from_pem, ClientAuth, TlsClientConfig, TlsServerConfig};
use gotalk::{Config, Error, Handlers, Limits, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const HANG: Duration = Duration::from_secs(20);

/// A certificate authority that signs leaf certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` signed by this CA: (cert PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn echo_config() -> Config {
    let mut h = Handlers::new();
    h.handle("greet", |name: String| async move {
        Ok(format!("Hello {name}"))
    });
    Config::new().handlers(h).heartbeat_interval(None)
}

async fn server(ca: &Ca, auth: ClientAuth) -> Server {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let tls = TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes())
        .unwrap()
        .client_auth(auth);
    Server::bind_tls("127.0.0.1:0", echo_config(), tls)
        .await
        .unwrap()
}

fn port(server: &Server) -> u16 {
    let addr = server.local_addr().to_string();
    assert!(addr.starts_with("tls://127.0.0.1:"), "{addr}");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

async fn greet(addr: &str, tls: TlsClientConfig) -> gotalk::Result<String> {
    let config = Config::new().heartbeat_interval(None).tls(tls);
    let sock = tokio::time::timeout(HANG, gotalk::connect_with(addr, &config))
        .await
        .expect("connect hung")?;
    let out = tokio::time::timeout(HANG, sock.request::<_, String>("greet", "tls"))
        .await
        .expect("request hung");
    sock.close();
    out
}

fn trusting(ca: &Ca) -> TlsClientConfig {
    TlsClientConfig::new().trust_only(roots_from_pem(ca.pem.as_bytes()).unwrap())
}

#[tokio::test]
async fn handshake_and_requests_by_name_and_by_ip() {
    let ca = Ca::new("test CA");
    let server = server(&ca, ClientAuth::None).await;
    let p = port(&server);
    for addr in [
        format!("tls://localhost:{p}"),
        format!("tls://127.0.0.1:{p}"),
    ] {
        assert_eq!(greet(&addr, trusting(&ca)).await.unwrap(), "Hello tls");
    }
    // Many requests on one connection, concurrently.
    let sock = gotalk::connect_with(
        &format!("tls://localhost:{p}"),
        &Config::new().tls(trusting(&ca)),
    )
    .await
    .unwrap();
    let calls = (0..50).map(|i| {
        let sock = sock.clone();
        async move { sock.request::<_, String>("greet", &i.to_string()).await }
    });
    let outs = futures_util::future::join_all(calls).await;
    for (i, out) in outs.into_iter().enumerate() {
        assert_eq!(out.unwrap(), format!("Hello {i}"));
    }
    assert_eq!(server.connection_count(), 1);
    sock.close();
}

#[tokio::test]
async fn untrusted_server_certificate_fails_with_a_clear_error() {
    let ca = Ca::new("server CA");
    let other = Ca::new("some other CA");
    let server = server(&ca, ClientAuth::None).await;
    let addr = format!("tls://localhost:{}", port(&server));
    let err = greet(&addr, trusting(&other)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("not trusted"), "{text}");
    // The default roots (webpki) do not trust a private CA either.
    let err = greet(&addr, TlsClientConfig::new()).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn wrong_host_name_is_refused() {
    let ca = Ca::new("test CA");
    let server = server(&ca, ClientAuth::None).await;
    let addr = format!("tls://127.0.0.1:{}", port(&server));
    let err = greet(&addr, trusting(&ca).server_name("example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn required_client_certificate_accepts_and_rejects() {
    let ca = Ca::new("client CA");
    let roots = roots_from_pem(ca.pem.as_bytes()).unwrap();
    let server = server(&ca, ClientAuth::Required(roots)).await;
    let addr = format!("tls://localhost:{}", port(&server));

    let (cert, key) = ca.leaf(&["client"]);
    let with_cert = trusting(&ca)
        .client_cert_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    assert_eq!(greet(&addr, with_cert).await.unwrap(), "Hello tls");

    // No certificate: the server refuses (in TLS 1.3 the client learns it right after its
    // side of the handshake, so the error may come from the handshake or the first read).
    let err = greet(&addr, trusting(&ca)).await.unwrap_err();
    assert!(
        matches!(err, Error::Tls(_) | Error::Closed(_) | Error::Io(_)),
        "{err:?}"
    );

    // A certificate from a CA the server does not trust: refused as well.
    let stranger = Ca::new("stranger CA");
    let (cert, key) = stranger.leaf(&["client"]);
    let wrong_cert = trusting(&ca)
        .client_cert_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    let err = greet(&addr, wrong_cert).await.unwrap_err();
    assert!(
        matches!(err, Error::Tls(_) | Error::Closed(_) | Error::Io(_)),
        "{err:?}"
    );
    assert_eq!(server.connection_count(), 0);
}

#[tokio::test]
async fn optional_client_certificate_accepts_none_and_trusted_but_rejects_untrusted() {
    let ca = Ca::new("client CA");
    let roots = roots_from_pem(ca.pem.as_bytes()).unwrap();
    let server = server(&ca, ClientAuth::Optional(roots)).await;
    let addr = format!("tls://localhost:{}", port(&server));

    assert_eq!(greet(&addr, trusting(&ca)).await.unwrap(), "Hello tls");
    let (cert, key) = ca.leaf(&["client"]);
    let with_cert = trusting(&ca)
        .client_cert_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    assert_eq!(greet(&addr, with_cert).await.unwrap(), "Hello tls");

    let stranger = Ca::new("stranger CA");
    let (cert, key) = stranger.leaf(&["client"]);
    let wrong_cert = trusting(&ca)
        .client_cert_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    assert!(greet(&addr, wrong_cert).await.is_err());
}

#[tokio::test]
async fn pem_files_and_bad_inputs() {
    let ca = Ca::new("test CA");
    let dir = std::env::temp_dir().join(format!("gotalk-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = ca.leaf(&["localhost"]);
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), &key).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();

    let tls = TlsServerConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let server = Server::bind_tls("tls://127.0.0.1:0", echo_config(), tls)
        .await
        .unwrap();
    let client = TlsClientConfig::new()
        .trust_only_pem_file(dir.join("ca.pem"))
        .unwrap();
    let addr = format!("tls://localhost:{}", port(&server));
    assert_eq!(greet(&addr, client).await.unwrap(), "Hello tls");

    // Clear errors for missing files, swapped files and keys that do not match.
    let e = TlsServerConfig::from_pem_files(dir.join("nope.pem"), dir.join("key.pem")).unwrap_err();
    assert!(e.to_string().contains("nope.pem"), "{e}");
    let e = TlsServerConfig::from_pem_files(dir.join("key.pem"), dir.join("cert.pem")).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
    let (_, other_key) = ca.leaf(&["localhost"]);
    let e = TlsServerConfig::from_pem(cert.as_bytes(), other_key.as_bytes())
        .unwrap()
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
    // A plain Server::bind refuses tls:// instead of silently serving plaintext.
    let e = Server::bind("tls://127.0.0.1:0", Config::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bind_tls"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plaintext_client_against_tls_server_does_not_hang_or_succeed() {
    let ca = Ca::new("test CA");
    let server = server(&ca, ClientAuth::None).await;
    let addr = format!("tcp://127.0.0.1:{}", port(&server));
    let config = Config::new()
        .heartbeat_interval(None)
        .limits(Limits::default().handshake_timeout(Some(Duration::from_secs(2))));
    let res = tokio::time::timeout(HANG, gotalk::connect_with(&addr, &config))
        .await
        .expect("hung");
    assert!(
        res.is_err(),
        "plaintext gotalk handshake with a TLS server succeeded"
    );
}
