//! `gotalk proxy`: forward bytes unchanged both ways and print every message decoded.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use clap::Args;
use gotalk::Addr;
use gotalk_cli::pretty::{Dir, Fields, Format, Printer, Seen};
use gotalk_cli::wire::{Frame, StreamDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{
    err_line, fail, interrupted, out_line, parse_addr, usage, ClientTls, CmdResult, Fail, ServerTls,
};

pub const HELP: &str = "\
Examples:
  gotalk proxy --listen localhost:4000 --upstream localhost:1234
  gotalk proxy --listen localhost:4000 --upstream tls://example.com:443 --json
  gotalk proxy --listen unix:///tmp/debug.sock --upstream unix:///tmp/app.sock --once

Point the client at --listen instead of the server. Bytes are forwarded exactly as they arrive;
each direction is decoded on the side, so a peer that breaks the protocol is shown (with the
byte offset and the reason) without the proxy changing what the other side receives.
Direction: c→s is client to server, s→c server to client. Addresses: tcp://, unix://, tls://.";

/// Arguments of `gotalk proxy`.
#[derive(Args, Debug)]
#[command(
    mut_arg("cacert", |a| a.help(
        "For a tls:// upstream: trust only the CA certificates in this PEM file (default: the \
         Mozilla roots)"
    )),
    mut_arg("insecure", |a| a.help(
        "For a tls:// upstream: do not check its certificate at all. For testing only: anyone \
         on the way can then read and change the conversation"
    ))
)]
pub struct ProxyArgs {
    /// Where clients connect (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT)
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The real server (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT)
    #[arg(long, value_name = "ADDR")]
    pub upstream: String,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// Show at most this many bytes of each payload
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub preview: usize,
    /// Payloads larger than this are forwarded but not buffered for display
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_payload: u32,
    /// Serve one connection, then exit
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub server_tls: ServerTls,
    #[command(flatten)]
    pub client_tls: ClientTls,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

enum Listener {
    Tcp(TcpListener, Option<TlsAcceptor>),
    Unix(UnixListener),
}

async fn bind(a: &ProxyArgs) -> Result<(Listener, String), Fail> {
    let tls = a.server_tls.server_config()?;
    let cannot = |e: std::io::Error| fail(format!("cannot listen on {}: {e}", a.listen));
    match (parse_addr(&a.listen)?, tls) {
        (Addr::Tcp(hp), None) => {
            let l = TcpListener::bind(&hp).await.map_err(cannot)?;
            let at = format!("tcp://{}", l.local_addr().map_err(cannot)?);
            Ok((Listener::Tcp(l, None), at))
        }
        (Addr::Tls(hp), Some(tls)) => {
            let acceptor = TlsAcceptor::from(tls.build().map_err(usage)?);
            let l = TcpListener::bind(&hp).await.map_err(cannot)?;
            let at = format!("tls://{}", l.local_addr().map_err(cannot)?);
            Ok((Listener::Tcp(l, Some(acceptor)), at))
        }
        (Addr::Tls(_), None) => Err(usage(
            "a tls:// --listen address needs --tls-cert and --tls-key",
        )),
        (Addr::Unix(p), None) => {
            let l = UnixListener::bind(&p).map_err(cannot)?;
            Ok((Listener::Unix(l), format!("unix://{}", p.display())))
        }
        (_, Some(_)) => Err(usage("--tls-cert is for a tls:// --listen address")),
        (other, _) => Err(usage(format!(
            "proxy listens on tcp://, unix:// or tls:// addresses, not {other}"
        ))),
    }
}

async fn accept(l: &Listener) -> std::io::Result<(BoxIo, String)> {
    match l {
        Listener::Tcp(l, tls) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            match tls {
                Some(acc) => Ok((Box::new(acc.accept(s).await?), peer.to_string())),
                None => Ok((Box::new(s), peer.to_string())),
            }
        }
        Listener::Unix(l) => Ok((Box::new(l.accept().await?.0), "unix".into())),
    }
}

