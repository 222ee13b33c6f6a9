use super::*;
use http::{HeaderMap, HeaderValue};
use intake_core::Timestamp;
use proptest::prelude::*;

// The legacy envelope and `{{triggered_event}}` renderings, as Zulip's Freshdesk integration
// documents and records them (zerver/webhooks/freshdesk/doc.md and fixtures/ticket_created.json,
// status_changed.json, public_note.json in zulip/zulip), with the fields intake's recommended
// rule adds (`ticket_source`, `ticket_created_at`, `ticket_updated_at`).
const TICKET_CREATED: &str = r#"{"freshdesk_webhook":
    {
    "triggered_event":"{ticket_action:created}",
    "ticket_id":"11",
    "ticket_url":"http://test1234zzz.freshdesk.com/helpdesk/tickets/11",
    "ticket_type":"Incident",
    "ticket_subject":"Test ticket subject ☃",
    "ticket_description":"<div>Test ticket description ☃.</div>",
    "ticket_status":"Pending",
    "ticket_priority":"High",
    "ticket_source":"1",
    "ticket_created_at":"2026-11-27T09:15:00Z",
    "ticket_updated_at":"2026-11-27T09:15:00Z",
    "requester_name":"Requester ☃ Bob",
    "requester_email":"requester-bob@example.com"
    }
}"#;

const STATUS_CHANGED: &str = r#"{"freshdesk_webhook":
    {
    "triggered_event":"{status:{from:4,to:6}}",
    "ticket_id":"11",
    "ticket_url":"http://test1234zzz.freshdesk.com/helpdesk/tickets/11",
    "ticket_type":"Incident",
    "ticket_subject":"Test ticket subject ☃",
    "ticket_status":"Waiting on Customer",
    "ticket_priority":"Low",
    "ticket_source":"Chat",
    "ticket_created_at":"2026-11-27 09:15:00",
    "ticket_updated_at":"2026-11-27 10:02:13",
    "requester_name":"Requester Bob",
    "requester_email":"requester-bob@example.com"
    }
}"#;

const PUBLIC_NOTE: &str = r#"{"freshdesk_webhook":
    {
    "triggered_event":"{note_type:public}",
    "ticket_id":"11",
    "ticket_status":"Open",
    "ticket_priority":"Medium",
    "ticket_source":3,
    "ticket_updated_at":"2026-11-27T10:05:00+01:00"
    }
}"#;

fn req<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        headers,
        body,
        now: Timestamp(0),
    }
}

fn parse(body: &str) -> Result<NormalizedEvent, ParseError> {
    let h = HeaderMap::new();
    FreshdeskConnector::default().parse(&req(&h, body.as_bytes()))
}

fn at(s: &str) -> Option<Timestamp> {
    Some(Timestamp::parse_rfc3339(s).unwrap())
}

#[test]
fn golden_ticket_created() {
    let e = parse(TICKET_CREATED).unwrap();
    assert_eq!(e.event_type, "ticket.created");
    assert_eq!(e.dedupe_key, "ticket:11:created");
    assert_eq!(e.sor_event_id, None);
    assert_eq!(e.object_type.as_deref(), Some("ticket"));
    assert_eq!(e.object_id.as_deref(), Some("11"));
    assert_eq!(e.conversation_id.as_deref(), Some("11"));
    assert_eq!(e.channel, Channel::Email);
    assert_eq!(e.raw_channel.as_deref(), Some("email"));
    assert_eq!(e.occurred_at, at("2026-11-27T09:15:00Z"));
}

#[test]
fn golden_status_change_keys_on_the_updated_second() {
    let e = parse(STATUS_CHANGED).unwrap();
    assert_eq!(e.event_type, "ticket.status_changed");
    // The placeholder's `YYYY-MM-DD HH:MM:SS` rendering is read as UTC and keyed like the
    // API's RFC 3339 time, so a backfilled copy agrees.
    assert_eq!(e.dedupe_key, "ticket:11:updated:2026-11-27T10:02:13Z");
    assert_eq!(e.channel, Channel::Chat);
    assert_eq!(e.raw_channel.as_deref(), Some("chat"));
    assert_eq!(e.occurred_at, at("2026-11-27T10:02:13Z"));
}

#[test]
fn golden_public_note_with_numeric_source_and_offset_time() {
    let e = parse(PUBLIC_NOTE).unwrap();
    assert_eq!(e.event_type, "ticket.note_added");
    assert_eq!(e.dedupe_key, "ticket:11:updated:2026-11-27T09:05:00Z");
    assert_eq!(e.channel, Channel::Voice);
    assert_eq!(e.raw_channel.as_deref(), Some("phone"));
}

#[test]
fn sources_map_to_channels() {
    for (raw, name, channel) in [
        ("1", "email", Channel::Email),
        ("2", "portal", Channel::Other),
        ("3", "phone", Channel::Voice),
        ("6", "facebook", Channel::Social),
        ("7", "chat", Channel::Chat),
        ("9", "feedback_widget", Channel::Other),
        ("10", "outbound_email", Channel::Email),
        ("13", "whatsapp", Channel::Sms),
        ("Outbound Email", "outbound_email", Channel::Email),
        ("Feedback Widget", "feedback_widget", Channel::Other),
        ("42", "42", Channel::Other),
    ] {
        assert_eq!(source_name(raw), name, "{raw}");
        assert_eq!(source_channel(name), channel, "{raw}");
    }
}

