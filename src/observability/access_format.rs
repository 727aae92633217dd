//! Access log lines, written straight into the writer's batch buffer.
//!
//! The writer formats every proxied request, so this is written for cost: no
//! allocation per line, the timestamp text is rebuilt only when the second
//! changes, and a field is copied as it is unless it holds a byte that needs
//! escaping. (serde_json plus chrono cost about a fifth of the proxy's own
//! instructions per request; this costs a few percent.)

use super::access_log::AccessRecord;
use chrono::{DateTime, Utc};
use http::Version;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// `proxy.accessLog.format`.
pub use crate::config::model::AccessLogFormat;

/// Formats lines; keeps the text of the current second between lines.
#[derive(Debug, Default)]
pub struct LineFormatter {
    second: Option<u64>,
    /// `2026-05-23T14:31:09.` (JSON) for `second`.
    iso_prefix: Vec<u8>,
    /// `23/May/2026:14:31:09 +0000` (combined) for `second`.
    clf_time: Vec<u8>,
}

impl LineFormatter {
    /// Appends one line (with its newline) to `out`.
    pub fn append(&mut self, out: &mut Vec<u8>, record: &AccessRecord, format: AccessLogFormat) {
        let millis = self.set_time(record.at);
        match format {
            AccessLogFormat::Json => self.json(out, record, millis),
            AccessLogFormat::Combined => self.combined(out, record),
        }
    }

