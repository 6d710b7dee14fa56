//! `gotalk connect`: an interactive session that stays connected.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use gotalk::frame::MsgType;
use gotalk::{CloseReason, Config, Error, Limits, Sock};
use gotalk_cli::pretty::{Fields, Format, Printer, Seen};
use gotalk_cli::util::{read_line, Line};
use tokio::io::BufReader;
use tokio::sync::Semaphore;

use super::dial::{close_text, describe, dial};
use super::listen::{Watch, STREAMS};
use super::{duration_arg, fail, out_line, ClientTls, CmdResult};

pub const HELP: &str = "\
Type one command per line (or pipe them in):
  call OP [PAYLOAD]      send a request; its result is printed when it comes
  stream OP [PAYLOAD]    send a stream request of one part; result parts print as they come
  notify NAME [PAYLOAD]  send a notification
  PAYLOAD                with --op OP: a request to OP (a line that is not a command)
  help                   list the commands
  quit                   wait for the answers still due, close and exit (so does end of input)
Empty lines and lines starting with # are skipped. PAYLOAD is JSON (checked before it is sent)
unless --raw, which sends the rest of the line as it is.

Requests run side by side; each result is printed with its request's number ([1], [2], ...)
and operation. Notifications and requests from the peer are printed as they arrive; its
requests are answered like `gotalk listen` does: --reply rules, then --echo, else 'unknown
operation'. With --jsonl every line of output is one JSON object (\"call\": the request's number,
\"type\"/\"kind\": the message type, \"op\"/\"name\", \"payload\", \"json\"; or \"event\" for connected,
disconnected and input errors).

Exit code 0 when the input ends or the peer closes the connection, 1 when the connection
fails or the peer breaks the protocol.

Examples:
  gotalk connect localhost:1234
  gotalk connect ws://localhost:1235/gotalk/ --jsonl
  printf 'call greet {\"name\":\"Bob\"}\\nnotify chat/typing {}\\n' | gotalk connect localhost:1234
  gotalk connect localhost:1234 --op echo --raw";

/// Arguments of `gotalk connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Where to connect (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT, ws://...)
    pub addr: String,
    /// Send lines that are not commands as requests to this operation
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Send payloads as they are typed (not checked as JSON)
    #[arg(long)]
    pub raw: bool,
    /// One JSON object per line of output, for scripts
    #[arg(long)]
    pub jsonl: bool,
    /// Answer the peer's requests for OP with this JSON (repeatable)
    #[arg(long = "reply", value_name = "OP=JSON")]
    pub replies: Vec<String>,
    /// Answer the peer's requests that no --reply rule matches with their own payload
    #[arg(long)]
    pub echo: bool,
    /// Show at most this many bytes of each payload
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub preview: usize,
    /// Give up connecting, or on a request, after this long (e.g. 500ms, 10s; 0 waits forever)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// Requests of ours in flight at once; past this, reading the input waits.
const IN_FLIGHT: usize = 1024;

/// A parsed input line.
#[derive(Debug, PartialEq)]
enum Input<'a> {
    Call(&'a str, &'a str),
    Stream(&'a str, &'a str),
    Notify(&'a str, &'a str),
    Help,
    Quit,
    Skip,
}

/// Splits a line into a command. Lines that are not commands go to `default_op`.
fn parse<'a>(line: &'a str, default_op: Option<&'a str>) -> Result<Input<'a>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Input::Skip);
    }
    let (word, rest) = split_word(line);
    match word {
        "call" | "stream" | "notify" => {
            let (name, payload) = split_word(rest);
            if name.is_empty() {
                return Err(format!("{word} needs a name: {word} NAME [PAYLOAD]"));
            }
            Ok(match word {
                "call" => Input::Call(name, payload),
                "stream" => Input::Stream(name, payload),
                _ => Input::Notify(name, payload),
            })
        }
        "help" | "?" => Ok(Input::Help),
        "quit" | "exit" => Ok(Input::Quit),
        _ => match default_op {
            Some(op) => Ok(Input::Call(op, line)),
            None => Err(format!(
                "unknown command {:?}: type call OP PAYLOAD, notify NAME PAYLOAD or help \
                 (or start with --op OP to send plain lines to OP)",
                gotalk_cli::escape::line(word)
            )),
        },
    }
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

