//! A drill request (`POST /api/v1/drills`, or a `[[drills]]` schedule falling due) checked
//! into a new drill, as a pure function tested with a table: a known scenario, the one target
//! it takes, configured, a bound between a second and a day, and no other drill running on
//! the same target.

use std::time::Duration;

use intake_core::config::{Config, DrillConfig};
use std::collections::BTreeMap;

use intake_core::drill::{DrillScope, Scenario, TargetKind, DEFAULT_FOR, MAX_FOR};
use intake_core::{DrillId, Timestamp};
use intake_store::{Drill, DrillState, DrillTrigger};
use serde::Deserialize;
use utoipa::ToSchema;

use super::decide::DrillReport;

/// What `POST /api/v1/drills` asks.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    /// `queue-stall`, `handler-down`, `flow-stop` or `notifier-down`.
    pub scenario: String,
    /// The source (`queue-stall`, `flow-stop`).
    #[serde(default)]
    pub source: Option<String>,
    /// The destination (`handler-down`).
    #[serde(default)]
    pub destination: Option<String>,
    /// The notifier (`notifier-down`).
    #[serde(default)]
    pub notifier: Option<String>,
    /// How long the fault may last at most, e.g. `"5m"` (the default); the drill heals as
    /// soon as its alert was notified.
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
}

/// Why a request cannot become a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status it deserves: 400, 404 (an unknown target) or 409 (a drill running on
    /// the same target).
    pub status: u16,
    /// The problem's `type` slug.
    pub slug: &'static str,
    /// What is wrong and what to do.
    pub detail: String,
}

fn refuse(status: u16, slug: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        slug,
        detail: detail.into(),
    }
}

/// Who starts a drill and why.
pub struct Origin<'a> {
    /// Manual or scheduled.
    pub trigger: DrillTrigger,
    /// The schedule's key, for a scheduled drill.
    pub schedule: Option<String>,
    /// Who asked (`operator`, `schedule`).
    pub by: &'a str,
}

/// An alert active now (pending or firing): its rule and labels.
pub type ActiveAlert = (String, BTreeMap<String, String>);

/// For `handler-down` of `target`, the sources routed to it: their canaries cross it.
pub fn routed_sources(config: &Config, scenario: Scenario, target: &str) -> Vec<String> {
    if scenario != Scenario::HandlerDown {
        return Vec::new();
    }
    config
        .sources
        .iter()
        .filter(|s| s.destinations.iter().any(|d| d == target))
        .map(|s| s.id.clone())
        .collect()
}

/// Checks `req` against the configuration, the drills `running` now and the alerts `active`
/// now, into a new drill starting at `now`.
pub fn check(
    req: &DrillRequest,
    config: &Config,
    running: &[Drill],
    active: &[ActiveAlert],
    origin: Origin<'_>,
    now: Timestamp,
) -> Result<Drill, Refusal> {
    let scenario = Scenario::parse(&req.scenario).ok_or_else(|| {
        refuse(
            400,
            "unknown-scenario",
            format!(
                "unknown scenario `{}` (scenarios: {})",
                req.scenario,
                Scenario::names()
            ),
        )
    })?;
    let target = target(scenario, req, config)?;
    let bound = match &req.for_ {
        None => DEFAULT_FOR,
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            refuse(
                400,
                "invalid-duration",
                format!("`for`: `{text}` is not a duration ({e}); write e.g. \"5m\""),
            )
        })?,
    };
    if bound < Duration::from_secs(1) || bound > MAX_FOR {
        return Err(refuse(
            400,
            "invalid-duration",
            format!(
                "`for` must be between 1s and {}: a drill is a bounded test",
                humantime::format_duration(MAX_FOR)
            ),
        ));
    }
    let kind = scenario.target_kind();
    if let Some(busy) = running
        .iter()
        .find(|d| d.scenario.target_kind() == kind && d.target == target)
    {
        return Err(refuse(
            409,
            "drill-running",
            format!(
                "drill {} ({}) is running on {} `{target}` until {} at the latest; wait for it or cancel it (intake drill cancel {})",
                busy.id,
                busy.scenario,
                kind.as_str(),
                busy.expires_at,
                busy.id
            ),
        ));
    }
    // A drill proves that an alert fires: one already active (a real problem, or a previous
    // drill's alert not yet resolved) would hide it.
    let scope = DrillScope {
        id: String::new(),
        scenario,
        target: target.clone(),
        routed_sources: routed_sources(config, scenario, &target),
        from: now,
        until: None,
        grace: Duration::ZERO,
    };
    if let Some((rule, labels)) = active.iter().find(|(r, l)| scope.covers(r, l)) {
        let who: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(refuse(
            409,
            "alert-active",
            format!(
                "{rule} is already active for {}: a drill proves that an alert fires and is notified, and this one would hide it; wait until it resolves (intake status, GET /api/v1/alerts)",
                who.join(", ")
            ),
        ));
    }
    let expires_at = now.plus(bound);
    let tenant = match kind {
        TargetKind::Source => config.source(&target).map(|s| s.tenant.clone()),
        _ => None,
    };
    Ok(Drill {
        id: DrillId::generate(now).to_string(),
        scenario,
        report: DrillReport::start(scenario, &target, expires_at).to_json(),
        target,
        tenant,
        trigger: origin.trigger,
        schedule: origin.schedule,
        state: DrillState::Running,
        created_by: origin.by.to_string(),
        started_at: now,
        expires_at,
        detected_at: None,
        notified_at: None,
        healed_at: None,
    })
}

