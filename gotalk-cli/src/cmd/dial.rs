//! Connecting for `call`, `notify` and `connect`, and saying in words what went wrong.
//!
//! TCP, Unix and TLS connections are opened here rather than by the library so that the first
//! bytes the other side sends are kept: when it turns out not to be a gotalk peer (an HTTP
//! server, a TLS port reached without TLS, an SSH banner), the error shows what came back.
//! WebSocket addresses go through the library.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use gotalk::transport::tls::rustls;
use gotalk::{Addr, CloseReason, Config, Error, ProtocolErrorCode, Side, Sock};
use gotalk_cli::escape;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::{fail, parse_addr, ClientTls, Fail};

/// How long a peer has to send its protocol version. A gotalk peer sends it as soon as it
/// accepts, so this only needs to cover a slow network.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Bytes of the other side's first words kept for an error message.
const KEEP: usize = 256;

/// Connects to `addr` with `config` (whose handshake timeout is shortened to `HANDSHAKE`,
/// or to three quarters of `timeout` when that is shorter and not zero).
pub async fn dial(
    addr: &str,
    config: &Config,
    tls: &ClientTls,
    timeout: Duration,
) -> Result<Sock, Fail> {
    let parsed = parse_addr(addr)?;
    tls.check(addr)?;
    // Within the caller's timeout, so that a silent peer is explained rather than timed out.
    let wait = if timeout.is_zero() {
        HANDSHAKE
    } else {
        HANDSHAKE.min(timeout.mul_f64(0.75))
    };
    let mut config = config.clone();
    config.limits = config.limits.handshake_timeout(Some(wait));
    let cannot = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => " (is anything listening there?)",
            _ => "",
        };
        fail(format!("cannot connect to {addr}: {e}{hint}"))
    };
    let seen = Seen::default();
    let res = match parsed {
        Addr::Tcp(hp) => {
            let s = TcpStream::connect(&hp).await.map_err(cannot)?;
            let _ = s.set_nodelay(true);
            let peer = s.peer_addr().ok().map(|a| a.to_string());
            Sock::adopt(Recorder::new(s, &seen), &config, peer).await
        }
        Addr::Unix(path) => {
            let s = UnixStream::connect(&path).await.map_err(cannot)?;
            Sock::adopt(Recorder::new(s, &seen), &config, Some(addr.to_owned())).await
        }
        Addr::Tls(hp) => {
            let s = TcpStream::connect(&hp).await.map_err(cannot)?;
            let _ = s.set_nodelay(true);
            let peer = s.peer_addr().ok().map(|a| a.to_string());
            // The recorder sits below TLS: when the handshake fails, what came back in the
            // clear tells a plain gotalk or HTTP port from a TLS one.
            let s = tls_handshake(addr, &hp, Recorder::new(s, &seen), tls, wait).await?;
            Sock::adopt(s, &config, peer).await
        }
        _ => gotalk::connect_with(addr, &config).await,
    };
    res.map_err(|e| connect_error(addr, e, &seen.get(), wait))
}

async fn tls_handshake<T>(
    addr: &str,
    host_port: &str,
    stream: Recorder<T>,
    tls: &ClientTls,
    wait: Duration,
) -> Result<tokio_rustls::client::TlsStream<Recorder<T>>, Fail>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let seen = stream.seen.clone();
    let name = tls.servername.clone().unwrap_or_else(|| {
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    });
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| super::usage(format!("{name:?} is not a valid TLS server name")))?;
    let config = tls.tls_config()?.build().map_err(|e| fail(tls_text(&e)))?;
    let handshake = TlsConnector::from(config).connect(server_name, stream);
    match tokio::time::timeout(wait, handshake).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(fail(format!(
            "{addr}: TLS handshake failed: {}",
            tls_failure(&e, &Seen(seen).get(), &name)
        ))),
        Err(_) => Err(fail(format!(
            "{addr}: no TLS handshake within {wait:?}{}",
            first_words_hint(&Seen(seen).get())
        ))),
    }
}

const NOT_TRUSTED: &str = "the server's certificate is not trusted: no authority this client \
                           trusts has signed it. For a self-signed certificate or a private CA, \
                           pass that certificate (or the CA's) with --cacert FILE; --insecure \
                           skips the check, for testing only";

