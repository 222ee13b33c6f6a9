use super::*;
use http::{HeaderMap, HeaderValue};
use intake_core::Timestamp;
use proptest::prelude::*;

/// A `conversation.user.created` notification in the shape of Intercom's webhook model
/// (https://developers.intercom.com/docs/references/webhooks/webhook-models: the
/// `notification_event` envelope with `data.item` a conversation of the REST API's model,
/// https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/conversation).
const USER_CREATED: &str = r#"{"type":"notification_event","app_id":"ja43hiec","data":{"type":"notification_event_data","item":{"type":"conversation","id":"1295","created_at":1663597223,"updated_at":1663597260,"source":{"type":"email","id":"403918320","delivered_as":"customer_initiated","subject":"Order","body":"<p>Hello, my order has not arrived</p>","author":{"type":"user","id":"6329bd9ffe4e2e91dac76188"}},"state":"open","conversation_parts":{"type":"conversation_part.list","conversation_parts":[],"total_count":0}}},"links":{},"id":"notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3","topic":"conversation.user.created","delivery_status":"pending","delivery_attempts":1,"delivered_at":0,"first_sent_at":1663597224,"created_at":1663597224,"self":null}"#;

/// `conversation.admin.replied`: the newest part is the reply.
const ADMIN_REPLIED: &str = r#"{
  "type": "notification_event", "app_id": "ja43hiec", "id": "notif_2", "topic": "conversation.admin.replied",
  "created_at": 1663597300, "delivery_attempts": 1, "first_sent_at": 1663597300,
  "data": { "type": "notification_event_data", "item": {
    "type": "conversation", "id": "1295", "created_at": 1663597223, "updated_at": 1663597299,
    "source": { "type": "conversation", "id": "403918320", "delivered_as": "customer_initiated" },
    "conversation_parts": { "type": "conversation_part.list", "total_count": 2, "conversation_parts": [
      { "type": "conversation_part", "id": "7001", "part_type": "comment", "body": "<p>hi</p>",
        "created_at": 1663597250, "author": { "type": "user", "id": "6329bd9f" } },
      { "type": "conversation_part", "id": "7002", "part_type": "comment", "body": "<p>Okay!</p>",
        "created_at": 1663597299, "updated_at": 1663597299, "notified_at": 1663597299,
        "author": { "type": "admin", "id": "274", "name": "Operator" } }
    ] }
  } }
}"#;

fn req<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        headers,
        body,
        now: Timestamp(0),
    }
}

fn signed(secret: &str, body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign(secret, body)).unwrap(),
    );
    h
}

