//! The units a configuration is written in: durations (`"10s"`), sizes (`"1MiB"`) and rates
//! (`"600/m"`), with the serde forms that accept them, and the lenient readers for scalars that
//! environment variables set as text.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a string such as `"10s"`, `"2m"`, `"24h"` or `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Whole seconds.
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write durations like \"10s\", \"2m\" or \"24h\""
            ))
        })
    }
}

/// A duration that may be turned off: `"30d"`, `"720h"`, … or `"off"` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurOrOff(pub Option<Duration>);

impl Serialize for DurOrOff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => s.serialize_str(&humantime::format_duration(d).to_string()),
            None => s.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for DurOrOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(DurOrOff(None));
        }
        humantime::parse_duration(&s)
            .map(|d| DurOrOff(Some(d)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{s}` ({e}); write a duration like \"30d\" or \"720h\", or \"off\""
                ))
            })
    }
}

/// A size in bytes, written as an integer or a string such as `"1MiB"`, `"512KiB"`, `"2MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"1MiB"`-style text.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(mult).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{s}`; write sizes like 1048576, \"512KiB\" or \"1MiB\""
                ))
            }),
        }
    }
}

/// A rate in events per second, written as a number (`50`, per second) or as text with a unit
/// (`"50/s"`, `"600/m"`, `"10000/h"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl Rate {
    /// Parses `"600/m"`-style text.
    pub fn parse(s: &str) -> Option<Self> {
        let (n, unit) = s.split_once('/').unwrap_or((s, "s"));
        let n: f64 = n.trim().parse().ok()?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return None,
        };
        Some(Rate(n / per))
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Rate(n)),
            Raw::Text(t) => Rate::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid rate `{t}`; write a number per second (50) or \"50/s\", \"600/m\", \"10000/h\""
                ))
            }),
        }
    }
}

/// Scalars that environment variables can set arrive as text (`INTAKE_STORAGE_MAX_BATCH=512`);
/// these accept the text form as well as the TOML one.
pub(super) mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrText {
        Bool(bool),
        Text(String),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CountOrText {
        Count(u64),
        Text(String),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(f64),
        Text(String),
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match BoolOrText::deserialize(d)? {
            BoolOrText::Bool(b) => Ok(b),
            BoolOrText::Text(t) => t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!("`{t}` is not a boolean (true or false)"))
            }),
        }
    }

    pub fn option_boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        boolean(d).map(Some)
    }

    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let n = match CountOrText::deserialize(d)? {
            CountOrText::Count(n) => n,
            CountOrText::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a whole number")))?,
        };
        usize::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is too large")))
    }

    pub fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(n),
            NumberOrText::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a number (e.g. 0.2)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(ByteSize::parse("1MiB"), Some(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("512 KiB"), Some(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("2MB"), Some(ByteSize(2_000_000)));
        assert_eq!(ByteSize::parse("lots"), None);
    }
}
