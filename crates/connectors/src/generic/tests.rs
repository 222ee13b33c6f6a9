use super::*;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

fn github_style() -> GenericConnector {
    GenericConnector::new(
        GenericSignature {
            header: "X-Hub-Signature-256".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: Some("sha256=".into()),
        },
        GenericFields::default(),
    )
}

#[test]
fn verifies_and_parses() {
    let c = github_style();
    let body = br#"{"id":"42","type":"ticket.created","channel":"sms"}"#;
    let mut h = HeaderMap::new();
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&c.sign("k", body)).unwrap(),
    );
    let req = Incoming {
        headers: &h,
        body,
        now: Timestamp(0),
    };
    assert_eq!(c.verify(&req, &["k".into()]), Ok(()));
    assert_eq!(
        c.verify(&req, &["other".into()]),
        Err(VerifyError::Mismatch)
    );
    let e = c.parse(&req).unwrap();
    assert_eq!(e.dedupe_key, "event:42");
    assert_eq!(e.event_type, "ticket.created");
    assert_eq!(e.channel, Channel::Sms);
}

#[test]
fn missing_prefix_is_malformed_and_body_hash_dedupes_without_id() {
    let c = github_style();
    let body = br#"{"type":"x"}"#;
    let mut h = HeaderMap::new();
    h.insert("x-hub-signature-256", HeaderValue::from_static("abcdef"));
    let req = Incoming {
        headers: &h,
        body,
        now: Timestamp(0),
    };
    assert!(matches!(
        c.verify(&req, &["k".into()]),
        Err(VerifyError::Malformed { .. })
    ));
    assert!(c.parse(&req).unwrap().dedupe_key.starts_with("sha256:"));
}

proptest! {
    #[test]
    fn every_algorithm_and_encoding_round_trips(body in proptest::collection::vec(any::<u8>(), 1..256), alg in 0..3u8, b64 in any::<bool>(), bit in any::<usize>()) {
        let c = GenericConnector::new(GenericSignature {
            header: "X-Sig".into(),
            algorithm: [HmacAlgorithm::Sha256, HmacAlgorithm::Sha1, HmacAlgorithm::Sha512][alg as usize],
            encoding: if b64 { SignatureEncoding::Base64 } else { SignatureEncoding::Hex },
            prefix: None,
        }, GenericFields::default());
        let mut h = HeaderMap::new();
        h.insert("x-sig", HeaderValue::from_str(&c.sign("secret", &body)).unwrap());
        let ok = c.verify(&Incoming { headers: &h, body: &body, now: Timestamp(0) }, &["secret".into()]);
        prop_assert!(ok.is_ok());
        let mut t = body.clone();
        let i = bit % (t.len() * 8);
        t[i / 8] ^= 1 << (i % 8);
        let bad = c.verify(&Incoming { headers: &h, body: &t, now: Timestamp(0) }, &["secret".into()]);
        prop_assert!(bad.is_err());
    }
}

// Golden: GitHub's documented test vector for `X-Hub-Signature-256`
// (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation):
// secret "It's a Secret to Everybody", payload "Hello, World!".
#[test]
fn golden_github_style_vector_verifies() {
    let c = github_style();
    let h = {
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            HeaderValue::from_static(
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
        );
        h
    };
    let req = Incoming {
        headers: &h,
        body: b"Hello, World!",
        now: Timestamp(0),
    };
    assert_eq!(
        c.verify(&req, &["It's a Secret to Everybody".into()]),
        Ok(())
    );
    assert_eq!(
        c.sign("It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    assert_eq!(
        c.verify(&req, &["It's a secret to everybody".into()]),
        Err(VerifyError::Mismatch)
    );
}

/// An in-house ticketing system signing like GitHub, with its own field layout.
fn in_house() -> GenericConnector {
    GenericConnector::new(
        GenericSignature {
            header: "X-Signature-256".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: Some("sha256=".into()),
        },
        GenericFields {
            event_id: Some("/event/id".into()),
            event_type: Some("/event/type".into()),
            channel: Some("/data/ticket/channel".into()),
            occurred_at: Some("/event/created_at".into()),
            object_id: Some("/data/message/id".into()),
            conversation_id: Some("/data/ticket/id".into()),
        },
    )
}

#[test]
fn golden_in_house_configuration_parses_every_field() {
    let body = br#"{"event":{"id":"evt_01J9Z6","type":"message.created","created_at":"2026-11-27T09:15:00.250Z"},
        "data":{"ticket":{"id":48213,"channel":"whatsapp"},"message":{"id":"m-993","direction":"inbound"}}}"#;
    let c = in_house();
    let mut h = HeaderMap::new();
    h.insert(
        "x-signature-256",
        HeaderValue::from_str(&c.sign("k", body)).unwrap(),
    );
    let req = Incoming {
        headers: &h,
        body,
        now: Timestamp(0),
    };
    assert_eq!(c.verify(&req, &["k".into()]), Ok(()));
    let e = c.parse(&req).unwrap();
    assert_eq!(e.sor_event_id.as_deref(), Some("evt_01J9Z6"));
    assert_eq!(e.dedupe_key, "event:evt_01J9Z6");
    assert_eq!(e.event_type, "message.created");
    assert_eq!(e.raw_channel.as_deref(), Some("whatsapp"));
    assert_eq!(e.channel, Channel::Sms);
    assert_eq!(e.object_id.as_deref(), Some("m-993"));
    assert_eq!(e.conversation_id.as_deref(), Some("48213"));
    assert_eq!(
        e.occurred_at,
        Some(Timestamp::parse_rfc3339("2026-11-27T09:15:00.250Z").unwrap())
    );
}

