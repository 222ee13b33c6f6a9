//! Forgiving field types for borrowed envelope parsing: a system of record that changes a
//! field's JSON type (a number becomes a string, an object becomes `null`) must not make its
//! webhooks unparseable. [`Lax`] reads a scalar as text; [`Obj`] reads an object as `T` and
//! anything else as absent.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A field that is text when it is a string or a number, and absent otherwise (null, a bool,
/// an object, an array, an empty string).
///
/// A number is kept as the exact text the sender wrote (`18446744073709551617` stays those
/// digits; serde_json would otherwise read any integer beyond `u64` as an `f64` and round it),
/// so two ids never collapse into one dedupe key. The value is read as a borrowed
/// [`RawValue`], so `Lax` works with the borrowing deserializers the connectors use
/// (`serde_json::from_slice`, `from_str`).
#[derive(Default, Debug, Clone)]
pub(crate) struct Lax<'a>(pub(crate) Option<Cow<'a, str>>);

impl Lax<'_> {
    /// The text, if any and not empty.
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Lax<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        scalar_text(raw).map(Lax).map_err(serde::de::Error::custom)
    }
}

/// The text of a JSON scalar: a string unescaped, a number exactly as written; `None` for
/// anything else (null, a bool, an object, an array).
pub(crate) fn scalar_text(raw: &RawValue) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => match text.get(1..text.len() - 1) {
            // Without a backslash the text between the quotes is the string itself.
            Some(inner) if !inner.contains('\\') => Ok(Some(Cow::Borrowed(inner))),
            _ => serde_json::from_str::<String>(text).map(|s| Some(Cow::Owned(s))),
        },
        Some(b'-' | b'0'..=b'9') => Ok(Some(Cow::Borrowed(text))),
        _ => Ok(None),
    }
}

/// A field that is read as `T` when it is a JSON object, and is absent when it is anything
/// else (null, a string, an array…). A malformed object inside still fails: that is a body
/// this system does not send.
#[derive(Debug)]
pub(crate) struct Obj<T>(pub(crate) Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Obj<T> {
    /// The object, if present.
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(a)).map(|t| Obj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Obj(None))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Parses a body as a JSON object of type `T`, telling "not JSON" from "JSON, but not this
/// envelope" (a derived struct would also accept a JSON array, filling fields by position).
pub(crate) fn object<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    kind: &'static str,
) -> Result<T, crate::ParseError> {
    use serde_json::error::Category;
    let envelope = |why: String| crate::ParseError::Envelope { kind, why };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => envelope("expected a JSON object".into()),
            Err(e) => crate::ParseError::NotJson(e.to_string()),
        });
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        Category::Data => envelope(e.to_string()),
        _ => crate::ParseError::NotJson(e.to_string()),
    })
}

/// A field that is a list of `T` when it is a JSON array, and empty otherwise.
#[derive(Debug)]
pub(crate) struct List<T>(pub(crate) Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(t) = a.next_element::<T>()? {
                    out.push(t);
                }
                Ok(List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(List(Vec::new()))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(List(Vec::new()))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}
