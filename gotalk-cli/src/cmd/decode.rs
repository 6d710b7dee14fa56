//! `gotalk decode`: decode a captured byte stream and say where it breaks.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gotalk_cli::pretty::{Dir, Fields, Format, Printer, Seen};
use gotalk_cli::wire::{transcript_streams, Frame, StreamDecoder};

use super::{err_line, out_line, usage, CmdResult};

pub const HELP: &str = "\
Examples:
  gotalk decode capture.bin
  printf '01r0001004echo00000002hi' | gotalk decode
  gotalk decode --transcript ../shared/conformance/greet.json --json

Every frame is printed with the byte offset where it starts. When the bytes stop being valid
gotalk, the offset of the offending byte and the reason are printed and the exit code is 1.
Files ending in .json that hold client_to_server/server_to_client arrays are read as
transcripts without --transcript.";

/// Arguments of `gotalk decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The captured bytes (default: standard input)
    pub file: Option<PathBuf>,
    /// FILE is a conformance transcript (JSON with client_to_server and server_to_client)
    #[arg(long)]
    pub transcript: bool,
    /// The stream starts with a message, not with the protocol version
    #[arg(long)]
    pub no_version: bool,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// Show at most this many bytes of each payload
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub preview: usize,
}

pub async fn run(a: DecodeArgs) -> CmdResult {
    let bytes = match &a.file {
        Some(p) => std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))?,
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| usage(format!("reading standard input: {e}")))?;
            b
        }
    };
    let looks_like_transcript = a
        .file
        .as_ref()
        .is_some_and(|p| p.extension().is_some_and(|e| e == "json"))
        && bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let printer = Printer::new(Format::for_stdout(a.json), a.preview);
    let mut ok = true;
    if a.transcript || looks_like_transcript {
        let (c2s, s2c) = transcript_streams(&bytes).map_err(usage)?;
        ok &= decode_one(&printer, &c2s, Some(Dir::ClientToServer), !a.no_version);
        ok &= decode_one(&printer, &s2c, Some(Dir::ServerToClient), !a.no_version);
    } else {
        ok &= decode_one(&printer, &bytes, None, !a.no_version);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Decodes and prints one direction; false if it is not valid to the end.
fn decode_one(printer: &Printer, bytes: &[u8], dir: Option<Dir>, version: bool) -> bool {
    // No payload limit: a capture is decoded as it is, whatever its sizes.
    let mut d = StreamDecoder::new(version, u32::MAX);
    let show = |offset: u64, f: Frame<'_>| {
        let seen = Seen {
            dir,
            offset: Some(offset),
            ..Seen::default()
        };
        let line = match f {
            Frame::Version(v) => printer.version(&seen, v),
            Frame::Message(m) => printer.message(&seen, m),
            Frame::Oversized(o) => printer.fields(
                &seen,
                &Fields {
                    msg_type: Some(o.msg_type),
                    id: o.id,
                    name: o.name.as_ref().map(|n| n.as_str()),
                    ..Fields::default()
                },
            ),
        };
        out_line(&line);
    };
    let res = d.feed(bytes, show).and_then(|_| d.finish());
    let label = dir.map_or("stream".to_owned(), |d| d.code().to_owned());
    match res {
        Ok(()) => {
            err_line(&format!(
                "{label}: {}, {}, valid",
                count(d.frames(), "frame"),
                count(bytes.len() as u64, "byte")
            ));
            true
        }
        Err(e) => {
            let seen = Seen {
                dir,
                offset: Some(e.offset),
                ..Seen::default()
            };
            out_line(&printer.event(&seen, "invalid", &e.reason));
            err_line(&format!(
                "{label}: {}, then invalid {e}",
                count(d.frames(), "frame")
            ));
            false
        }
    }
}

/// `1 frame`, `2 frames`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
