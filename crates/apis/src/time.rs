//! Timestamps as Cloudpods writes them: UTC, microseconds, `Z` suffix
//! (`2023-07-17T05:52:18.000000Z`). The fixed width also makes them sort
//! correctly as strings, which is how the storage layer keeps them.

use chrono::{DateTime, SecondsFormat, Utc};

/// The wire format of a timestamp.
pub fn format(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Now, in the wire format.
pub fn now() -> String {
    format(Utc::now())
}

/// Parse any RFC 3339 timestamp (with or without fractional seconds).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339 in the local form used by the `time` field of error bodies.
pub fn rfc3339_now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_is_fixed_width_and_parses_back() {
        let t = super::parse("2023-07-17T05:52:18Z").expect("parse");
        assert_eq!(super::format(t), "2023-07-17T05:52:18.000000Z");
        assert_eq!(super::now().len(), 27);
        assert!(super::parse(&super::now()).is_some());
    }
}
