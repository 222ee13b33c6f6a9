//! The input policy through a real server, for every kind of source: numeric ids beyond what a
//! float holds stay distinct and are all delivered; times RFC 3339 cannot write, bodies that
//! are not UTF-8 and bodies nested too deep are refused with 400 and recorded as
//! `rejected_invalid`.

use std::collections::BTreeSet;

use intake_connectors::{front, intercom, kustomer, zendesk, GenericConnector};
use intake_core::config::{
    GenericFields, GenericSignature, HmacAlgorithm, SharedSecretAuth, SignatureEncoding,
};
use intake_core::Timestamp;
use intake_testkit::{CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::Value;

use crate::PATIENCE;

const SECRET: &str = "input-policy-secret";

/// Every kind of source beside the base configuration's `maelys-kustomer`.
const SOURCES: &str = r#"
[[sources]]
id = "maelys-zendesk"
tenant = "maelys"
kind = "zendesk"
secrets = ["input-policy-secret"]
destinations = ["handler"]

[[sources]]
id = "maelys-intercom"
tenant = "maelys"
kind = "intercom"
secrets = ["input-policy-secret"]
destinations = ["handler"]

[[sources]]
id = "maelys-front"
tenant = "maelys"
kind = "front"
secrets = ["input-policy-secret"]
destinations = ["handler"]

[[sources]]
id = "maelys-freshdesk"
tenant = "maelys"
kind = "freshdesk"
secrets = ["input-policy-secret"]
destinations = ["handler"]

[[sources]]
id = "maelys-gorgias"
tenant = "maelys"
kind = "gorgias"
secrets = ["input-policy-secret"]
destinations = ["handler"]

[[sources]]
id = "maelys-generic"
tenant = "maelys"
kind = "generic"
secrets = ["input-policy-secret"]
destinations = ["handler"]
signature = { header = "X-Sig", algorithm = "sha256", encoding = "hex" }
fields = { event_id = "/event/id", occurred_at = "/event/at" }
"#;

/// One source: its envelope (`{id}`, `{time}`, `{x}` filled in), a time in its format and
/// what `intake-occurred-at` says for it, and a time RFC 3339 cannot write.
struct Kind {
    source: &'static str,
    template: &'static str,
    good_time: &'static str,
    occurred_at: &'static str,
    bad_time: &'static str,
    key: (&'static str, &'static str),
}

const KINDS: [Kind; 7] = [
    Kind {
        source: "maelys-kustomer",
        template: r#"{"id":"e1","name":"kustomer.message.create","data":{"type":"message","id":{id},"attributes":{"channel":"email","createdAt":{time}}},"x":{x}}"#,
        good_time: r#""2026-11-27T09:15:00.000Z""#,
        occurred_at: "2026-11-27T09:15:00.000Z",
        bad_time: r#""-000001-01-01T00:00:00Z""#,
        key: ("message:", ":create"),
    },
    Kind {
        source: "maelys-zendesk",
        template: r#"{"id":"z1","type":"zen:event-type:ticket.created","time":{time},"detail":{"id":{id}},"x":{x}}"#,
        good_time: r#""2026-11-27T09:15:00Z""#,
        occurred_at: "2026-11-27T09:15:00.000Z",
        bad_time: r#""-000001-01-01T00:00:00Z""#,
        key: ("ticket:", ":created"),
    },
    Kind {
        source: "maelys-intercom",
        template: r#"{"type":"notification_event","id":"notif_1","topic":"conversation.user.created","data":{"type":"notification_event_data","item":{"type":"conversation","id":{id},"created_at":{time}}},"x":{x}}"#,
        good_time: "1764235200",
        occurred_at: "2025-11-27T09:20:00.000Z",
        bad_time: "-9223372036854775808",
        key: ("conversation:", ":created"),
    },
    Kind {
        source: "maelys-front",
        template: r#"{"id":{id},"type":"inbound","emitted_at":{time},"x":{x}}"#,
        good_time: "1453770984.123",
        occurred_at: "2016-01-26T01:16:24.123Z",
        bad_time: "99999999999999999",
        key: ("event:", ""),
    },
    Kind {
        source: "maelys-freshdesk",
        template: r#"{"freshdesk_webhook":{"ticket_id":{id},"triggered_event":"{ticket_action:created}","ticket_created_at":{time}},"x":{x}}"#,
        good_time: r#""2026-03-11 12:44:19""#,
        occurred_at: "2026-03-11T12:44:19.000Z",
        bad_time: r#""-000001-01-01T00:00:00Z""#,
        key: ("ticket:", ":created"),
    },
    Kind {
        source: "maelys-gorgias",
        template: r#"{"event":"ticket-created","ticket":{"id":{id},"created_datetime":{time}},"x":{x}}"#,
        good_time: r#""2026-03-11T12:44:19.120Z""#,
        occurred_at: "2026-03-11T12:44:19.120Z",
        bad_time: r#""-000001-01-01T00:00:00Z""#,
        key: ("ticket:", ":created"),
    },
    Kind {
        source: "maelys-generic",
        template: r#"{"event":{"id":{id},"at":{time}},"x":{x}}"#,
        good_time: "1764235200",
        occurred_at: "2025-11-27T09:20:00.000Z",
        bad_time: "-9223372036854775808",
        key: ("event:", ""),
    },
];

impl Kind {
    fn body(&self, id: &str, time: &str, x: &str) -> Vec<u8> {
        self.template
            .replace("{id}", id)
            .replace("{time}", time)
            .replace("{x}", x)
            .into_bytes()
    }

    /// The headers this source's system of record signs `body` with.
    fn signed(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let one = |name: &str, value: String| vec![(name.to_string(), value)];
        match self.source {
            "maelys-kustomer" => one(
                kustomer::SIGNATURE_HEADER,
                kustomer::sign(SOURCE_SECRET, body),
            ),
            "maelys-zendesk" => {
                let ts = now.to_rfc3339();
                vec![
                    (
                        zendesk::SIGNATURE_HEADER.to_string(),
                        zendesk::sign(SECRET, &ts, body),
                    ),
                    (zendesk::TIMESTAMP_HEADER.to_string(), ts),
                ]
            }
            "maelys-intercom" => one(intercom::SIGNATURE_HEADER, intercom::sign(SECRET, body)),
            "maelys-front" => one(front::SIGNATURE_HEADER, front::sign_rule(SECRET, body)),
            "maelys-freshdesk" | "maelys-gorgias" => {
                let (name, value) =
                    intake_connectors::unsigned::sign(&SharedSecretAuth::default(), SECRET);
                vec![(name, value)]
            }
            _ => one("x-sig", generic().sign(SECRET, body)),
        }
    }
}

fn generic() -> GenericConnector {
    GenericConnector::new(
        GenericSignature {
            header: "X-Sig".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: None,
        },
        GenericFields::default(),
    )
}

async fn setup() -> (CaptureHandler, TestServer) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = intake_testkit::config_toml(dir.path(), &handler.url(), "") + SOURCES;
    let server = TestServer::start_with(dir, &text).await.unwrap();
    (handler, server)
}

