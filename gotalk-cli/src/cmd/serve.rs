//! `gotalk serve`: the demo server. A web page with a chat and an echo/greet console
//! (WebSocket, served with `gotalk.js`), and the same operations over TCP.
//!
//! It runs on a developer's machine while they browse other sites, so it is careful with
//! browsers: WebSocket upgrades from pages of other origins are refused unless allowed on the
//! command line (any page a developer visits could otherwise drive it), and a chat member that
//! does not read cannot make the server hold its messages without bound (see [`chat`]). What
//! it listens on and what it refuses is logged with `tracing` (stderr, `RUST_LOG`).

mod chat;
mod service;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use gotalk::ws::axum::http::header;
use gotalk::ws::axum::{response::Html, routing::get, Router};
use gotalk::ws::{Endpoint, OriginPolicy, WsRequest};
use gotalk::{CloseReason, Config, Handlers, Limits, Server, Sock};

use self::chat::Chat;
use self::service::{ChatIn, ChatMsg, Demo, DemoServer, GreetIn, GreetOut, Typing};
use super::{err_line, fail, interrupted, out_line, CmdResult};
use gotalk::rooms::{Hub, RedisAdapter};

const HELP: &str = "\
Browsers: pages served by this server may open WebSockets to it; pages of other origins get 403
unless allowed with --allow-origin (or --allow-any-origin). Programs (no Origin header) may always
connect.

Several processes, one chat: start each with --redis redis://HOST:PORT (the same Redis, their own
--http and --tcp); a message posted on one reaches the pages of all. If Redis goes away, each
process's chat goes on alone and joins the others again when Redis is back (logged).

Logging: what the server listens on, refused WebSocket upgrades, disconnected chat members, Redis
going away and coming back, and connection errors are logged to stderr at level info. Set RUST_LOG to change it, e.g.
RUST_LOG=debug (every connection), RUST_LOG=warn (refusals only).";

/// Arguments of `gotalk serve`.
#[derive(Args, Debug)]
#[command(after_help = HELP)]
pub struct ServeArgs {
    /// Where the web page and the WebSocket endpoint (/gotalk/) are served
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1235")]
    pub http: String,
    /// Where gotalk over TCP is served ("off" to disable)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1234")]
    pub tcp: String,
    /// Also accept WebSocket upgrades from pages of this origin (scheme://host[:port]);
    /// repeatable
    #[arg(long = "allow-origin", value_name = "URL", value_parser = origin_arg)]
    pub allow_origin: Vec<String>,
    /// Accept WebSocket upgrades from pages of any origin (then any web site you visit can use
    /// this server)
    #[arg(long, conflicts_with = "allow_origin")]
    pub allow_any_origin: bool,
    /// Share the chat with the other `gotalk serve` processes using this Redis
    /// (redis://HOST:PORT)
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

/// `http://localhost:3000/` becomes `http://localhost:3000`; anything with a path, or without
/// a scheme, is refused.
fn origin_arg(s: &str) -> Result<String, String> {
    let origin = s.trim().trim_end_matches('/');
    let bad =
        || format!("{s:?} is not an origin: use scheme://host[:port], e.g. http://localhost:3000");
    let (scheme, authority) = origin.split_once("://").ok_or_else(bad)?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        || authority.is_empty()
        || authority.contains(['/', '?', '#', ' ', '@'])
    {
        return Err(bad());
    }
    Ok(origin.to_owned())
}

/// Which pages may open a WebSocket: this server's own (the `Origin` names the `Host` the page
/// was loaded from), those allowed on the command line, and programs (no `Origin`). Refusals
/// are logged.
///
/// On a loopback address the `Host` must also be a loopback name: a page of another site
/// whose name was made to resolve to 127.0.0.1 (DNS rebinding) has a matching `Origin` and
/// `Host`, but not a loopback one.
fn origin_policy(a: &ServeArgs, http: SocketAddr) -> OriginPolicy {
    if a.allow_any_origin {
        return OriginPolicy::Any;
    }
    let same = OriginPolicy::SameHost;
    let allowed = OriginPolicy::allow(a.allow_origin.clone());
    let loopback = http.ip().is_loopback();
    OriginPolicy::check(move |req: &WsRequest| {
        let Some(origin) = req.origin() else {
            return true;
        };
        if allowed.allows(req) {
            return true;
        }
        let same_host = same.allows(req);
        let rebound = loopback && !req.host().is_some_and(is_loopback_host);
        if same_host && !rebound {
            return true;
        }
        let host = req.host().unwrap_or("");
        let peer = req
            .peer_addr()
            .map_or_else(|| "?".into(), |a| a.to_string());
        if same_host {
            tracing::warn!(
                origin,
                host,
                peer,
                "WebSocket refused: a page whose host is not a loopback name (DNS rebinding?)"
            );
        } else {
            tracing::warn!(
                origin,
                host,
                peer,
                "WebSocket refused: a page of another origin (see --allow-origin)"
            );
        }
        false
    })
}

/// Whether `host` (a `Host` header: name or IP, with or without a port) names this machine's
/// loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The typed operations of the demo (see [`service`]).
struct DemoImpl(Arc<Chat>);

impl Demo for DemoImpl {
    async fn greet(&self, input: GreetIn) -> GreetOut {
        GreetOut {
            greeting: format!("Hello {}", input.name),
        }
    }

