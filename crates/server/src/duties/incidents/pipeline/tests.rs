//! The pipeline as a table of stories: each step is one evaluation (the alert book and
//! silences at a minute, and the fire drills of the world), run through [`decide`] against the
//! incidents as the previous steps' writes left them (as the store would: a write applies only
//! at the version it read).

use std::collections::BTreeMap;

use intake_core::config::Config;
use intake_core::drill::Scenario;
use intake_monitor::{AlertKey, Labels};
use intake_notify::{LinkBuilder, Notice};

use super::super::lifecycle::UpdateRequest;

use super::*;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn config(extra: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"
[[tenants]]
id = "maelys"
contacts = [{{ kind = "webhook", url = "https://status.maelys.example/hook" }}]

[[tenants]]
id = "other"
contacts = [{{ kind = "webhook", url = "https://status.other.example/hook" }}]

[[destinations]]
id = "handler"
url = "http://127.0.0.1:9/"
secret = "whsec_dGVzdC1kZXN0aW5hdGlvbi1zZWNyZXQ="

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["x"]
destinations = ["handler"]

[[sources]]
id = "other-kustomer"
tenant = "other"
kind = "kustomer"
secrets = ["x"]
destinations = ["handler"]
{extra}
"#
    ))
    .unwrap()
}

fn alert(
    rule: &str,
    severity: Severity,
    tenant: &str,
    channel: &str,
    since_min: i64,
) -> ActiveAlert {
    ActiveAlert {
        key: AlertKey {
            rule: rule.into(),
            labels: Labels {
                tenant: tenant.into(),
                source: format!("{tenant}-kustomer"),
                channel: channel.into(),
                destination: if channel.is_empty() {
                    "handler".into()
                } else {
                    String::new()
                },
            },
        },
        state: AlertState::Firing,
        severity,
        active_since: Timestamp(T0 + (since_min - 2) * MIN),
        firing_since: Some(Timestamp(T0 + since_min * MIN)),
        value: 180.0,
        reason: format!("{rule} for {tenant}"),
        false_streak: 0,
        for_secs: 0,
        resolve_after: 1,
    }
}

fn stalled(tenant: &str, since_min: i64) -> ActiveAlert {
    alert("queue_stalled", Severity::Critical, tenant, "", since_min)
}

/// The incidents after each step, as the store keeps them, and the fire drills that mark
/// alerts.
struct World {
    config: Config,
    incidents: Vec<Incident>,
    drills: Vec<DrillScope>,
    ids: u32,
}

/// What one evaluation wrote.
struct Wrote {
    writes: Vec<IncidentWrite>,
}

impl Wrote {
    fn notices_to(&self) -> Vec<String> {
        self.writes
            .iter()
            .flat_map(|w| w.notices.iter().map(|n| n.notifier.clone()))
            .collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.writes
            .iter()
            .flat_map(|w| w.entries.iter().map(|e| e.kind.clone()))
            .collect()
    }
}

impl World {
    fn new(extra: &str) -> World {
        World {
            config: config(extra),
            incidents: Vec::new(),
            drills: Vec::new(),
            ids: 0,
        }
    }

    fn step(&mut self, minute: i64, book: &[ActiveAlert], silences: &[Silence]) -> Wrote {
        let links = LinkBuilder::default();
        let notices = Notices {
            config: &self.config,
            links: &links,
            oncall: &[],
            now: Timestamp(T0 + minute * MIN),
        };
        let ids = &mut self.ids;
        let mut new_id = || {
            *ids += 1;
            format!("inc_{ids}")
        };
        let writes = decide(
            book,
            silences,
            &self.drills,
            &self.incidents,
            &notices,
            &mut new_id,
        );
        self.apply(&writes);
        Wrote { writes }
    }

    /// Applies `writes` as the store would.
    fn apply(&mut self, writes: &[IncidentWrite]) {
        for w in writes {
            match w.expected_version {
                None => self.incidents.push(Incident {
                    version: 1,
                    ..w.incident.clone()
                }),
                Some(v) => {
                    let stored = self
                        .incidents
                        .iter_mut()
                        .find(|i| i.id == w.incident.id)
                        .unwrap();
                    assert_eq!(stored.version, v);
                    *stored = Incident {
                        version: v + 1,
                        ..w.incident.clone()
                    };
                }
            }
        }
    }

