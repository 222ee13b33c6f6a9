use super::*;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

/// `ticket.created` as delivered, headers included, from Prismatic's recorded Zendesk webhook
/// (https://prismatic.io/docs/example-payloads/zendesk/triggers/webhook.json), whose shape
/// matches Zendesk's event schema
/// (https://developer.zendesk.com/api-reference/webhooks/event-types/webhook-event-types/).
const TICKET_CREATED: &str = r#"{"type":"zen:event-type:ticket.created","account_id":88888888,"id":"01HNXXXX-CTEXAMPLE","time":"2024-04-17T17:18:10Z","zendesk_event_version":"2022-11-06","subject":"zen:ticket:35436","detail":{"id":"35436","status":"Open","via":{"channel":"web"},"created_at":"2024-04-17T17:18:10Z","updated_at":"2024-04-17T17:18:10Z"},"event":{"current":{"status":"Open"}}}"#;
const TICKET_CREATED_AT: &str = "2024-04-17T17:18:10Z";

/// `ticket.comment_added`, after the example of Zendesk's ticket events reference
/// (https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/): comment
/// and author ids are numbers in some payloads and strings in others.
const COMMENT_ADDED: &str = r#"{
  "account_id": 22129848,
  "detail": {
    "actor_id": "8447388090494", "assignee_id": "8447388090494", "brand_id": "8447346621310",
    "created_at": "2025-01-08T10:12:07Z", "custom_status": "8447388688638",
    "description": "ticket_description", "external_id": null, "form_id": "8646151517822",
    "group_id": "8447320466430", "id": "5158", "is_public": true,
    "organization_id": "8447346622462", "priority": "HIGH", "requester_id": "8447388090494",
    "status": "OPEN", "subject": "Cannot login to mobile app", "submitter_id": "8447388090494",
    "tags": ["tag-a"], "type": "TASK", "updated_at": "2025-01-08T14:25:30Z",
    "via": { "channel": "email" }
  },
  "event": {
    "comment": {
      "id": 9876543210,
      "body": "We are investigating this issue and will update you shortly.",
      "is_public": true,
      "author": { "id": 8447388090495, "is_staff": true, "name": "Support Agent" }
    }
  },
  "id": "d4f5c389-8f4a-4c2e-a1b9-8e4f39c71d52",
  "subject": "zen:ticket:5158",
  "time": "2025-01-08T14:25:30.123456789Z",
  "type": "zen:event-type:ticket.comment_added",
  "zendesk_event_version": "2022-11-06"
}"#;

/// The schema example of Zendesk's webhook event types page (a user event).
const USER_ACTIVE_CHANGED: &str = r#"{
  "type": "zen:event-type:user.active_changed",
  "account_id": 12514403,
  "id": "2b24ef10-19d4-4740-93cf-8f98ec4776c0",
  "time": "2099-07-04T05:33:18Z",
  "zendesk_event_version": "2022-06-20",
  "subject": "zen:user:6596848315901",
  "detail": {
    "created_at": "2099-07-04T05:27:58Z", "email": "user@example.com", "external_id": "",
    "default_group_id": "0", "id": "6596848315901", "organization_id": "0",
    "role": "end-user", "updated_at": "2099-07-04T05:33:18Z"
  },
  "event": { "current": false, "previous": true }
}"#;

/// The signing secret Zendesk uses for test requests sent from its admin UI.
const TEST_SECRET: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn req<'a>(headers: &'a HeaderMap, body: &'a [u8], now: Timestamp) -> Incoming<'a> {
    Incoming { headers, body, now }
}

fn signed(secret: &str, timestamp: &str, body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign(secret, timestamp, body)).unwrap(),
    );
    h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(timestamp).unwrap());
    h
}

