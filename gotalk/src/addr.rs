//! Addresses as users type them, parsed in one place.
//!
//! | form | meaning |
//! |---|---|
//! | `tcp://host:port`, or plain `host:port` | TCP |
//! | `unix:///path/to/socket` (or `unix:relative/path`) | Unix domain socket |
//! | `tls://host:port` | TLS over TCP |
//! | `ws://host:port/path`, `wss://host:port/path` | WebSocket (plain or over TLS) |
//!
//! ```
//! use gotalk::Addr;
//! assert_eq!("tcp://127.0.0.1:1234".parse::<Addr>().unwrap(), Addr::Tcp("127.0.0.1:1234".into()));
//! assert_eq!("localhost:1234".parse::<Addr>().unwrap(), Addr::Tcp("localhost:1234".into()));
//! assert_eq!("unix:///tmp/g.sock".parse::<Addr>().unwrap(), Addr::Unix("/tmp/g.sock".into()));
//! assert_eq!("tls://example.com:443".parse::<Addr>().unwrap(), Addr::Tls("example.com:443".into()));
//! assert_eq!("ws://127.0.0.1:80/gotalk/".parse::<Addr>().unwrap(), Addr::WebSocket("ws://127.0.0.1:80/gotalk/".into()));
//! assert!("ftp://x".parse::<Addr>().is_err());
//! assert!("tcp://host:99999".parse::<Addr>().is_err());
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Where to connect or listen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// TCP, as `host:port`.
    Tcp(String),
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// TLS over TCP, as `host:port`.
    Tls(String),
    /// A WebSocket URL (`ws://` or `wss://`), kept whole.
    WebSocket(String),
}

fn bad(addr: &str, reason: impl Into<String>) -> Error {
    Error::InvalidAddress {
        addr: addr.to_owned(),
        reason: reason.into(),
    }
}

fn host_port(addr: &str, rest: &str) -> Result<String, Error> {
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(bad(addr, "expected host:port"));
    };
    if host.is_empty() {
        return Err(bad(addr, "missing host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(bad(
            addr,
            format!("port {port:?} is not a number from 0 to 65535"),
        ));
    }
    Ok(rest.to_owned())
}

impl FromStr for Addr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Addr, Error> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("tcp://") {
            return Ok(Addr::Tcp(host_port(s, rest.trim_end_matches('/'))?));
        }
        if let Some(rest) = s.strip_prefix("tls://") {
            return Ok(Addr::Tls(host_port(s, rest.trim_end_matches('/'))?));
        }
        for scheme in ["ws://", "wss://"] {
            if let Some(rest) = s.strip_prefix(scheme) {
                let authority = rest.split('/').next().unwrap_or_default();
                host_port(s, authority)?;
                return Ok(Addr::WebSocket(s.to_owned()));
            }
        }
        if let Some(rest) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if rest.is_empty() {
                return Err(bad(s, "missing socket path"));
            }
            return Ok(Addr::Unix(PathBuf::from(rest)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(
                s,
                format!(
                    "unsupported scheme {scheme:?}; use tcp://, unix://, tls://, ws:// or wss://"
                ),
            ));
        }
        Ok(Addr::Tcp(host_port(s, s)?))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(hp) => write!(f, "tcp://{hp}"),
            Addr::Unix(p) => write!(f, "unix://{}", p.display()),
            Addr::Tls(hp) => write!(f, "tls://{hp}"),
            Addr::WebSocket(url) => f.write_str(url),
        }
    }
}
