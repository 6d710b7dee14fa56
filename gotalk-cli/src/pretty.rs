//! The message printer shared by `gotalk proxy`, `gotalk listen` and `gotalk decode`.
//!
//! One [`Printer`] turns a decoded message (plus where it was seen: connection, direction, byte
//! offset, time) into either a human line — coloured when writing to a terminal, with a JSON
//! payload pretty-printed below it — or one JSON object per line for scripts (`--json`).
//!
//! ```
//! use gotalk::frame::{Message, Name, RequestId};
//! use gotalk_cli::pretty::{Dir, Format, Printer, Seen};
//!
//! let p = Printer::new(Format::Json, 64);
//! let m = Message::SingleRequest {
//!     id: RequestId(*b"0001"),
//!     op: Name::new("greet").unwrap(),
//!     payload: br#"{"name":"Bob"}"#.to_vec().into(),
//! };
//! let line = p.message(&Seen { dir: Some(Dir::ClientToServer), offset: Some(2), ..Seen::default() }, &m);
//! let v: serde_json::Value = serde_json::from_str(&line).unwrap();
//! assert_eq!(v["type"], "r");
//! assert_eq!(v["op"], "greet");
//! assert_eq!(v["json"]["name"], "Bob");
//! ```

use std::fmt::Write as _;
use std::time::SystemTime;

use base64::Engine as _;
use gotalk::frame::{Message, MsgType, RequestId};
use serde_json::{json, Map, Value};

use crate::escape;
use crate::util::{clock, rfc3339};

/// Output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One human-readable line per message (JSON payloads pretty-printed below it).
    Text {
        /// Use ANSI colours.
        color: bool,
    },
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Text (coloured when `stdout` is a terminal) unless `json` is set.
    pub fn for_stdout(json: bool) -> Format {
        use std::io::IsTerminal;
        if json {
            Format::Json
        } else {
            Format::Text {
                color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            }
        }
    }
}

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the client (the side that connected) to the server.
    ClientToServer,
    /// From the server to the client.
    ServerToClient,
}

impl Dir {
    /// `c2s` or `s2c`.
    pub fn code(self) -> &'static str {
        match self {
            Dir::ClientToServer => "c2s",
            Dir::ServerToClient => "s2c",
        }
    }

    fn arrow(self) -> &'static str {
        match self {
            Dir::ClientToServer => "c→s",
            Dir::ServerToClient => "s→c",
        }
    }
}

/// Where and when a message was seen. Every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// When (printed as UTC).
    pub time: Option<SystemTime>,
    /// A connection number, when several are printed together.
    pub conn: Option<u64>,
    /// Which way it went.
    pub dir: Option<Dir>,
    /// Offset of its first byte in its direction's byte stream.
    pub offset: Option<u64>,
    /// The peer's address.
    pub peer: Option<String>,
    /// The number of one of our requests (`gotalk connect`), to match its result to it.
    pub call: Option<u64>,
}

/// Formats messages; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Printer {
    format: Format,
    preview: usize,
}

/// The fields of one message, whether it came as a whole [`Message`] or from a handler that
/// only knows the operation and payload.
#[derive(Debug, Clone, Default)]
pub struct Fields<'a> {
    /// The type byte, or `None` for the protocol version.
    pub msg_type: Option<MsgType>,
    /// Request ID.
    pub id: Option<RequestId>,
    /// Operation or notification name.
    pub name: Option<&'a str>,
    /// RetryResult wait in milliseconds.
    pub wait_ms: Option<u32>,
    /// Heartbeat load.
    pub load: Option<u16>,
    /// Heartbeat time (seconds since the epoch).
    pub hb_time: Option<u32>,
    /// Protocol error code.
    pub code: Option<u32>,
    /// Protocol version (for the version frame).
    pub version: Option<u8>,
    /// The payload, if the type has one.
    pub payload: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// The fields of a decoded message.
    pub fn of(m: &'a Message) -> Fields<'a> {
        let mut f = Fields {
            msg_type: Some(m.msg_type()),
            id: m.id(),
            name: m.name().map(|n| n.as_str()),
            ..Fields::default()
        };
        match m {
            Message::RetryResult { wait_ms, .. } => f.wait_ms = Some(*wait_ms),
            Message::Heartbeat { load, time } => {
                f.load = Some(*load);
                f.hb_time = Some(*time);
            }
            Message::ProtocolError { code } => f.code = Some(code.0),
            _ => {}
        }
        if m.msg_type().has_payload() {
            f.payload = Some(&m.payload()[..]);
        }
        f
    }
}