// Help Scout signs `X-HelpScout-Signature` = base64(HMAC-SHA1(secret, body)) and sends the
// conversation object as the body (https://developer.helpscout.com/webhooks/); the event name
// is in a header, so a generic source keys on the body hash. Signature computed with Python:
// base64(hmac.new(b"helpscout-secret", body, sha1).digest()).
const HELPSCOUT_BODY: &str = r#"{"id":2391938111,"number":349,"type":"email","folderId":1234,"status":"active","state":"published","subject":"Where is my order?","preview":"Hello, my order has not arrived","mailboxId":85,"createdAt":"2026-11-27T09:15:00Z","userUpdatedAt":"2026-11-27T09:15:00Z","source":{"type":"email","via":"customer"},"primaryCustomer":{"id":152,"email":"ada@example.com"}}"#;
const HELPSCOUT_SIGNATURE: &str = "Ev7NVKa3rVSezIk+XRqkXhTFbe4=";

fn helpscout() -> GenericConnector {
    GenericConnector::new(
        GenericSignature {
            header: "X-HelpScout-Signature".into(),
            algorithm: HmacAlgorithm::Sha1,
            encoding: SignatureEncoding::Base64,
            prefix: None,
        },
        GenericFields {
            event_id: None,
            event_type: None,
            channel: Some("/type".into()),
            occurred_at: Some("/userUpdatedAt".into()),
            object_id: Some("/id".into()),
            conversation_id: Some("/id".into()),
        },
    )
}

#[test]
fn golden_helpscout_configuration_verifies_and_parses() {
    let c = helpscout();
    let mut h = HeaderMap::new();
    h.insert(
        "x-helpscout-signature",
        HeaderValue::from_static(HELPSCOUT_SIGNATURE),
    );
    let req = Incoming {
        headers: &h,
        body: HELPSCOUT_BODY.as_bytes(),
        now: Timestamp(0),
    };
    assert_eq!(
        c.verify(&req, &["old".into(), "helpscout-secret".into()]),
        Ok(())
    );
    assert_eq!(
        c.sign("helpscout-secret", HELPSCOUT_BODY.as_bytes()),
        HELPSCOUT_SIGNATURE
    );
    let e = c.parse(&req).unwrap();
    assert_eq!(e.sor_event_id, None);
    assert!(e.dedupe_key.starts_with("sha256:"));
    assert_eq!(e.event_type, "unknown");
    assert_eq!(e.channel, Channel::Email);
    assert_eq!(e.conversation_id.as_deref(), Some("2391938111"));
    assert_eq!(
        e.occurred_at,
        Some(Timestamp::parse_rfc3339("2026-11-27T09:15:00Z").unwrap())
    );
    let mut tampered = HELPSCOUT_BODY.as_bytes().to_vec();
    tampered[5] ^= 0x01;
    let bad = Incoming {
        headers: &h,
        body: &tampered,
        now: Timestamp(0),
    };
    assert_eq!(
        c.verify(&bad, &["helpscout-secret".into()]),
        Err(VerifyError::Mismatch)
    );
    let none = HeaderMap::new();
    let missing = Incoming {
        headers: &none,
        body: HELPSCOUT_BODY.as_bytes(),
        now: Timestamp(0),
    };
    assert_eq!(
        c.verify(&missing, &["helpscout-secret".into()]),
        Err(VerifyError::MissingHeader("X-HelpScout-Signature".into()))
    );
}