/// The one target `scenario` takes, named and configured.
fn target(scenario: Scenario, req: &DrillRequest, config: &Config) -> Result<String, Refusal> {
    let takes = scenario.target_kind();
    let given = [
        (TargetKind::Source, &req.source),
        (TargetKind::Destination, &req.destination),
        (TargetKind::Notifier, &req.notifier),
    ];
    if let Some((other, _)) = given.iter().find(|(k, v)| *k != takes && v.is_some()) {
        return Err(refuse(
            400,
            "unexpected-target",
            format!(
                "{scenario} is run on a {}, not a {}: give `{}` only",
                takes.as_str(),
                other.as_str(),
                takes.as_str()
            ),
        ));
    }
    let Some(Some(id)) = given.iter().find(|(k, _)| *k == takes).map(|(_, v)| *v) else {
        return Err(refuse(
            400,
            "missing-target",
            format!(
                "{scenario} needs `{0}`: the {0} it is run on (intake drill {scenario} --{0} ID)",
                takes.as_str()
            ),
        ));
    };
    let known = match takes {
        TargetKind::Source => config.source(id).is_some(),
        TargetKind::Destination => config.destination(id).is_some(),
        TargetKind::Notifier => config.notifier(id).is_some(),
    };
    if !known {
        let (slug, ids): (&'static str, Vec<&str>) = match takes {
            TargetKind::Source => (
                "no-such-source",
                config.sources.iter().map(|s| s.id.as_str()).collect(),
            ),
            TargetKind::Destination => (
                "no-such-destination",
                config.destinations.iter().map(|d| d.id.as_str()).collect(),
            ),
            TargetKind::Notifier => (
                "no-such-notifier",
                config.notifiers.iter().map(|n| n.id.as_str()).collect(),
            ),
        };
        let known = if ids.is_empty() {
            "none is configured".to_string()
        } else {
            format!("configured: {}", ids.join(", "))
        };
        return Err(refuse(
            404,
            slug,
            format!("no {} `{id}` ({known})", takes.as_str()),
        ));
    }
    Ok(id.clone())
}