async fn connect_upstream(a: &ProxyArgs) -> Result<BoxIo, String> {
    match a.upstream.parse::<Addr>().map_err(|e| e.to_string())? {
        Addr::Tcp(hp) => {
            let s = TcpStream::connect(&hp).await.map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Addr::Unix(p) => Ok(Box::new(
            UnixStream::connect(&p).await.map_err(|e| e.to_string())?,
        )),
        Addr::Tls(hp) => {
            let tls = a.client_tls.tls_config().map_err(|e| e.message)?;
            let name = a.client_tls.servername.clone().unwrap_or_else(|| {
                let host = hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h);
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
            let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
            let connector = TlsConnector::from(tls.build().map_err(|e| e.to_string())?);
            let s = TcpStream::connect(&hp).await.map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let s = connector
                .connect(name, s)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            Ok(Box::new(s))
        }
        other => Err(format!(
            "proxy forwards to tcp://, unix:// or tls:// upstreams, not {other}"
        )),
    }
}

pub async fn run(a: ProxyArgs) -> CmdResult {
    parse_addr(&a.upstream)?;
    a.client_tls.check(&a.upstream)?;
    let (listener, at) = bind(&a).await?;
    err_line(&format!(
        "proxy listening on {at}, forwarding to {}",
        a.upstream
    ));
    let printer = Arc::new(Printer::new(Format::for_stdout(a.json), a.preview));
    let a = Arc::new(a);
    let next_conn = AtomicU64::new(1);
    loop {
        let (client, peer) = tokio::select! {
            _ = interrupted() => break,
            r = accept(&listener) => match r {
                Ok(c) => c,
                Err(e) => {
                    err_line(&format!("accept failed: {e}"));
                    continue;
                }
            },
        };
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(serve(a.clone(), printer.clone(), conn, client, peer));
        if a.once {
            let _ = task.await;
            break;
        }
    }
    if let Listener::Unix(_) = listener {
        if let Ok(Addr::Unix(p)) = a.listen.parse::<Addr>() {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(a: Arc<ProxyArgs>, printer: Arc<Printer>, conn: u64, client: BoxIo, peer: String) {
    let seen = |dir: Option<Dir>, offset: Option<u64>| Seen {
        time: Some(SystemTime::now()),
        conn: Some(conn),
        dir,
        offset,
        ..Seen::default()
    };
    out_line(&printer.event(&seen(None, None), "connected", &format!("from {peer}")));
    let upstream = match connect_upstream(&a).await {
        Ok(u) => u,
        Err(e) => {
            out_line(&printer.event(
                &seen(None, None),
                "upstream-failed",
                &format!("{}: {e}", a.upstream),
            ));
            return;
        }
    };
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let c2s = pump(
        printer.clone(),
        conn,
        Dir::ClientToServer,
        a.max_payload,
        cr,
        uw,
    );
    let s2c = pump(
        printer.clone(),
        conn,
        Dir::ServerToClient,
        a.max_payload,
        ur,
        cw,
    );
    tokio::join!(c2s, s2c);
    out_line(&printer.event(&seen(None, None), "disconnected", ""));
}

async fn pump<R, W>(
    printer: Arc<Printer>,
    conn: u64,
    dir: Dir,
    max_payload: u32,
    mut r: R,
    mut w: W,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut dec = StreamDecoder::new(true, max_payload);
    let mut buf = vec![0u8; 64 * 1024];
    let seen = |offset: u64| Seen {
        time: Some(SystemTime::now()),
        conn: Some(conn),
        dir: Some(dir),
        offset: Some(offset),
        ..Seen::default()
    };
    let end = loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break "eof".to_owned(),
            Ok(n) => n,
            Err(e) => break format!("read error: {e}"),
        };
        // Forward first, then print: the proxy must not slow the conversation down more
        // than it has to.
        if let Err(e) = w.write_all(&buf[..n]).await {
            break format!("write error: {e}");
        }
        let _ = w.flush().await;
        if dec.error().is_some() {
            continue;
        }
        let res = dec.feed(&buf[..n], |offset, f| {
            let s = seen(offset);
            let line = match f {
                Frame::Version(v) => printer.version(&s, v),
                Frame::Message(m) => printer.message(&s, m),
                Frame::Oversized(o) => {
                    printer.fields(
                        &s,
                        &Fields {
                            msg_type: Some(o.msg_type),
                            id: o.id,
                            name: o.name.as_ref().map(|n| n.as_str()),
                            ..Fields::default()
                        },
                    ) + &format!(
                        " (payload of {} bytes not shown: over --max-payload)",
                        o.size
                    )
                }
            };
            out_line(&line);
        });
        if let Err(e) = res {
            out_line(&printer.event(
                &seen(e.offset),
                "invalid",
                &format!("{} (bytes still forwarded, no longer decoded)", e.reason),
            ));
        }
    };
    let _ = w.shutdown().await;
    if end == "eof" {
        if dec.error().is_none() {
            if let Err(e) = dec.finish() {
                out_line(&printer.event(&seen(e.offset), "truncated", &e.reason));
            }
        }
        out_line(&printer.event(&seen(dec.offset()), "closed", ""));
    } else {
        out_line(&printer.event(&seen(dec.offset()), "closed", &end));
    }
}
