//! `gotalk call` and `gotalk notify`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use gotalk::{Config, Error, Handlers, Limits, Sock};
use gotalk_cli::escape;
use gotalk_cli::util::{read_line, read_payload_arg, Line};

use super::dial::{describe, dial};
use super::{duration_arg, err_line, fail, usage, ClientTls, CmdResult, Fail};

pub const CALL_HELP: &str = "\
Examples:
  gotalk call localhost:1234 greet '{\"name\":\"Bob\"}'
  gotalk call localhost:1234 echo --raw hello
  gotalk call unix:///tmp/app.sock config @request.json
  echo '{\"name\":\"Bob\"}' | gotalk call tls://example.com:443 greet -
  printf 'a\\nb\\n' | gotalk call localhost:1234 stream-echo --stream

The result goes to stdout (pretty JSON when it is JSON, the bytes as they are otherwise; on a
terminal, control characters and escape sequences from the peer are shown escaped). An error
result goes to stderr and the exit code is 1. Notifications the peer sends while the call is
in progress are shown on stderr.

With --stream, each line of standard input is a part, and result parts are printed as they
arrive: pretty on a terminal; to a pipe, one part per line (compact JSON, other parts as they
are followed by a newline, --raw parts byte for byte followed by a newline).";

/// Arguments of `gotalk call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// Where to connect (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT, ws://...)
    pub addr: String,
    /// The operation to call
    pub op: String,
    /// The payload: JSON text, @FILE to read a file, - to read standard input (default: none)
    pub payload: Option<String>,
    /// Give up after this long (e.g. 500ms, 10s; 0 waits forever)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    pub timeout: Duration,
    /// Send the payload as it is (not checked as JSON) and print the result bytes unchanged
    #[arg(long)]
    pub raw: bool,
    /// Streaming request: send each line of standard input as a part (after PAYLOAD, if given)
    /// and print result parts as they arrive
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// Arguments of `gotalk notify`.
#[derive(Args, Debug)]
pub struct NotifyArgs {
    /// Where to connect (tcp://HOST:PORT, HOST:PORT, unix:///PATH, tls://HOST:PORT, ws://...)
    pub addr: String,
    /// The notification name
    pub name: String,
    /// The payload: JSON text, @FILE to read a file, - to read standard input (default: none)
    pub payload: Option<String>,
    /// Send the payload as it is (not checked as JSON)
    #[arg(long)]
    pub raw: bool,
    /// Give up after this long (e.g. 500ms, 10s; 0 waits forever)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: ClientTls,
}

fn payload(arg: Option<&str>, raw: bool) -> Result<Bytes, Fail> {
    let Some(arg) = arg else {
        return Ok(Bytes::new());
    };
    let bytes = read_payload_arg(arg).map_err(|e| usage(format!("cannot read payload: {e}")))?;
    if !raw && !bytes.is_empty() {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            return Err(usage(format!(
                "the payload is not valid JSON ({e}); pass --raw to send it as it is"
            )));
        }
    }
    Ok(Bytes::from(bytes))
}

/// Our side's handlers while calling: show what the peer sends us on stderr.
fn client_config(tls: &ClientTls) -> Result<Config, Fail> {
    let mut h = Handlers::new();
    h.handle_buffer_notification("", |_sock, name, payload| {
        err_line(&format!(
            "notification {}: {}",
            escape::line(name),
            escape::line_bytes(&payload)
        ));
    });
    tls.apply(Config::new().handlers(h).heartbeat_interval(None))
}

async fn with_timeout<T>(
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, Fail>>,
) -> Result<T, Fail> {
    if t.is_zero() {
        return f.await;
    }
    match tokio::time::timeout(t, f).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("timed out after {t:?} {what}"))),
    }
}

fn request_error(op: &str, e: Error) -> Fail {
    fail(format!("{}: {}", escape::line(op), describe(&e)))
}

/// How results are written.
#[derive(Clone, Copy)]
struct Output {
    raw: bool,
    terminal: bool,
}

