//! `gotalk listen`: a server that shows what clients send.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use gotalk::frame::MsgType;
use gotalk::{Config, HandlerError, Handlers, Limits, Sock, StreamReceiver, StreamSender};
use gotalk_cli::pretty::{Fields, Format, Printer, Seen};
use tokio::sync::watch;

use super::dial::close_text;
use super::{err_line, interrupted, out_line, usage, CmdResult, Fail, ServerTls};

/// Stream requests a connection may have open at once: enough for any client being watched,
/// and a bound on what one can hold.
pub const STREAMS: u32 = 64;

pub const HELP: &str = "\
Examples:
  gotalk listen localhost:1234 --echo
  gotalk listen localhost:1234 --reply greet='{\"greeting\":\"hi\"}' --json
  gotalk listen unix:///tmp/g.sock
  gotalk listen tls://127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem

Requests are answered from the --reply rules, then --echo; anything else gets the ErrorResult
'unknown operation \"OP\"'. Stream requests are shown part by part as they arrive (the end is
the part of size 0): --echo sends each part back at once, a --reply rule is the one result part
sent when the request has ended. The bound address is printed to stderr as 'listening on ADDR'.";

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

/// What `listen` and `connect` share: printing what a peer sends, and answering its requests
/// from the --reply rules, then --echo, else with "unknown operation".
pub struct Watch {
    printer: Printer,
    replies: HashMap<String, Bytes>,
    echo: bool,
    seen: AtomicU64,
    count: u64,
    done: watch::Sender<bool>,
}

impl Watch {
    /// `replies` are the --reply rules (checked here: a bad one is a usage error); after
    /// `count` requests and notifications (0: never) [`Watch::done`] turns true.
    pub fn new(
        printer: Printer,
        replies: &[String],
        echo: bool,
        count: u64,
    ) -> Result<Watch, Fail> {
        let mut rules = HashMap::new();
        for rule in replies {
            let Some((op, json)) = rule.split_once('=') else {
                return Err(usage(format!("--reply {rule:?}: expected OP=JSON")));
            };
            if let Err(e) = serde_json::from_str::<serde_json::Value>(json) {
                return Err(usage(format!("--reply {rule:?}: not valid JSON: {e}")));
            }
            rules.insert(op.to_owned(), Bytes::from(json.to_owned()));
        }
        Ok(Watch {
            printer,
            replies: rules,
            echo,
            seen: AtomicU64::new(0),
            count,
            done: watch::channel(false).0,
        })
    }

    /// Turns true once `count` requests and notifications have been seen.
    pub fn done(&self) -> watch::Receiver<bool> {
        self.done.subscribe()
    }

    /// Where and when, for a line about `sock`.
    pub fn seen(sock: &Sock) -> Seen {
        Seen {
            time: Some(SystemTime::now()),
            conn: sock.data::<u64>().map(|c| *c),
            peer: sock.peer_addr().map(str::to_owned),
            ..Seen::default()
        }
    }

    fn show(&self, sock: &Sock, t: MsgType, name: &str, payload: Option<&[u8]>) {
        let f = Fields {
            msg_type: Some(t),
            name: Some(name),
            payload,
            ..Fields::default()
        };
        out_line(&self.printer.fields(&Watch::seen(sock), &f));
    }

    fn counted(&self) {
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
            Err(unknown(op))
        }
    }

    /// A stream request: every part is shown as it arrives. --echo sends each part back as it
    /// comes; a --reply rule is sent as the one result part once the request has ended; else
    /// the request is read to its end and answered "unknown operation".
    async fn stream(
        &self,
        sock: &Sock,
        op: &str,
        mut parts: StreamReceiver,
        mut out: StreamSender,
    ) -> Result<(), HandlerError> {
        self.show(sock, MsgType::StreamRequest, op, None);
        let reply = self.replies.get(op);
        let res = loop {
            match parts.recv().await {
                Ok(Some(part)) => {
                    self.show(sock, MsgType::StreamRequestPart, op, Some(&part));
                    if reply.is_none() && self.echo {
                        if let Err(e) = out.write(part).await {
                            break Err(HandlerError::msg(e));
                        }
                    }
                }
                Ok(None) => {
                    self.show(sock, MsgType::StreamRequestPart, op, Some(b""));
                    break match reply {
                        Some(r) => out.write(r.clone()).await.map_err(HandlerError::msg),
                        None if self.echo => Ok(()),
                        None => Err(unknown(op)),
                    };
                }
                Err(e) => break Err(HandlerError::msg(e)),
            }
        };
        self.counted();
        res
    }

    /// Handlers that show and answer everything.
    pub fn handlers(self: &Arc<Self>) -> Handlers {
        let mut h = Handlers::new();
        let st = self.clone();
        h.handle_buffer("", move |sock, op, payload| {
            let st = st.clone();
            async move {
                st.show(&sock, MsgType::SingleRequest, &op, Some(&payload));
                st.counted();
                st.answer(&op, payload)
            }
        });
        let st = self.clone();
        h.handle_stream("", move |sock, op, parts, out| {
            let st = st.clone();
            async move { st.stream(&sock, &op, parts, out).await }
        });
        let st = self.clone();
        h.handle_buffer_notification("", move |sock, name, payload| {
            st.show(sock, MsgType::Notification, name, Some(&payload));
            st.counted();
        });
        h
    }
}

fn unknown(op: &str) -> HandlerError {
    HandlerError::msg(format!("unknown operation \"{op}\""))
}

pub async fn run(a: ListenArgs) -> CmdResult {
    let printer = Printer::new(Format::for_stdout(a.json), a.preview);
    let state = Arc::new(Watch::new(printer, &a.replies, a.echo, a.count)?);
    let mut done_rx = state.done();
    let conns = Arc::new(AtomicU64::new(0));
    let st_open = state.clone();
    let st_close = state.clone();
    let config = Config::new()
        .handlers(state.handlers())
        .limits(Limits::default().stream_requests(STREAMS))
        .on_open(move |sock| {
            let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
            sock.insert_data(n);
            out_line(&st_open.printer.event(&Watch::seen(sock), "connected", ""));
        })
        .on_close(move |sock, reason| {
            out_line(&st_close.printer.event(
                &Watch::seen(sock),
                "disconnected",
                &close_text(reason),
            ));
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