    /// Makes the cached texts describe `at`'s second; returns its milliseconds.
    fn set_time(&mut self, at: SystemTime) -> u32 {
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            let whole: DateTime<Utc> = (UNIX_EPOCH + std::time::Duration::from_secs(second)).into();
            self.iso_prefix.clear();
            let _ = write!(self.iso_prefix, "{}.", whole.format("%Y-%m-%dT%H:%M:%S"));
            self.clf_time.clear();
            let _ = write!(self.clf_time, "{}", whole.format("%d/%b/%Y:%H:%M:%S %z"));
            self.second = Some(second);
        }
        since_epoch.subsec_millis()
    }

    fn json(&self, out: &mut Vec<u8>, record: &AccessRecord, millis: u32) {
        out.extend_from_slice(b"{\"at\":\"");
        out.extend_from_slice(&self.iso_prefix);
        push_padded(out, millis, 3);
        out.extend_from_slice(b"Z\",\"client\":");
        json_string(out, record.client.as_bytes());
        out.extend_from_slice(b",\"method\":");
        json_string(out, record.method.as_str().as_bytes());
        out.extend_from_slice(b",\"path\":");
        json_string(out, record.target.as_bytes());
        out.extend_from_slice(b",\"protocol\":\"");
        out.extend_from_slice(version_text(record.version).as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        push_number(out, u64::from(record.status));
        out.extend_from_slice(b",\"bytes\":");
        push_number(out, record.bytes);
        out.extend_from_slice(b",\"durationMs\":");
        push_millis(out, record.duration.as_micros());
        out.extend_from_slice(b",\"releaseId\":");
        match &record.release {
            Some(release) => json_string(out, release.as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"referer\":");
        json_optional(out, record.referer.as_deref());
        out.extend_from_slice(b",\"userAgent\":");
        json_optional(out, record.user_agent.as_deref());
        out.extend_from_slice(b"}\n");
    }

    fn combined(&self, out: &mut Vec<u8>, record: &AccessRecord) {
        clf_escaped(out, record.client.as_bytes());
        out.extend_from_slice(b" - - [");
        out.extend_from_slice(&self.clf_time);
        out.extend_from_slice(b"] \"");
        clf_escaped(out, record.method.as_str().as_bytes());
        out.push(b' ');
        clf_escaped(out, record.target.as_bytes());
        out.push(b' ');
        out.extend_from_slice(version_text(record.version).as_bytes());
        out.extend_from_slice(b"\" ");
        push_number(out, u64::from(record.status));
        out.push(b' ');
        if record.bytes == 0 {
            out.push(b'-');
        } else {
            push_number(out, record.bytes);
        }
        out.extend_from_slice(b" \"");
        clf_optional(out, record.referer.as_deref());
        out.extend_from_slice(b"\" \"");
        clf_optional(out, record.user_agent.as_deref());
        out.extend_from_slice(b"\"\n");
    }
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn push_number(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = value;
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Microseconds as milliseconds, the shortest decimal with at most three places
/// (`1234.567`, `1.5`, `2.0`): the same text a JSON float of that value gets.
fn push_millis(out: &mut Vec<u8>, micros: u128) {
    let whole = u64::try_from(micros / 1000).unwrap_or(u64::MAX);
    let mut fraction = (micros % 1000) as u32;
    push_number(out, whole);
    out.push(b'.');
    if fraction == 0 {
        out.push(b'0');
        return;
    }
    let mut width = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        width -= 1;
    }
    push_padded(out, fraction, width);
}

fn json_optional(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => json_string(out, bytes),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string of `bytes`; bytes that are not UTF-8 become U+FFFD.
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Printable ASCII other than `"` and `\` (nearly every field) goes as it is.
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => json_escaped(out, text),
        Err(_) => json_escaped(out, &String::from_utf8_lossy(bytes)),
    }
    out.push(b'"');
}

fn json_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    for &byte in bytes {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                let _ = write!(out, "\\u{byte:04x}");
            }
            other => out.push(other),
        }
    }
}

fn clf_optional(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => clf_escaped(out, bytes),
        None => out.push(b'-'),
    }
}

/// Quotes and backslashes escaped, control and non-ASCII bytes as `\xHH`, so a
/// field can never break the line or its quoting.
fn clf_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes
        .iter()
        .all(|&b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &byte in bytes {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(byte),
            other => {
                let _ = write!(out, "\\x{other:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record() -> AccessRecord {
        crate::observability::access_log::sample_record()
    }

    fn json(record: &AccessRecord) -> String {
        let mut out = Vec::new();
        LineFormatter::default().append(&mut out, record, AccessLogFormat::Json);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_have_fixed_keys() {
        assert_eq!(
            json(&record()),
            "{\"at\":\"2026-05-23T14:31:09.512Z\",\"client\":\"10.0.0.7\",\"method\":\"GET\",\"path\":\"/search?q=a%20b\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":512,\"durationMs\":1234.567,\"releaseId\":\"v7\",\"referer\":\"https://example.test/\",\"userAgent\":\"agent \\\"quoted\\\"\"}\n"
        );
    }

    #[test]
    fn json_lines_parse_and_agree_with_serde() {
        let mut odd = record();
        odd.user_agent = Some(b"tab\there \\ \xff".to_vec());
        odd.target = "/line\nbreak\u{1}".to_string();
        odd.referer = None;
        odd.release = None;
        odd.at = UNIX_EPOCH + Duration::from_millis(1_779_546_669_007);
        for (micros, text) in [
            (0, 0.0),
            (1_500, 1.5),
            (2_000, 2.0),
            (10, 0.01),
            (999_999, 999.999),
        ] {
            odd.duration = Duration::from_micros(micros);
            let line = json(&odd);
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["durationMs"].as_f64(), Some(text), "{line}");
            assert_eq!(value["at"], "2026-05-23T14:31:09.007Z");
            assert_eq!(value["userAgent"], "tab\there \\ \u{fffd}");
            assert_eq!(value["path"], "/line\nbreak\u{1}");
            assert!(value["referer"].is_null() && value["releaseId"].is_null());
            // The same text serde_json would give for the float.
            let serde_text = serde_json::to_string(&text).unwrap();
            assert!(
                line.contains(&format!("\"durationMs\":{serde_text},")),
                "{line}"
            );
        }
    }

    #[test]
    fn combined_lines_quote_and_dash_missing_fields() {
        let mut out = Vec::new();
        let mut formatter = LineFormatter::default();
        formatter.append(&mut out, &record(), AccessLogFormat::Combined);
        let mut bare = record();
        bare.referer = None;
        bare.user_agent = None;
        bare.bytes = 0;
        bare.status = 503;
        bare.release = None;
        bare.target = "/a\"b\x7f".to_string();
        formatter.append(&mut out, &bare, AccessLogFormat::Combined);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.0.0.7 - - [23/May/2026:14:31:09 +0000] \"GET /search?q=a%20b HTTP/1.1\" 200 512 \"https://example.test/\" \"agent \\\"quoted\\\"\"\n\
             10.0.0.7 - - [23/May/2026:14:31:09 +0000] \"GET /a\\\"b\\x7f HTTP/1.1\" 503 - \"-\" \"-\"\n"
        );
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        let mut formatter = LineFormatter::default();
        let mut first = record();
        let mut out = Vec::new();
        formatter.append(&mut out, &first, AccessLogFormat::Json);
        first.at += Duration::from_millis(600);
        formatter.append(&mut out, &first, AccessLogFormat::Json);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"at\":\"2026-05-23T14:31:09.512Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"at\":\"2026-05-23T14:31:10.112Z\""),
            "{text}"
        );
    }
}