    async fn chat_send(&self, input: ChatIn) -> Result<String, gotalk::HandlerError> {
        self.0.post(&input.name, &input.text)?;
        Ok("ok".into())
    }

    async fn chat_history(&self) -> Result<Vec<ChatMsg>, gotalk::HandlerError> {
        // Kept encoded for the broadcasts; decoded here, once per page that (re)connects.
        Ok(serde_json::from_slice(&self.0.history())?)
    }

    fn chat_typing(&self, sock: &Sock, input: Typing) {
        self.0.typing(sock, &input.name)
    }
}

fn handlers(chat: Arc<Chat>) -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_sock, _op, payload| async move { Ok(payload) });
    h.handle_stream(
        "stream-echo",
        |_sock, _op, mut input, mut output| async move {
            while let Some(part) = input.recv().await? {
                output.write(part).await?;
            }
            Ok(())
        },
    );
    // greet, chat/send, chat/history (any payload, or none) and chat/typing.
    h.service(DemoServer::new(DemoImpl(chat)));
    h
}

fn config(chat: Arc<Chat>) -> Config {
    let on_open = chat.clone();
    let on_close = chat.clone();
    Config::new()
        .handlers(handlers(chat))
        .limits(
            Limits::default()
                .stream_requests(64)
                .write_buffer(chat::WRITE_BUFFER),
        )
        .on_open(move |sock| {
            tracing::debug!(peer = sock.peer_addr().unwrap_or("?"), "connection opened");
            on_open.join(sock);
        })
        .on_close(move |sock, reason| {
            on_close.leave(sock);
            let peer = sock.peer_addr().unwrap_or("?");
            match reason {
                CloseReason::Local | CloseReason::PeerClosed => {
                    tracing::debug!(peer, %reason, "connection closed")
                }
                _ => tracing::info!(peer, %reason, "connection ended with an error"),
            }
        })
}

/// Logs to stderr, at `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some(format!("{v:?}: {e}"))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
    if let Some(bad) = bad {
        tracing::warn!("RUST_LOG {bad}; logging at info");
    }
}

const PAGE: &str = include_str!("serve/page.html");
const FAVICON: &str = include_str!("serve/favicon.svg");

