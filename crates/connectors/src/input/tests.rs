//! The input policy: its checks as tables, then the same cases through every connector, so
//! that the seven agree on ids, times, UTF-8 and nesting.

use super::*;
use crate::{
    Connector, FreshdeskConnector, FrontConnector, GenericConnector, GorgiasConnector, Incoming,
    IntercomConnector, KustomerConnector, ZendeskConnector,
};
use http::HeaderMap;
use intake_core::config::{GenericFields, GenericSignature, HmacAlgorithm, SignatureEncoding};
use proptest::prelude::*;

/// `depth` nested arrays.
fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

#[test]
fn bodies_within_the_policy_pass() {
    for body in [
        r#"{}"#.to_string(),
        r#"{"a":"brackets [[[{{{ in a string do not nest","b":"\"[[["}"#.to_string(),
        r#"{"emoji":"\ud83d\ude00","plain":"\u00e9\u0041","escapes":"\\\"\/\b\f\n\r\t"}"#
            .to_string(),
        "{\"utf8\":\"héllo wörld ✓ 😀\"}".to_string(),
        // The outermost object counts: 1 + 127 = the limit.
        format!("{{\"x\":{}}}", nested(MAX_DEPTH - 1)),
        // Closing more than was opened is the parser's business, not a depth.
        "]]]]".to_string(),
        // Syntax errors pass this check; the parser names them.
        r#"{"a": "\u12"#.to_string(),
        r#"{"a":"unterminated"#.to_string(),
    ] {
        assert_eq!(check_body(body.as_bytes()), Ok(()), "{body}");
    }
}