const CA_AS_SERVER: &str = "the server presents a CA certificate as its own (a self-signed \
                            certificate made by `openssl req -x509` is one, unless told \
                            otherwise), which is refused even with --cacert. Make it without \
                            CA:TRUE (openssl: -addext basicConstraints=critical,CA:FALSE) and \
                            pass it with --cacert, or sign it with a CA and pass the CA; \
                            --insecure skips the check, for testing only";

/// Why a TLS handshake failed, with what to do about it.
fn tls_failure(e: &std::io::Error, seen: &[u8], name: &str) -> String {
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            use rustls::CertificateError as C;
            let what = match cert {
                C::UnknownIssuer | C::BadSignature => NOT_TRUSTED.to_owned(),
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "the server's certificate is not issued for {name:?}: connect with the host \
                     name it was issued for, or name it with --servername NAME"
                ),
                C::Expired | C::ExpiredContext { .. } => {
                    "the server's certificate has expired (or this machine's clock is wrong)"
                        .to_owned()
                }
                // rustls-webpki's error, seen through rustls as an opaque `Other`.
                other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                    CA_AS_SERVER.to_owned()
                }
                other => format!(
                    "the server's certificate is not acceptable ({other:?}); --cacert FILE \
                     trusts a private CA, --insecure skips the check for testing"
                ),
            };
            what
        }
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the server refused the handshake ({alert:?}); does it require a client \
             certificate (--cert and --key)?"
        ),
        Some(rustls::Error::InvalidMessage(_))
        | Some(rustls::Error::InappropriateMessage { .. })
            if !seen.is_empty() =>
        {
            format!(
                "the server does not speak TLS on this port{}",
                first_words_hint(seen)
            )
        }
        _ if e.kind() == std::io::ErrorKind::UnexpectedEof => format!(
            "the server closed the connection during the handshake{}",
            first_words_hint(seen)
        ),
        _ => escape::line(&e.to_string()).into_owned(),
    }
}

/// What the first bytes from the other side suggest, as a hint to append.
fn first_words_hint(seen: &[u8]) -> String {
    if seen.is_empty() {
        return String::new();
    }
    let guess = if seen.starts_with(b"01") {
        "; it speaks gotalk without TLS: use tcp://HOST:PORT"
    } else if seen.starts_with(b"HTTP/") {
        "; it is an HTTP server (for a gotalk WebSocket endpoint use ws:// or wss://HOST:PORT/PATH)"
    } else {
        ""
    };
    format!("; it answered {}{guess}", quote(seen))
}

/// The first bytes, escaped and quoted, cut to a line's worth.
fn quote(seen: &[u8]) -> String {
    const SHOWN: usize = 120;
    let cut = &seen[..seen.len().min(SHOWN)];
    let more = if seen.len() > cut.len() { "…" } else { "" };
    format!("\"{}\"{more}", escape::quoted_bytes(cut))
}

/// The message for a connection that did not become a gotalk conversation.
fn connect_error(addr: &str, e: Error, seen: &[u8], wait: Duration) -> Fail {
    let gotalk_like = seen.len() >= 2 && seen[..2].iter().all(u8::is_ascii_hexdigit);
    let not_gotalk = !seen.is_empty() && !gotalk_like;
    let http_hint = "an HTTP server, for one, waits like this for a request; a gotalk WebSocket \
                     endpoint is reached with ws://HOST:PORT/PATH";
    match e {
        _ if not_gotalk => {
            let what = if seen.starts_with(b"HTTP/") {
                " (an HTTP server: for a gotalk WebSocket endpoint use ws://HOST:PORT/PATH)"
            } else if seen.first().is_some_and(|b| (0x14..=0x17).contains(b)) {
                " (a TLS record: use tls://HOST:PORT)"
            } else {
                ""
            };
            fail(format!(
                "{addr}: this is not a gotalk peer: it answered {}{what}",
                quote(seen)
            ))
        }
        Error::Timeout(_) if seen.is_empty() => fail(format!(
            "{addr}: this is not a gotalk peer, or not one that answers: nothing came back \
             within {wait:?}, where a gotalk peer sends its protocol version as soon as it \
             accepts a connection ({http_hint})"
        )),
        Error::Closed(CloseReason::PeerClosed) if seen.is_empty() => fail(format!(
            "{addr}: the other side closed the connection without a word: not a gotalk peer, \
             or one refusing connections (at its connection limit?)"
        )),
        Error::UnsupportedVersion(v) => fail(format!(
            "{addr}: the peer speaks gotalk protocol version {v:02x}; this client speaks 01"
        )),
        e => fail(format!("cannot connect to {addr}: {}", describe(&e))),
    }
}

