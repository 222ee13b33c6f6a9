use super::*;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

// A Gorgias ticket as its HTTP integration renders `{{ticket}}` (the ticket-created sample of
// Pipedream's Gorgias source, components/gorgias_oauth/sources/ticket-created/test-event.mjs in
// PipedreamHQ/pipedream, trimmed), in intake's documented template.
const TICKET: &str = r#"{
    "account": {"domain": "pipedream"},
    "assignee_user_id": 387654483,
    "channel": "email",
    "closed_datetime": null,
    "created_datetime": "2024-02-14T21:30:50.201204+00:00",
    "customer": {"email": "test@sample.com", "id": 387705374, "name": null},
    "external_id": null,
    "from_agent": true,
    "id": 86538298,
    "language": null,
    "last_message_datetime": "2024-02-14T21:30:50.201204+00:00",
    "messages": [{
        "id": 208822164,
        "channel": "email",
        "created_datetime": "2024-02-14T21:30:50.201204+00:00",
        "from_agent": true,
        "public": true,
        "body_text": "hello",
        "source": {"type": "email", "from": {"address": "jk0nxgz1z70o74pm@email.gorgias.com"}},
        "ticket_id": 86538298,
        "uri": "/api/tickets/86538298/messages/208822164/",
        "via": "helpdesk"
    }],
    "priority": "normal",
    "spam": false,
    "status": "open",
    "subject": "test",
    "tags": [],
    "updated_datetime": "2024-02-14T21:30:50.228948+00:00",
    "uri": "/api/tickets/86538298/",
    "via": "helpdesk"
}"#;

const MESSAGE: &str = r#"{
    "id": 208822164,
    "channel": "email",
    "created_datetime": "2024-02-14T21:30:50.201204+00:00",
    "from_agent": true,
    "public": true,
    "body_text": "hello",
    "ticket_id": 86538298,
    "uri": "/api/tickets/86538298/messages/208822164/",
    "via": "helpdesk"
}"#;