async fn post(server: &TestServer, kind: &Kind, body: Vec<u8>) -> (u16, Value) {
    let now = Timestamp(server.clock_now_secs() * 1000);
    let mut req = server
        .http
        .post(format!("{}/ingest/{}", server.url(), kind.source));
    for (name, value) in kind.signed(&body, now) {
        req = req.header(name, value);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ids_beyond_a_float_stay_distinct_and_are_all_delivered_for_every_kind() {
    let (handler, server) = setup().await;
    let pairs = [
        ("18446744073709551616", "18446744073709551617"),
        ("9007199254740992", "9007199254740993"),
    ];
    let mut acked = BTreeSet::new();
    for kind in &KINDS {
        for (a, b) in pairs {
            for id in [a, b] {
                let (status, ack) =
                    post(&server, kind, kind.body(id, kind.good_time, "null")).await;
                assert_eq!(status, 200, "{} {id}: {ack}", kind.source);
                assert_eq!(ack["duplicate"], false, "{} {id}", kind.source);
                let event_id = ack["id"].as_str().unwrap().to_string();
                let (_, event) = server
                    .api(&format!("/api/v1/events/{event_id}"), ADMIN_TOKEN)
                    .await
                    .unwrap();
                assert_eq!(
                    event["dedupe_key"],
                    format!("{}{id}{}", kind.key.0, kind.key.1),
                    "{}",
                    kind.source
                );
                assert!(acked.insert(event_id), "{} {id}", kind.source);
            }
        }
    }
    assert_eq!(acked.len(), KINDS.len() * 4);

    let got = handler.wait_for(acked.len(), PATIENCE).await;
    let delivered: BTreeSet<String> = got.iter().map(|c| c.id.clone()).collect();
    assert_eq!(delivered, acked, "every acknowledged event is delivered");
    for d in &got {
        let kind = KINDS
            .iter()
            .find(|k| k.source == d.header("intake-source"))
            .unwrap();
        assert_eq!(d.header("intake-occurred-at"), kind.occurred_at);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_times_bad_utf8_and_deep_bodies_are_400_and_recorded_for_every_kind() {
    let (handler, server) = setup().await;
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    for kind in &KINDS {
        let mut latin1 = kind.body("7", kind.good_time, "\"caf\u{e9}\"");
        let at = latin1.len() - 4;
        latin1.splice(at..at + 2, [0xe9]);
        for (body, reason) in [
            (
                kind.body("7", kind.bad_time, "null"),
                "outside the times intake accepts",
            ),
            (latin1, "not valid UTF-8"),
            (kind.body("7", kind.good_time, &deep), "levels deep"),
        ] {
            let (status, problem) = post(&server, kind, body).await;
            assert_eq!(status, 400, "{}: {problem}", kind.source);
            assert_eq!(
                problem["type"], "urn:intake:problem:unparseable-body",
                "{}",
                kind.source
            );
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(reason), "{}: {detail}", kind.source);
            if reason.starts_with("outside") {
                assert!(
                    detail.contains(kind.bad_time.trim_matches('"')),
                    "{}: {detail}",
                    kind.source
                );
            }
        }
    }

    // Each refusal is recorded with its reason, as `rejected_invalid`.
    let expected = KINDS.len() * 3;
    let mut rejections = Vec::new();
    for _ in 0..200 {
        let (_, r) = server
            .api("/api/v1/rejections?limit=1000", ADMIN_TOKEN)
            .await
            .unwrap();
        rejections = r["data"].as_array().cloned().unwrap_or_default();
        if rejections.len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rejections.len(), expected);
    for r in &rejections {
        assert_eq!(r["outcome"], "rejected_invalid", "{r}");
    }
    let m = server.metrics().await.unwrap();
    for kind in &KINDS {
        let line = format!(
            r#"intake_requests_total{{outcome="rejected_invalid",tenant="maelys",source="{}"}} 3"#,
            kind.source
        );
        assert!(m.contains(&line), "{line}\n{m}");
    }
    assert!(
        handler.received().is_empty(),
        "nothing refused is delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_time_rfc3339_cannot_write_is_sent_as_the_arrival_time() {
    use intake_core::event::{Channel, NormalizedEvent, Origin};
    use intake_core::{DeliveryId, EventId};
    use intake_store::NewEvent;

    // An event stored before connectors refused such times (the store takes any instant).
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    let now = Timestamp(server.clock_now_secs() * 1000);
    let event = NewEvent {
        id: EventId::generate(now),
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
        origin: Origin::Webhook,
        normalized: NormalizedEvent {
            sor_event_id: None,
            dedupe_key: "message:old:create".into(),
            event_type: "kustomer.message.create".into(),
            channel: Channel::Email,
            raw_channel: None,
            object_type: None,
            object_id: None,
            conversation_id: None,
            occurred_at: Some(Timestamp(i64::MIN)),
        },
        received_at: now,
        headers: Vec::new(),
        body: b"{}".to_vec(),
        deliveries: vec![(DeliveryId::generate(now), "handler".into())],
    };
    server.server.store.ingest(event).await.unwrap();
    // Nothing woke the dispatcher: its safety-net poll runs on the manual clock.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while handler.received().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        server.clock.advance(std::time::Duration::from_secs(1));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = handler.received();
    assert_eq!(got[0].header("intake-occurred-at"), now.to_rfc3339());
}
