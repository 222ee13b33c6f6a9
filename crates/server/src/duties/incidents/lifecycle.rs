//! A person's requests — declare, update, resolve — checked against the configuration and the
//! incident as stored, into the write that records the step and sends its notices. Pure: the
//! checks run in a fixed order and the first that fails is the answer, with a message that
//! says what to change.

use std::collections::BTreeSet;

use intake_core::config::Config;
use intake_core::event::Channel;
use intake_core::incident::{mentions, IncidentSeverity, IncidentState};
use intake_core::Timestamp;
use intake_notify::IncidentStatus;
use intake_store::{Incident, IncidentWrite, NewIncidentEntry, NewNotification};
use serde::Deserialize;
use serde_json::json;

use super::notices::Notices;
use super::{Refusal, Tracking};

/// The longest title.
const MAX_TITLE: usize = 200;
/// The longest message.
const MAX_MESSAGE: usize = 4000;
/// How far in the future an impact start may be (clocks of people and servers differ).
const CLOCK_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

/// The message of a declaration that says nothing more.
pub const DEFAULT_DECLARE_MESSAGE: &str = "We are aware of the problem and are working on it.";
/// The message of a resolution that says nothing more.
pub const DEFAULT_RESOLVE_MESSAGE: &str =
    "The problem is fixed and everything works normally again.";

/// The body of `POST /api/v1/incidents`.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeclareIncident)]
pub struct DeclareRequest {
    /// What is wrong, in a few words (tenants read it: name no tenant when there are several).
    pub title: Option<String>,
    /// The tenants affected (at least one).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The sources affected (of those tenants; none: all their sources).
    #[serde(default)]
    pub sources: Vec<String>,
    /// The channels affected (`email`, `chat`, `sms`, `voice`, `social`, `other`; none: all).
    #[serde(default)]
    pub channels: Vec<String>,
    /// `critical`, `major` (the default) or `minor`.
    pub severity: Option<String>,
    /// When the impact began (RFC 3339; default: now). May be before the declaration.
    pub impact_start: Option<String>,
    /// Who leads the response.
    pub commander: Option<String>,
    /// What to tell on-call and the tenants now.
    pub message: Option<String>,
    /// Who declares it (default: `operator`).
    pub author: Option<String>,
}

/// The body of `POST /api/v1/incidents/{id}/updates`.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateIncident)]
pub struct UpdateRequest {
    /// The new status: `investigating`, `identified` or `monitoring` (resolving is its own
    /// request). Unchanged when absent.
    pub status: Option<String>,
    /// What changed (required): on-call and every tenant read it.
    pub message: Option<String>,
    /// A new lead.
    pub commander: Option<String>,
    /// A new severity.
    pub severity: Option<String>,
    /// Who writes it (default: `operator`).
    pub author: Option<String>,
}

/// The body of `POST /api/v1/incidents/{id}/resolve`.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResolveIncident)]
pub struct ResolveRequest {
    /// What to tell on-call and the tenants.
    pub message: Option<String>,
    /// Who resolves it (default: `operator`).
    pub author: Option<String>,
}

/// Who wrote a request: its `author`, else `operator`.
pub fn author_of(author: Option<&str>) -> String {
    author
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.chars().take(MAX_TITLE).collect())
        .unwrap_or_else(|| "operator".into())
}

