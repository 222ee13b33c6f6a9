//! Slack, webhook, PagerDuty, Alertmanager and the watchdog ping against capture servers:
//! the exact JSON each receiver gets.

use intake_core::config::{NotifierKind, Severity};
use intake_notify::{
    build, AlertStatus, Notice, Notifier, PingMethod, SilenceInfo, SilenceStatus, WatchdogPing,
};
use serde_json::json;

use crate::capture::{Answer, HttpCapture};
use crate::fixtures::*;

const GROUP_KEY: &str = r#"inbound_stopped{source="maelys-kustomer",tenant="maelys"}"#;

fn events_link(channel: &str, minute: usize) -> String {
    format!(
        "http://intake.test:8080/api/v1/events?tenant=maelys&source=maelys-kustomer&channel={channel}&from=2026-11-28T09%3A4{}%3A00.000Z",
        5 + minute
    )
}

async fn send_one(kind: NotifierKind, path: &str, notice: &Notice) -> serde_json::Value {
    let cap = HttpCapture::start(Answer::status(200)).await;
    let n = build(&config(kind, Some(cap.url(path))), &ctx()).unwrap();
    n.send(notice).await.unwrap();
    let got = cap.received();
    assert_eq!(got.len(), 1, "one notice is one request");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].header("content-type"), "application/json");
    got[0].json()
}

#[tokio::test]
async fn slack_group_of_five_quiet_channels_is_one_message_listing_all_five() {
    let body = send_one(
        NotifierKind::Slack,
        "/services/T0/B0/secret",
        &five_quiet_channels(AlertStatus::Firing),
    )
    .await;
    let lines: Vec<String> = CHANNELS
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            format!(
                "• channel={ch}: 0 {ch} events in 20m; baseline expects 30 (P(0) = 1e-13) [value 0], since 2026-11-28T10:0{i}:00.000Z (for {}m) (<{}|events>)",
                20 - i,
                events_link(ch, i)
            )
        })
        .collect();
    assert_eq!(
        body,
        json!({
            "text": "[FIRING] Inbound flow stopped: tenant=maelys, source=maelys-kustomer (5 alerts)",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "🔴 FIRING: Inbound flow stopped", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Rule:* `inbound_stopped`\n*Who:* tenant=maelys, source=maelys-kustomer\n*Severity:* critical\n*Since:* 2026-11-28T10:00:00.000Z (20m before this message)\n*Why:* 5 alerts firing"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text":
                    "<http://intake.test:8080/alerts?rule=inbound_stopped&tenant=maelys&source=maelys-kustomer|Dashboard> · <http://intake.test:8080/api/v1/events?tenant=maelys&source=maelys-kustomer&from=2026-11-28T09%3A45%3A00.000Z|Events API query> · key `inbound_stopped{source=\"maelys-kustomer\",tenant=\"maelys\"}`"}]}
            ]
        })
    );
}

#[tokio::test]
async fn slack_resolution_is_marked_resolved_with_its_duration() {
    let body = send_one(
        NotifierKind::Slack,
        "/slack",
        &queue_stalled(AlertStatus::Resolved),
    )
    .await;
    assert_eq!(
        body,
        json!({
            "text": "[RESOLVED] Queue stalled: tenant=maelys, destination=handler",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "✅ RESOLVED: Queue stalled", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Rule:* `queue_stalled`\n*Who:* tenant=maelys, destination=handler\n*Severity:* critical\n*Value:* 420\n*When:* from 2026-11-28T10:13:00.000Z to 2026-11-28T10:40:00.000Z (lasted 27m)\n*Why:* oldest pending delivery is 7m old (threshold 5m); 212 pending"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text":
                    "<http://intake.test:8080/alerts?rule=queue_stalled&tenant=maelys&destination=handler|Dashboard> · <http://intake.test:8080/api/v1/events?tenant=maelys&from=2026-11-28T09%3A58%3A00.000Z&to=2026-11-28T10%3A40%3A00.000Z|Events API query> · key `queue_stalled{destination=\"handler\",tenant=\"maelys\"}`"}]}
            ]
        })
    );
}

#[tokio::test]
async fn slack_escapes_mrkdwn_control_characters() {
    let mut notice = queue_stalled(AlertStatus::Firing);
    notice.reason = "a <b> & c".into();
    let body = send_one(NotifierKind::Slack, "/slack", &notice).await;
    let facts = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(facts.ends_with("*Why:* a &lt;b&gt; &amp; c"), "{facts}");
}