impl Output {
    fn stdout(raw: bool) -> Output {
        Output {
            raw,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// A single result: pretty JSON when it parses (and not `raw`); otherwise the bytes as they
    /// are, or escaped on a terminal (a peer's bytes must not drive the terminal).
    fn result(self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        if let Some(v) = self.json(bytes) {
            let _ = writeln!(out, "{}", pretty_json(&v));
        } else if self.terminal {
            let shown = escape::text_bytes(bytes);
            let _ = out.write_all(shown.as_bytes());
            if !shown.is_empty() && !shown.ends_with('\n') {
                let _ = out.write_all(b"\n");
            }
        } else {
            let _ = out.write_all(bytes);
        }
        let _ = out.flush();
    }

    /// One part of a stream: on a terminal like a single result; to a pipe, one part per
    /// line (compact JSON, or the bytes as they are followed by a newline).
    fn part(self, bytes: &[u8]) {
        if self.terminal {
            return self.result(bytes);
        }
        let mut out = std::io::stdout().lock();
        match self.json(bytes) {
            Some(v) => {
                let _ = writeln!(out, "{}", escape::json(v.to_string()));
            }
            None => {
                let _ = out.write_all(bytes);
                let _ = out.write_all(b"\n");
            }
        }
        let _ = out.flush();
    }

    fn json(self, bytes: &[u8]) -> Option<serde_json::Value> {
        if self.raw || bytes.is_empty() {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

fn pretty_json(v: &serde_json::Value) -> String {
    escape::json(serde_json::to_string_pretty(v).unwrap_or_default())
}

async fn close(sock: &Sock) {
    sock.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), sock.closed()).await;
}

pub async fn call(a: CallArgs) -> CmdResult {
    let config = client_config(&a.tls)?;
    if a.stream {
        return stream(a, config).await;
    }
    let payload = payload(a.payload.as_deref(), a.raw)?;
    let out = with_timeout(a.timeout, &format!("calling {}", a.op), async {
        let sock = dial(&a.addr, &config, &a.tls, a.timeout).await?;
        let res = sock.buffer_request(&a.op, payload).await;
        close(&sock).await;
        res.map_err(|e| request_error(&a.op, e))
    })
    .await?;
    Output::stdout(a.raw).result(&out);
    Ok(ExitCode::SUCCESS)
}

async fn stream(a: CallArgs, config: Config) -> CmdResult {
    // In a stream the first payload is a part like the others: sent as it is.
    let first = payload(a.payload.as_deref(), true)?;
    let sock = with_timeout(
        a.timeout,
        "connecting",
        dial(&a.addr, &config, &a.tls, a.timeout),
    )
    .await?;
    let (mut tx, mut rx) = sock
        .stream_request(&a.op)
        .await
        .map_err(|e| request_error(&a.op, e))?;
    let op = a.op.clone();
    // A line is a part: it cannot be longer than a payload may be.
    let max_line = Limits::default().max_payload as usize;
    let sender = tokio::spawn(async move {
        if !first.is_empty() {
            tx.write(first).await?;
        }
        let mut input = tokio::io::BufReader::new(tokio::io::stdin());
        loop {
            match read_line(&mut input, max_line).await? {
                // An empty part would end the stream.
                Line::Text(line) if line.is_empty() => {}
                Line::Text(line) => tx.write(line).await?,
                Line::TooLong => {
                    return Err(Error::PayloadTooLarge {
                        size: max_line + 1,
                        limit: max_line,
                    })
                }
                Line::End => break,
            }
        }
        tx.end().await?;
        Ok::<_, Error>(())
    });
    let mut sender = Some(sender);
    let output = Output::stdout(a.raw);
    let result = loop {
        let next = match (&mut sender, a.timeout.is_zero()) {
            // Once our side has ended, the rest of the answer must come within the timeout.
            (None, false) => match tokio::time::timeout(a.timeout, rx.recv()).await {
                Ok(r) => r,
                Err(_) => {
                    break Err(fail(format!(
                        "timed out after {:?} waiting for {op}",
                        a.timeout
                    )))
                }
            },
            (Some(s), _) => {
                tokio::select! {
                    r = rx.recv() => r,
                    done = s => {
                        sender = None;
                        match done {
                            Ok(Ok(())) => continue,
                            Ok(Err(e)) => break Err(request_error(&op, e)),
                            Err(e) => break Err(fail(format!("sending stream parts: {e}"))),
                        }
                    }
                }
            }
            (None, true) => rx.recv().await,
        };
        match next {
            Ok(Some(part)) => output.part(&part),
            Ok(None) => break Ok(ExitCode::SUCCESS),
            Err(e) => break Err(request_error(&op, e)),
        }
    };
    if let Some(s) = sender {
        s.abort();
    }
    close(&sock).await;
    result
}

pub async fn notify(a: NotifyArgs) -> CmdResult {
    let config = client_config(&a.tls)?;
    let payload = payload(a.payload.as_deref(), a.raw)?;
    with_timeout(a.timeout, &format!("sending {}", a.name), async {
        let sock = dial(&a.addr, &config, &a.tls, a.timeout).await?;
        sock.buffer_notify(&a.name, payload)
            .await
            .map_err(|e| request_error(&a.name, e))?;
        // Closing flushes what is queued before the connection ends.
        close(&sock).await;
        Ok(())
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