fn secrets(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn signature_matches_an_independent_computation() {
    // Computed with Python's hmac module: base64(HMAC-SHA256(secret, timestamp + body)).
    assert_eq!(
        sign(TEST_SECRET, TICKET_CREATED_AT, TICKET_CREATED.as_bytes()),
        "EHVkjFe3XDVMs+6kmMpTAtZIM7qT0Wq9nGlOMiqk8Vk="
    );
}

#[test]
fn golden_ticket_created_verifies_and_parses() {
    let body = TICKET_CREATED.as_bytes();
    let h = signed(TEST_SECRET, TICKET_CREATED_AT, body);
    let now = at("2024-04-17T17:18:12Z");
    let z = ZendeskConnector::default();
    assert_eq!(
        z.verify(&req(&h, body, now), &secrets(&[TEST_SECRET])),
        Ok(())
    );
    let e = z.parse(&req(&h, body, now)).unwrap();
    assert_eq!(e.event_type, "zen:event-type:ticket.created");
    assert_eq!(e.sor_event_id.as_deref(), Some("01HNXXXX-CTEXAMPLE"));
    assert_eq!(e.dedupe_key, "ticket:35436:created");
    assert_eq!(e.object_type.as_deref(), Some("ticket"));
    assert_eq!(e.object_id.as_deref(), Some("35436"));
    assert_eq!(e.conversation_id.as_deref(), Some("35436"));
    // `web` is Zendesk's web form: not a chat.
    assert_eq!(e.raw_channel.as_deref(), Some("web"));
    assert_eq!(e.channel, Channel::Other);
    assert_eq!(e.occurred_at, Some(at(TICKET_CREATED_AT)));
}

#[test]
fn golden_comment_added_parses_to_the_comment() {
    let h = HeaderMap::new();
    let e = ZendeskConnector::default()
        .parse(&req(&h, COMMENT_ADDED.as_bytes(), Timestamp(0)))
        .unwrap();
    assert_eq!(e.event_type, "zen:event-type:ticket.comment_added");
    assert_eq!(e.dedupe_key, "comment:9876543210:added");
    assert_eq!(e.object_type.as_deref(), Some("comment"));
    assert_eq!(e.object_id.as_deref(), Some("9876543210"));
    assert_eq!(e.conversation_id.as_deref(), Some("5158"));
    assert_eq!(e.channel, Channel::Email);
    // Nanoseconds are accepted; intake keeps milliseconds.
    assert_eq!(e.occurred_at, Some(at("2025-01-08T14:25:30.123Z")));
}

#[test]
fn other_events_are_keyed_on_zendesks_event_id_and_kept() {
    let h = HeaderMap::new();
    let z = ZendeskConnector::default();
    let e = z
        .parse(&req(&h, USER_ACTIVE_CHANGED.as_bytes(), Timestamp(0)))
        .unwrap();
    assert_eq!(e.event_type, "zen:event-type:user.active_changed");
    assert_eq!(e.dedupe_key, "event:2b24ef10-19d4-4740-93cf-8f98ec4776c0");
    assert_eq!(e.object_type.as_deref(), Some("user"));
    assert_eq!(e.object_id.as_deref(), Some("6596848315901"));
    assert_eq!(e.conversation_id, None);
    assert_eq!(e.channel, Channel::Other);

    let status = r#"{"type":"zen:event-type:ticket.status_changed","id":"s1","time":"2025-01-08T14:25:30Z",
        "subject":"zen:ticket:5158","detail":{"id":"5158","via":{"channel":"whatsapp"}},"event":{"current":"PENDING","previous":"OPEN"}}"#;
    let e = z.parse(&req(&h, status.as_bytes(), Timestamp(0))).unwrap();
    assert_eq!(e.dedupe_key, "event:s1");
    assert_eq!(e.conversation_id.as_deref(), Some("5158"));
    assert_eq!(e.channel, Channel::Sms);

    let unknown = r#"{"type":"zen:event-type:widget.exploded","id":"w1","detail":"not an object","event":[1]}"#;
    let e = z.parse(&req(&h, unknown.as_bytes(), Timestamp(0))).unwrap();
    assert_eq!(e.event_type, "zen:event-type:widget.exploded");
    assert_eq!(e.dedupe_key, "event:w1");
}

