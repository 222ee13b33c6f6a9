//! Front connector tests: golden envelopes (shapes from Front's documentation, signatures
//! computed independently with Python's `hmac` module), each verify failure, rotation, the
//! setup challenge, and properties.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

// An application webhook, shaped as in https://dev.frontapp.com/docs/application-webhooks
// (envelope `type` / `authorization` / `payload`) with the event and message resources of
// https://dev.frontapp.com/reference/events and /reference/messages.
const APP_INBOUND: &str = r#"{"type":"inbound","authorization":{"id":"cmp_abc"},"payload":{"_links":{"self":"https://api2.frontapp.com/events/evt_55c8c149"},"id":"evt_55c8c149","type":"inbound","emitted_at":1615496636.24,"conversation":{"id":"cnv_55c8c149","subject":"Re: Order #1234","status":"unassigned","_links":{"self":"https://api2.frontapp.com/conversations/cnv_55c8c149"}},"source":{"_meta":{"type":"inboxes"},"data":[{"id":"inb_55c8c149","name":"Team"}]},"target":{"_meta":{"type":"message"},"data":{"_links":{"self":"https://api2.frontapp.com/messages/msg_55c8c149"},"id":"msg_55c8c149","type":"email","is_inbound":true,"created_at":1615496636.2,"blurb":"Where is my order?"}}}}"#;
// `X-Front-Request-Timestamp` and the signature Python computes for it:
// base64(hmac.new(b"front-app-secret", b"1615496636240:" + body, sha256).digest()).
const APP_TS: &str = "1615496636240";
const APP_SIGNATURE: &str = "ft7eF9hC9flR4XeI5Wat/B8whmS3Hbp9JuCNuDM+qdo=";

// A rule webhook (the bare event), the `assign` example of Front's API reference
// (https://dev.frontapp.com/reference/events), with the conversation's deprecated
// `last_message` that the events routes still return.
const RULE_ASSIGN: &str = r#"{"_links":{"self":"https://api2.frontapp.com/events/evt_55c8c150"},"id":"evt_55c8c150","type":"assign","emitted_at":1453770984.123,"source":{"_meta":{"type":"rule"},"data":{"id":"rul_55c8c149","name":"Important deliveries","actions":["Assign to Leela Turanga"],"is_private":false}},"target":{"_meta":{"type":"teammate"},"data":{"id":"tea_55c8c149","email":"leela@planet-express.com","username":"leela","first_name":"Leela","last_name":"Turanga","is_admin":true,"is_available":true}},"conversation":{"id":"cnv_55c8c149","subject":"You broke my heart, Hubert.","status":"assigned","last_message":{"id":"msg_55c8c149","type":"sms","is_inbound":true}}}"#;
// base64(hmac.new(b"front-api-secret", body, sha1).digest()), computed with Python.
const RULE_SIGNATURE: &str = "QXia3Zyv6o4d3yAAH0vsbLUtSwE=";

