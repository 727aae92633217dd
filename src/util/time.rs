//! Timestamps in the format every rollbridge JSON shape uses: ISO-8601 UTC with
//! millisecond precision and a `Z` suffix (`2026-05-23T14:31:09.512Z`).

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::SystemTime;

/// Current time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_now() -> String {
    iso(SystemTime::now())
}

/// Formats a wall-clock time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso(at: SystemTime) -> String {
    let at: DateTime<Utc> = at.into();
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a timestamp produced by [`iso`] back to milliseconds since the epoch.
pub fn parse_iso_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.timestamp_millis())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A release id made from the current UTC time: the ISO timestamp with every
/// non-digit removed (`YYYYMMDDHHMMSSmmm`, 17 digits).
pub fn timestamp_release_id() -> String {
    iso_now().chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_with_millis_and_z() {
        let at = UNIX_EPOCH + Duration::from_millis(1_779_546_669_512);
        assert_eq!(iso(at), "2026-05-23T14:31:09.512Z");
        assert_eq!(
            parse_iso_ms("2026-05-23T14:31:09.512Z"),
            Some(1_779_546_669_512)
        );
    }

    #[test]
    fn release_id_is_17_digits() {
        let id = timestamp_release_id();
        assert_eq!(id.len(), 17, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_digit()));
    }
}