/// The name of a message type as the protocol spec writes it.
pub fn type_name(t: MsgType) -> &'static str {
    match t {
        MsgType::SingleRequest => "SingleRequest",
        MsgType::StreamRequest => "StreamRequest",
        MsgType::StreamRequestPart => "StreamRequestPart",
        MsgType::SingleResult => "SingleResult",
        MsgType::StreamResult => "StreamResult",
        MsgType::ErrorResult => "ErrorResult",
        MsgType::RetryResult => "RetryResult",
        MsgType::Notification => "Notification",
        MsgType::Heartbeat => "Heartbeat",
        MsgType::ProtocolError => "ProtocolError",
    }
}

/// A request ID as text: itself when printable ASCII, `\xNN` escapes otherwise.
pub fn id_text(id: RequestId) -> String {
    hex_escape(id.as_bytes())
}

fn hex_escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// The first `max` bytes of `p`, or a few less so as not to cut a UTF-8 character in two.
fn utf8_cut(p: &[u8], max: usize) -> &[u8] {
    if p.len() <= max {
        return p;
    }
    let shown = &p[..max];
    match std::str::from_utf8(shown) {
        Err(e) if e.error_len().is_none() && max - e.valid_up_to() < 4 => &shown[..e.valid_up_to()],
        _ => shown,
    }
}

const RESET: &str = "\x1b[0m";

fn color_of(t: Option<MsgType>) -> &'static str {
    match t {
        Some(MsgType::SingleRequest | MsgType::StreamRequest | MsgType::StreamRequestPart) => {
            "\x1b[1;34m"
        }
        Some(MsgType::SingleResult | MsgType::StreamResult) => "\x1b[1;32m",
        Some(MsgType::ErrorResult | MsgType::ProtocolError) => "\x1b[1;31m",
        Some(MsgType::RetryResult) => "\x1b[1;33m",
        Some(MsgType::Notification) => "\x1b[1;35m",
        _ => "\x1b[2m",
    }
}

impl Printer {
    /// A printer that shows at most `preview` bytes of each payload (JSON payloads are shown
    /// whole, pretty-printed, when they fit in four times that).
    pub fn new(format: Format, preview: usize) -> Printer {
        Printer { format, preview }
    }

    /// The output style.
    pub fn format(&self) -> Format {
        self.format
    }

    /// One message, as a line (text may span several lines for a JSON payload; no trailing
    /// newline).
    pub fn message(&self, seen: &Seen, m: &Message) -> String {
        self.fields(seen, &Fields::of(m))
    }

    /// The protocol version frame.
    pub fn version(&self, seen: &Seen, version: u8) -> String {
        self.fields(
            seen,
            &Fields {
                version: Some(version),
                ..Fields::default()
            },
        )
    }

    /// Anything else worth a line: a connection opening or closing, a decoding error.
    pub fn event(&self, seen: &Seen, event: &str, detail: &str) -> String {
        match self.format {
            Format::Json => {
                let mut o = self.base(seen);
                o.insert("event".into(), json!(event));
                if !detail.is_empty() {
                    o.insert("detail".into(), json!(detail));
                }
                escape::json(Value::Object(o).to_string())
            }
            Format::Text { color } => {
                let mut line = self.prefix(seen);
                let (c, r) = if color {
                    ("\x1b[1;36m", RESET)
                } else {
                    ("", "")
                };
                let _ = write!(line, "{c}{event}{r}");
                if !detail.is_empty() {
                    let _ = write!(line, " {}", escape::line(detail));
                }
                line
            }
        }
    }

