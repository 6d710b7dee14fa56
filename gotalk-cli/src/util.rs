//! Small helpers shared by the subcommands.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest duration a flag accepts: a year is longer than anything worth waiting for, and
/// far below what would overflow a deadline computed from it.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration as people type it: `300ms`, `2s`, `1.5s`, `1m`, `250us`; a bare number
/// is seconds. Durations longer than [`MAX_DURATION`] are refused.
///
/// ```
/// use std::time::Duration;
/// use gotalk_cli::util::parse_duration;
/// assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
/// assert!(parse_duration("soon").is_err());
/// assert!(parse_duration("99999999999999999999").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 300ms, 2s or 1m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ns, us, ms, s, m, h or d)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{s:?} is too long (at most 365d)")),
    }
}

/// Parses a whole number between `min` and `max` (inclusive), saying which bounds apply when
/// it is not.
///
/// ```
/// use gotalk_cli::util::parse_bounded;
/// assert_eq!(parse_bounded("16", 1, 100), Ok(16));
/// assert!(parse_bounded("0", 1, 100).unwrap_err().contains("between 1 and 100"));
/// assert!(parse_bounded("99999999999999999999999", 1, 100).is_err());
/// assert!(parse_bounded("-1", 1, 100).is_err());
/// ```
pub fn parse_bounded(s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a whole number between {min} and {max}"
        )),
    }
}

/// Reads a payload argument: `@path` reads a file, `-` reads standard input, anything else is
/// the payload itself.
pub fn read_payload_arg(arg: &str) -> std::io::Result<Vec<u8>> {
    if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path).map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its line end (`\n` or `\r\n`).
    Text(Vec<u8>),
    /// A line longer than the limit: its bytes were read and dropped.
    TooLong,
    /// The end of the input.
    End,
}

/// Reads one line of at most `max` bytes, holding no more than that in memory however long
/// the line is (the rest of a longer line is skipped).
///
/// ```
/// # tokio_test(async {
/// use gotalk_cli::util::{read_line, Line};
/// let mut input = &b"short\r\nmuch too long\nlast"[..];
/// assert_eq!(read_line(&mut input, 8).await.unwrap(), Line::Text(b"short".to_vec()));
/// assert_eq!(read_line(&mut input, 8).await.unwrap(), Line::TooLong);
/// assert_eq!(read_line(&mut input, 8).await.unwrap(), Line::Text(b"last".to_vec()));
/// assert_eq!(read_line(&mut input, 8).await.unwrap(), Line::End);
/// # });
/// # fn tokio_test(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn read_line<R>(r: &mut R, max: usize) -> std::io::Result<Line>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut buf = Vec::new();
    // One byte over the limit (plus the line end) tells a line at the limit from a longer one.
    let n = (&mut *r)
        .take(max as u64 + 2)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(Line::End);
    }
    let ended = buf.last() == Some(&b'\n');
    if ended {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() <= max && (ended || n < max + 2) {
        return Ok(Line::Text(buf));
    }
    // Too long: skip to the end of the line, a bounded piece at a time.
    if !ended {
        loop {
            buf.clear();
            let n = (&mut *r)
                .take(64 * 1024)
                .read_until(b'\n', &mut buf)
                .await?;
            if n == 0 || buf.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(Line::TooLong)
}

/// `time` as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// `time` as UTC `HH:MM:SS.ffffff`.
pub fn clock(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let rem = d.as_secs() % 86400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_123_456);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.123456Z");
        assert_eq!(clock(t), "12:34:56.123456");
    }
}
