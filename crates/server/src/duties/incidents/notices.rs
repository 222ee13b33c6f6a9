//! The notices of one step of an incident (declared, updated, resolved): one for on-call,
//! through every notifier that takes incident notices, and one per contact of each tenant told,
//! rendered from the tenant template in plain words with that tenant's data only. A pure
//! function of the incident, the configuration and the instant.

use std::sync::Arc;
use std::time::Duration;

use intake_core::config::{Config, NotifierConfig, Severity};
use intake_core::incident::{drill_notice_line, IncidentSeverity, Template};
use intake_core::Timestamp;
use intake_notify::{IncidentInfo, IncidentStatus, LinkBuilder, Notice, Notifier};
use intake_store::{Incident, NewNotification};

use super::contacts;
use crate::duties::notify::decide::announcement_route;

/// What the notices of a step are made with.
pub(crate) struct Notices<'a> {
    pub config: &'a Config,
    pub links: &'a LinkBuilder,
    pub oncall: &'a [(NotifierConfig, Arc<dyn Notifier>)],
    pub now: Timestamp,
}

/// The severity a notice of an incident of `s` carries (which notifiers' `severities` read).
pub fn notice_severity(s: IncidentSeverity) -> Severity {
    match s {
        IncidentSeverity::Critical => Severity::Critical,
        IncidentSeverity::Major => Severity::Warning,
        IncidentSeverity::Minor => Severity::Info,
    }
}

/// `2026-11-28 10:05 UTC`: a time as a tenant reads it.
pub fn human_time(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match (s.get(0..10), s.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => s,
    }
}

/// `30s`, `45m`, `2h 5m`, `20h`, `4d 2h`: a duration as people write it (in hours up to three
/// days, so that "20h" reads as the story's twenty hours, not "0d 20h").
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (hours, mins) = (s / 3600, s % 3600 / 60);
    match (hours, mins) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m"),
        (h, 0) if h < 72 => format!("{h}h"),
        (h, m) if h < 72 => format!("{h}h {m}m"),
        (h, _) if h % 24 == 0 => format!("{}d", h / 24),
        (h, _) => format!("{}d {}h", h / 24, h % 24),
    }
}

impl Notices<'_> {
    /// On-call's notice of `step`, to every notifier that takes incident notices.
    pub fn oncall(
        &self,
        incident: &Incident,
        step: IncidentStatus,
        message: &str,
    ) -> Vec<NewNotification> {
        let info = IncidentInfo {
            id: incident.id.clone(),
            title: incident.title.clone(),
            message: message.to_string(),
            tenants: incident.tenants.clone(),
            status: Some(incident.status),
            severity: Some(incident.severity),
            sources: incident.sources.clone(),
            channels: incident.channels.clone(),
            impact_start: Some(incident.impact_start),
            resolved_at: incident.resolved_at,
            next_update_at: incident.next_update_at,
            commander: incident.commander.clone(),
            text: None,
            drill: incident.drill.clone(),
        };
        let notice = Notice::incident(
            step,
            info,
            notice_severity(incident.severity),
            self.now,
            self.links,
        );
        let route = announcement_route(self.oncall, &notice);
        outbox(&notice, &route, &incident.id, None, self.now)
    }

    /// The notices of `step` to each contact of `tenant`; `first` when the tenant has not
    /// been told of the incident before (its notice then introduces it, with the `declared`
    /// template, whatever the step).
    pub fn tenant(
        &self,
        incident: &Incident,
        tenant: &str,
        step: IncidentStatus,
        first: bool,
        message: &str,
    ) -> Vec<NewNotification> {
        // The one place every tenant notice is made: a drill's is never sent unless asked for.
        if !self.tenants_hear(incident) {
            return Vec::new();
        }
        let name = if first && step != IncidentStatus::Resolved {
            "declared"
        } else {
            match step {
                IncidentStatus::Declared => "declared",
                IncidentStatus::Updated => "updated",
                IncidentStatus::Resolved => "resolved",
            }
        };
        let text = self.render(incident, tenant, name, message);
        let sources = tenant_sources(self.config, incident, tenant);
        let info = IncidentInfo {
            id: incident.id.clone(),
            title: incident.title.clone(),
            message: message.to_string(),
            tenants: vec![tenant.to_string()],
            status: Some(incident.status),
            severity: Some(incident.severity),
            sources,
            channels: incident.channels.clone(),
            impact_start: Some(incident.impact_start),
            resolved_at: incident.resolved_at,
            next_update_at: incident.next_update_at,
            commander: None,
            text: Some(text),
            drill: incident.drill.clone(),
        };
        let step = if name == "declared" {
            IncidentStatus::Declared
        } else {
            step
        };
        let notice =
            Notice::incident_for_tenant(step, info, notice_severity(incident.severity), self.now);
        let route: Vec<String> = contacts::of_tenant(self.config, tenant)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        outbox(&notice, &route, &incident.id, Some(tenant), self.now)
    }

    /// Whether tenants are told of `incident`: always of a real one; of a drill incident only
    /// when `[incidents] drill_tenant_notices` is on.
    pub fn tenants_hear(&self, incident: &Incident) -> bool {
        incident.drill.is_none() || self.config.incidents.drill_tenant_notices
    }

    /// The tenant template `name` rendered for `tenant`.
    fn render(&self, incident: &Incident, tenant: &str, name: &str, message: &str) -> String {
        let text = self.config.incidents.template(name).unwrap_or_default();
        // The configuration's templates were checked at start; a default always parses.
        let template = Template::parse(text).or_else(|_| {
            Template::parse(intake_core::incident::default_template(name).unwrap_or("{message}"))
        });
        let Ok(template) = template else {
            return message.to_string();
        };
        let end = incident.resolved_at.unwrap_or(self.now);
        template.render(|placeholder| match placeholder {
            "tenant" => self
                .config
                .tenant(tenant)
                .and_then(|t| t.name.clone())
                .unwrap_or_else(|| tenant.to_string()),
            "tenant_id" => tenant.to_string(),
            "title" => incident.title.clone(),
            "message" => message.to_string(),
            "status" => incident.status.in_words().to_string(),
            "severity" => incident.severity.as_str().to_string(),
            "affected" => affected(self.config, incident, tenant),
            "impact_start" => human_time(incident.impact_start),
            "next_update" => incident
                .next_update_at
                .map(human_time)
                .unwrap_or_else(|| "the next change".into()),
            "resolved_at" => incident.resolved_at.map(human_time).unwrap_or_default(),
            "duration" => human_duration(end.since(incident.impact_start)),
            "incident" => incident.id.clone(),
            "declared_at" => human_time(incident.declared_at),
            "drill" => incident
                .drill
                .as_deref()
                .map(drill_notice_line)
                .unwrap_or_default(),
            _ => String::new(),
        })
    }
}

