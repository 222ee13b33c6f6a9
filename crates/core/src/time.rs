//! Instants as milliseconds since the Unix epoch, the one representation of time that both
//! stores persist (an `i64` column in SQLite and PostgreSQL alike).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The earliest instant RFC 3339 can write: `0000-01-01T00:00:00.000Z`.
    pub const RFC3339_MIN: Timestamp = Timestamp(-62_167_219_200_000);
    /// The latest instant intake writes as RFC 3339: `9999-12-30T22:00:00Z`. RFC 3339 itself
    /// ends 26 hours later, at the end of year 9999, but jiff (which reads and writes intake's
    /// times) keeps every instant writable at every UTC offset, so its range stops here.
    pub const RFC3339_MAX: Timestamp = Timestamp(253_402_207_200_000);

    /// Whether intake can write this instant as RFC 3339 (a four-digit year, from
    /// [`Timestamp::RFC3339_MIN`] to [`Timestamp::RFC3339_MAX`]). Every instant intake accepts
    /// from a system of record is one (the connectors' input policy refuses the others), so
    /// that `intake-occurred-at` is always valid RFC 3339.
    pub const fn is_rfc3339(self) -> bool {
        self.0 >= Self::RFC3339_MIN.0 && self.0 <= Self::RFC3339_MAX.0
    }

    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (what `webhook-timestamp` carries).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// This instant moved back by `d` (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Parses an RFC 3339 instant such as `2026-11-28T10:00:00Z` or `…T11:00:00+01:00`.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeParseError> {
        let t: jiff::Timestamp = s.parse().map_err(|_| TimeParseError(s.to_string()))?;
        Ok(Timestamp(t.as_millisecond()))
    }

    /// Converts from [`SystemTime`]; instants before the epoch become negative.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Converts to [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-28T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => format!("{t:.3}"),
            // Outside jiff's range (years beyond ±9999): no real instant is there.
            Err(_) => format!("@{}ms", self.0),
        }
    }
}

/// An instant that is not valid RFC 3339.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 time (expected e.g. 2026-11-28T10:00:00Z)")]
pub struct TimeParseError(pub String);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

// The admin API's OpenAPI document describes an instant as the RFC 3339 text it is serialized as.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An instant in RFC 3339, UTC, with milliseconds."))
            .examples(["2026-11-28T10:00:00.000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T10:00:00.000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn rfc3339_offsets() {
        let utc = Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-28T11:00:00+01:00").unwrap(),
            utc
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-28T05:30:00-04:30").unwrap(),
            utc
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-28T10:00:00.250Z")
                .unwrap()
                .0
                - utc.0,
            250
        );
    }

    #[test]
    fn the_rfc3339_range_is_exactly_what_rfc3339_writes() {
        for (t, text) in [
            (Timestamp::RFC3339_MIN, "0000-01-01T00:00:00.000Z"),
            (Timestamp::RFC3339_MAX, "9999-12-30T22:00:00.000Z"),
            (Timestamp(0), "1970-01-01T00:00:00.000Z"),
        ] {
            assert!(t.is_rfc3339());
            assert_eq!(t.to_rfc3339(), text);
            assert_eq!(Timestamp::parse_rfc3339(text).unwrap(), t);
        }
        for t in [
            Timestamp(Timestamp::RFC3339_MIN.0 - 1),
            Timestamp(Timestamp::RFC3339_MAX.0 + 1),
            Timestamp(i64::MIN),
            Timestamp(i64::MAX),
        ] {
            assert!(!t.is_rfc3339(), "{t:?}");
        }
        // The upper end is exactly where writing stops.
        assert!(Timestamp(Timestamp::RFC3339_MAX.0 + 1)
            .to_rfc3339()
            .starts_with('@'));
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-28T10:00:00",
            "2026-11-28T10:61:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