/// A new incident from a person's declaration, told at once to on-call and to every affected
/// tenant's contacts.
pub(crate) fn declare(
    req: &DeclareRequest,
    config: &Config,
    id: &str,
    author: &str,
    notices: &Notices<'_>,
) -> Result<IncidentWrite, Refusal> {
    let now = notices.now;
    let title = text(req.title.as_deref(), "title", MAX_TITLE)?.ok_or_else(|| {
        Refusal::bad(
            "missing-title",
            "`title` is required: say what is wrong in a few words",
        )
    })?;
    let tenants = tenants(&req.tenants, config)?;
    let sources = sources(&req.sources, &tenants, config)?;
    let channels = channels(&req.channels)?;
    let severity = match req.severity.as_deref() {
        None => IncidentSeverity::Major,
        Some(s) => severity(s)?,
    };
    let impact_start = match req.impact_start.as_deref() {
        None => now,
        Some(t) => time("impact_start", t)?,
    };
    if impact_start > now.plus(CLOCK_SLACK) {
        return Err(Refusal::bad(
            "invalid-time",
            format!(
                "`impact_start` {} is after now ({}): the impact start is when tenants began to be affected",
                impact_start, now
            ),
        ));
    }
    let commander = text(req.commander.as_deref(), "commander", MAX_TITLE)?;
    let message = text(req.message.as_deref(), "message", MAX_MESSAGE)?
        .unwrap_or_else(|| DEFAULT_DECLARE_MESSAGE.to_string());
    no_other_tenant(
        config,
        &tenants,
        &[("title", &title), ("message", &message)],
    )?;
    let mut incident = Incident {
        id: id.to_string(),
        title,
        severity,
        status: IncidentState::Investigating,
        tenants: tenants.clone(),
        sources,
        channels,
        commander,
        impact_start,
        declared_at: now,
        declared_by: author.to_string(),
        updated_at: now,
        resolved_at: None,
        next_update_at: Some(now.plus(config.incidents.update_every.0)),
        tracking: serde_json::Value::Null,
        drill: None,
        version: 1,
    };
    let mut tracking = Tracking {
        touched: true,
        ..Tracking::default()
    };
    let mut out = notices.oncall(&incident, IncidentStatus::Declared, &message);
    for t in &tenants {
        out.extend(notices.tenant(&incident, t, IncidentStatus::Declared, true, &message));
        tracking.told.insert(t.clone());
    }
    incident.tracking = tracking.to_json();
    let entry = NewIncidentEntry {
        at: now,
        kind: "declared".into(),
        author: Some(author.to_string()),
        text: message,
        detail: json!({
            "status": IncidentState::Investigating,
            "severity": severity,
            "tenants": tenants,
            "impact_start": impact_start,
            "without_contacts": without_contacts(config, &tenants),
        }),
    };
    Ok(IncidentWrite {
        incident,
        expected_version: None,
        entries: vec![entry],
        notices: out,
    })
}

/// An update of an open incident: a new status, lead or severity and a message, told to
/// on-call and to every affected tenant (introduced to those not told yet).
pub(crate) fn update(
    stored: &Incident,
    req: &UpdateRequest,
    author: &str,
    notices: &Notices<'_>,
) -> Result<IncidentWrite, Refusal> {
    let now = notices.now;
    let message = text(req.message.as_deref(), "message", MAX_MESSAGE)?.ok_or_else(|| {
        Refusal::bad(
            "missing-message",
            "`message` is required: say what changed (tenants read it)",
        )
    })?;
    let status = match req.status.as_deref() {
        None => stored.status,
        Some(s) => IncidentState::parse(s).ok_or_else(|| {
            Refusal::bad(
                "invalid-status",
                format!("`status`: `{s}` is not a status (investigating, identified, monitoring; resolve with `intake incident resolve`)"),
            )
        })?,
    };
    if let Err(e) = stored.status.check_update(status) {
        return Err(match stored.status {
            IncidentState::Resolved => resolved_already(stored),
            _ => Refusal::bad(
                "invalid-transition",
                format!("incident `{}`: {e}", stored.id),
            ),
        });
    }
    let severity = match req.severity.as_deref() {
        None => stored.severity,
        Some(s) => severity(s)?,
    };
    let commander = text(req.commander.as_deref(), "commander", MAX_TITLE)?;
    no_other_tenant(notices.config, &stored.tenants, &[("message", &message)])?;
    let mut incident = stored.clone();
    incident.status = status;
    incident.severity = severity;
    if commander.is_some() {
        incident.commander = commander;
    }
    incident.updated_at = now;
    incident.next_update_at = Some(now.plus(notices.config.incidents.update_every.0));
    let mut tracking = Tracking::of(stored);
    tracking.touched = true;
    let mut out = notices.oncall(&incident, IncidentStatus::Updated, &message);
    // A drill incident's tenants hear of it only when drills are told to tenants.
    let tenants_hear = notices.tenants_hear(&incident);
    for t in incident.tenants.iter().filter(|_| tenants_hear) {
        let first = !tracking.told.contains(t);
        out.extend(notices.tenant(&incident, t, IncidentStatus::Updated, first, &message));
        tracking.told.insert(t.clone());
    }
    incident.tracking = tracking.to_json();
    let entry = NewIncidentEntry {
        at: now,
        kind: "update".into(),
        author: Some(author.to_string()),
        text: message,
        detail: json!({
            "status": status,
            "previous_status": stored.status,
            "severity": severity,
            "commander": incident.commander,
            "tenants_held_for_drill": !tenants_hear,
        }),
    };
    Ok(write(stored, incident, entry, out))
}

