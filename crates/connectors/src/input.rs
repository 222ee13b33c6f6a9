//! The input policy, the same for every connector: what a webhook body must be before any
//! connector reads its envelope, and how ids and times are read out of it.
//!
//! * **The body is UTF-8 JSON.** A body that is not valid UTF-8, or whose `\u` escapes are
//!   not valid Unicode (an unpaired surrogate), is refused (400) before it is parsed, wherever
//!   the bad bytes are: in a field the connector reads or in one it skips.
//! * **Nesting is bounded.** Arrays and objects nested more than [`MAX_DEPTH`] levels deep are
//!   refused (400). The depth is counted by a flat scan of the bytes (no recursion, constant
//!   memory), so a 100,000-deep body costs one pass and can never exhaust the stack.
//! * **Ids are exact text.** A JSON number used as an id (event, object, conversation) is kept
//!   as the digits the sender wrote, never converted to a float: two ids that differ only past
//!   the 16th digit stay two ids, with two dedupe keys (the connectors read them with `Lax`).
//! * **Times are instants RFC 3339 can write.** A time a connector reads (in its vendor's
//!   format: RFC 3339, Unix seconds, …) that lies outside `0000-01-01T00:00:00Z` ..=
//!   `9999-12-30T22:00:00Z` ([`Timestamp::is_rfc3339`]) is refused (400), so every
//!   `intake-occurred-at` intake sends is valid RFC 3339. A time field the connector cannot
//!   read at all (not in the vendor's format) is treated as absent, as before: the event is
//!   kept and carries the time it was received.
//!
//! [`Connector::parse`](crate::Connector::parse) applies the body checks and the final time
//! check to every connector, so a new connector cannot forget them.

use intake_core::event::NormalizedEvent;
use intake_core::Timestamp;

use crate::ParseError;

/// How deep arrays and objects may nest in a body: 128 levels, the outermost object counting
/// as one. serde_json refuses deeper documents when it builds them (its own recursion limit
/// is 128), but not when it skips them, which is how connectors pass over the fields they do
/// not read: this limit makes the two agree, for every connector. Real envelopes nest fewer
/// than 20 levels.
pub const MAX_DEPTH: usize = 128;

/// How many characters of an offending value a refusal quotes back.
const QUOTED_CHARS: usize = 40;

/// Checks a body against the policy: valid UTF-8, `\u` escapes that are valid Unicode, and
/// nesting at most [`MAX_DEPTH`] deep. JSON syntax is left to the parser: this only looks at
/// what the parser would let through unchecked when it skips a value.
pub fn check_body(body: &[u8]) -> Result<(), ParseError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ParseError::InvalidUtf8 {
            offset: e.valid_up_to(),
        });
    }
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i = match b {
            b'"' => skip_string(body, i + 1)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::TooDeep { limit: MAX_DEPTH });
                }
                i + 1
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i + 1
            }
            _ => i + 1,
        };
    }
    Ok(())
}

/// Skips a string from just after its opening quote, checking its `\u` escapes; returns the
/// index after the closing quote (or the end of an unterminated string, which the parser
/// then reports).
fn skip_string(body: &[u8], mut i: usize) -> Result<usize, ParseError> {
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => return Ok(i + 1),
            b'\\' if body.get(i + 1) == Some(&b'u') => i = unicode_escape(body, i)?,
            // Any other escape is two bytes; the parser judges whether it is a valid one.
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(body.len())
}

/// Checks the `\uXXXX` escape at `i` (a surrogate must be a high one followed by a low one);
/// returns the index after it (and after its pair).
fn unicode_escape(body: &[u8], i: usize) -> Result<usize, ParseError> {
    let Some(unit) = hex4(body, i + 2) else {
        // Not four hex digits: a syntax error the parser reports.
        return Ok(i + 2);
    };
    match unit {
        0xD800..=0xDBFF => {
            let paired = body.get(i + 6) == Some(&b'\\')
                && body.get(i + 7) == Some(&b'u')
                && matches!(hex4(body, i + 8), Some(0xDC00..=0xDFFF));
            if paired {
                Ok(i + 12)
            } else {
                Err(ParseError::InvalidEscape { offset: i })
            }
        }
        0xDC00..=0xDFFF => Err(ParseError::InvalidEscape { offset: i }),
        _ => Ok(i + 6),
    }
}