    fn only(&self) -> &Incident {
        assert_eq!(self.incidents.len(), 1, "{:#?}", self.incidents);
        &self.incidents[0]
    }
}

const AUTO: &str = "[incidents]\nauto_declare = true\n";

#[test]
fn a_critical_alert_declares_and_tells_the_tenant_at_once() {
    let mut w = World::new(AUTO);
    let wrote = w.step(3, &[stalled("maelys", 3)], &[]);
    assert_eq!(wrote.writes.len(), 1);
    assert_eq!(wrote.notices_to(), ["contact:maelys:0"]);
    assert_eq!(wrote.kinds(), ["alert_firing", "declared"]);
    let i = w.only();
    assert_eq!(i.tenants, ["maelys"]);
    assert_eq!(i.sources, ["maelys-kustomer"]);
    assert_eq!(i.declared_by, "rule:queue_stalled");
    assert_eq!(i.severity, IncidentSeverity::Critical);
    assert_eq!(i.impact_start, Timestamp(T0 + MIN), "the condition's start");
    assert_eq!(i.title, "Webhook processing stalled");
    assert!(Tracking::of(i).told.contains("maelys"));
    // The next evaluation, nothing new: nothing written.
    assert!(w.step(4, &[stalled("maelys", 3)], &[]).writes.is_empty());
}

#[test]
fn later_alerts_of_the_tenant_join_and_their_resolutions_are_recorded() {
    let mut w = World::new(AUTO);
    w.step(3, &[stalled("maelys", 3)], &[]);
    let stopped = alert("inbound_stopped", Severity::Critical, "maelys", "chat", 5);
    let drop = alert("inbound_drop", Severity::Warning, "maelys", "email", 5);
    let wrote = w.step(
        6,
        &[stalled("maelys", 3), stopped.clone(), drop.clone()],
        &[],
    );
    assert_eq!(wrote.writes.len(), 1, "joined, not declared");
    assert_eq!(wrote.writes[0].expected_version, Some(1));
    assert_eq!(wrote.kinds(), ["alert_firing", "alert_firing"]);
    assert!(wrote.notices_to().is_empty());
    assert_eq!(Tracking::of(w.only()).alerts.len(), 3);
    let wrote = w.step(9, &[stopped, drop], &[]);
    assert_eq!(wrote.kinds(), ["alert_resolved"]);
    // Another tenant's alert opens that tenant's own incident.
    let wrote = w.step(10, &[stalled("other", 10)], &[]);
    assert_eq!(wrote.notices_to(), ["contact:other:0"]);
    assert_eq!(w.incidents.len(), 2);
}

#[test]
fn alerts_that_must_not_declare_do_not() {
    let cases: Vec<(&str, &str, Vec<ActiveAlert>, Vec<Silence>)> = vec![
        ("off by default", "", vec![stalled("maelys", 3)], vec![]),
        (
            "off for this rule",
            "[incidents]\nauto_declare = true\n[[rules]]\nrule = \"queue_stalled\"\nauto_declare = false\n",
            vec![stalled("maelys", 3)],
            vec![],
        ),
        (
            "not critical",
            AUTO,
            vec![alert("queue_stalled", Severity::Warning, "maelys", "", 3)],
            vec![],
        ),
        (
            "not a rule that declares",
            AUTO,
            vec![alert("delivery_errors", Severity::Critical, "maelys", "", 3)],
            vec![],
        ),
        (
            "silenced",
            AUTO,
            vec![stalled("maelys", 3)],
            vec![Silence {
                id: "sil_1".into(),
                matchers: BTreeMap::from([("tenant".to_string(), "maelys".to_string())]),
                starts_at: Timestamp(T0),
                ends_at: Timestamp(T0 + 60 * MIN),
                created_by: "alice".into(),
                comment: "migration".into(),
                created_at: Timestamp(T0),
                expiry_announced: false,
            }],
        ),
    ];
    for (name, extra, book, silences) in cases {
        let mut w = World::new(extra);
        assert!(w.step(3, &book, &silences).writes.is_empty(), "{name}");
    }
}

