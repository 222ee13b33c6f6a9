//! Typed, prefixed identifiers. An event id can never be passed where a delivery id is
//! expected, and every id says what it names when it shows up in a log line or a URL.
//!
//! Ids are a prefix and a ULID whose time part comes from the injected clock, so ids sort by
//! creation time and tests get stable ordering.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Timestamp;

/// An id string that does not have the expected prefix and ULID.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}` followed by 26 ULID characters)")]
pub struct IdParseError {
    /// What kind of id was expected.
    pub kind: &'static str,
    /// The prefix that was expected.
    pub prefix: &'static str,
    /// The rejected value.
    pub value: String,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id created at `at`.
            pub fn generate(at: Timestamp) -> Self {
                let ms = u64::try_from(at.as_millis()).unwrap_or(0);
                let ulid = ulid::Ulid::from_parts(ms, rand::random::<u128>());
                $name(format!("{}{}", $prefix, ulid))
            }

            /// The smallest id that can be generated at or after `at`: ids sort by creation
            /// time, so `id >= lower_bound(t)` selects what was created from `t` on.
            pub fn lower_bound(at: Timestamp) -> String {
                let ms = u64::try_from(at.as_millis()).unwrap_or(0);
                format!("{}{}", $prefix, ulid::Ulid::from_parts(ms, 0))
            }

            /// The id as text, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The instant the id was generated at (its ULID's time part): for an event,
            /// when it was received.
            pub fn created_at(&self) -> Timestamp {
                let ms = self
                    .0
                    .strip_prefix($prefix)
                    .and_then(|rest| ulid::Ulid::from_string(rest).ok())
                    .map_or(0, |u| u.timestamp_ms());
                Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.strip_prefix($prefix) {
                    Some(rest) if ulid::Ulid::from_string(rest).is_ok() => Ok($name(s.to_string())),
                    _ => Err(IdParseError { kind: $kind, prefix: $prefix, value: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        // The admin API's OpenAPI document describes the id as the string it is serialized as.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(concat!("The id of one ", $kind, ": `", $prefix, "` and a ULID.")))
                    .pattern(Some(concat!("^", $prefix, "[0-9A-HJKMNP-TV-Z]{26}$")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(
    /// The id of one accepted event; it is also the `webhook-id` the handler sees.
    EventId, "evt_", "event"
);
prefixed_id!(
    /// The id of one (event, destination) delivery.
    DeliveryId, "dlv_", "delivery"
);
prefixed_id!(
    /// The id of one silence.
    SilenceId, "sil_", "silence"
);
prefixed_id!(
    /// The id of one stored API token (not the token itself).
    TokenId, "tok_", "token"
);
prefixed_id!(
    /// The id of one recovery job (backfill, replay, requeue).
    RecoveryId, "rec_", "recovery job"
);
prefixed_id!(
    /// The id of one fire drill.
    DrillId, "drl_", "drill"
);
prefixed_id!(
    /// The id of one incident.
    IncidentId, "inc_", "incident"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_knows_when_it_was_generated() {
        for at in [0, 1, 1_700_000_000_123, 4_102_444_800_000] {
            assert_eq!(EventId::generate(Timestamp(at)).created_at(), Timestamp(at));
        }
        let bound: EventId = EventId::lower_bound(Timestamp(42)).parse().unwrap();
        assert_eq!(bound.created_at(), Timestamp(42));
    }

    #[test]
    fn ids_round_trip_and_reject_other_prefixes() {
        let id = EventId::generate(Timestamp(1_700_000_000_000));
        assert!(id.as_str().starts_with("evt_"));
        assert_eq!(id.as_str().parse::<EventId>().unwrap(), id);
        assert!(id
            .as_str()
            .replace("evt_", "dlv_")
            .parse::<EventId>()
            .is_err());
        assert!("evt_nope".parse::<EventId>().is_err());
    }

    #[test]
    fn lower_bounds_split_ids_by_creation_time() {
        let before = EventId::generate(Timestamp(1_999));
        let at = EventId::generate(Timestamp(2_000));
        let bound = EventId::lower_bound(Timestamp(2_000));
        assert!(before.as_str() < bound.as_str());
        assert!(at.as_str() >= bound.as_str());
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = EventId::generate(Timestamp(1_000));
        let b = EventId::generate(Timestamp(2_000));
        assert!(a < b);
    }
}