fn secrets(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn signature_matches_an_independent_computation() {
    // Computed with Python's hmac module: HMAC-SHA1(client secret, body), hex.
    assert_eq!(
        sign("intercom-client-secret", USER_CREATED.as_bytes()),
        "sha1=72b03112e351101bb642d60352540ba8396b7e04"
    );
}

#[test]
fn golden_user_created_verifies_and_parses() {
    let body = USER_CREATED.as_bytes();
    let h = signed("intercom-client-secret", body);
    assert_eq!(
        IntercomConnector.verify(&req(&h, body), &secrets(&["intercom-client-secret"])),
        Ok(())
    );
    let e = IntercomConnector.parse(&req(&h, body)).unwrap();
    assert_eq!(e.event_type, "conversation.user.created");
    assert_eq!(
        e.sor_event_id.as_deref(),
        Some("notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3")
    );
    assert_eq!(e.dedupe_key, "conversation:1295:created");
    assert_eq!(e.object_type.as_deref(), Some("conversation"));
    assert_eq!(e.conversation_id.as_deref(), Some("1295"));
    assert_eq!(e.channel, Channel::Email);
    assert_eq!(e.raw_channel.as_deref(), Some("email"));
    assert_eq!(e.occurred_at, Some(Timestamp(1_663_597_223_000)));
}

#[test]
fn replies_are_keyed_on_the_newest_part() {
    let h = HeaderMap::new();
    let e = IntercomConnector
        .parse(&req(&h, ADMIN_REPLIED.as_bytes()))
        .unwrap();
    assert_eq!(e.event_type, "conversation.admin.replied");
    assert_eq!(e.dedupe_key, "conversation_part:7002");
    assert_eq!(e.object_type.as_deref(), Some("conversation_part"));
    assert_eq!(e.object_id.as_deref(), Some("7002"));
    assert_eq!(e.conversation_id.as_deref(), Some("1295"));
    // The Messenger is a chat.
    assert_eq!(e.channel, Channel::Chat);
    assert_eq!(e.occurred_at, Some(Timestamp(1_663_597_299_000)));
}

#[test]
fn other_topics_are_keyed_on_the_notification_and_kept() {
    let h = HeaderMap::new();
    let closed = ADMIN_REPLIED
        .replace("conversation.admin.replied", "conversation.admin.closed")
        .replace("notif_2", "notif_3");
    let e = IntercomConnector
        .parse(&req(&h, closed.as_bytes()))
        .unwrap();
    assert_eq!(e.dedupe_key, "event:notif_3");
    assert_eq!(e.conversation_id.as_deref(), Some("1295"));

    let ping = r#"{"type":"notification_event","id":"notif_ping","topic":"ping","data":{"item":{"type":"ping","message":"hi"}},"created_at":1}"#;
    let e = IntercomConnector.parse(&req(&h, ping.as_bytes())).unwrap();
    assert_eq!(e.event_type, "ping");
    assert_eq!(e.dedupe_key, "event:notif_ping");
    assert_eq!(e.channel, Channel::Other);

    let contact = r#"{"type":"notification_event","id":"notif_c","topic":"contact.user.created","data":{"item":{"type":"contact","id":"abc","source":"odd"}}}"#;
    let e = IntercomConnector
        .parse(&req(&h, contact.as_bytes()))
        .unwrap();
    assert_eq!(e.object_type.as_deref(), Some("contact"));
    assert_eq!(e.conversation_id, None);
}

#[test]
fn channels_map_intercom_source_types() {
    for (raw, want) in [
        ("conversation", Channel::Chat),
        ("email", Channel::Email),
        ("sms", Channel::Sms),
        ("whatsapp", Channel::Sms),
        ("phone_call", Channel::Voice),
        ("facebook", Channel::Social),
        ("instagram", Channel::Social),
        ("twitter", Channel::Social),
        ("push", Channel::Other),
    ] {
        assert_eq!(channel(raw), want, "{raw}");
    }
}

#[test]
fn rejects_bodies_that_are_not_notifications() {
    let h = HeaderMap::new();
    assert!(matches!(
        IntercomConnector.parse(&req(&h, b"{")),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(
        IntercomConnector.parse(&req(&h, b"\"x\"")),
        Err(ParseError::Envelope { .. })
    ));
    assert!(matches!(
        IntercomConnector.parse(&req(&h, br#"{"id":"notif_1"}"#)),
        Err(ParseError::Envelope { .. })
    ));
    assert!(matches!(
        IntercomConnector.parse(&req(&h, br#"{"topic":"conversation.admin.closed"}"#)),
        Err(ParseError::Envelope { .. })
    ));
}

#[test]
fn verify_refuses_with_the_precise_reason() {
    let body = USER_CREATED.as_bytes();
    let s = secrets(&["secret"]);
    let h = signed("secret", body);
    assert_eq!(
        IntercomConnector.verify(&req(&h, body), &secrets(&["wrong"])),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.to_vec();
    tampered[5] ^= 0x20;
    assert_eq!(
        IntercomConnector.verify(&req(&h, &tampered), &s),
        Err(VerifyError::Mismatch)
    );
    let none = HeaderMap::new();
    assert_eq!(
        IntercomConnector.verify(&req(&none, body), &s),
        Err(VerifyError::MissingHeader("X-Hub-Signature".into()))
    );
    for bad in ["sha256=abcd", "sha1=not-hex", "abcdef"] {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, HeaderValue::from_static(bad));
        assert!(
            matches!(
                IntercomConnector.verify(&req(&h, body), &s),
                Err(VerifyError::Malformed { .. })
            ),
            "{bad}"
        );
    }
    // Hex of either case.
    let mut upper = HeaderMap::new();
    let sig = sign("secret", body);
    let upper_sig = format!("sha1={}", sig["sha1=".len()..].to_uppercase());
    upper.insert(SIGNATURE_HEADER, HeaderValue::from_str(&upper_sig).unwrap());
    assert_eq!(IntercomConnector.verify(&req(&upper, body), &s), Ok(()));
}

#[test]
fn either_secret_verifies_during_rotation() {
    let body = ADMIN_REPLIED.as_bytes();
    let both = secrets(&["old-client-secret", "new-client-secret"]);
    for secret in ["old-client-secret", "new-client-secret"] {
        let h = signed(secret, body);
        assert_eq!(IntercomConnector.verify(&req(&h, body), &both), Ok(()));
    }
    let h = signed("new-client-secret", body);
    assert_eq!(
        IntercomConnector.verify(&req(&h, body), &secrets(&["old-client-secret"])),
        Err(VerifyError::Mismatch)
    );
}

proptest! {
    #[test]
    fn verify_of_sign_holds_and_any_bit_flip_fails(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<usize>(),
        sig_bit in 0usize..160,
    ) {
        let s = secrets(&["s3cret"]);
        let h = signed("s3cret", &body);
        prop_assert!(IntercomConnector.verify(&req(&h, &body), &s).is_ok());
        let mut tampered = body.clone();
        let i = bit % (tampered.len() * 8);
        tampered[i / 8] ^= 1 << (i % 8);
        prop_assert_eq!(IntercomConnector.verify(&req(&h, &tampered), &s), Err(VerifyError::Mismatch));

        let mut mac = hex::decode(&sign("s3cret", &body)[5..]).unwrap();
        mac[sig_bit / 8] ^= 1 << (sig_bit % 8);
        let mut flipped = HeaderMap::new();
        flipped.insert(SIGNATURE_HEADER, HeaderValue::from_str(&format!("sha1={}", hex::encode(mac))).unwrap());
        prop_assert_eq!(IntercomConnector.verify(&req(&flipped, &body), &s), Err(VerifyError::Mismatch));
    }

    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let h = HeaderMap::new();
        let _ = IntercomConnector.parse(&req(&h, &body));
    }

    #[test]
    fn parse_never_panics_on_envelope_shaped_json(
        topic in prop::option::of("[a-z._]{0,30}"),
        id in prop::option::of("[a-z_0-9]{0,12}"),
        item in prop::sample::select(vec!["null", "1", "[]", "{}", "{\"type\":\"conversation\",\"id\":5}",
            "{\"type\":\"conversation\",\"id\":\"5\",\"conversation_parts\":{\"conversation_parts\":[1,null,{\"id\":9}]}}",
            "{\"type\":\"conversation\",\"id\":\"5\",\"conversation_parts\":{\"conversation_parts\":{}}}",
            "{\"created_at\":\"1e400\",\"source\":{\"type\":[]}}"]),
    ) {
        let mut body = String::from("{");
        if let Some(t) = topic { body.push_str(&format!("\"topic\":{t:?},")); }
        if let Some(i) = id { body.push_str(&format!("\"id\":{i:?},")); }
        body.push_str(&format!("\"created_at\":1e300,\"data\":{{\"item\":{item}}}}}"));
        let h = HeaderMap::new();
        let _ = IntercomConnector.parse(&req(&h, body.as_bytes()));
    }
}