fn body(event: Option<&str>, message: bool) -> String {
    let mut parts = Vec::new();
    if let Some(e) = event {
        parts.push(format!(r#""event": "{e}""#));
    }
    parts.push(format!(r#""ticket": {TICKET}"#));
    if message {
        parts.push(format!(r#""message": {MESSAGE}"#));
    }
    format!("{{{}}}", parts.join(","))
}

fn req<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        headers,
        body,
        now: Timestamp(0),
    }
}

fn parse(body: &str) -> Result<NormalizedEvent, ParseError> {
    let h = HeaderMap::new();
    GorgiasConnector::default().parse(&req(&h, body.as_bytes()))
}

fn at(s: &str) -> Option<Timestamp> {
    Some(Timestamp::parse_rfc3339(s).unwrap())
}

#[test]
fn golden_ticket_created() {
    let e = parse(&body(Some("ticket-created"), false)).unwrap();
    assert_eq!(e.event_type, "ticket-created");
    assert_eq!(e.dedupe_key, "ticket:86538298:created");
    assert_eq!(e.object_type.as_deref(), Some("ticket"));
    assert_eq!(e.object_id.as_deref(), Some("86538298"));
    assert_eq!(e.conversation_id.as_deref(), Some("86538298"));
    assert_eq!(e.channel, Channel::Email);
    assert_eq!(e.raw_channel.as_deref(), Some("email"));
    assert_eq!(e.occurred_at, at("2024-02-14T21:30:50.201Z"));
    assert_eq!(e.sor_event_id, None);
}

#[test]
fn golden_ticket_updated_keys_on_updated_datetime() {
    let e = parse(&body(Some("ticket-updated"), false)).unwrap();
    assert_eq!(e.event_type, "ticket-updated");
    assert_eq!(
        e.dedupe_key,
        "ticket:86538298:updated:2024-02-14T21:30:50.228Z"
    );
    assert_eq!(e.occurred_at, at("2024-02-14T21:30:50.228Z"));
}

#[test]
fn golden_message_created_keys_on_the_message() {
    let e = parse(&body(Some("ticket-message-created"), true)).unwrap();
    assert_eq!(e.event_type, "ticket-message-created");
    assert_eq!(e.dedupe_key, "message:208822164:created");
    assert_eq!(e.object_type.as_deref(), Some("message"));
    assert_eq!(e.object_id.as_deref(), Some("208822164"));
    assert_eq!(e.conversation_id.as_deref(), Some("86538298"));
    assert_eq!(e.channel, Channel::Email);
}

#[test]
fn context_bodies_without_event_are_read() {
    let e = parse(&body(None, true)).unwrap();
    assert_eq!(e.event_type, "ticket-message-created");
    assert_eq!(e.dedupe_key, "message:208822164:created");
    let e = parse(&body(None, false)).unwrap();
    assert_eq!(e.event_type, "ticket-updated");
    // A message alone names its ticket.
    let e = parse(&format!(
        r#"{{"event":"ticket-message-created","message":{MESSAGE}}}"#
    ))
    .unwrap();
    assert_eq!(e.conversation_id.as_deref(), Some("86538298"));
}

#[test]
fn unknown_triggers_are_kept_and_keyed_on_the_ticket_version() {
    let e = parse(&body(Some("ticket-self-unsnoozed"), false)).unwrap();
    assert_eq!(e.event_type, "ticket-self-unsnoozed");
    assert_eq!(
        e.dedupe_key,
        "ticket:86538298:ticket-self-unsnoozed:2024-02-14T21:30:50.228Z"
    );
    let e = parse(r#"{"event":"ticket-updated","ticket":{"id":5}}"#).unwrap();
    assert!(
        e.dedupe_key.starts_with("ticket:5:ticket-updated:body-"),
        "{}",
        e.dedupe_key
    );
}

#[test]
fn channels_map() {
    for (raw, c) in [
        ("email", Channel::Email),
        ("chat", Channel::Chat),
        ("phone", Channel::Voice),
        ("aircall", Channel::Voice),
        ("sms", Channel::Sms),
        ("whatsapp", Channel::Sms),
        ("facebook", Channel::Social),
        ("facebook-messenger", Channel::Social),
        ("instagram-direct-message", Channel::Social),
        ("instagram-comment", Channel::Social),
        ("twitter-direct-message", Channel::Social),
        ("api", Channel::Other),
        ("contact_form", Channel::Other),
        ("help-center", Channel::Other),
    ] {
        assert_eq!(channel(raw), c, "{raw}");
    }
}

#[test]
fn rejects_bodies_that_are_not_envelopes() {
    assert!(matches!(parse("not json"), Err(ParseError::NotJson(_))));
    assert!(matches!(parse("[1]"), Err(ParseError::Envelope { .. })));
    assert!(matches!(
        parse(r#"{"event":"ticket-created","ticket":{"subject":"no id"}}"#),
        Err(ParseError::Envelope { .. })
    ));
    assert!(matches!(
        parse(r#"{"event":"ticket-created","ticket":"#),
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
fn verify_with_a_header_rotation_and_basic() {
    let b = body(Some("ticket-created"), false);
    let c = GorgiasConnector::default();
    let both = ["old-secret".to_string(), "new-secret".to_string()];
    let (name, value) = sign(&SharedSecretAuth::default(), "old-secret");
    assert_eq!(
        c.verify(&req(&with(&name, &value), b.as_bytes()), &both),
        Ok(())
    );
    assert_eq!(
        c.verify(&req(&with(&name, "wrong"), b.as_bytes()), &both),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        c.verify(&req(&HeaderMap::new(), b.as_bytes()), &both),
        Err(VerifyError::MissingHeader("X-Intake-Secret".into()))
    );
    let basic = GorgiasConnector::new(SharedSecretAuth::Basic);
    let secrets = ["gorgias:pa55".to_string()];
    let (name, value) = sign(&SharedSecretAuth::Basic, "gorgias:pa55");
    assert_eq!(
        basic.verify(&req(&with(&name, &value), b.as_bytes()), &secrets),
        Ok(())
    );
    assert!(matches!(
        basic.verify(&req(&with(&name, "Token abc"), b.as_bytes()), &secrets),
        Err(VerifyError::Malformed { .. })
    ));
}

proptest! {
    #[test]
    fn verify_of_sign_holds_for_any_body_and_any_flip_of_the_secret_fails(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        secret in "[A-Za-z0-9_-]{8,40}",
        bit in any::<usize>(),
    ) {
        let c = GorgiasConnector::default();
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
        let _ = GorgiasConnector::default().parse(&req(&HeaderMap::new(), &body));
    }

    #[test]
    fn parse_never_panics_on_envelope_like_text(
        ev in "[a-z-]{0,25}",
        id in "[0-9a-z\"]{0,10}",
        t in "[0-9TZ:.+ -]{0,32}",
    ) {
        let body = format!(
            r#"{{"event":"{ev}","ticket":{{"id":"{id}","updated_datetime":"{t}","channel":"{ev}"}},"message":{{"id":"{id}","created_datetime":"{t}"}}}}"#
        );
        let _ = GorgiasConnector::default().parse(&req(&HeaderMap::new(), body.as_bytes()));
    }
}