/// The incident's sources that are `tenant`'s.
pub fn tenant_sources(config: &Config, incident: &Incident, tenant: &str) -> Vec<String> {
    incident
        .sources
        .iter()
        .filter(|s| config.source(s).is_some_and(|c| c.tenant == tenant))
        .cloned()
        .collect()
}

/// What is affected, for `tenant`, in words: "webhooks from Kustomer (source
/// maelys-kustomer), on the chat and email channels".
pub fn affected(config: &Config, incident: &Incident, tenant: &str) -> String {
    let sources = tenant_sources(config, incident, tenant);
    let mut out = if sources.is_empty() {
        "all webhooks we receive for you".to_string()
    } else {
        let named: Vec<String> = sources
            .iter()
            .map(|s| match config.source(s) {
                Some(c) => format!("{} (source {s})", c.kind.vendor()),
                None => format!("source {s}"),
            })
            .collect();
        format!("webhooks from {}", and_list(&named))
    };
    if !incident.channels.is_empty() {
        let one = incident.channels.len() == 1;
        out.push_str(&format!(
            ", on the {} channel{}",
            and_list(&incident.channels),
            if one { "" } else { "s" }
        ));
    }
    out
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// One outbox row per notifier of `route`, naming the incident (and the tenant, for a
/// contact's notice).
fn outbox(
    notice: &Notice,
    route: &[String],
    incident: &str,
    tenant: Option<&str>,
    now: Timestamp,
) -> Vec<NewNotification> {
    let Ok(json) = serde_json::to_string(notice) else {
        tracing::error!(key = %notice.key, "an incident notice could not be encoded; it is not sent");
        return Vec::new();
    };
    route
        .iter()
        .map(|id| NewNotification {
            notifier: id.clone(),
            key: notice.key.clone(),
            notice: json.clone(),
            created_at: now,
            incident: Some(incident.to_string()),
            tenant: tenant.map(str::to_string),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::incident::IncidentState;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[tenants]]
id = "maelys"
name = "Maelys"
contacts = [
  { kind = "webhook", url = "https://status.maelys.example/hook" },
  { kind = "email", to = "ops@maelys.example" },
]

[[tenants]]
id = "acme"
contacts = [{ kind = "webhook", url = "https://acme.example/hook" }]

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

[[sources]]
id = "acme-zendesk"
tenant = "acme"
kind = "zendesk"
secrets = ["x"]
destinations = ["h"]
"#,
        )
        .unwrap()
    }

    fn incident() -> Incident {
        Incident {
            id: "inc_01JDTEST0000000000000000000".into(),
            title: "Webhooks delayed".into(),
            severity: IncidentSeverity::Major,
            status: IncidentState::Investigating,
            tenants: vec!["maelys".into(), "acme".into()],
            sources: vec!["maelys-kustomer".into(), "acme-zendesk".into()],
            channels: vec!["chat".into(), "email".into()],
            commander: Some("alice".into()),
            impact_start: Timestamp::parse_rfc3339("2026-11-28T09:40:00Z").unwrap(),
            declared_at: Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap(),
            declared_by: "operator".into(),
            updated_at: Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap(),
            resolved_at: None,
            next_update_at: Some(Timestamp::parse_rfc3339("2026-11-28T10:30:00Z").unwrap()),
            tracking: serde_json::json!({}),
            drill: None,
            version: 1,
        }
    }

    #[test]
    fn each_tenant_notice_names_that_tenant_alone_and_goes_to_its_contacts() {
        let config = config();
        let links = LinkBuilder::new(Some("http://intake.test")).unwrap();
        let n = Notices {
            config: &config,
            links: &links,
            oncall: &[],
            now: Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap(),
        };
        let inc = incident();
        let maelys = n.tenant(
            &inc,
            "maelys",
            IncidentStatus::Declared,
            true,
            "Events are late.",
        );
        assert_eq!(maelys.len(), 2);
        assert_eq!(maelys[0].notifier, "contact:maelys:0");
        assert_eq!(maelys[1].notifier, "contact:maelys:1");
        for row in &maelys {
            assert_eq!(row.tenant.as_deref(), Some("maelys"));
            assert_eq!(row.incident.as_deref(), Some(inc.id.as_str()));
            assert!(!row.notice.contains("acme"), "{}", row.notice);
            assert!(
                !row.notice.contains("intake.test"),
                "no operator links: {}",
                row.notice
            );
        }
        let notice: Notice = serde_json::from_str(&maelys[0].notice).unwrap();
        let text = notice.tenant_text().unwrap();
        insta::assert_snapshot!("declared_notice_for_maelys", text);
        let acme = n.tenant(
            &inc,
            "acme",
            IncidentStatus::Declared,
            true,
            "Events are late.",
        );
        assert_eq!(acme.len(), 1);
        assert!(
            !acme[0].notice.to_lowercase().contains("maelys"),
            "{}",
            acme[0].notice
        );
        assert!(acme[0].notice.contains("Zendesk (source acme-zendesk)"));
    }

    #[test]
    fn a_tenant_told_for_the_first_time_gets_the_introduction_and_resolutions_use_theirs() {
        let config = config();
        let links = LinkBuilder::default();
        let n = Notices {
            config: &config,
            links: &links,
            oncall: &[],
            now: Timestamp::parse_rfc3339("2026-11-28T11:00:00Z").unwrap(),
        };
        let mut inc = incident();
        let first = n.tenant(&inc, "acme", IncidentStatus::Updated, true, "Fix deployed.");
        let notice: Notice = serde_json::from_str(&first[0].notice).unwrap();
        assert!(notice
            .tenant_text()
            .unwrap()
            .starts_with("We are investigating"));
        let later = n.tenant(
            &inc,
            "acme",
            IncidentStatus::Updated,
            false,
            "Fix deployed.",
        );
        let notice: Notice = serde_json::from_str(&later[0].notice).unwrap();
        assert!(notice.tenant_text().unwrap().starts_with("Update on"));
        inc.status = IncidentState::Resolved;
        inc.resolved_at = Some(n.now);
        let done = n.tenant(&inc, "acme", IncidentStatus::Resolved, false, "All good.");
        let notice: Notice = serde_json::from_str(&done[0].notice).unwrap();
        let text = notice.tenant_text().unwrap();
        assert!(text.starts_with("Resolved:"), "{text}");
        assert!(
            text.contains("from 2026-11-28 09:40 UTC to 2026-11-28 11:00 UTC (1h 20m)"),
            "{text}"
        );
    }

    #[test]
    fn affected_reads_like_a_sentence() {
        let config = config();
        let mut inc = incident();
        assert_eq!(
            affected(&config, &inc, "maelys"),
            "webhooks from Kustomer (source maelys-kustomer), on the chat and email channels"
        );
        inc.sources.clear();
        inc.channels = vec!["chat".into()];
        assert_eq!(
            affected(&config, &inc, "maelys"),
            "all webhooks we receive for you, on the chat channel"
        );
        assert_eq!(
            human_duration(Duration::from_secs(20 * 3600 + 5 * 60)),
            "20h 5m"
        );
        assert_eq!(
            human_duration(Duration::from_secs(24 * 3600 + 10 * 60)),
            "24h 10m"
        );
        assert_eq!(human_duration(Duration::from_secs(100 * 3600)), "4d 4h");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(
            human_time(Timestamp::parse_rfc3339("2026-11-28T09:40:12Z").unwrap()),
            "2026-11-28 09:40 UTC"
        );
    }
}