/// The resolution of an open incident, told to on-call and to the tenants that were told of
/// it (a tenant never told of an incident is not told it is over).
pub(crate) fn resolve(
    stored: &Incident,
    req: &ResolveRequest,
    author: &str,
    notices: &Notices<'_>,
) -> Result<IncidentWrite, Refusal> {
    if stored.status == IncidentState::Resolved {
        return Err(resolved_already(stored));
    }
    let message = text(req.message.as_deref(), "message", MAX_MESSAGE)?
        .unwrap_or_else(|| DEFAULT_RESOLVE_MESSAGE.to_string());
    no_other_tenant(notices.config, &stored.tenants, &[("message", &message)])?;
    let mut tracking = Tracking::of(stored);
    tracking.touched = true;
    let (incident, out) = resolved(stored, &tracking, &message, notices);
    let entry = NewIncidentEntry {
        at: notices.now,
        kind: "resolved".into(),
        author: Some(author.to_string()),
        text: message,
        detail: json!({ "previous_status": stored.status }),
    };
    Ok(write(stored, incident, entry, out))
}

/// `stored` resolved now with `tracking`, and the notices that say so: on-call's, and each
/// told tenant's.
pub(crate) fn resolved(
    stored: &Incident,
    tracking: &Tracking,
    message: &str,
    notices: &Notices<'_>,
) -> (Incident, Vec<NewNotification>) {
    let mut incident = stored.clone();
    incident.status = IncidentState::Resolved;
    incident.resolved_at = Some(notices.now);
    incident.updated_at = notices.now;
    incident.next_update_at = None;
    incident.tracking = tracking.to_json();
    let mut out = notices.oncall(&incident, IncidentStatus::Resolved, message);
    for t in incident
        .tenants
        .iter()
        .filter(|t| tracking.told.contains(*t))
    {
        out.extend(notices.tenant(&incident, t, IncidentStatus::Resolved, false, message));
    }
    (incident, out)
}

fn write(
    stored: &Incident,
    incident: Incident,
    entry: NewIncidentEntry,
    notices: Vec<NewNotification>,
) -> IncidentWrite {
    IncidentWrite {
        incident,
        expected_version: Some(stored.version),
        entries: vec![entry],
        notices,
    }
}

fn resolved_already(stored: &Incident) -> Refusal {
    Refusal::conflict(
        "incident-resolved",
        format!(
            "incident `{}` was resolved at {}; a new outage is a new incident (intake incident declare)",
            stored.id,
            stored.resolved_at.unwrap_or(stored.updated_at)
        ),
    )
}

/// A text field: trimmed, `None` when absent or blank, refused when longer than `max`.
fn text(value: Option<&str>, field: &str, max: usize) -> Result<Option<String>, Refusal> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(Refusal::bad(
            "invalid-body",
            format!("`{field}` is longer than {max} characters"),
        ));
    }
    Ok(Some(v.to_string()))
}

