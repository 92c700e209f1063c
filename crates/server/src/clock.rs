//! The server's only reads of the wall clock, and the timestamp spellings the wire uses.
//!
//! Everything below the HTTP edge takes `now` as an argument; handlers call [`now`] once per request.

use chrono::{DateTime, SecondsFormat, Utc};

/// Unix seconds.
pub fn now() -> i64 {
    Utc::now().timestamp()
}

fn datetime(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

/// RFC 3339, UTC, second precision, `Z` suffix: the Verstak spelling (`2026-07-10T00:00:00Z`).
pub fn rfc3339(ts: i64) -> String {
    datetime(ts).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 with a `+00:00` offset: the Diaryx spelling (`2026-11-22T02:04:08+00:00`).
pub fn rfc3339_offset(ts: i64) -> String {
    datetime(ts).to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_match_both_references() {
        assert_eq!(rfc3339(1_783_641_600), "2026-07-10T00:00:00Z");
        assert_eq!(rfc3339_offset(1_795_313_048), "2026-11-22T02:04:08+00:00");
    }
}
