//! What a peer sends, made safe to show on a terminal.
//!
//! A peer chooses its operation and notification names, its error texts and its payloads.
//! Printed as they are, an escape sequence among them can clear the screen, rewrite lines
//! already shown, set the window title or ring the bell, and right-to-left overrides can make
//! text read differently from what it is. Everything the `gotalk` command shows for humans
//! passes through one of these functions; output meant for programs (`--raw` to a pipe) does
//! not.
//!
//! ```
//! use gotalk_cli::escape;
//! assert_eq!(escape::line("a\x1b[2Jb"), "a\\x1b[2Jb");
//! assert_eq!(escape::line("\u{9b}31m"), "\\u{9b}31m");
//! assert_eq!(escape::line_bytes(b"ok\xff\n"), "ok\\xff\\n");
//! assert_eq!(escape::text_bytes(b"one\ntwo\x07"), "one\ntwo\\x07");
//! // JSON keeps its meaning: the escape is a JSON escape.
//! assert_eq!(escape::json("\"\u{9b}\"".into()), "\"\\u009b\"");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls, DEL, and the
/// invisible marks that reorder text (bidirectional overrides and isolates).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_ascii() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// Text for one line: every unsafe character (newlines and tabs too) written as an escape.
pub fn line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes for one line: valid UTF-8 as [`line()`] writes it, other bytes as `\xNN`.
pub fn line_bytes(bytes: &[u8]) -> String {
    bytes_with(bytes, |out, c| {
        if is_unsafe(c) {
            push_escaped(out, c);
        } else {
            out.push(c);
        }
    })
}

/// Bytes for a quoted preview: like [`line_bytes`], with `"` and `\` escaped too so that the
/// quotes around it mean what they seem to.
pub fn quoted_bytes(bytes: &[u8]) -> String {
    bytes_with(bytes, |out, c| match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        c if is_unsafe(c) => push_escaped(out, c),
        c => out.push(c),
    })
}

/// Bytes shown as text over several lines (a result on a terminal): newlines and tabs are
/// kept, every other unsafe character and every byte that is not UTF-8 is escaped.
pub fn text_bytes(bytes: &[u8]) -> String {
    bytes_with(bytes, |out, c| match c {
        '\n' | '\t' => out.push(c),
        c if is_unsafe(c) => push_escaped(out, c),
        c => out.push(c),
    })
}

fn bytes_with(bytes: &[u8], mut each: impl FnMut(&mut String, char)) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            each(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// JSON text (as `serde_json` writes it, compact or pretty) with the unsafe characters it
/// leaves as they are — C1 controls, DEL and the reordering marks — written as `\uXXXX`
/// escapes. The result is JSON with the same value. (`serde_json` escapes C0 controls in
/// strings itself; outside strings the only ones are the newlines of pretty printing.)
pub fn json(s: String) -> String {
    let left_raw = |c: char| (is_unsafe(c) && !c.is_ascii_control()) || c == '\x7f';
    if !s.chars().any(left_raw) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if left_raw(c) {
            // Every unsafe character is in the Basic Multilingual Plane: one \u escape.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_unsafe_survives() {
        let hostile = "\x1b]0;pwned\x07\x1b[2J\u{9b}1;1H\u{202e}txt.exe\x7f\r";
        for shown in [
            line(hostile).into_owned(),
            line_bytes(hostile.as_bytes()),
            quoted_bytes(hostile.as_bytes()),
            text_bytes(hostile.as_bytes()),
        ] {
            assert!(!shown.chars().any(is_unsafe), "{shown:?}");
        }
        let j = json(serde_json::to_string(hostile).unwrap());
        assert!(!j.chars().any(is_unsafe), "{j}");
        assert_eq!(serde_json::from_str::<String>(&j).unwrap(), hostile);
        let v = serde_json::json!({ "k\u{9b}": [hostile] });
        let pretty = json(serde_json::to_string_pretty(&v).unwrap());
        assert!(
            !pretty.chars().any(|c| is_unsafe(c) && c != '\n'),
            "{pretty}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&pretty).unwrap(),
            v
        );
    }

    #[test]
    fn plain_text_is_untouched() {
        assert!(matches!(line("chat/post ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(text_bytes("a\tb\nc".as_bytes()), "a\tb\nc");
        assert_eq!(quoted_bytes(br#"say "hi" \o/"#), r#"say \"hi\" \\o/"#);
    }

    #[test]
    fn a_cut_in_the_middle_of_a_character_escapes_only_the_cut() {
        let s = "héllo".as_bytes();
        assert_eq!(line_bytes(&s[..2]), "h\\xc3");
        assert_eq!(line_bytes(s), "héllo");
    }
}