#[tokio::test]
async fn webhook_body_is_the_versioned_notice() {
    let body = send_one(
        NotifierKind::Webhook,
        "/hook",
        &queue_stalled(AlertStatus::Resolved),
    )
    .await;
    assert_eq!(
        body,
        json!({
            "version": 1,
            "kind": "alert",
            "status": "resolved",
            "key": "queue_stalled{destination=\"handler\",tenant=\"maelys\"}",
            "rule": "queue_stalled",
            "severity": "critical",
            "summary": "[RESOLVED] Queue stalled: tenant=maelys, destination=handler",
            "reason": "oldest pending delivery is 7m old (threshold 5m); 212 pending",
            "labels": {"destination": "handler", "tenant": "maelys"},
            "alerts": [{
                "labels": {"destination": "handler", "tenant": "maelys"},
                "value": 420.0,
                "reason": "oldest pending delivery is 7m old (threshold 5m); 212 pending",
                "started_at": "2026-11-28T10:13:00.000Z",
                "resolved_at": "2026-11-28T10:40:00.000Z",
                "links": {
                    "dashboard": "http://intake.test:8080/alerts?rule=queue_stalled&tenant=maelys&destination=handler",
                    "events": "http://intake.test:8080/api/v1/events?tenant=maelys&from=2026-11-28T09%3A58%3A00.000Z&to=2026-11-28T10%3A40%3A00.000Z"
                }
            }],
            "since": "2026-11-28T10:13:00.000Z",
            "at": "2026-11-28T10:40:00.000Z",
            "links": {
                "dashboard": "http://intake.test:8080/alerts?rule=queue_stalled&tenant=maelys&destination=handler",
                "events": "http://intake.test:8080/api/v1/events?tenant=maelys&from=2026-11-28T09%3A58%3A00.000Z&to=2026-11-28T10%3A40%3A00.000Z"
            }
        })
    );
}

#[tokio::test]
async fn webhook_group_of_five_is_one_request_with_five_alerts() {
    let body = send_one(
        NotifierKind::Webhook,
        "/hook",
        &five_quiet_channels(AlertStatus::Firing),
    )
    .await;
    assert_eq!(body["key"], GROUP_KEY);
    let channels: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, CHANNELS);
    // The body parses back into the notice it came from.
    let mut back = body.clone();
    back.as_object_mut().unwrap().remove("version");
    let notice: Notice = serde_json::from_value(back).unwrap();
    assert_eq!(notice, five_quiet_channels(AlertStatus::Firing));
}

fn pagerduty(cap: &HttpCapture) -> Box<dyn Notifier> {
    let mut c = config(NotifierKind::Pagerduty, Some(cap.url("/v2/enqueue")));
    c.routing_key = Some("R0UT1NG".into());
    build(&c, &ctx()).unwrap()
}

#[tokio::test]
async fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
    let cap = HttpCapture::start(Answer::status(202)).await;
    let pd = pagerduty(&cap);
    pd.send(&five_quiet_channels(AlertStatus::Firing))
        .await
        .unwrap();
    pd.send(&five_quiet_channels(AlertStatus::Repeat))
        .await
        .unwrap();
    pd.send(&five_quiet_channels(AlertStatus::Resolved))
        .await
        .unwrap();
    let got = cap.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.uri == "/v2/enqueue"));
    let (trigger, repeat, resolve) = (got[0].json(), got[1].json(), got[2].json());
    let details: Vec<String> = CHANNELS
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            format!(
                "channel={ch}: 0 {ch} events in 20m; baseline expects 30 (P(0) = 1e-13) [value 0], since 2026-11-28T10:0{i}:00.000Z (for {}m)",
                20 - i
            )
        })
        .collect();
    assert_eq!(
        trigger,
        json!({
            "routing_key": "R0UT1NG",
            "event_action": "trigger",
            "dedup_key": GROUP_KEY,
            "client": "intake",
            "client_url": "http://intake.test:8080/alerts?rule=inbound_stopped&tenant=maelys&source=maelys-kustomer",
            "links": [
                {"href": "http://intake.test:8080/alerts?rule=inbound_stopped&tenant=maelys&source=maelys-kustomer", "text": "intake dashboard"},
                {"href": "http://intake.test:8080/api/v1/events?tenant=maelys&source=maelys-kustomer&from=2026-11-28T09%3A45%3A00.000Z", "text": "Events API query"}
            ],
            "payload": {
                "summary": "[FIRING] Inbound flow stopped: tenant=maelys, source=maelys-kustomer (5 alerts)",
                "severity": "critical",
                "source": "maelys-kustomer",
                "timestamp": "2026-11-28T10:00:00.000Z",
                "component": "intake",
                "group": "maelys",
                "class": "inbound_stopped",
                "custom_details": {
                    "reason": "5 alerts firing",
                    "labels": {"source": "maelys-kustomer", "tenant": "maelys"},
                    "since": "2026-11-28T10:00:00.000Z",
                    "alerts": details
                }
            }
        })
    );
    assert_eq!(repeat["event_action"], "trigger");
    assert_eq!(repeat["dedup_key"], GROUP_KEY);
    assert_eq!(
        resolve,
        json!({"routing_key": "R0UT1NG", "event_action": "resolve", "dedup_key": GROUP_KEY})
    );
}

