//! The pipeline as a table of stories: each step is one evaluation (the alert book and
//! silences at a minute), run through [`decide`] against the incidents as the previous steps'
//! writes left them (as the store would: a write applies only at the version it read).

use std::collections::BTreeMap;

use intake_core::config::Config;
use intake_monitor::{AlertKey, Labels};
use intake_notify::LinkBuilder;

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

/// The incidents after each step, as the store keeps them.
struct World {
    config: Config,
    incidents: Vec<Incident>,
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
        let writes = decide(book, silences, &self.incidents, &notices, &mut new_id);
        for w in &writes {
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
        Wrote { writes }
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