proptest! {
    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let h = HeaderMap::new();
        let req = Incoming { headers: &h, body: &body, now: Timestamp(0) };
        let _ = in_house().parse(&req);
        let _ = helpscout().parse(&req);
    }
}

#[test]
fn pointers_are_followed_in_the_raw_text_as_value_pointer_would() {
    let body = r#"{"a/b":{"m~n":[10, {"id": 18446744073709551617}, "x"]},"dup":1,"dup":"last",
        "list":["zero","one"],"esc":"line\nbreak","n":-0.50e3,"t":true,"nothing":null}"#;
    let root: &RawValue = serde_json::from_str(body).unwrap();
    let text = |p: &str| text_at(root, &Some(p.to_string()));
    assert_eq!(
        text("/a~1b/m~0n/1/id").as_deref(),
        Some("18446744073709551617")
    );
    assert_eq!(text("/a~1b/m~0n/0").as_deref(), Some("10"));
    assert_eq!(text("/a~1b/m~0n/2").as_deref(), Some("x"));
    assert_eq!(text("/dup").as_deref(), Some("last"));
    assert_eq!(text("/list/1").as_deref(), Some("one"));
    assert_eq!(text("/esc").as_deref(), Some("line\nbreak"));
    assert_eq!(text("/n").as_deref(), Some("-0.50e3"));
    // Like `Value::pointer`: no leading zeros or signs in indices, no index past the end, no
    // member of a scalar; objects, arrays, booleans and null are not text.
    for none in [
        "/list/01", "/list/+1", "/list/2", "/list/-1", "/esc/0", "/a~1b", "/t", "/nothing",
        "/missing", "nope",
    ] {
        assert_eq!(text(none), None, "{none}");
    }
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    for p in [
        "/a~1b/m~0n/2",
        "/dup",
        "/list/1",
        "/esc",
        "/list/01",
        "/list/2",
    ] {
        assert_eq!(
            text(p),
            value
                .pointer(p)
                .and_then(|v| v.as_str())
                .map(str::to_string),
            "{p}"
        );
    }
}

#[test]
fn integer_times_beyond_i64_are_refused_not_saturated() {
    let c = GenericConnector::new(
        GenericSignature {
            header: "X-Sig".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: None,
        },
        GenericFields {
            occurred_at: Some("/at".into()),
            ..GenericFields::default()
        },
    );
    let h = HeaderMap::new();
    let parse = |body: &str| {
        c.parse(&Incoming {
            headers: &h,
            body: body.as_bytes(),
            now: Timestamp(0),
        })
    };
    // Before, -9223372036854775808 seconds saturated to i64::MIN milliseconds, which was then
    // sent as `intake-occurred-at: @-9223372036854775808ms`.
    for at in [
        "-9223372036854775808",
        "9223372036854775807",
        "1e20",
        "99999999999999999999999",
    ] {
        let body = format!(r#"{{"id":"e","at":{at}}}"#);
        assert!(
            matches!(parse(&body), Err(ParseError::TimeOutOfRange { ref field, .. }) if field == "/at"),
            "{at}: {:?}",
            parse(&body)
        );
    }
    let ok = parse(r#"{"id":"e","at":1764235200.25}"#).unwrap();
    assert_eq!(ok.occurred_at, Some(Timestamp(1_764_235_200_250)));
    let text = parse(r#"{"id":"e","at":"2026-11-27T09:15:00+01:00"}"#).unwrap();
    assert_eq!(
        text.occurred_at,
        Timestamp::parse_rfc3339("2026-11-27T08:15:00Z").ok()
    );
    // Not a time at all: absent, as before.
    assert_eq!(
        parse(r#"{"id":"e","at":"soon"}"#).unwrap().occurred_at,
        None
    );
    assert_eq!(parse(r#"{"id":"e","at":true}"#).unwrap().occurred_at, None);
}