#[tokio::test]
async fn pagerduty_long_keys_are_hashed_stably() {
    let cap = HttpCapture::start(Answer::status(202)).await;
    let pd = pagerduty(&cap);
    let mut firing = queue_stalled(AlertStatus::Firing);
    let mut resolved = queue_stalled(AlertStatus::Resolved);
    firing.key = "k".repeat(300);
    resolved.key = "k".repeat(300);
    pd.send(&firing).await.unwrap();
    pd.send(&resolved).await.unwrap();
    let got = cap.received();
    let (a, b) = (got[0].json(), got[1].json());
    let key = a["dedup_key"].as_str().unwrap();
    assert!(key.starts_with("intake:") && key.len() <= 255, "{key}");
    assert_eq!(a["dedup_key"], b["dedup_key"]);
}

#[tokio::test]
async fn pagerduty_silence_is_a_change_event_not_a_page() {
    let cap = HttpCapture::start(Answer::status(202)).await;
    let pd = pagerduty(&cap);
    let notice = Notice::silence(
        SilenceStatus::Created,
        SilenceInfo {
            id: "sil_1".into(),
            matchers: labels(&[("rule", "inbound_drop"), ("tenant", "maelys")]),
            starts_at: t("2026-11-28T10:00:00Z"),
            ends_at: t("2026-11-28T12:00:00Z"),
            created_by: "alice".into(),
            comment: "SOR migration tonight".into(),
        },
        t("2026-11-28T10:00:00Z"),
        &links(),
    );
    pd.send(&notice).await.unwrap();
    let got = cap.received();
    assert_eq!(got[0].uri, "/v2/change/enqueue");
    let body = got[0].json();
    assert!(body.get("event_action").is_none());
    assert_eq!(body["routing_key"], "R0UT1NG");
    assert_eq!(
        body["payload"]["summary"],
        "[SILENCE CREATED] rule=inbound_drop, tenant=maelys muted until 2026-11-28T12:00:00.000Z by alice"
    );
    assert_eq!(
        body["payload"]["custom_details"]["reason"],
        "SOR migration tonight"
    );
    assert_eq!(
        body["links"],
        json!([{"href": "http://intake.test:8080/silences/sil_1", "text": "intake dashboard"}])
    );
}

#[tokio::test]
async fn alertmanager_gets_one_alert_per_member_kept_alive_until_the_next_repeat() {
    let cap = HttpCapture::start(Answer::status(200)).await;
    let am = build(
        &config(NotifierKind::Alertmanager, Some(cap.url("/am/"))),
        &ctx(),
    )
    .unwrap();
    // Repeated every 4 h: a firing alert stays active for two repeat intervals.
    let notice = five_quiet_channels(AlertStatus::Firing).repeat_at(t("2026-11-28T14:20:00Z"));
    am.send(&notice).await.unwrap();
    let got = cap.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri, "/am/api/v2/alerts");
    let body = got[0].json();
    let alerts = body.as_array().unwrap();
    assert_eq!(alerts.len(), 5);
    for (i, ch) in CHANNELS.iter().enumerate() {
        let dashboard = format!(
            "http://intake.test:8080/alerts?rule=inbound_stopped&tenant=maelys&source=maelys-kustomer&channel={ch}"
        );
        assert_eq!(
            alerts[i],
            json!({
                "labels": {
                    "alertname": "inbound_stopped",
                    "severity": "critical",
                    "tenant": "maelys",
                    "source": "maelys-kustomer",
                    "channel": ch
                },
                "annotations": {
                    "summary": format!("Inbound flow stopped: tenant=maelys, source=maelys-kustomer, channel={ch}"),
                    "description": format!("0 {ch} events in 20m; baseline expects 30 (P(0) = 1e-13)"),
                    "value": "0",
                    "dashboard": dashboard,
                    "events": events_link(ch, i)
                },
                "startsAt": format!("2026-11-28T10:0{i}:00.000Z"),
                "endsAt": "2026-11-28T18:20:00.000Z",
                "generatorURL": dashboard
            })
        );
    }
}