/// The four hex digits at `at`, if there are four.
fn hex4(body: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

/// Runs `read` on `body` under the policy: the body checks before, the time check after.
pub(crate) fn policed(
    body: &[u8],
    read: impl FnOnce(&[u8]) -> Result<NormalizedEvent, ParseError>,
) -> Result<NormalizedEvent, ParseError> {
    check_body(body)?;
    let event = read(body)?;
    check_event(&event)?;
    Ok(event)
}

/// The last check of every parsed event: its time is one RFC 3339 can write. The connectors'
/// time readers refuse out-of-range times with the field's name; this catches any path that
/// would not.
pub(crate) fn check_event(event: &NormalizedEvent) -> Result<(), ParseError> {
    match event.occurred_at {
        Some(t) if !t.is_rfc3339() => Err(ParseError::TimeOutOfRange {
            field: "occurred_at".into(),
            value: format!("{} ms since the epoch", t.as_millis()),
        }),
        _ => Ok(()),
    }
}

/// The refusal of the time `raw` read from `field`.
fn out_of_range(field: &str, raw: &str) -> ParseError {
    let mut value: String = raw.chars().take(QUOTED_CHARS).collect();
    if value.len() < raw.len() {
        value.push('…');
    }
    ParseError::TimeOutOfRange {
        field: field.to_string(),
        value,
    }
}

/// A time the connector read from the text `raw` of `field` with its own format: absent when
/// `raw` is absent or unreadable (`read` is `None`), refused when outside the RFC 3339 range.
pub(crate) fn within(
    field: &str,
    raw: Option<&str>,
    read: Option<Timestamp>,
) -> Result<Option<Timestamp>, ParseError> {
    match (raw, read) {
        (_, Some(t)) if t.is_rfc3339() => Ok(Some(t)),
        (Some(raw), Some(_)) => Err(out_of_range(field, raw)),
        (None, Some(t)) => Err(out_of_range(field, &t.as_millis().to_string())),
        (_, None) => Ok(None),
    }
}

/// An RFC 3339 time field (`2026-11-27T09:15:00.000Z`, any offset): absent when `raw` is absent
/// or not RFC 3339, refused when outside the range (e.g. `-000001-01-01T00:00:00Z`).
pub(crate) fn rfc3339(field: &str, raw: Option<&str>) -> Result<Option<Timestamp>, ParseError> {
    within(
        field,
        raw,
        raw.and_then(|s| Timestamp::parse_rfc3339(s).ok()),
    )
}

/// A Unix-seconds time field (`1453770984`, `1453770984.123`, `1.7e9`): absent when `raw` is
/// absent or not a number, refused when the number is outside the range (however large).
pub(crate) fn unix_seconds(
    field: &str,
    raw: Option<&str>,
) -> Result<Option<Timestamp>, ParseError> {
    let Some(text) = raw else {
        return Ok(None);
    };
    match seconds_to_millis(text) {
        None => Ok(None),
        Some(ms) => match i64::try_from(ms).map(Timestamp) {
            Ok(t) if t.is_rfc3339() => Ok(Some(t)),
            _ => Err(out_of_range(field, text)),
        },
    }
}

/// Seconds since the epoch written as a decimal number, in milliseconds; `None` when the text
/// is not a number. Plain decimals are read exactly (milliseconds from the first three
/// decimals, the rest ignored); other forms of a number (an exponent) as a float, rounded to
/// the millisecond. A number too large for `i128` saturates: it is out of range either way.
fn seconds_to_millis(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let int = int.trim_start_matches('0');
        // 30 digits of seconds are far beyond any range, and still fit an `i128` in ms.
        let ms = if int.len() > 30 {
            i128::MAX
        } else {
            let secs: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
            let mut ms = secs * 1000;
            for (i, b) in frac.bytes().take(3).enumerate() {
                ms += i128::from(b - b'0') * [100, 10, 1][i];
            }
            ms
        };
        return Some(if negative { -ms } else { ms });
    }
    let f: f64 = s.parse().ok()?;
    if f.is_nan() || (f.is_infinite() && !s.bytes().any(|b| b.is_ascii_digit())) {
        // `NaN`, `inf`, `infinity`: words, not times.
        return None;
    }
    // `as` saturates, so `1e999` (infinite) becomes the largest `i128`.
    Some((f * 1000.0).round() as i128)
}

#[cfg(test)]
mod tests;
