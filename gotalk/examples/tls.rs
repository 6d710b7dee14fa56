//! gotalk over TLS, end to end, with certificates made on the spot.
//!
//! Makes a private certificate authority and a server certificate for `localhost` with rcgen,
//! serves `greet` over TLS on a free loopback port, connects a client that trusts only that CA,
//! calls `greet`, shows that a client trusting other CAs is refused, and exits 0.
//!
//! Run with `cargo run --example tls`.

use gotalk::transport::tls::{roots_from_pem, TlsClientConfig, TlsServerConfig};
use gotalk::{Config, Handlers, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct GreetOut {
    greeting: String,
}

type BoxError = Box<dyn std::error::Error>;

/// A CA certificate (PEM) and a `localhost` certificate and key (PEM) signed by it.
fn make_certificates() -> Result<(String, String, String), BoxError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gotalk example CA");
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    let leaf_key = KeyPair::generate()?;
    let leaf_pem = leaf.signed_by(&leaf_key, &issuer)?.pem();
    Ok((ca_pem, leaf_pem, leaf_key.serialize_pem()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (ca_pem, cert_pem, key_pem) = make_certificates()?;

    let mut handlers = Handlers::new();
    handlers.handle("greet", |input: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", input.name),
        })
    });
    let tls = TlsServerConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    let server = Server::bind_tls("127.0.0.1:0", Config::new().handlers(handlers), tls).await?;
    let port = server.local_addr().to_string();
    let port = port.rsplit(':').next().unwrap_or_default();
    let addr = format!("tls://localhost:{port}");
    println!("server listening on {}", server.local_addr());

    // A client that trusts our CA only.
    let client_tls = TlsClientConfig::new().trust_only(roots_from_pem(ca_pem.as_bytes())?);
    let sock = gotalk::connect_with(&addr, &Config::new().tls(client_tls)).await?;
    let out: GreetOut = sock
        .request("greet", &GreetIn { name: "TLS".into() })
        .await?;
    println!("greet -> {out:?}");
    assert_eq!(out.greeting, "Hello TLS");
    sock.close();

    // A client with the default (public) roots does not trust a private CA.
    match gotalk::connect(&addr).await {
        Ok(_) => return Err("a client without our CA was let in".into()),
        Err(e) => println!("client without our CA refused, as it should be: {e}"),
    }

    server.shutdown(std::time::Duration::from_secs(1)).await;
    println!("ok");
    Ok(())
}