#[test]
fn a_hold_tells_the_tenant_only_if_an_alert_still_fires_when_it_ends() {
    let hold = "[incidents]\nauto_declare = true\nnotify_hold = \"5m\"\n";
    let mut w = World::new(hold);
    let wrote = w.step(3, &[stalled("maelys", 3)], &[]);
    assert!(
        wrote.notices_to().is_empty(),
        "on-call has no notifier here; tenants wait"
    );
    assert_eq!(
        wrote.kinds(),
        ["alert_firing", "declared", "tenant_notice_held"]
    );
    assert!(w.step(7, &[stalled("maelys", 3)], &[]).writes.is_empty());
    let wrote = w.step(8, &[stalled("maelys", 3)], &[]);
    assert_eq!(wrote.notices_to(), ["contact:maelys:0"]);
    assert_eq!(wrote.kinds(), ["tenants_told"]);
    assert!(w.step(9, &[stalled("maelys", 3)], &[]).writes.is_empty());

    // The alert resolves within the hold: resolved by itself, the tenant never told.
    let mut w = World::new(hold);
    w.step(3, &[stalled("maelys", 3)], &[]);
    let wrote = w.step(5, &[], &[]);
    assert_eq!(wrote.kinds(), ["alert_resolved"]);
    let wrote = w.step(8, &[], &[]);
    assert_eq!(wrote.kinds(), ["resolved"]);
    assert!(wrote.notices_to().is_empty());
    assert_eq!(w.only().status, IncidentState::Resolved);
    // Resolved while it fires no more; a new episode of the alert later declares anew.
    assert!(w.step(9, &[], &[]).writes.is_empty());
    w.step(20, &[stalled("maelys", 20)], &[]);
    assert_eq!(w.incidents.len(), 2);
}

#[test]
fn without_auto_notify_the_tenant_waits_for_a_person_and_nothing_resolves_by_itself() {
    let mut w = World::new(
        "[incidents]\nauto_declare = true\n[[rules]]\nrule = \"queue_stalled\"\ntenant = \"maelys\"\nauto_notify_tenants = false\n",
    );
    let wrote = w.step(3, &[stalled("maelys", 3)], &[]);
    assert!(wrote.notices_to().is_empty());
    assert_eq!(
        wrote.kinds(),
        ["alert_firing", "declared", "tenant_notice_held"]
    );
    w.step(5, &[], &[]);
    assert!(w.step(30, &[], &[]).writes.is_empty());
    assert_eq!(w.only().status, IncidentState::Investigating);
}

#[test]
fn an_alert_in_an_incident_a_person_resolved_does_not_declare_again() {
    let mut w = World::new(AUTO);
    w.step(3, &[stalled("maelys", 3)], &[]);
    let i = &mut w.incidents[0];
    i.status = IncidentState::Resolved;
    i.resolved_at = Some(Timestamp(T0 + 4 * MIN));
    assert!(w.step(5, &[stalled("maelys", 3)], &[]).writes.is_empty());
}

// ---------------------------------------------------------------------------------------
// Drills: a drill's alert declares a drill incident; it never merges with a real one.

/// A `queue-stall` drill on `maelys-kustomer` whose fault ran from minute `from` to `until`.
fn queue_stall_drill(from: i64, until: i64) -> DrillScope {
    DrillScope {
        id: "drl_1".into(),
        scenario: Scenario::QueueStall,
        target: "maelys-kustomer".into(),
        routed_sources: Vec::new(),
        from: Timestamp(T0 + from * MIN),
        until: Some(Timestamp(T0 + until * MIN)),
        grace: std::time::Duration::from_secs(60),
    }
}

/// The world of `extra` with a queue-stall drill from minute 0 to minute 10.
fn drilling(extra: &str) -> World {
    let mut w = World::new(extra);
    w.drills.push(queue_stall_drill(0, 10));
    w
}