#[test]
fn trigger_webhooks_are_kept_and_keyed_on_their_bytes() {
    let h = HeaderMap::new();
    let z = ZendeskConnector::default();
    let a = z
        .parse(&req(&h, br#"{"ticket_id":"{{ticket.id}}"}"#, Timestamp(0)))
        .unwrap();
    let b = z
        .parse(&req(&h, br#"{"ticket_id":"42"}"#, Timestamp(0)))
        .unwrap();
    assert_eq!(a.event_type, TRIGGER_EVENT_TYPE);
    assert!(a.dedupe_key.starts_with("sha256:"));
    assert_ne!(a.dedupe_key, b.dedupe_key);
}

#[test]
fn channels_map_zendesk_names() {
    for (raw, want) in [
        ("email", Channel::Email),
        ("chat", Channel::Chat),
        ("native_messaging", Channel::Chat),
        ("voice", Channel::Voice),
        ("sms", Channel::Sms),
        ("whatsapp", Channel::Sms),
        ("facebook", Channel::Social),
        ("twitter", Channel::Social),
        ("instagram_dm", Channel::Social),
        ("web", Channel::Other),
        ("api", Channel::Other),
        ("carrier_pigeon", Channel::Other),
    ] {
        assert_eq!(channel(raw), want, "{raw}");
    }
}

#[test]
fn rejects_bodies_that_are_not_envelopes() {
    let h = HeaderMap::new();
    let z = ZendeskConnector::default();
    assert!(matches!(
        z.parse(&req(&h, b"not json", Timestamp(0))),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(
        z.parse(&req(&h, b"[1,2]", Timestamp(0))),
        Err(ParseError::Envelope { .. })
    ));
    // An event type but no id and no object to key on.
    assert!(matches!(
        z.parse(&req(
            &h,
            br#"{"type":"zen:event-type:ticket.status_changed"}"#,
            Timestamp(0)
        )),
        Err(ParseError::Envelope { .. })
    ));
}

#[test]
fn verify_refuses_with_the_precise_reason() {
    let body = COMMENT_ADDED.as_bytes();
    let ts = "2025-01-08T14:25:31Z";
    let now = at("2025-01-08T14:25:33Z");
    let z = ZendeskConnector::new(Duration::from_secs(300));
    let good = signed("secret-a", ts, body);
    let s = secrets(&["secret-a"]);

    assert_eq!(
        z.verify(&req(&good, body, now), &secrets(&["wrong"])),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        z.verify(&req(&good, &tampered, now), &s),
        Err(VerifyError::Mismatch)
    );
    // The timestamp is signed: changing it (even to an equal instant) breaks the signature.
    let mut moved = good.clone();
    moved.insert(
        TIMESTAMP_HEADER,
        HeaderValue::from_static("2025-01-08T14:25:31.000Z"),
    );
    assert_eq!(
        z.verify(&req(&moved, body, now), &s),
        Err(VerifyError::Mismatch)
    );

    let stale = at("2025-01-08T14:30:32Z");
    assert_eq!(
        z.verify(&req(&good, body, stale), &s),
        Err(VerifyError::StaleTimestamp {
            skew_secs: 301,
            tolerance_secs: 300
        })
    );
    let early = at("2025-01-08T14:20:30Z");
    assert!(matches!(
        z.verify(&req(&good, body, early), &s),
        Err(VerifyError::StaleTimestamp {
            skew_secs: -301,
            ..
        })
    ));
    // Exactly at the tolerance is still accepted.
    assert_eq!(
        z.verify(&req(&good, body, at("2025-01-08T14:30:31Z")), &s),
        Ok(())
    );
    // A source may allow more.
    assert_eq!(
        ZendeskConnector::new(Duration::from_secs(600)).verify(&req(&good, body, stale), &s),
        Ok(())
    );

    for missing in [SIGNATURE_HEADER, TIMESTAMP_HEADER] {
        let mut h = good.clone();
        h.remove(missing);
        assert!(
            matches!(
                z.verify(&req(&h, body, now), &s),
                Err(VerifyError::MissingHeader(_))
            ),
            "{missing}"
        );
    }
    let mut bad_sig = good.clone();
    bad_sig.insert(SIGNATURE_HEADER, HeaderValue::from_static("%%%not-base64"));
    assert!(matches!(
        z.verify(&req(&bad_sig, body, now), &s),
        Err(VerifyError::Malformed { .. })
    ));
    let mut bad_ts = good.clone();
    bad_ts.insert(TIMESTAMP_HEADER, HeaderValue::from_static("yesterday"));
    assert!(matches!(
        z.verify(&req(&bad_ts, body, now), &s),
        Err(VerifyError::Malformed { .. })
    ));
}

#[test]
fn either_secret_verifies_during_rotation() {
    let body = TICKET_CREATED.as_bytes();
    let now = at("2024-04-17T17:18:10Z");
    let both = secrets(&["old-secret", "new-secret"]);
    let z = ZendeskConnector::default();
    for secret in ["old-secret", "new-secret"] {
        let h = signed(secret, TICKET_CREATED_AT, body);
        assert_eq!(z.verify(&req(&h, body, now), &both), Ok(()), "{secret}");
    }
    let h = signed("new-secret", TICKET_CREATED_AT, body);
    assert_eq!(
        z.verify(&req(&h, body, now), &secrets(&["old-secret"])),
        Err(VerifyError::Mismatch)
    );
}

proptest! {
    #[test]
    fn verify_of_sign_holds_and_any_bit_flip_fails(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<usize>(),
        sig_bit in 0usize..256,
        skew in -300i64..=300,
    ) {
        let s = secrets(&["s3cret"]);
        let ts = "2026-11-28T10:00:00Z";
        let now = Timestamp(at(ts).as_millis() + skew * 1000);
        let z = ZendeskConnector::default();
        let h = signed("s3cret", ts, &body);
        prop_assert!(z.verify(&req(&h, &body, now), &s).is_ok());

        let mut tampered = body.clone();
        let i = bit % (tampered.len() * 8);
        tampered[i / 8] ^= 1 << (i % 8);
        prop_assert_eq!(z.verify(&req(&h, &tampered, now), &s), Err(VerifyError::Mismatch));

        let mut mac = BASE64.decode(sign("s3cret", ts, &body)).unwrap();
        mac[sig_bit / 8] ^= 1 << (sig_bit % 8);
        let mut flipped = h.clone();
        flipped.insert(SIGNATURE_HEADER, HeaderValue::from_str(&BASE64.encode(mac)).unwrap());
        prop_assert_eq!(z.verify(&req(&flipped, &body, now), &s), Err(VerifyError::Mismatch));
    }

    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let h = HeaderMap::new();
        let _ = ZendeskConnector::default().parse(&req(&h, &body, Timestamp(0)));
    }

    #[test]
    fn parse_never_panics_on_envelope_shaped_json(
        ty in prop::option::of("[a-z:._-]{0,40}"),
        subject in prop::option::of("[a-z:0-9]{0,20}"),
        id in prop::option::of(any::<u64>()),
        detail in prop::sample::select(vec!["null", "1", "\"x\"", "[]", "{}", "{\"via\":null}", "{\"via\":{\"channel\":3}}"]),
        event in prop::sample::select(vec!["null", "{}", "{\"comment\":1}", "{\"comment\":{\"id\":null}}", "{\"comment\":{\"id\":7}}"]),
    ) {
        let mut body = String::from("{");
        if let Some(t) = ty { body.push_str(&format!("\"type\":{t:?},")); }
        if let Some(s) = subject { body.push_str(&format!("\"subject\":{s:?},")); }
        if let Some(i) = id { body.push_str(&format!("\"id\":{i},")); }
        body.push_str(&format!("\"detail\":{detail},\"event\":{event}}}"));
        let h = HeaderMap::new();
        let _ = ZendeskConnector::default().parse(&req(&h, body.as_bytes(), Timestamp(0)));
    }
}