pub async fn run(a: ServeArgs) -> CmdResult {
    init_logging();
    let hub = match &a.redis {
        None => Hub::builder(),
        Some(url) => Hub::builder()
            .adapter(RedisAdapter::new(url).map_err(|e| fail(format!("--redis {url}: {e}")))?),
    };
    let chat = Arc::new(Chat::new(hub).map_err(|e| fail(format!("chat: {e}")))?);
    let config = config(chat);
    let tcp = if a.tcp == "off" {
        None
    } else {
        Some(
            Server::bind(&a.tcp, config.clone())
                .await
                .map_err(|e| fail(format!("cannot listen on {}: {e}", a.tcp)))?,
        )
    };
    let listener = tokio::net::TcpListener::bind(&a.http)
        .await
        .map_err(|e| fail(format!("cannot listen on {}: {e}", a.http)))?;
    let http = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot listen on {}: {e}", a.http)))?;
    // The page's hints name the TCP address actually served; without one, the page fills in
    // its own WebSocket address.
    let tcp_hp = tcp.as_ref().map(|s| {
        let at = s.local_addr().to_string();
        at.trim_start_matches("tcp://").to_owned()
    });
    let page = PAGE.replace("{{CLI_ADDR}}", tcp_hp.as_deref().unwrap_or(""));
    // The page's typed calls and handlers, generated from `service`.
    let module = Bytes::from(service::page_module());
    let icon = || async {
        (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "max-age=86400"),
            ],
            Bytes::from_static(FAVICON.as_bytes()),
        )
    };
    let endpoint = Endpoint::new(config).origin(origin_policy(&a, http));
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route(
            "/demo.js",
            get(move || async move { ([(header::CONTENT_TYPE, "text/javascript")], module) }),
        )
        .route("/favicon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .merge(endpoint.router("/gotalk/"));
    let web = tokio::spawn(async move {
        if let Err(e) = gotalk::ws::serve(listener, app).await {
            tracing::error!("web server failed: {e}");
            err_line(&format!("gotalk: web server failed: {e}"));
        }
    });
    let origins = if a.allow_any_origin {
        "any".to_owned()
    } else {
        std::iter::once("this server's pages".to_owned())
            .chain(a.allow_origin.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    tracing::info!("listening for the web page on http://{http}/");
    tracing::info!(
        "listening for WebSocket upgrades on ws://{http}/gotalk/ (from pages of: {origins})"
    );
    match &tcp_hp {
        Some(hp) => tracing::info!("listening for gotalk over TCP on tcp://{hp}"),
        None => tracing::info!("gotalk over TCP is off"),
    }
    out_line("gotalk demo server");
    out_line(&format!(
        "  web page   http://{http}/   (chat, and an echo/greet console)"
    ));
    out_line(&format!("  WebSocket  ws://{http}/gotalk/"));
    if let Some(url) = &a.redis {
        tracing::info!("sharing the chat through {url}");
        out_line(&format!("  chat       shared through {url}"));
    }
    let cli_addr = match &tcp_hp {
        Some(hp) => {
            out_line(&format!("  TCP        tcp://{hp}"));
            hp.clone()
        }
        None => format!("ws://{http}/gotalk/"),
    };
    out_line(&format!(
        "try: gotalk call {cli_addr} greet '{{\"name\":\"you\"}}'\n     gotalk call {cli_addr} chat/send '{{\"name\":\"cli\",\"text\":\"hi from the shell\"}}'"
    ));
    out_line(
        "operations: echo, greet, stream-echo, chat/send, chat/history; notifications chat/msg, chat/typing",
    );
    out_line("Ctrl-C to stop");
    interrupted().await;
    if let Some(s) = tcp {
        s.shutdown(Duration::from_secs(1)).await;
    }
    web.abort();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_on_the_command_line() {
        assert_eq!(
            origin_arg("http://localhost:3000/").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            origin_arg("https://example.com").unwrap(),
            "https://example.com"
        );
        for bad in [
            "localhost:3000",
            "http://",
            "http://a/b",
            "://a",
            "http://a b",
        ] {
            assert!(origin_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:1235",
            "LOCALHOST.",
            "app.localhost:8080",
            "127.0.0.1:1235",
            "127.1.2.3",
            "[::1]:1235",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com:1235",
            "192.168.1.2:1235",
            "[::2]:1235",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