struct Session {
    sock: Sock,
    printer: Printer,
    raw: bool,
    timeout: Duration,
}

impl Session {
    fn seen(call: Option<u64>) -> Seen {
        Seen {
            time: Some(SystemTime::now()),
            call,
            ..Seen::default()
        }
    }

    fn event(&self, call: Option<u64>, event: &str, detail: &str) {
        out_line(&self.printer.event(&Session::seen(call), event, detail));
    }

    fn payload(&self, text: &str) -> Result<Bytes, String> {
        if !self.raw && !text.is_empty() {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
                return Err(format!(
                    "not valid JSON ({e}); start with --raw to send text as it is"
                ));
            }
        }
        Ok(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn show(&self, n: u64, t: MsgType, op: &str, payload: &[u8], wait_ms: Option<u32>) {
        let f = Fields {
            msg_type: Some(t),
            name: Some(op),
            wait_ms,
            payload: Some(payload),
            ..Fields::default()
        };
        out_line(&self.printer.fields(&Session::seen(Some(n)), &f));
    }

    /// Shows how a request failed: an error or retry result like a result, anything else as
    /// a "failed" event.
    fn failed(&self, n: u64, op: &str, e: &Error) {
        match e {
            Error::Remote(text) => self.show(n, MsgType::ErrorResult, op, text.as_bytes(), None),
            Error::Retry { wait, message } => {
                let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
                self.show(n, MsgType::RetryResult, op, message.as_bytes(), Some(ms));
            }
            e => {
                let detail = format!("{}: {}", gotalk_cli::escape::line(op), describe(e));
                self.event(Some(n), "failed", &detail);
            }
        }
    }

    /// A stream request of one part; every result part is shown as it comes, the end as a
    /// part of size 0.
    async fn stream(&self, n: u64, op: &str, payload: Bytes) {
        let res = async {
            let (mut tx, mut rx) = self.sock.stream_request(op).await?;
            if !payload.is_empty() {
                tx.write(payload).await?;
            }
            tx.end().await?;
            loop {
                let next = if self.timeout.is_zero() {
                    rx.recv().await?
                } else {
                    match tokio::time::timeout(self.timeout, rx.recv()).await {
                        Ok(r) => r?,
                        Err(_) => return Ok(false),
                    }
                };
                match next {
                    Some(part) => self.show(n, MsgType::StreamResult, op, &part, None),
                    None => {
                        self.show(n, MsgType::StreamResult, op, b"", None);
                        return Ok(true);
                    }
                }
            }
        }
        .await;
        match res {
            Ok(true) => {}
            Ok(false) => {
                let detail = format!("{op}: no part within {:?}", self.timeout);
                self.event(Some(n), "timeout", &detail);
            }
            Err(e) => self.failed(n, op, &e),
        }
    }

    async fn call(&self, n: u64, op: &str, payload: Bytes) {
        let request = self.sock.buffer_request(op, payload);
        let res = if self.timeout.is_zero() {
            request.await
        } else {
            match tokio::time::timeout(self.timeout, request).await {
                Ok(r) => r,
                Err(_) => {
                    let detail = format!("{op}: no answer within {:?}", self.timeout);
                    return self.event(Some(n), "timeout", &detail);
                }
            }
        };
        match res {
            Ok(out) => self.show(n, MsgType::SingleResult, op, &out, None),
            Err(e) => self.failed(n, op, &e),
        }
    }
}

pub async fn run(a: ConnectArgs) -> CmdResult {
    let printer = Printer::new(Format::for_stdout(a.jsonl), a.preview);
    let watch = Arc::new(Watch::new(printer.clone(), &a.replies, a.echo, 0)?);
    let on_close = printer.clone();
    // Heartbeats stay on (the library's default): a session may sit idle longer than the
    // peer's read timeout.
    let config = Config::new()
        .handlers(watch.handlers())
        .limits(Limits::default().stream_requests(STREAMS))
        .on_close(move |_sock, reason| {
            out_line(&on_close.event(&Session::seen(None), "disconnected", &close_text(reason)));
        });
    let dialing = dial(&a.addr, &config, &a.tls, a.timeout);
    let sock = if a.timeout.is_zero() {
        dialing.await?
    } else {
        match tokio::time::timeout(a.timeout, dialing).await {
            Ok(sock) => sock?,
            Err(_) => {
                return Err(fail(format!(
                    "cannot connect to {}: no connection within {:?}",
                    a.addr, a.timeout
                )))
            }
        }
    };
    let session = Arc::new(Session {
        sock: sock.clone(),
        printer,
        raw: a.raw,
        timeout: a.timeout,
    });
    session.event(None, "connected", &a.addr);

    let max_line = Limits::default().max_payload as usize + 4096;
    let mut input = BufReader::new(tokio::io::stdin());
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    loop {
        let line = tokio::select! {
            line = read_line(&mut input, max_line) => line,
            _ = sock.closed() => break,
        };
        let line = match line {
            Ok(Line::Text(bytes)) => bytes,
            Ok(Line::TooLong) => {
                session.event(
                    None,
                    "input-error",
                    &format!("a line over {max_line} bytes, skipped"),
                );
                continue;
            }
            Ok(Line::End) => break,
            Err(e) => {
                session.event(None, "input-error", &format!("reading standard input: {e}"));
                break;
            }
        };
        let Ok(line) = std::str::from_utf8(&line) else {
            session.event(None, "input-error", "a line that is not UTF-8, skipped");
            continue;
        };
        let input = parse(line, a.op.as_deref());
        match input {
            Ok(Input::Skip) => {}
            Ok(Input::Help) => {
                let commands = HELP.split("\n\n").next().unwrap_or(HELP);
                if a.jsonl {
                    session.event(None, "help", commands);
                } else {
                    out_line(commands);
                }
            }
            Ok(Input::Quit) => break,
            Ok(Input::Notify(name, text)) => match session.payload(text) {
                Ok(p) => {
                    if let Err(e) = sock.buffer_notify(name, p).await {
                        session.event(None, "failed", &format!("notify {name}: {}", describe(&e)));
                    }
                }
                Err(e) => session.event(None, "input-error", &e),
            },
            Ok(Input::Call(op, text) | Input::Stream(op, text)) => match session.payload(text) {
                Ok(p) => {
                    // Waits when IN_FLIGHT requests are outstanding: the input is read no
                    // faster than the peer answers.
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break;
                    };
                    n += 1;
                    let (s, op) = (session.clone(), op.to_owned());
                    let stream = matches!(input, Ok(Input::Stream(..)));
                    tasks.spawn(async move {
                        if stream {
                            s.stream(n, &op, p).await;
                        } else {
                            s.call(n, &op, p).await;
                        }
                        drop(permit);
                    });
                    // Finished tasks are collected as we go, so the set stays small.
                    while tasks.try_join_next().is_some() {}
                }
                Err(e) => session.event(None, "input-error", &e),
            },
            Err(e) => session.event(None, "input-error", &e),
        }
    }
    // The answers still due come in (each within --timeout) before the connection closes.
    while tasks.join_next().await.is_some() {}
    let reason = sock.close_reason();
    sock.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), sock.closed()).await;
    Ok(match reason {
        None | Some(CloseReason::Local | CloseReason::PeerClosed) => ExitCode::SUCCESS,
        Some(_) => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse("call greet {\"a\": 1}", None),
            Ok(Input::Call("greet", "{\"a\": 1}"))
        );
        assert_eq!(parse("  notify  n  ", None), Ok(Input::Notify("n", "")));
        assert_eq!(parse("stream up x y", None), Ok(Input::Stream("up", "x y")));
        assert_eq!(parse("# note", None), Ok(Input::Skip));
        assert_eq!(parse("", None), Ok(Input::Skip));
        assert_eq!(parse("quit", None), Ok(Input::Quit));
        assert_eq!(
            parse("[1, 2]", Some("sum")),
            Ok(Input::Call("sum", "[1, 2]"))
        );
        assert!(parse("[1, 2]", None).is_err());
        assert!(parse("call", None).is_err());
    }
}