#[tokio::test]
async fn alertmanager_resolution_sets_ends_at() {
    let cap = HttpCapture::start(Answer::status(200)).await;
    let am = build(
        &config(NotifierKind::Alertmanager, Some(cap.url(""))),
        &ctx(),
    )
    .unwrap();
    am.send(&queue_stalled(AlertStatus::Firing)).await.unwrap();
    am.send(&queue_stalled(AlertStatus::Resolved))
        .await
        .unwrap();
    let got = cap.received();
    let (firing, resolved) = (got[0].json(), got[1].json());
    // Without a repeat time the alert is kept alive for an hour after the notice.
    assert_eq!(firing[0]["endsAt"], "2026-11-28T11:20:00.000Z");
    assert_eq!(resolved[0]["endsAt"], "2026-11-28T10:40:00.000Z");
    assert_eq!(resolved[0]["startsAt"], "2026-11-28T10:13:00.000Z");
    assert_eq!(firing[0]["labels"], resolved[0]["labels"]);
}

#[tokio::test]
async fn alertmanager_skips_silence_notices() {
    let cap = HttpCapture::start(Answer::status(200)).await;
    let am = build(
        &config(NotifierKind::Alertmanager, Some(cap.url(""))),
        &ctx(),
    )
    .unwrap();
    let notice = Notice::silence(
        SilenceStatus::Expired,
        SilenceInfo {
            id: "sil_1".into(),
            matchers: labels(&[("tenant", "maelys")]),
            starts_at: t("2026-11-28T10:00:00Z"),
            ends_at: t("2026-11-28T12:00:00Z"),
            created_by: "alice".into(),
            comment: "c".into(),
        },
        t("2026-11-28T12:00:00Z"),
        &links(),
    );
    assert!(!am.accepts(&notice));
    am.send(&notice).await.unwrap();
    assert!(cap.received().is_empty());
    let watchdog = Notice::watchdog(
        t("2026-11-28T10:00:00Z"),
        t("2026-11-28T10:01:00Z"),
        &links(),
    );
    assert!(am.accepts(&watchdog));
    am.send(&watchdog).await.unwrap();
    let body = cap.received()[0].json();
    assert_eq!(
        body[0]["labels"],
        json!({"alertname": "watchdog", "severity": "info"})
    );
    assert_eq!(body[0]["endsAt"], "2026-11-28T10:02:00.000Z");
}

#[tokio::test]
async fn watchdog_pings_with_get_or_post_and_only_for_heartbeats() {
    let cap = HttpCapture::start(Answer::status(200).body("OK")).await;
    let ctx = ctx();
    let heartbeat = Notice::watchdog(
        t("2026-11-28T10:00:00Z"),
        t("2026-11-28T10:01:00Z"),
        &links(),
    );
    let get = WatchdogPing::new("hc", &cap.url("/ping/abc"), PingMethod::Get, &ctx).unwrap();
    let post = WatchdogPing::new("hc", &cap.url("/ping/abc"), PingMethod::Post, &ctx).unwrap();
    get.send(&heartbeat).await.unwrap();
    post.send(&heartbeat).await.unwrap();
    // Any other notice must not count as a heartbeat.
    let alert = queue_stalled(AlertStatus::Firing);
    assert!(!get.accepts(&alert));
    get.send(&alert).await.unwrap();
    let got = cap.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].method.as_str(), got[0].uri.as_str()),
        ("GET", "/ping/abc")
    );
    assert!(got[0].body.is_empty());
    assert_eq!(
        (got[1].method.as_str(), got[1].uri.as_str()),
        ("POST", "/ping/abc")
    );
    let text = String::from_utf8(got[1].body.to_vec()).unwrap();
    assert!(
        text.starts_with("[WATCHDOG] intake alerting is alive\n"),
        "{text}"
    );
    assert!(text.contains("2026-11-28T10:01:00.000Z"), "{text}");
    assert_eq!(heartbeat.severity, Severity::Info);
}