#[test]
fn bodies_outside_the_policy_are_refused_with_their_reason() {
    let deep = format!("{{\"x\":{}}}", nested(MAX_DEPTH));
    let very_deep = nested(100_000);
    let cases: Vec<(Vec<u8>, ParseError)> = vec![
        (
            b"{\"a\":\"\xff\"}".to_vec(),
            ParseError::InvalidUtf8 { offset: 6 },
        ),
        // An overlong encoding of `/`, and a truncated sequence at the end.
        (
            b"{\"a\":\"\xc0\xaf\"}".to_vec(),
            ParseError::InvalidUtf8 { offset: 6 },
        ),
        (
            b"{\"a\":\"\xe2\x9c".to_vec(),
            ParseError::InvalidUtf8 { offset: 6 },
        ),
        (
            br#"{"a":"\ud83d"}"#.to_vec(),
            ParseError::InvalidEscape { offset: 6 },
        ),
        (
            br#"{"a":"\ude00"}"#.to_vec(),
            ParseError::InvalidEscape { offset: 6 },
        ),
        (
            br#"{"a":"\ud83d\u0041"}"#.to_vec(),
            ParseError::InvalidEscape { offset: 6 },
        ),
        (deep.into_bytes(), ParseError::TooDeep { limit: MAX_DEPTH }),
        (
            very_deep.into_bytes(),
            ParseError::TooDeep { limit: MAX_DEPTH },
        ),
    ];
    for (body, refusal) in cases {
        assert_eq!(
            check_body(&body),
            Err(refusal),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn unix_seconds_are_read_exactly_and_refused_out_of_range() {
    let read = |s: &str| unix_seconds("at", Some(s));
    for (raw, ms) in [
        ("0", 0),
        ("1764235200", 1_764_235_200_000),
        ("1764235200.5", 1_764_235_200_500),
        ("001764235200.1239", 1_764_235_200_123),
        ("-1", -1000),
        ("1.7642352e9", 1_764_235_200_000),
        // The range's ends.
        ("-62167219200", Timestamp::RFC3339_MIN.0),
        ("253402207200", Timestamp::RFC3339_MAX.0),
    ] {
        assert_eq!(read(raw), Ok(Some(Timestamp(ms))), "{raw}");
    }
    for raw in ["soon", "", "NaN", "inf", "-infinity", "12:00"] {
        assert_eq!(read(raw), Ok(None), "{raw}");
    }
    for raw in [
        "-9223372036854775808",
        "9223372036854775807",
        "253402207200.001",
        "-62167219200.001",
        "1e300",
        "1e999",
        "-1e999",
        "123456789012345678901234567890123456789012345678901234567890",
    ] {
        assert!(
            matches!(read(raw), Err(ParseError::TimeOutOfRange { ref field, .. }) if field == "at"),
            "{raw}: {:?}",
            read(raw)
        );
    }
    assert_eq!(unix_seconds("at", None), Ok(None));
}

#[test]
fn rfc3339_times_are_refused_only_outside_what_rfc3339_writes() {
    let read = |s: &str| rfc3339("at", Some(s));
    assert_eq!(
        read("0000-01-01T00:00:00Z"),
        Ok(Some(Timestamp::RFC3339_MIN))
    );
    assert_eq!(
        read("9999-12-30T22:00:00Z"),
        Ok(Some(Timestamp::RFC3339_MAX))
    );
    assert!(read("9999-12-30T22:00:00.001Z").is_err());
    // jiff cannot read the last 26 hours of year 9999: unreadable, so absent.
    assert_eq!(read("9999-12-31T23:59:59Z"), Ok(None));
    // Go's zero time, a common "unset": odd, but writable, so kept.
    assert!(matches!(read("0001-01-01T00:00:00Z"), Ok(Some(_))));
    // ISO 8601's signed years reach instants RFC 3339 cannot write.
    let refused = read("-000001-01-01T00:00:00Z").unwrap_err();
    assert_eq!(
        refused.to_string(),
        "`at` is `-000001-01-01T00:00:00Z`, outside the times intake accepts \
         (0000-01-01T00:00:00Z to 9999-12-30T22:00:00Z)"
    );
    // Not RFC 3339 at all: absent, as before.
    assert_eq!(read("yesterday"), Ok(None));
}

#[test]
fn a_refusal_quotes_at_most_forty_characters() {
    let long = "9".repeat(500);
    match unix_seconds("at", Some(&long)) {
        Err(ParseError::TimeOutOfRange { value, .. }) => {
            assert_eq!(value, format!("{}…", "9".repeat(40)));
        }
        other => panic!("{other:?}"),
    }
}

// --- the same policy through every connector ---

/// One connector with an envelope that carries an id, a time and an unknown field `x`.
struct Case {
    name: &'static str,
    connector: Box<dyn Connector>,
    /// The body with `{id}` (a JSON number), `{time}` (a JSON value) and `{x}` (any JSON).
    template: &'static str,
    /// A time in the connector's format, inside the range.
    good_time: &'static str,
    /// A time in the connector's format that RFC 3339 cannot write.
    bad_time: &'static str,
    /// The field a refusal of `bad_time` names.
    time_field: &'static str,
    /// The dedupe key's prefix and suffix around the id.
    key: (&'static str, &'static str),
}

impl Case {
    fn body(&self, id: &str, time: &str, x: &str) -> Vec<u8> {
        self.template
            .replace("{id}", id)
            .replace("{time}", time)
            .replace("{x}", x)
            .into_bytes()
    }

    fn parse(&self, body: &[u8]) -> Result<intake_core::event::NormalizedEvent, ParseError> {
        let headers = HeaderMap::new();
        self.connector.parse(&Incoming {
            headers: &headers,
            body,
            now: Timestamp(1_764_235_200_000),
        })
    }
}

/// Every connector, each with the envelope its vendor sends.
fn cases() -> Vec<Case> {
    let generic = GenericConnector::new(
        GenericSignature {
            header: "X-Signature".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: None,
        },
        GenericFields {
            event_id: Some("/event/id".into()),
            occurred_at: Some("/event/at".into()),
            ..GenericFields::default()
        },
    );
    vec![
        Case {
            name: "kustomer",
            connector: Box::new(KustomerConnector),
            template: r#"{"id":"e1","name":"kustomer.message.create","data":{"type":"message","id":{id},"attributes":{"channel":"email","createdAt":{time}}},"x":{x}}"#,
            good_time: r#""2026-11-27T09:15:00.000Z""#,
            bad_time: r#""-000001-01-01T00:00:00Z""#,
            time_field: "data.attributes.createdAt",
            key: ("message:", ":create"),
        },
        Case {
            name: "zendesk",
            connector: Box::new(ZendeskConnector::default()),
            template: r#"{"id":"z1","type":"zen:event-type:ticket.created","time":{time},"detail":{"id":{id}},"x":{x}}"#,
            good_time: r#""2026-11-27T09:15:00Z""#,
            bad_time: r#""-000001-01-01T00:00:00Z""#,
            time_field: "time",
            key: ("ticket:", ":created"),
        },
        Case {
            name: "intercom",
            connector: Box::new(IntercomConnector),
            template: r#"{"type":"notification_event","id":"notif_1","topic":"conversation.user.created","data":{"type":"notification_event_data","item":{"type":"conversation","id":{id},"created_at":{time}}},"x":{x}}"#,
            good_time: "1764235200",
            bad_time: "-9223372036854775808",
            time_field: "data.item.created_at",
            key: ("conversation:", ":created"),
        },
        Case {
            name: "front",
            connector: Box::new(FrontConnector::default()),
            template: r#"{"id":{id},"type":"inbound","emitted_at":{time},"x":{x}}"#,
            good_time: "1453770984.123",
            bad_time: "99999999999999999",
            time_field: "emitted_at",
            key: ("event:", ""),
        },
        Case {
            name: "freshdesk",
            connector: Box::new(FreshdeskConnector::default()),
            template: r#"{"freshdesk_webhook":{"ticket_id":{id},"triggered_event":"{ticket_action:created}","ticket_created_at":{time}},"x":{x}}"#,
            good_time: r#""2026-03-11 12:44:19""#,
            bad_time: r#""-000001-01-01T00:00:00Z""#,
            time_field: "ticket_created_at",
            key: ("ticket:", ":created"),
        },
        Case {
            name: "gorgias",
            connector: Box::new(GorgiasConnector::default()),
            template: r#"{"event":"ticket-created","ticket":{"id":{id},"created_datetime":{time}},"x":{x}}"#,
            good_time: r#""2026-03-11T12:44:19.120Z""#,
            bad_time: r#""-000001-01-01T00:00:00Z""#,
            time_field: "ticket.created_datetime",
            key: ("ticket:", ":created"),
        },
        Case {
            name: "generic",
            connector: Box::new(generic),
            template: r#"{"event":{"id":{id},"at":{time}},"x":{x}}"#,
            good_time: "1764235200",
            bad_time: "-9223372036854775808",
            time_field: "/event/at",
            key: ("event:", ""),
        },
    ]
}

#[test]
fn every_connector_is_in_the_table() {
    let names: Vec<_> = cases().iter().map(|c| c.connector.kind()).collect();
    for kind in [
        intake_core::config::SourceKind::Kustomer,
        intake_core::config::SourceKind::Zendesk,
        intake_core::config::SourceKind::Intercom,
        intake_core::config::SourceKind::Front,
        intake_core::config::SourceKind::Freshdesk,
        intake_core::config::SourceKind::Gorgias,
        intake_core::config::SourceKind::Generic,
    ] {
        assert!(names.contains(&kind), "{kind:?}");
    }
}

/// Pairs of ids a float cannot tell apart (beyond `u64`, and beyond 2^53), with their
/// neighbours within `u64` for good measure.
const ID_PAIRS: [(&str, &str); 3] = [
    ("18446744073709551616", "18446744073709551617"),
    ("9007199254740992", "9007199254740993"),
    (
        "340282366920938463463374607431768211456",
        "340282366920938463463374607431768211457",
    ),
];

#[test]
fn numeric_ids_are_kept_exactly_by_every_connector() {
    for case in cases() {
        for (a, b) in ID_PAIRS {
            let mut keys = Vec::new();
            for id in [a, b] {
                let e = case
                    .parse(&case.body(id, case.good_time, "null"))
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(
                    e.dedupe_key,
                    format!("{}{id}{}", case.key.0, case.key.1),
                    "{}",
                    case.name
                );
                keys.push(e.dedupe_key);
            }
            assert_ne!(keys[0], keys[1], "{}", case.name);
        }
    }
}

#[test]
fn every_connector_refuses_a_time_rfc3339_cannot_write_and_names_the_field() {
    for case in cases() {
        let ok = case
            .parse(&case.body("1", case.good_time, "null"))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let at = ok.occurred_at.unwrap_or_else(|| panic!("{}", case.name));
        assert!(at.is_rfc3339(), "{}", case.name);
        match case.parse(&case.body("1", case.bad_time, "null")) {
            Err(ParseError::TimeOutOfRange { field, value }) => {
                assert_eq!(field, case.time_field, "{}", case.name);
                assert_eq!(value, case.bad_time.trim_matches('"'), "{}", case.name);
            }
            other => panic!("{}: {other:?}", case.name),
        }
    }
}

#[test]
fn every_connector_refuses_invalid_utf8_and_unpaired_surrogates_in_fields_it_skips() {
    for case in cases() {
        let mut body = case.body("1", case.good_time, "\"caf\u{e9}\"");
        assert!(case.parse(&body).is_ok(), "{}", case.name);
        // The `é` of the unknown field, made Latin-1: a byte that is not UTF-8.
        let at = body.len() - 4;
        body.splice(at..at + 2, [0xe9]);
        assert!(
            matches!(case.parse(&body), Err(ParseError::InvalidUtf8 { offset }) if offset == at),
            "{}: {:?}",
            case.name,
            case.parse(&body)
        );
        let escaped = case.body("1", case.good_time, r#""\udc00""#);
        assert!(
            matches!(case.parse(&escaped), Err(ParseError::InvalidEscape { .. })),
            "{}",
            case.name
        );
    }
}

#[test]
fn every_connector_refuses_nesting_beyond_the_limit_and_accepts_it_up_to_the_limit() {
    for case in cases() {
        // The unknown field sits in the outermost object, which counts as one level.
        let at_limit = case.body("1", case.good_time, &nested(MAX_DEPTH - 1));
        assert!(case.parse(&at_limit).is_ok(), "{}", case.name);
        for depth in [MAX_DEPTH, 100_000] {
            let body = case.body("1", case.good_time, &nested(depth));
            assert_eq!(
                case.parse(&body),
                Err(ParseError::TooDeep { limit: MAX_DEPTH }),
                "{}",
                case.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any number text as an id is kept as written by every connector, so two different
    /// numbers never share a key.
    #[test]
    fn any_integer_id_is_kept_as_written(digits in "[1-9][0-9]{0,60}") {
        for case in cases() {
            let e = case.parse(&case.body(&digits, case.good_time, "null"));
            prop_assert!(e.is_ok(), "{}: {:?}", case.name, e);
            let key = e.map(|e| e.dedupe_key).unwrap_or_default();
            prop_assert_eq!(key, format!("{}{}{}", case.key.0, digits, case.key.1));
        }
    }

    /// Nesting of any depth and shape is accepted exactly up to the limit, by every connector.
    #[test]
    fn depth_decides_alike_for_every_connector(
        opens in proptest::collection::vec(any::<bool>(), 1..300),
    ) {
        // A chain of arrays and objects (`{"k":` … `}`), `opens.len()` deep under `x`.
        let mut x = String::new();
        for object in &opens {
            x.push_str(if *object { "{\"k\":" } else { "[" });
        }
        x.push('1');
        for object in opens.iter().rev() {
            x.push(if *object { '}' } else { ']' });
        }
        let within = opens.len() < MAX_DEPTH;
        for case in cases() {
            let got = case.parse(&case.body("1", case.good_time, &x));
            if within {
                prop_assert!(got.is_ok(), "{}: {:?}", case.name, got);
            } else {
                prop_assert_eq!(got, Err(ParseError::TooDeep { limit: MAX_DEPTH }));
            }
        }
    }
}