/// The tenant text of each contact notice written.
fn tenant_texts(wrote: &Wrote) -> Vec<String> {
    wrote
        .writes
        .iter()
        .flat_map(|w| w.notices.iter())
        .filter(|n| n.tenant.is_some())
        .map(|n| {
            let notice: Notice = serde_json::from_str(&n.notice).unwrap();
            assert_eq!(notice.drill.as_deref(), Some("drl_1"), "{}", n.notice);
            notice.tenant_text().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_drill_s_alert_declares_a_marked_drill_incident_whose_tenants_are_not_told() {
    let mut w = drilling(AUTO);
    // The stall's condition began at minute 1, a minute after the drill's fault.
    let wrote = w.step(3, &[stalled("maelys", 3)], &[]);
    assert!(wrote.notices_to().is_empty(), "the tenant is not told");
    assert_eq!(
        wrote.kinds(),
        ["alert_firing", "declared", "tenant_notice_held"]
    );
    let held = &wrote.writes[0].entries[2];
    assert_eq!(held.detail["held_for_drill"], true);
    assert!(held.text.contains("drill_tenant_notices"), "{}", held.text);
    assert!(wrote.writes[0].entries[1]
        .text
        .contains("of fire drill drl_1"));
    let i = w.only();
    assert_eq!(i.drill.as_deref(), Some("drl_1"));
    assert_eq!(i.title, "[DRILL] Webhook processing stalled");
    assert_eq!(i.impact_start, Timestamp(T0), "the drill's fault start");
    assert!(Tracking::of(i).told.is_empty());
    let firing = &Tracking::of(i).alerts;
    assert!(
        firing.keys().all(|k| k.contains(r#"drill="drl_1""#)),
        "{firing:?}"
    );
    // Nothing new, nothing written; the drill heals, its alert resolves: the incident
    // resolves by itself, and still nobody outside was told.
    assert!(w.step(4, &[stalled("maelys", 3)], &[]).writes.is_empty());
    let wrote = w.step(11, &[], &[]);
    assert_eq!(wrote.kinds(), ["alert_resolved", "resolved"]);
    assert!(wrote.notices_to().is_empty());
    assert_eq!(w.only().status, IncidentState::Resolved);
}

#[test]
fn with_drill_tenant_notices_the_tenant_is_told_each_notice_marked_as_a_drill() {
    let mut w = drilling("[incidents]\nauto_declare = true\ndrill_tenant_notices = true\n");
    let wrote = w.step(3, &[stalled("maelys", 3)], &[]);
    assert_eq!(wrote.notices_to(), ["contact:maelys:0"]);
    assert_eq!(wrote.kinds(), ["alert_firing", "declared"]);
    let texts = tenant_texts(&wrote);
    assert!(
        texts[0].starts_with("[DRILL] This is a fire drill (drl_1), not a real outage"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("We are investigating"), "{}", texts[0]);
    // Told, so it waits for a person, who is heard by the tenant, marked again.
    assert!(w.step(11, &[], &[]).kinds() == ["alert_resolved"]);
    assert_eq!(w.only().status, IncidentState::Investigating);
    let update = person_update(&mut w, 12);
    assert_eq!(update.notices_to(), ["contact:maelys:0"]);
    assert!(tenant_texts(&update)[0].starts_with("[DRILL] This is a fire drill"));
}

/// A person's update of the only incident at `minute`, applied.
fn person_update(w: &mut World, minute: i64) -> Wrote {
    let links = LinkBuilder::default();
    let notices = Notices {
        config: &w.config,
        links: &links,
        oncall: &[],
        now: Timestamp(T0 + minute * MIN),
    };
    let req = UpdateRequest {
        message: Some("Practising the update.".into()),
        ..UpdateRequest::default()
    };
    let write = lifecycle::update(w.only(), &req, "alice", &notices).unwrap();
    let writes = vec![write];
    w.apply(&writes);
    Wrote { writes }
}

#[test]
fn a_person_s_update_of_a_drill_incident_is_not_sent_to_tenants_and_keeps_it_open() {
    let mut w = drilling(AUTO);
    w.step(3, &[stalled("maelys", 3)], &[]);
    let update = person_update(&mut w, 4);
    assert!(update.notices_to().is_empty(), "held: a drill");
    assert_eq!(
        update.writes[0].entries[0].detail["tenants_held_for_drill"],
        true
    );
    assert!(Tracking::of(w.only()).told.is_empty());
    // Written to by a person: theirs to resolve, even once the drill's alerts resolved.
    assert_eq!(w.step(11, &[], &[]).kinds(), ["alert_resolved"]);
    assert_eq!(w.only().status, IncidentState::Investigating);
}

#[test]
fn a_real_alert_during_a_drill_declares_a_real_incident_and_neither_joins_the_other() {
    let mut w = drilling(AUTO);
    // The drill's stall, and a real stop of the tenant's chat (not a rule a queue-stall
    // causes): two incidents, the real one tells the tenant.
    let stopped = alert("inbound_stopped", Severity::Critical, "maelys", "chat", 3);
    let wrote = w.step(3, &[stalled("maelys", 3), stopped.clone()], &[]);
    assert_eq!(wrote.writes.len(), 2);
    assert_eq!(wrote.notices_to(), ["contact:maelys:0"]);
    let (drill, real) = by_kind(&w);
    assert_eq!(real.title, "Incoming webhooks stopped");
    assert_eq!(
        real.impact_start,
        Timestamp(T0 + MIN),
        "the condition's start"
    );
    assert_eq!(Tracking::of(&real).alerts.len(), 1);
    assert_eq!(Tracking::of(&drill).alerts.len(), 1);
    // Later: a backlog the drill caused and a real delivery error. Each joins its own kind.
    let backlog = alert("queue_backlog", Severity::Warning, "maelys", "", 5);
    let errors = alert("delivery_errors", Severity::Warning, "maelys", "", 5);
    let book = [stalled("maelys", 3), stopped, backlog, errors];
    let wrote = w.step(6, &book, &[]);
    assert_eq!(wrote.writes.len(), 2);
    let (drill, real) = by_kind(&w);
    let rules = |i: &Incident| -> Vec<String> {
        Tracking::of(i)
            .alerts
            .values()
            .map(|a| a.rule.clone())
            .collect()
    };
    let (mut d, mut r) = (rules(&drill), rules(&real));
    d.sort();
    r.sort();
    assert_eq!(d, ["queue_backlog", "queue_stalled"]);
    assert_eq!(r, ["delivery_errors", "inbound_stopped"]);
}

#[test]
fn a_drill_alert_declares_its_own_incident_beside_an_open_real_one() {
    let mut w = World::new(AUTO);
    // A real stall first (before any drill), then a drill on the same source: the real
    // incident stays real, the drill's stall declares a drill incident of its own.
    w.step(3, &[stalled("maelys", 3)], &[]);
    w.drills.push(queue_stall_drill(20, 30));
    let drill_stall = alert("queue_backlog", Severity::Warning, "maelys", "", 22);
    let canary = alert("canary_failed", Severity::Critical, "maelys", "", 23);
    let wrote = w.step(23, &[stalled("maelys", 3), drill_stall, canary], &[]);
    assert_eq!(
        wrote.writes.len(),
        1,
        "declared, and the real one is untouched"
    );
    assert_eq!(wrote.writes[0].expected_version, None);
    assert!(wrote.notices_to().is_empty());
    let (drill, real) = by_kind(&w);
    assert_eq!(drill.impact_start, Timestamp(T0 + 20 * MIN));
    assert_eq!(Tracking::of(&drill).alerts.len(), 2);
    assert_eq!(Tracking::of(&real).alerts.len(), 1);
}

#[test]
fn an_alert_active_before_the_drill_began_is_real() {
    let mut w = World::new(AUTO);
    w.drills.push(queue_stall_drill(2, 10));
    // Active since minute 1: a real problem the drill did not cause.
    let wrote = w.step(3, &[stalled("maelys", 3)], &[]);
    assert_eq!(wrote.notices_to(), ["contact:maelys:0"]);
    assert_eq!(w.only().drill, None);
    assert_eq!(w.only().title, "Webhook processing stalled");
}

/// The drill incident and the real one of a world that has exactly one of each.
fn by_kind(w: &World) -> (Incident, Incident) {
    assert_eq!(w.incidents.len(), 2, "{:#?}", w.incidents);
    let drill = w.incidents.iter().find(|i| i.drill.is_some()).unwrap();
    let real = w.incidents.iter().find(|i| i.drill.is_none()).unwrap();
    (drill.clone(), real.clone())
}