/// A queue stalled by a fire drill: the alert and its group carry the label `drill`.
fn drill_stall(status: AlertStatus) -> Notice {
    let mut item = intake_notify::AlertItem::new(
        labels(&[
            ("tenant", "maelys"),
            ("source", "maelys-kustomer"),
            ("drill", "drl_1"),
        ]),
        "no canary reached the handler for 2m",
        t("2026-11-28T10:13:00Z"),
    );
    let at = if status == AlertStatus::Resolved {
        item = item.resolved_at(t("2026-11-28T10:20:00Z"));
        t("2026-11-28T10:20:00Z")
    } else {
        t("2026-11-28T10:15:00Z")
    };
    Notice::alert(
        status,
        "canary_failed",
        Severity::Critical,
        labels(&[("tenant", "maelys"), ("drill", "drl_1")]),
        vec![item],
        at,
        &links(),
    )
}

#[tokio::test]
async fn a_drill_s_notices_are_marked_on_every_kind_of_notifier() {
    let firing = drill_stall(AlertStatus::Firing);
    assert_eq!(firing.drill.as_deref(), Some("drl_1"));
    assert!(firing
        .summary
        .starts_with("[DRILL] [FIRING] Canary did not arrive"));
    assert_eq!(
        firing.key,
        r#"canary_failed{drill="drl_1",tenant="maelys"}"#
    );
    let resolved = drill_stall(AlertStatus::Resolved);
    assert!(resolved.summary.starts_with("[DRILL] [RESOLVED]"));

    // Webhook: the field and the labels.
    let body = send_one(NotifierKind::Webhook, "/hook", &firing).await;
    assert_eq!(body["drill"], "drl_1");
    assert_eq!(body["labels"]["drill"], "drl_1");
    assert_eq!(body["alerts"][0]["labels"]["drill"], "drl_1");
    // Slack: the header and the fallback.
    let body = send_one(NotifierKind::Slack, "/slack", &firing).await;
    assert!(
        body["text"].as_str().unwrap().starts_with("[DRILL] "),
        "{body}"
    );
    assert!(
        body["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with("[DRILL] 🔴 FIRING: Canary did not arrive"),
        "{body}"
    );
    // Alertmanager: the label routes it, the summary says it.
    let body = send_one(NotifierKind::Alertmanager, "/am", &firing).await;
    assert_eq!(body[0]["labels"]["drill"], "drl_1");
    assert_eq!(body[0]["labels"]["severity"], "critical");
    assert!(body[0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("[DRILL] Canary did not arrive"));
    // PagerDuty: triggered at severity info, with the drill in the details; resolved with the
    // same key.
    let cap = HttpCapture::start(Answer::status(202)).await;
    let pd = pagerduty(&cap);
    pd.send(&firing).await.unwrap();
    pd.send(&resolved).await.unwrap();
    let got = cap.received();
    let (trigger, resolve) = (got[0].json(), got[1].json());
    assert_eq!(trigger["payload"]["severity"], "info");
    assert_eq!(trigger["payload"]["custom_details"]["drill"], "drl_1");
    assert!(trigger["payload"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("[DRILL] "));
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    // A real alert is not marked.
    let real = queue_stalled(AlertStatus::Firing);
    assert!(real.drill.is_none() && !real.summary.contains("[DRILL]"));
    let cap = HttpCapture::start(Answer::status(202)).await;
    pagerduty(&cap).send(&real).await.unwrap();
    assert_eq!(cap.received()[0].json()["payload"]["severity"], "critical");
}

#[tokio::test]
async fn a_drill_probe_goes_to_pagerduty_s_timeline_and_not_to_alertmanager() {
    let probe = Notice::drill_probe(
        "drl_2",
        "n1",
        t("2026-11-28T10:00:00Z"),
        t("2026-11-28T10:05:00Z"),
        &links(),
    );
    assert_eq!(serde_json::to_value(&probe).unwrap()["kind"], "drill");
    assert_eq!(serde_json::to_value(&probe).unwrap()["status"], "probe");
    let cap = HttpCapture::start(Answer::status(202)).await;
    pagerduty(&cap).send(&probe).await.unwrap();
    assert_eq!(cap.received()[0].uri, "/v2/change/enqueue");
    let cap = HttpCapture::start(Answer::status(200)).await;
    let am = build(
        &config(NotifierKind::Alertmanager, Some(cap.url("/am"))),
        &ctx(),
    )
    .unwrap();
    assert!(!am.accepts(&probe));
    let body = send_one(NotifierKind::Webhook, "/hook", &probe).await;
    assert_eq!(body["drill"], "drl_2");
    assert!(body["summary"]
        .as_str()
        .unwrap()
        .starts_with("[DRILL] notifier-down drill drl_2"));
}