fn tenants(asked: &[String], config: &Config) -> Result<Vec<String>, Refusal> {
    if asked.is_empty() {
        return Err(Refusal::bad(
            "missing-tenant",
            "name at least one affected tenant (`tenants`, or --tenant ID)",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for t in asked {
        if config.tenant(t).is_none() {
            let known: Vec<&str> = config.tenants.iter().map(|t| t.id.as_str()).collect();
            return Err(Refusal::bad(
                "unknown-tenant",
                format!("unknown tenant `{t}` (known: {})", known.join(", ")),
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn sources(asked: &[String], tenants: &[String], config: &Config) -> Result<Vec<String>, Refusal> {
    let mut out: Vec<String> = Vec::new();
    for s in asked {
        let Some(source) = config.source(s) else {
            return Err(Refusal::bad(
                "unknown-source",
                format!("unknown source `{s}`"),
            ));
        };
        if !tenants.contains(&source.tenant) {
            return Err(Refusal::bad(
                "source-outside-incident",
                format!(
                    "source `{s}` belongs to tenant `{}`, which the incident does not name (add --tenant {})",
                    source.tenant, source.tenant
                ),
            ));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn channels(asked: &[String]) -> Result<Vec<String>, Refusal> {
    let mut out = BTreeSet::new();
    for c in asked {
        if !Channel::ALL.iter().any(|k| k.as_str() == c) {
            let known: Vec<&str> = Channel::ALL.iter().map(|k| k.as_str()).collect();
            return Err(Refusal::bad(
                "invalid-channel",
                format!("`{c}` is not a channel ({})", known.join(", ")),
            ));
        }
        out.insert(c.clone());
    }
    Ok(out.into_iter().collect())
}

fn severity(s: &str) -> Result<IncidentSeverity, Refusal> {
    IncidentSeverity::parse(s).ok_or_else(|| {
        Refusal::bad(
            "invalid-severity",
            format!("`severity`: `{s}` is not one of critical, major, minor"),
        )
    })
}

/// An RFC 3339 time of the request.
pub fn time(field: &str, value: &str) -> Result<Timestamp, Refusal> {
    Timestamp::parse_rfc3339(value.trim()).map_err(|_| {
        Refusal::bad(
            "invalid-time",
            format!("`{field}`: `{value}` is not an RFC 3339 time (e.g. 2026-11-28T09:40:00Z)"),
        )
    })
}

/// Refuses a text that names a configured tenant (its id or name) that is not the incident's
/// only tenant: every affected tenant reads it, and a tenant's notice never mentions another.
fn no_other_tenant(
    config: &Config,
    tenants: &[String],
    texts: &[(&str, &str)],
) -> Result<(), Refusal> {
    for t in &config.tenants {
        if tenants.len() == 1 && tenants[0] == t.id {
            continue;
        }
        let names = std::iter::once(t.id.as_str()).chain(t.name.as_deref());
        for name in names {
            for (field, text) in texts {
                if mentions(text, name) {
                    return Err(Refusal::bad(
                        "names-a-tenant",
                        format!(
                            "the {field} names tenant `{name}`; every affected tenant reads it and a tenant's notice never mentions another tenant: write it without tenant names (each tenant's notice names only that tenant)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The tenants that have no contact to tell.
fn without_contacts(config: &Config, tenants: &[String]) -> Vec<String> {
    tenants
        .iter()
        .filter(|t| config.tenant(t).is_some_and(|c| c.contacts.is_empty()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_notify::LinkBuilder;

    const NOW: &str = "2026-11-28T10:00:00Z";

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[tenants]]
id = "maelys"
name = "Maelys"
contacts = [{ kind = "webhook", url = "https://status.maelys.example/hook" }]

[[tenants]]
id = "acme"
name = "Acme Corp"
contacts = [{ kind = "email", to = "ops@acme.example" }]

[[tenants]]
id = "quiet"

[[destinations]]
id = "h"
url = "http://127.0.0.1:9/"
secret = "whsec_dGVzdC1kZXN0aW5hdGlvbi1zZWNyZXQ="

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["x"]
destinations = ["h"]
"#,
        )
        .unwrap()
    }

    fn req(tenants: &[&str]) -> DeclareRequest {
        DeclareRequest {
            title: Some("Webhooks delayed".into()),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            ..DeclareRequest::default()
        }
    }

    fn run(
        f: impl FnOnce(&Notices<'_>) -> Result<IncidentWrite, Refusal>,
    ) -> Result<IncidentWrite, Refusal> {
        let config = config();
        let links = LinkBuilder::default();
        let n = Notices {
            config: &config,
            links: &links,
            oncall: &[],
            now: Timestamp::parse_rfc3339(NOW).unwrap(),
        };
        f(&n)
    }

    fn declared(tenants: &[&str]) -> Incident {
        run(|n| declare(&req(tenants), n.config, "inc_1", "operator", n))
            .unwrap()
            .incident
    }

    #[test]
    fn a_declaration_tells_every_tenant_at_once_and_records_who_has_no_contact() {
        let w = run(|n| {
            declare(
                &req(&["maelys", "acme", "quiet"]),
                n.config,
                "inc_1",
                "alice",
                n,
            )
        })
        .unwrap();
        assert_eq!(w.expected_version, None);
        assert_eq!(w.incident.status, IncidentState::Investigating);
        assert_eq!(w.incident.severity, IncidentSeverity::Major);
        assert_eq!(
            w.incident.impact_start,
            Timestamp::parse_rfc3339(NOW).unwrap()
        );
        let to: Vec<(&str, Option<&str>)> = w
            .notices
            .iter()
            .map(|n| (n.notifier.as_str(), n.tenant.as_deref()))
            .collect();
        assert_eq!(
            to,
            [
                ("contact:maelys:0", Some("maelys")),
                ("contact:acme:0", Some("acme"))
            ]
        );
        assert_eq!(w.entries[0].detail["without_contacts"], json!(["quiet"]));
        let t = Tracking::of(&w.incident);
        assert!(t.touched && t.told.len() == 3);
    }

    #[test]
    fn bad_declarations_are_refused_with_what_to_change() {
        let with = |f: &dyn Fn(&mut DeclareRequest)| {
            let mut r = req(&["maelys"]);
            f(&mut r);
            run(|n| declare(&r, n.config, "inc_1", "alice", n)).unwrap_err()
        };
        let cases: Vec<(&str, Refusal)> = vec![
            ("missing-title", with(&|r| r.title = Some("  ".into()))),
            ("missing-tenant", with(&|r| r.tenants.clear())),
            (
                "unknown-tenant",
                with(&|r| r.tenants = vec!["nobody".into()]),
            ),
            ("unknown-source", with(&|r| r.sources = vec!["nope".into()])),
            (
                "source-outside-incident",
                with(&|r| {
                    r.tenants = vec!["acme".into()];
                    r.sources = vec!["maelys-kustomer".into()];
                }),
            ),
            (
                "invalid-channel",
                with(&|r| r.channels = vec!["fax".into()]),
            ),
            (
                "invalid-severity",
                with(&|r| r.severity = Some("sev1".into())),
            ),
            (
                "invalid-time",
                with(&|r| r.impact_start = Some("yesterday".into())),
            ),
            (
                "invalid-time",
                with(&|r| r.impact_start = Some("2026-11-28T11:00:00Z".into())),
            ),
            (
                "names-a-tenant",
                with(&|r| {
                    r.tenants = vec!["maelys".into(), "acme".into()];
                    r.title = Some("Maelys and others delayed".into());
                }),
            ),
            (
                "names-a-tenant",
                with(&|r| r.message = Some("Acme Corp is affected too".into())),
            ),
        ];
        for (slug, refusal) in cases {
            assert_eq!(refusal.slug, slug, "{refusal:?}");
            assert_eq!(refusal.status, 400);
        }
        // Its own name is fine in a single tenant's incident.
        let mut r = req(&["maelys"]);
        r.message = Some("Maelys' chats are late".into());
        assert!(run(|n| declare(&r, n.config, "inc_1", "alice", n)).is_ok());
        let e = with(&|r| r.impact_start = Some("yesterday".into()));
        assert!(e.detail.contains("RFC 3339"), "{e:?}");
    }

    #[test]
    fn updates_move_between_open_statuses_and_resolution_is_its_own_step() {
        let stored = declared(&["maelys"]);
        let upd = |status: &str| UpdateRequest {
            status: Some(status.into()),
            message: Some("Found it.".into()),
            ..UpdateRequest::default()
        };
        let w = run(|n| update(&stored, &upd("identified"), "alice", n)).unwrap();
        assert_eq!(w.incident.status, IncidentState::Identified);
        assert_eq!(w.expected_version, Some(1));
        assert_eq!(w.notices.len(), 1, "the tenant's contact again");
        let e = run(|n| update(&stored, &upd("resolved"), "alice", n)).unwrap_err();
        assert_eq!((e.status, e.slug), (400, "invalid-transition"));
        let e = run(|n| update(&stored, &upd("fixed"), "alice", n)).unwrap_err();
        assert_eq!(e.slug, "invalid-status");
        let e = run(|n| update(&stored, &UpdateRequest::default(), "alice", n)).unwrap_err();
        assert_eq!(e.slug, "missing-message");

        let done = run(|n| resolve(&stored, &ResolveRequest::default(), "alice", n)).unwrap();
        assert_eq!(done.incident.status, IncidentState::Resolved);
        assert_eq!(done.entries[0].text, DEFAULT_RESOLVE_MESSAGE);
        let again =
            run(|n| resolve(&done.incident, &ResolveRequest::default(), "alice", n)).unwrap_err();
        assert_eq!((again.status, again.slug), (409, "incident-resolved"));
        let late = run(|n| update(&done.incident, &upd("monitoring"), "alice", n)).unwrap_err();
        assert_eq!((late.status, late.slug), (409, "incident-resolved"));
    }

    #[test]
    fn a_resolution_tells_only_the_tenants_that_were_told() {
        let mut stored = declared(&["maelys", "acme"]);
        let mut t = Tracking::of(&stored);
        t.told.remove("acme");
        stored.tracking = t.to_json();
        let done = run(|n| resolve(&stored, &ResolveRequest::default(), "alice", n)).unwrap();
        let tenants: Vec<Option<&str>> = done.notices.iter().map(|n| n.tenant.as_deref()).collect();
        assert_eq!(tenants, [Some("maelys")]);
    }
}