/// The request a `[[drills]]` entry makes when it falls due.
pub fn scheduled(entry: &DrillConfig) -> DrillRequest {
    DrillRequest {
        scenario: entry.scenario.clone(),
        source: entry.source.clone(),
        destination: entry.destination.clone(),
        notifier: entry.notifier.clone(),
        for_: entry
            .for_
            .map(|d| humantime::format_duration(d.0).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[tenants]]
id = "t"
[[destinations]]
id = "d"
url = "http://127.0.0.1:9/h"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[sources]]
id = "s"
tenant = "t"
kind = "kustomer"
secrets = ["x"]
destinations = ["d"]
[[notifiers]]
id = "n"
kind = "webhook"
url = "http://127.0.0.1:9/n"
"#,
        )
        .unwrap()
    }

    fn req(
        scenario: &str,
        source: Option<&str>,
        destination: Option<&str>,
        for_: Option<&str>,
    ) -> DrillRequest {
        DrillRequest {
            scenario: scenario.into(),
            source: source.map(Into::into),
            destination: destination.map(Into::into),
            notifier: None,
            for_: for_.map(Into::into),
        }
    }

    fn manual() -> Origin<'static> {
        Origin {
            trigger: DrillTrigger::Manual,
            schedule: None,
            by: "operator",
        }
    }

    #[test]
    fn requests_become_drills_or_precise_refusals() {
        let c = config();
        let ok = check(
            &req("queue-stall", Some("s"), None, None),
            &c,
            &[],
            &[],
            manual(),
            T0,
        )
        .unwrap();
        assert!(ok.id.starts_with("drl_"));
        assert_eq!(
            (ok.scenario, ok.target.as_str()),
            (Scenario::QueueStall, "s")
        );
        assert_eq!(ok.tenant.as_deref(), Some("t"));
        assert_eq!(ok.state, DrillState::Running);
        assert_eq!(ok.expires_at, T0.plus(DEFAULT_FOR));
        assert_eq!(ok.report["expected"][0], "canary_failed");
        let d = check(
            &req("handler-down", None, Some("d"), Some("90s")),
            &c,
            &[],
            &[],
            manual(),
            T0,
        )
        .unwrap();
        assert_eq!(d.tenant, None, "a destination belongs to no tenant");
        assert_eq!(d.expires_at, T0.plus(Duration::from_secs(90)));

        // (case, request, status, slug, start of the detail)
        let cases = [
            ("unknown scenario", req("queue-stal", Some("s"), None, None), 400, "unknown-scenario",
             "unknown scenario `queue-stal` (scenarios: queue-stall, handler-down, flow-stop, notifier-down)"),
            ("no source", req("queue-stall", None, None, None), 400, "missing-target",
             "queue-stall needs `source`: the source it is run on (intake drill queue-stall --source ID)"),
            ("unknown source", req("flow-stop", Some("zz"), None, None), 404, "no-such-source",
             "no source `zz` (configured: s)"),
            ("unknown destination", req("handler-down", None, Some("x"), None), 404, "no-such-destination",
             "no destination `x` (configured: d)"),
            ("wrong target", req("flow-stop", Some("s"), Some("d"), None), 400, "unexpected-target",
             "flow-stop is run on a source, not a destination"),
            ("bad bound", req("queue-stall", Some("s"), None, Some("soon")), 400, "invalid-duration",
             "`for`: `soon` is not a duration"),
            ("too long", req("queue-stall", Some("s"), None, Some("2days")), 400, "invalid-duration",
             "`for` must be between 1s and 1day"),
        ];
        for (name, r, status, slug, detail) in cases {
            let e = check(&r, &c, &[], &[], manual(), T0).unwrap_err();
            assert_eq!((e.status, e.slug), (status, slug), "{name}: {e:?}");
            assert!(e.detail.starts_with(detail), "{name}: {}", e.detail);
        }
        let n = DrillRequest {
            notifier: Some("nope".into()),
            ..req("notifier-down", None, None, None)
        };
        let e = check(&n, &c, &[], &[], manual(), T0).unwrap_err();
        assert_eq!(
            (e.status, e.detail.as_str()),
            (404, "no notifier `nope` (configured: n)")
        );
    }

    #[test]
    fn one_drill_at_a_time_per_target() {
        let c = config();
        let running = check(
            &req("flow-stop", Some("s"), None, None),
            &c,
            &[],
            &[],
            manual(),
            T0,
        )
        .unwrap();
        let e = check(
            &req("queue-stall", Some("s"), None, None),
            &c,
            std::slice::from_ref(&running),
            &[],
            manual(),
            T0,
        )
        .unwrap_err();
        assert_eq!((e.status, e.slug), (409, "drill-running"));
        assert!(e.detail.contains(&running.id), "{}", e.detail);
        // Another kind of target with the same name is another target.
        assert!(check(
            &req("handler-down", None, Some("d"), None),
            &c,
            &[running],
            &[],
            manual(),
            T0
        )
        .is_ok());
    }

    #[test]
    fn an_alert_already_active_in_the_scope_refuses_the_drill() {
        let c = config();
        let active = |rule: &str, pairs: &[(&str, &str)]| -> ActiveAlert {
            (
                rule.to_string(),
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let firing = [
            active("canary_failed", &[("tenant", "t"), ("source", "s")]),
            active("source_gap", &[("tenant", "t"), ("source", "s")]),
        ];
        let e = check(
            &req("queue-stall", Some("s"), None, None),
            &c,
            &[],
            &firing,
            manual(),
            T0,
        )
        .unwrap_err();
        assert_eq!((e.status, e.slug), (409, "alert-active"));
        assert!(
            e.detail
                .starts_with("canary_failed is already active for source=s, tenant=t"),
            "{}",
            e.detail
        );
        // handler-down of `d`: the canary of a source routed to it counts too.
        let e = check(
            &req("handler-down", None, Some("d"), None),
            &c,
            &[],
            &firing,
            manual(),
            T0,
        )
        .unwrap_err();
        assert_eq!(e.slug, "alert-active");
        // Not in the scenario's expected alerts: no objection.
        let gap = [active("source_gap", &[("tenant", "t"), ("source", "s")])];
        assert!(check(
            &req("flow-stop", Some("s"), None, None),
            &c,
            &[],
            &gap,
            manual(),
            T0
        )
        .is_ok());
    }

    #[test]
    fn a_schedule_asks_what_its_entry_says() {
        let mut c = config();
        c.drills = Config::from_toml_str(
            "[[tenants]]\nid = \"t\"\n[[destinations]]\nid = \"d\"\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n[[sources]]\nid = \"s\"\ntenant = \"t\"\nkind = \"kustomer\"\nsecrets = [\"x\"]\ndestinations = [\"d\"]\n[[drills]]\nscenario = \"queue-stall\"\nsource = \"s\"\nschedule = \"daily\"\nfor = \"4m\"\n",
        )
        .unwrap()
        .drills;
        let entry = &c.drills[0];
        let origin = Origin {
            trigger: DrillTrigger::Scheduled,
            schedule: Some(entry.key()),
            by: "schedule",
        };
        let d = check(&scheduled(entry), &c, &[], &[], origin, T0).unwrap();
        assert_eq!(d.trigger, DrillTrigger::Scheduled);
        assert_eq!(d.schedule.as_deref(), Some("queue-stall:s"));
        assert_eq!(d.expires_at, T0.plus(Duration::from_secs(240)));
    }
}
