//! The subcommands, one module each, and what they share: errors with exit codes, TLS flags,
//! connecting and binding.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use gotalk::transport::tls::{ClientAuth, TlsClientConfig, TlsServerConfig};
use gotalk::{Addr, Config, Server};

pub mod bench;
pub mod call;
pub mod connect;
pub mod decode;
pub mod dial;
mod insecure;
pub mod listen;
pub mod proxy;
pub mod serve;

/// A failure with the exit code to leave with.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

/// Exit code 1: the operation failed.
pub fn fail(message: impl std::fmt::Display) -> Fail {
    Fail {
        code: 1,
        message: message.to_string(),
    }
}

/// Exit code 2: the command line is wrong.
pub fn usage(message: impl std::fmt::Display) -> Fail {
    Fail {
        code: 2,
        message: message.to_string(),
    }
}

pub type CmdResult = Result<std::process::ExitCode, Fail>;

/// Parses an address, turning a bad one into a usage error.
pub fn parse_addr(addr: &str) -> Result<Addr, Fail> {
    addr.parse::<Addr>().map_err(usage)
}

pub fn duration_arg(s: &str) -> Result<Duration, String> {
    gotalk_cli::util::parse_duration(s)
}

/// TLS flags of commands that connect.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientTls {
    /// For tls:// and wss://: trust only the CA certificates in this PEM file (default: the
    /// Mozilla roots)
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// For tls://: present this client certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// For tls://: the private key (PEM) of --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// For tls://: verify the server's certificate against this name instead of the host
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// For tls:// and wss://: do not check the server's certificate at all. For testing only:
    /// anyone on the way can then read and change the conversation
    #[arg(long, conflicts_with = "cacert")]
    pub insecure: bool,
}

impl ClientTls {
    /// Refuses --insecure where it means nothing, and warns loudly where it applies.
    pub fn check(&self, addr: &str) -> Result<(), Fail> {
        if !self.insecure {
            return Ok(());
        }
        match parse_addr(addr)? {
            Addr::Tls(_) => {}
            Addr::WebSocket(url) if url.starts_with("wss:") => {}
            _ => {
                return Err(usage(format!(
                    "--insecure is for tls:// and wss:// addresses, not {addr}"
                )))
            }
        }
        err_line(
            "gotalk: WARNING: --insecure: the server's certificate is not checked; anyone on \
             the way can read and change this conversation",
        );
        Ok(())
    }

    pub fn tls_config(&self) -> Result<TlsClientConfig, Fail> {
        if self.insecure {
            return insecure::config(self);
        }
        let mut tls = TlsClientConfig::new();
        if let Some(ca) = &self.cacert {
            tls = tls.trust_only_pem_file(ca).map_err(usage)?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.client_cert_pem_files(cert, key).map_err(usage)?;
        }
        if let Some(name) = &self.servername {
            tls = tls.server_name(name.clone());
        }
        Ok(tls)
    }

    pub fn apply(&self, config: Config) -> Result<Config, Fail> {
        Ok(config.tls(self.tls_config()?))
    }
}

/// TLS flags of commands that listen.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerTls {
    /// For tls:// listen addresses: the server's certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA in this PEM file
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// With --client-ca: accept clients without a certificate too
    #[arg(long, requires = "client_ca")]
    pub client_cert_optional: bool,
}

impl ServerTls {
    pub fn server_config(&self) -> Result<Option<TlsServerConfig>, Fail> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut tls = TlsServerConfig::from_pem_files(cert, key).map_err(usage)?;
        if let Some(ca) = &self.client_ca {
            let auth = if self.client_cert_optional {
                ClientAuth::optional_from_pem_file(ca)
            } else {
                ClientAuth::required_from_pem_file(ca)
            };
            tls = tls.client_auth(auth.map_err(usage)?);
        }
        Ok(Some(tls))
    }

    /// Binds `addr`: TLS for `tls://` (which needs --tls-cert/--tls-key), else whatever
    /// [`Server::bind`] serves.
    pub async fn bind(&self, addr: &str, config: Config) -> Result<Server, Fail> {
        let parsed = parse_addr(addr)?;
        let tls = self.server_config()?;
        match (parsed, tls) {
            (Addr::Tls(_), Some(tls)) => Server::bind_tls(addr, config, tls).await,
            (Addr::Tls(_), None) => {
                return Err(usage(format!(
                    "{addr}: a tls:// address needs --tls-cert and --tls-key"
                )))
            }
            (_, Some(_)) => {
                return Err(usage(format!(
                    "{addr}: --tls-cert is for tls:// addresses (use tls://HOST:PORT)"
                )))
            }
            (_, None) => Server::bind(addr, config).await,
        }
        .map_err(|e| fail(format!("cannot listen on {addr}: {e}")))
    }
}

/// Writes a line to stdout and flushes it (so that piped output is seen as it happens).
pub fn out_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Writes a line to stderr.
pub fn err_line(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// Waits for Ctrl-C (or SIGTERM).
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