/// An error from the library in words for a person at a terminal: who did what, with the
/// peer's texts escaped.
pub fn describe(e: &Error) -> String {
    match e {
        Error::Remote(msg) => format!("error result: {}", escape::line(msg)),
        Error::Retry { wait, message } => format!(
            "the peer asked to retry after {wait:?}: {}",
            escape::line(message)
        ),
        Error::Closed(reason) => close_text(reason),
        Error::Tls(_) => tls_text(e),
        Error::Io(io) => io_text(io),
        e => escape::line(&e.to_string()).into_owned(),
    }
}

/// Why a connection closed, said from this side: who broke the protocol, who hung up.
pub fn close_text(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Local => "the connection was closed on this side".into(),
        CloseReason::PeerClosed => "the peer closed the connection".into(),
        CloseReason::Protocol {
            code,
            by: Side::Local,
            detail,
        } => {
            let what = if *code == ProtocolErrorCode::TIMEOUT {
                "the peer went quiet for too long".to_owned()
            } else if detail.is_empty() {
                "the peer sent something that is not valid gotalk".to_owned()
            } else {
                format!(
                    "the peer sent something that is not valid gotalk ({})",
                    escape::line(detail)
                )
            };
            format!(
                "{what}; this side closed the connection with protocol error {} ({})",
                code.0,
                code.description()
            )
        }
        CloseReason::Protocol {
            code,
            by: Side::Remote,
            ..
        } => {
            let why = match *code {
                ProtocolErrorCode::INVALID_MSG => ": it found a message from this side invalid",
                ProtocolErrorCode::UNSUPPORTED => ": it does not speak protocol version 01",
                ProtocolErrorCode::TIMEOUT => ": this side was quiet for too long",
                _ => "",
            };
            format!(
                "the peer closed the connection with protocol error {} ({}){why}",
                code.0,
                code.description()
            )
        }
        CloseReason::Io { message, .. } => {
            format!("the connection failed: {}", escape::line(message))
        }
        other => escape::line(&other.to_string()).into_owned(),
    }
}

/// A TLS error of the library (loading files, a wss:// handshake), with a hint in the
/// command's own terms.
fn tls_text(e: &Error) -> String {
    let Error::Tls(msg) = e else {
        return escape::line(&e.to_string()).into_owned();
    };
    // The library's own hint names its API; this command's flags are what a user can change.
    let msg = msg.split("; ").next().unwrap_or(msg);
    let hint = if msg.contains("UnknownIssuer") || msg.contains("BadSignature") {
        NOT_TRUSTED
    } else if msg.contains("CaUsedAsEndEntity") {
        CA_AS_SERVER
    } else if msg.contains("NotValidForName") {
        "the server's certificate is not issued for this host name: connect with the name it \
         was issued for"
    } else {
        return format!("TLS: {}", escape::line(msg));
    };
    format!("TLS: {}: {hint}", escape::line(msg))
}

fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let hint = if text.contains("upgrade with HTTP 404") {
        " (is the path right? the demo's endpoint is /gotalk/)"
    } else {
        ""
    };
    format!("{}{hint}", escape::line(&text))
}

/// The first bytes the other side sent, shared with the [`Recorder`] that keeps them.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<u8>>>);

impl Seen {
    fn get(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A byte stream that keeps a copy of the first [`KEEP`] bytes it reads.
struct Recorder<T> {
    inner: T,
    seen: Arc<Mutex<Vec<u8>>>,
    /// Bytes still to keep; once zero, reads pass through without touching the lock.
    left: usize,
}

impl<T> Recorder<T> {
    fn new(inner: T, seen: &Seen) -> Recorder<T> {
        Recorder {
            inner,
            seen: seen.0.clone(),
            left: KEEP,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Recorder<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.left > 0 {
            let new = &buf.filled()[before..];
            let keep = &new[..new.len().min(self.left)];
            if !keep.is_empty() {
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(keep);
                self.left -= keep.len();
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recorder<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