fn at(ms: i64) -> Timestamp {
    Timestamp(ms)
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn req<'a>(h: &'a HeaderMap, body: &'a [u8], now: Timestamp) -> Incoming<'a> {
    Incoming {
        headers: h,
        body,
        now,
    }
}

fn app_headers() -> HeaderMap {
    headers(&[
        (SIGNATURE_HEADER, APP_SIGNATURE),
        (TIMESTAMP_HEADER, APP_TS),
    ])
}

const APP_SENT: i64 = 1_615_496_636_240;

#[test]
fn golden_application_webhook_verifies_and_parses() {
    let h = app_headers();
    let r = req(&h, APP_INBOUND.as_bytes(), at(APP_SENT + 2_000));
    let c = FrontConnector::default();
    assert_eq!(c.verify(&r, &["front-app-secret".into()]), Ok(()));
    assert_eq!(
        sign("front-app-secret", APP_SENT, APP_INBOUND.as_bytes()),
        APP_SIGNATURE
    );
    let e = c.parse(&r).unwrap();
    assert_eq!(e.event_type, "inbound");
    assert_eq!(e.sor_event_id.as_deref(), Some("evt_55c8c149"));
    assert_eq!(e.dedupe_key, "event:evt_55c8c149");
    assert_eq!(e.object_type.as_deref(), Some("message"));
    assert_eq!(e.object_id.as_deref(), Some("msg_55c8c149"));
    assert_eq!(e.conversation_id.as_deref(), Some("cnv_55c8c149"));
    assert_eq!(e.raw_channel.as_deref(), Some("email"));
    assert_eq!(e.channel, Channel::Email);
    assert_eq!(e.occurred_at, Some(at(1_615_496_636_240)));
}

#[test]
fn golden_rule_webhook_verifies_and_parses() {
    let h = headers(&[(SIGNATURE_HEADER, RULE_SIGNATURE)]);
    let r = req(&h, RULE_ASSIGN.as_bytes(), at(0));
    let c = FrontConnector::default();
    assert_eq!(c.verify(&r, &["front-api-secret".into()]), Ok(()));
    assert_eq!(
        sign_rule("front-api-secret", RULE_ASSIGN.as_bytes()),
        RULE_SIGNATURE
    );
    let e = c.parse(&r).unwrap();
    assert_eq!(e.event_type, "assign");
    assert_eq!(e.dedupe_key, "event:evt_55c8c150");
    assert_eq!(e.object_type.as_deref(), Some("teammate"));
    assert_eq!(e.object_id.as_deref(), Some("tea_55c8c149"));
    assert_eq!(e.conversation_id.as_deref(), Some("cnv_55c8c149"));
    // Not about a message: the conversation's last message gives the channel.
    assert_eq!(e.raw_channel.as_deref(), Some("sms"));
    assert_eq!(e.channel, Channel::Sms);
    assert_eq!(e.occurred_at, Some(at(1_453_770_984_123)));
}

#[test]
fn the_application_and_rule_forms_of_one_event_agree() {
    let wrapped = format!(
        r#"{{"type":"assign","authorization":{{"id":"cmp_abc"}},"payload":{RULE_ASSIGN}}}"#
    );
    let a = parse_body(wrapped.as_bytes()).unwrap();
    let b = parse_body(RULE_ASSIGN.as_bytes()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn sync_and_unknown_bodies_are_kept_with_a_body_hash_key() {
    let sync = br#"{"type":"sync","authorization":{"id":"cmp_abc"}}"#;
    let e = parse_body(sync).unwrap();
    assert_eq!(e.event_type, "sync");
    assert!(e.dedupe_key.starts_with("sha256:"), "{}", e.dedupe_key);
    assert_eq!(e.channel, Channel::Other);
    let unknown = br#"{"type":"teleport","payload":{"id":"evt_1","type":"teleport","emitted_at":"1700000000","target":{"_meta":{"type":"inboxes"},"data":[{"id":"inb_1"}]}}}"#;
    let e = parse_body(unknown).unwrap();
    assert_eq!(e.event_type, "teleport");
    assert_eq!(e.dedupe_key, "event:evt_1");
    assert_eq!(e.object_type.as_deref(), Some("inboxes"));
    assert_eq!(e.object_id, None);
    assert_eq!(e.occurred_at, Some(at(1_700_000_000_000)));
}

#[test]
fn rejects_bodies_that_are_not_envelopes() {
    assert!(matches!(
        parse_body(b"not json"),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(
        parse_body(b"[1,2]"),
        Err(ParseError::Envelope { .. })
    ));
    assert!(matches!(
        parse_body(b"{}"),
        Err(ParseError::Envelope { .. })
    ));
    assert!(matches!(
        parse_body(br#"{"type":"inbound""#),
        Err(ParseError::NotJson(_))
    ));
}

#[test]
fn message_types_map_to_channels() {
    for (raw, channel) in [
        ("email", Channel::Email),
        ("sms", Channel::Sms),
        ("whatsapp", Channel::Sms),
        ("yalo_wha", Channel::Sms),
        ("front_chat", Channel::Chat),
        ("intercom", Channel::Chat),
        ("smooch", Channel::Chat),
        ("call", Channel::Voice),
        ("truly-call", Channel::Voice),
        ("facebook", Channel::Social),
        ("tweet", Channel::Social),
        ("tweet_dm", Channel::Social),
        ("custom", Channel::Other),
        ("googleplay", Channel::Other),
        ("carrier-pigeon", Channel::Other),
    ] {
        assert_eq!(channel_of(raw), channel, "{raw}");
    }
}

#[test]
fn emitted_at_is_read_exactly() {
    let seconds = |s: &str| crate::input::unix_seconds("emitted_at", Some(s));
    for (raw, ms) in [
        ("1453770984.123", 1_453_770_984_123),
        ("1453770984.1", 1_453_770_984_100),
        ("1453770984.12399", 1_453_770_984_123),
        ("1453770984", 1_453_770_984_000),
        ("1.5e3", 1_500_000),
    ] {
        assert_eq!(seconds(raw), Ok(Some(at(ms))), "{raw}");
    }
    assert_eq!(seconds("soon"), Ok(None));
    // A number is a time Front wrote: one RFC 3339 cannot write is refused, not ignored.
    assert!(matches!(
        seconds("1e300"),
        Err(ParseError::TimeOutOfRange { .. })
    ));
}

#[test]
fn each_verify_failure_has_its_reason() {
    let c = FrontConnector::new(Duration::from_secs(300));
    let body = APP_INBOUND.as_bytes();
    let secrets = ["front-app-secret".to_string()];
    let now = at(APP_SENT);

    let h = app_headers();
    assert_eq!(
        c.verify(&req(&h, body, now), &["wrong".into()]),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        c.verify(&req(&h, &tampered, now), &secrets),
        Err(VerifyError::Mismatch)
    );

    let none = HeaderMap::new();
    assert!(matches!(
        c.verify(&req(&none, body, now), &secrets),
        Err(VerifyError::MissingHeader(h)) if h == "X-Front-Signature"
    ));
    let garbage = headers(&[
        (SIGNATURE_HEADER, "not base64!"),
        (TIMESTAMP_HEADER, APP_TS),
    ]);
    assert!(matches!(
        c.verify(&req(&garbage, body, now), &secrets),
        Err(VerifyError::Malformed { header, .. }) if header == "X-Front-Signature"
    ));
    for bad_ts in ["", "12.5", "-1615496636240", "soon"] {
        let h = headers(&[
            (SIGNATURE_HEADER, APP_SIGNATURE),
            (TIMESTAMP_HEADER, bad_ts),
        ]);
        assert!(
            matches!(
                c.verify(&req(&h, body, now), &secrets),
                Err(VerifyError::Malformed { header, .. }) if header == "X-Front-Request-Timestamp"
            ),
            "{bad_ts:?}"
        );
    }
    // A timestamp header that is not text is malformed, not a reason to try the rule scheme.
    let mut opaque = app_headers();
    opaque.insert(
        TIMESTAMP_HEADER,
        HeaderValue::from_bytes(b"16154\xff").unwrap(),
    );
    assert!(matches!(
        c.verify(&req(&opaque, body, now), &secrets),
        Err(VerifyError::Malformed { .. })
    ));
}

#[test]
fn timestamps_outside_the_tolerance_are_refused_both_ways() {
    let c = FrontConnector::new(Duration::from_secs(300));
    let body = APP_INBOUND.as_bytes();
    let secrets = ["front-app-secret".to_string()];
    let h = app_headers();
    for (offset_ms, ok) in [
        (0, true),
        (300_000, true),
        (-300_000, true),
        (300_001, false),
        (-300_001, false),
        (86_400_000, false),
    ] {
        let got = c.verify(&req(&h, body, at(APP_SENT + offset_ms)), &secrets);
        if ok {
            assert_eq!(got, Ok(()), "{offset_ms}");
        } else {
            assert!(
                matches!(got, Err(VerifyError::StaleTimestamp { .. })),
                "{offset_ms}: {got:?}"
            );
        }
    }
    // A forged request is a mismatch whatever its timestamp.
    assert_eq!(
        c.verify(&req(&h, body, at(APP_SENT + 86_400_000)), &["wrong".into()]),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn a_captured_application_signature_does_not_pass_as_a_rule_webhook() {
    // Stripping the timestamp header sends the request down the rule path, where a SHA-256
    // MAC of "ts:body" is not a SHA-1 MAC of the body.
    let h = headers(&[(SIGNATURE_HEADER, APP_SIGNATURE)]);
    let c = FrontConnector::default();
    assert_eq!(
        c.verify(
            &req(&h, APP_INBOUND.as_bytes(), at(APP_SENT)),
            &["front-app-secret".into()]
        ),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn rotation_accepts_either_secret_for_both_schemes() {
    let c = FrontConnector::default();
    let both = ["old-secret".to_string(), "new-secret".to_string()];
    let body = RULE_ASSIGN.as_bytes();
    for secret in ["old-secret", "new-secret"] {
        let h = headers(&[
            (SIGNATURE_HEADER, &sign(secret, 1_000_000, body)),
            (TIMESTAMP_HEADER, "1000000"),
        ]);
        assert_eq!(c.verify(&req(&h, body, at(1_000_000)), &both), Ok(()));
        let h = headers(&[(SIGNATURE_HEADER, &sign_rule(secret, body))]);
        assert_eq!(c.verify(&req(&h, body, at(0)), &both), Ok(()));
    }
    let h = headers(&[(SIGNATURE_HEADER, &sign_rule("third", body))]);
    assert_eq!(
        c.verify(&req(&h, body, at(0)), &both),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn the_setup_challenge_is_echoed() {
    let c = FrontConnector::default();
    let body = br#"{"type":"sync","authorization":{"id":"cmp_abc"}}"#;
    let h = headers(&[(CHALLENGE_HEADER, "a1b2\"c3")]);
    let answer = c.handshake(&req(&h, body, at(0))).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v, serde_json::json!({ "challenge": "a1b2\"c3" }));
    assert_eq!(c.handshake(&req(&app_headers(), body, at(0))), None);
}

proptest! {
    #[test]
    fn application_verify_of_sign_holds_and_any_bit_flip_fails(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        sent in 0i64..4_000_000_000_000,
        bit in any::<usize>(),
        flip_signature in any::<bool>(),
    ) {
        let c = FrontConnector::default();
        let secrets = ["s3cret".to_string()];
        let signature = sign("s3cret", sent, &body);
        let ts = sent.to_string();
        let h = headers(&[(SIGNATURE_HEADER, &signature), (TIMESTAMP_HEADER, &ts)]);
        prop_assert_eq!(c.verify(&req(&h, &body, at(sent)), &secrets), Ok(()));
        if flip_signature {
            let mut mac = BASE64.decode(&signature).unwrap();
            let i = bit % (mac.len() * 8);
            mac[i / 8] ^= 1 << (i % 8);
            let h = headers(&[(SIGNATURE_HEADER, &BASE64.encode(mac)), (TIMESTAMP_HEADER, &ts)]);
            prop_assert_eq!(c.verify(&req(&h, &body, at(sent)), &secrets), Err(VerifyError::Mismatch));
        } else {
            let mut tampered = body.clone();
            let i = bit % (tampered.len() * 8);
            tampered[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(c.verify(&req(&h, &tampered, at(sent)), &secrets), Err(VerifyError::Mismatch));
        }
    }

    #[test]
    fn rule_verify_of_sign_holds_and_any_bit_flip_fails(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<usize>(),
        flip_signature in any::<bool>(),
    ) {
        let c = FrontConnector::default();
        let secrets = ["s3cret".to_string()];
        let signature = sign_rule("s3cret", &body);
        let h = headers(&[(SIGNATURE_HEADER, &signature)]);
        prop_assert_eq!(c.verify(&req(&h, &body, at(0)), &secrets), Ok(()));
        if flip_signature {
            let mut mac = BASE64.decode(&signature).unwrap();
            let i = bit % (mac.len() * 8);
            mac[i / 8] ^= 1 << (i % 8);
            let h = headers(&[(SIGNATURE_HEADER, &BASE64.encode(mac))]);
            prop_assert_eq!(c.verify(&req(&h, &body, at(0)), &secrets), Err(VerifyError::Mismatch));
        } else {
            let mut tampered = body.clone();
            let i = bit % (tampered.len() * 8);
            tampered[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(c.verify(&req(&h, &tampered, at(0)), &secrets), Err(VerifyError::Mismatch));
        }
    }

    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_body(&body);
    }

    #[test]
    fn parse_never_panics_on_envelope_like_json(
        t in prop_oneof![Just("\"inbound\"".to_string()), Just("null".to_string()), Just("[1]".to_string()), Just("{}".to_string()), Just("1e400".to_string())],
        emitted in prop_oneof![Just("1.5".to_string()), Just("\"x\"".to_string()), Just("-99999999999999999999".to_string()), Just("{}".to_string())],
        data in prop_oneof![Just("{}".to_string()), Just("[]".to_string()), Just("\"s\"".to_string()), Just("{\"id\":7,\"type\":{}}".to_string())],
    ) {
        let body = format!(r#"{{"type":{t},"payload":{{"id":1,"emitted_at":{emitted},"target":{{"_meta":{data},"data":{data}}},"conversation":{data}}}}}"#);
        let _ = parse_body(body.as_bytes());
    }
}