    /// A message given by its fields (see [`Fields`]).
    pub fn fields(&self, seen: &Seen, f: &Fields<'_>) -> String {
        let json_payload = f
            .payload
            .filter(|p| !p.is_empty())
            .and_then(|p| serde_json::from_slice::<Value>(p).ok());
        match self.format {
            Format::Json => {
                let mut o = self.base(seen);
                match f.msg_type {
                    None => {
                        o.insert("type".into(), json!("version"));
                        o.insert("version".into(), json!(f.version));
                    }
                    Some(t) => {
                        o.insert("type".into(), json!((t.as_byte() as char).to_string()));
                        o.insert("kind".into(), json!(type_name(t)));
                    }
                }
                if let Some(id) = f.id {
                    o.insert("id".into(), json!(id_text(id)));
                }
                if let Some(name) = f.name {
                    let key = if f.msg_type == Some(MsgType::Notification) {
                        "name"
                    } else {
                        "op"
                    };
                    o.insert(key.into(), json!(name));
                }
                if let Some(w) = f.wait_ms {
                    o.insert("wait_ms".into(), json!(w));
                }
                if let Some(l) = f.load {
                    o.insert("load".into(), json!(l));
                }
                if let Some(t) = f.hb_time {
                    o.insert("time".into(), json!(t));
                }
                if let Some(c) = f.code {
                    o.insert("code".into(), json!(c));
                }
                if let Some(p) = f.payload {
                    o.insert("size".into(), json!(p.len()));
                    let shown = utf8_cut(p, self.preview);
                    match std::str::from_utf8(shown) {
                        Ok(s) => o.insert("payload".into(), json!(s)),
                        Err(_) => o.insert(
                            "payload_base64".into(),
                            json!(base64::engine::general_purpose::STANDARD.encode(shown)),
                        ),
                    };
                    if shown.len() < p.len() {
                        o.insert("truncated".into(), json!(true));
                    }
                    if let Some(v) = json_payload {
                        o.insert("json".into(), v);
                    }
                }
                escape::json(Value::Object(o).to_string())
            }
            Format::Text { color } => {
                let mut line = self.prefix(seen);
                let (c, r) = if color {
                    (color_of(f.msg_type), RESET)
                } else {
                    ("", "")
                };
                match f.msg_type {
                    None => {
                        let _ = write!(line, "{c}version{r} {}", f.version.unwrap_or(0));
                        return line;
                    }
                    Some(t) => {
                        let _ = write!(line, "{c}{} {}{r}", t.as_byte() as char, type_name(t));
                    }
                }
                if let Some(id) = f.id {
                    let _ = write!(line, " id={}", id_text(id));
                }
                if let Some(name) = f.name {
                    let key = if f.msg_type == Some(MsgType::Notification) {
                        "name"
                    } else {
                        "op"
                    };
                    let _ = write!(line, " {key}={}", escape::line(name));
                }
                if let Some(w) = f.wait_ms {
                    let _ = write!(line, " wait={w}ms");
                }
                if let Some(l) = f.load {
                    let _ = write!(line, " load={l}");
                }
                if let Some(t) = f.hb_time {
                    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.into());
                    let _ = write!(line, " time={t} ({})", rfc3339(when));
                }
                if let Some(code) = f.code {
                    let desc = gotalk::ProtocolErrorCode(code).description();
                    let _ = write!(line, " code={code} ({desc})");
                }
                if let Some(p) = f.payload {
                    let _ = write!(line, " size={}", p.len());
                    match json_payload {
                        Some(v) if p.len() <= self.preview.saturating_mul(4) => {
                            let pretty =
                                escape::json(serde_json::to_string_pretty(&v).unwrap_or_default());
                            if pretty.contains('\n') {
                                for l in pretty.lines() {
                                    let _ = write!(line, "\n    {l}");
                                }
                            } else {
                                let _ = write!(line, " {pretty}");
                            }
                        }
                        _ if p.is_empty() => {}
                        _ => {
                            let shown = utf8_cut(p, self.preview);
                            let _ = write!(line, " \"{}\"", escape::quoted_bytes(shown));
                            if shown.len() < p.len() {
                                let _ = write!(line, "…(+{} bytes)", p.len() - shown.len());
                            }
                        }
                    }
                }
                line
            }
        }
    }

    fn base(&self, seen: &Seen) -> Map<String, Value> {
        let mut o = Map::new();
        if let Some(t) = seen.time {
            o.insert("t".into(), json!(rfc3339(t)));
        }
        if let Some(c) = seen.conn {
            o.insert("conn".into(), json!(c));
        }
        if let Some(p) = &seen.peer {
            o.insert("peer".into(), json!(p));
        }
        if let Some(d) = seen.dir {
            o.insert("dir".into(), json!(d.code()));
        }
        if let Some(off) = seen.offset {
            o.insert("offset".into(), json!(off));
        }
        if let Some(n) = seen.call {
            o.insert("call".into(), json!(n));
        }
        o
    }

    fn prefix(&self, seen: &Seen) -> String {
        let mut s = String::new();
        let dim = matches!(self.format, Format::Text { color: true });
        let (c, r) = if dim { ("\x1b[2m", RESET) } else { ("", "") };
        if let Some(t) = seen.time {
            let _ = write!(s, "{c}{}{r} ", clock(t));
        }
        if let Some(conn) = seen.conn {
            let _ = write!(s, "#{conn} ");
        }
        if let Some(p) = &seen.peer {
            let _ = write!(s, "{p} ");
        }
        if let Some(d) = seen.dir {
            let _ = write!(s, "{} ", d.arrow());
        }
        if let Some(off) = seen.offset {
            let _ = write!(s, "{c}@{off}{r} ");
        }
        if let Some(n) = seen.call {
            let _ = write!(s, "[{n}] ");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gotalk::frame::Name;

    fn text() -> Printer {
        Printer::new(Format::Text { color: false }, 16)
    }

    #[test]
    fn text_lines() {
        let p = text();
        let seen = Seen {
            dir: Some(Dir::ServerToClient),
            offset: Some(7),
            ..Seen::default()
        };
        let m = Message::RetryResult {
            id: RequestId(*b"0001"),
            wait_ms: 500,
            payload: "busy".into(),
        };
        assert_eq!(
            p.message(&seen, &m),
            "s→c @7 e RetryResult id=0001 wait=500ms size=4 \"busy\""
        );
        let m = Message::SingleRequest {
            id: RequestId([0, 0, 0, 1]),
            op: Name::new("echo").unwrap(),
            payload: vec![0u8, 1, 2].into(),
        };
        assert_eq!(
            p.message(&Seen::default(), &m),
            "r SingleRequest id=\\x00\\x00\\x00\\x01 op=echo size=3 \"\\x00\\x01\\x02\""
        );
        let m = Message::ProtocolError {
            code: gotalk::ProtocolErrorCode(2),
        };
        assert_eq!(
            p.message(&Seen::default(), &m),
            "f ProtocolError code=2 (invalid protocol message)"
        );
        let long = Message::SingleResult {
            id: RequestId(*b"0002"),
            payload: vec![b'a'; 20].into(),
        };
        assert!(p
            .message(&Seen::default(), &long)
            .ends_with("\"aaaaaaaaaaaaaaaa\"…(+4 bytes)"));
    }

    #[test]
    fn json_payload_is_pretty_printed() {
        let p = text();
        let m = Message::Notification {
            name: Name::new("ping").unwrap(),
            payload: br#"{"n":1}"#.to_vec().into(),
        };
        assert_eq!(
            p.message(&Seen::default(), &m),
            "n Notification name=ping size=7\n    {\n      \"n\": 1\n    }"
        );
        let j = Printer::new(Format::Json, 16).message(&Seen::default(), &m);
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["name"], "ping");
        assert_eq!(v["json"]["n"], 1);
    }
}