#[test]
fn triggered_events_name_the_event() {
    for (raw, ty, created) in [
        (Some("{ticket_action:created}"), "ticket.created", true),
        (Some("{ticket_action:deleted}"), "ticket.deleted", false),
        (
            Some("{status:{from:2,to:3}}"),
            "ticket.status_changed",
            false,
        ),
        (
            Some("{priority:{from:1,to:4}}"),
            "ticket.priority_changed",
            false,
        ),
        (Some("{note_type:private}"), "ticket.note_added", false),
        (Some("not what Freshdesk sends"), "ticket.updated", false),
        (None, "ticket.updated", false),
    ] {
        assert_eq!(event_type(raw), (ty.to_string(), created), "{raw:?}");
    }
}

#[test]
fn fields_without_the_envelope_and_unknown_events_are_kept() {
    let e = parse(
        r#"{"triggered_event":"{mood:{from:calm,to:angry}}","ticket_id":7,"ticket_updated_at":"2026-11-27T10:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(e.event_type, "ticket.mood_changed");
    assert_eq!(e.dedupe_key, "ticket:7:updated:2026-11-27T10:00:00Z");
    assert_eq!(e.channel, Channel::Other);
    // Without a version the body itself is the key.
    let a =
        parse(r#"{"freshdesk_webhook":{"ticket_id":"7","triggered_event":"{note_type:public}"}}"#)
            .unwrap();
    assert!(
        a.dedupe_key.starts_with("ticket:7:ticket.note_added:body-"),
        "{}",
        a.dedupe_key
    );
}

#[test]
fn rejects_bodies_that_are_not_envelopes() {
    assert!(matches!(parse("not json"), Err(ParseError::NotJson(_))));
    assert!(matches!(parse("[1,2]"), Err(ParseError::Envelope { .. })));
    assert!(matches!(
        parse(r#"{"freshdesk_webhook":{"ticket_subject":"no id"}}"#),
        Err(ParseError::Envelope { .. })
    ));
    assert!(matches!(
        parse(r#"{"freshdesk_webhook":"#),
        Err(ParseError::NotJson(_))
    ));
}

fn with(name: &str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
    h
}

#[test]
fn verify_with_a_custom_header_and_rotation() {
    let c = FreshdeskConnector::new(SharedSecretAuth::Header {
        header: "X-Freshdesk-Secret".into(),
    });
    let body = TICKET_CREATED.as_bytes();
    let both = ["old".to_string(), "new".to_string()];
    let (name, value) = sign(
        &SharedSecretAuth::Header {
            header: "X-Freshdesk-Secret".into(),
        },
        "new",
    );
    let h = with(&name, &value);
    assert_eq!(c.verify(&req(&h, body), &both), Ok(()));
    assert_eq!(c.verify(&req(&with(&name, "old"), body), &both), Ok(()));
    assert_eq!(
        c.verify(&req(&h, body), &["old".to_string()]),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        c.verify(&req(&with("X-Intake-Secret", "new"), body), &both),
        Err(VerifyError::MissingHeader("X-Freshdesk-Secret".into()))
    );
}

#[test]
fn verify_with_basic_authentication() {
    let c = FreshdeskConnector::new(SharedSecretAuth::Basic);
    let body = TICKET_CREATED.as_bytes();
    let secrets = ["freshdesk:pa55word".to_string()];
    let (name, value) = sign(&SharedSecretAuth::Basic, "freshdesk:pa55word");
    assert_eq!(c.verify(&req(&with(&name, &value), body), &secrets), Ok(()));
    let (_, wrong) = sign(&SharedSecretAuth::Basic, "freshdesk:guess");
    assert_eq!(
        c.verify(&req(&with(&name, &wrong), body), &secrets),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        c.verify(&req(&with(&name, "Basic %%%"), body), &secrets),
        Err(VerifyError::Malformed { .. })
    ));
    assert_eq!(
        c.verify(&req(&HeaderMap::new(), body), &secrets),
        Err(VerifyError::MissingHeader("Authorization".into()))
    );
}

proptest! {
    #[test]
    fn verify_of_sign_holds_for_any_body_and_any_flip_of_the_secret_fails(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        secret in "[A-Za-z0-9_-]{8,40}",
        bit in any::<usize>(),
    ) {
        let c = FreshdeskConnector::default();
        let secrets = [secret.clone()];
        let (name, value) = sign(&SharedSecretAuth::default(), &secret);
        prop_assert!(c.verify(&req(&with(&name, &value), &body), &secrets).is_ok());
        let mut flipped = value.into_bytes();
        let i = bit % (flipped.len() * 8);
        flipped[i / 8] ^= 1 << (i % 8);
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&flipped) {
            h.insert("x-intake-secret", v);
        }
        prop_assert!(c.verify(&req(&h, &body), &secrets).is_err());
    }

    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = FreshdeskConnector::default().parse(&req(&HeaderMap::new(), &body));
    }

    #[test]
    fn parse_never_panics_on_envelope_like_text(
        id in "[0-9a-z\"{}:,]{0,12}",
        ev in "[{}a-z_:,0-9]{0,30}",
        t in "[0-9TZ:+ -]{0,25}",
    ) {
        let body = format!(
            r#"{{"freshdesk_webhook":{{"ticket_id":"{id}","triggered_event":"{ev}","ticket_updated_at":"{t}","ticket_source":"{id}"}}}}"#
        );
        let _ = FreshdeskConnector::default().parse(&req(&HeaderMap::new(), body.as_bytes()));
    }
}
