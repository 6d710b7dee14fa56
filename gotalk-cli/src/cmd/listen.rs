//! `gotalk listen`: a server that shows what clients send.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use gotalk::frame::MsgType;
use gotalk::{Config, HandlerError, Handlers, Sock};
use gotalk_cli::pretty::{Fields, Format, Printer, Seen};
use tokio::sync::watch;

use super::{err_line, interrupted, out_line, usage, CmdResult, ServerTls};

pub const HELP: &str = "\
Examples:
  gotalk listen localhost:1234 --echo
  gotalk listen localhost:1234 --reply greet='{\"greeting\":\"hi\"}' --json
  gotalk listen unix:///tmp/g.sock
  gotalk listen tls://127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem

Requests are answered from the --reply rules, then --echo; anything else gets the ErrorResult
'unknown operation \"OP\"'. The bound address is printed to stderr as 'listening on ADDR'.";

/// Arguments of `gotalk listen`.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Where to listen (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT, ws://HOST:PORT/PATH)
    pub addr: String,
    /// Answer requests for OP with this JSON (repeatable)
    #[arg(long = "reply", value_name = "OP=JSON")]
    pub replies: Vec<String>,
    /// Answer requests that no --reply rule matches with their own payload
    #[arg(long)]
    pub echo: bool,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// Show at most this many bytes of each payload
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub preview: usize,
    /// Exit after this many requests and notifications (0: until interrupted)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: u64,
    #[command(flatten)]
    pub tls: ServerTls,
}

struct State {
    printer: Printer,
    replies: HashMap<String, Bytes>,
    echo: bool,
    seen: AtomicU64,
    count: u64,
    done: watch::Sender<bool>,
}

impl State {
    fn show(&self, sock: &Sock, t: MsgType, name: &str, payload: &[u8]) {
        let seen = Seen {
            time: Some(SystemTime::now()),
            conn: sock.data::<u64>().map(|c| *c),
            peer: sock.peer_addr().map(str::to_owned),
            ..Seen::default()
        };
        let f = Fields {
            msg_type: Some(t),
            name: Some(name),
            payload: Some(payload),
            ..Fields::default()
        };
        out_line(&self.printer.fields(&seen, &f));
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.count > 0 && n >= self.count {
            self.done.send_replace(true);
        }
    }

    fn answer(&self, op: &str, payload: Bytes) -> Result<Bytes, HandlerError> {
        if let Some(r) = self.replies.get(op) {
            Ok(r.clone())
        } else if self.echo {
            Ok(payload)
        } else {
            Err(HandlerError::msg(format!("unknown operation \"{op}\"")))
        }
    }
}

pub async fn run(a: ListenArgs) -> CmdResult {
    let mut replies = HashMap::new();
    for rule in &a.replies {
        let Some((op, json)) = rule.split_once('=') else {
            return Err(usage(format!("--reply {rule:?}: expected OP=JSON")));
        };
        if let Err(e) = serde_json::from_str::<serde_json::Value>(json) {
            return Err(usage(format!("--reply {rule:?}: not valid JSON: {e}")));
        }
        replies.insert(op.to_owned(), Bytes::from(json.to_owned()));
    }
    let (done, mut done_rx) = watch::channel(false);
    let state = Arc::new(State {
        printer: Printer::new(Format::for_stdout(a.json), a.preview),
        replies,
        echo: a.echo,
        seen: AtomicU64::new(0),
        count: a.count,
        done,
    });

    let mut h = Handlers::new();
    let st = state.clone();
    h.handle_buffer("", move |sock, op, payload| {
        let st = st.clone();
        async move {
            st.show(&sock, MsgType::SingleRequest, &op, &payload);
            st.answer(&op, payload)
        }
    });
    let st = state.clone();
    h.handle_buffer_notification("", move |sock, name, payload| {
        st.show(sock, MsgType::Notification, name, &payload);
    });
    let conns = Arc::new(AtomicU64::new(0));
    let st_open = state.clone();
    let st_close = state.clone();
    let config = Config::new()
        .handlers(h)
        .on_open(move |sock| {
            let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
            sock.insert_data(n);
            let seen = Seen {
                time: Some(SystemTime::now()),
                conn: Some(n),
                peer: sock.peer_addr().map(str::to_owned),
                ..Seen::default()
            };
            out_line(&st_open.printer.event(&seen, "connected", ""));
        })
        .on_close(move |sock, reason| {
            let seen = Seen {
                time: Some(SystemTime::now()),
                conn: sock.data::<u64>().map(|c| *c),
                peer: sock.peer_addr().map(str::to_owned),
                ..Seen::default()
            };
            out_line(
                &st_close
                    .printer
                    .event(&seen, "disconnected", &reason.to_string()),
            );
        });
    let server = a.tls.bind(&a.addr, config).await?;
    err_line(&format!("listening on {}", server.local_addr()));
    tokio::select! {
        _ = interrupted() => {}
        _ = done_rx.wait_for(|d| *d) => {}
    }
    // Let the last answer go out before closing.
    server.shutdown(Duration::from_millis(500)).await;
    Ok(ExitCode::SUCCESS)
}
