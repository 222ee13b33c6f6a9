//! `[monitor]`, `[[rules]]`, `[[notifiers]]`, `[canary]` and `[incidents]`: what is watched,
//! how loudly, and who is told. Also the built-in rule ids, and why there is no key that turns
//! alerting off.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{lenient, Dur};

/// The ids of the built-in alert rules. They are part of the external contract.
pub const RULE_IDS: [&str; 15] = [
    "inbound_stopped",
    "inbound_drop",
    "rejections_spike",
    "queue_stalled",
    "queue_backlog",
    "processing_drop",
    "delivery_errors",
    "dead_letters",
    "canary_failed",
    "source_gap",
    "notifier_failing",
    "drill_failed",
    "completion_stalled",
    "completion_errors",
    "watchdog",
];

/// The kind of a notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// Slack incoming webhook.
    Slack,
    /// Generic JSON webhook.
    Webhook,
    /// SMTP e-mail.
    Email,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Prometheus Alertmanager.
    Alertmanager,
}

/// `[[notifiers]]`: where alerts and notices go.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Stable id.
    pub id: String,
    /// The kind.
    pub kind: NotifierKind,
    /// Endpoint for slack, webhook, alertmanager (and pagerduty's events URL override).
    #[serde(default)]
    pub url: Option<String>,
    /// Recipients for email.
    #[serde(default)]
    pub to: Vec<String>,
    /// Sender for email.
    #[serde(default)]
    pub from: Option<String>,
    /// SMTP server for email, e.g. `smtp://mail.example:587`.
    #[serde(default)]
    pub smtp_url: Option<String>,
    /// For email: a PEM file of CA certificates the SMTP server's certificate is verified
    /// against, besides the public web roots (a company CA, a local relay's own).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// For email: `"required"` (the default; STARTTLS for `smtp://`, implicit TLS for
    /// `smtps://`) or `"none"`: plain text, allowed only to a relay on loopback.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// PagerDuty routing key.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Only alerts of these severities (all when empty).
    #[serde(default)]
    pub severities: Vec<Severity>,
}

/// Whether an e-mail notifier encrypts its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Always (the default): the scheme of `smtp_url` says how.
    Required,
    /// Never: plain text to a relay on this machine (loopback only), which itself sends on.
    None,
}

impl NotifierConfig {
    /// Whether this e-mail notifier sends in plain text (`tls = "none"`).
    pub fn smtp_plain_text(&self) -> bool {
        self.tls == Some(SmtpTls::None)
    }
}

/// Whether a URL's host is this machine: a loopback address or `localhost`. Plain-text SMTP
/// (`tls = "none"`) is allowed only to such a host.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        // Non-special schemes (`smtp://`) leave an IPv4 address unparsed, as a domain.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        }
        None => false,
    }
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Pages someone.
    Critical,
    /// Informs.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The configuration and wire name (`critical`, `warning`, `info`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// `[monitor]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// How often rules are evaluated.
    pub interval: Dur,
    /// The longest silence anyone may create.
    pub max_silence: Dur,
    /// How often a group of alerts that is still firing is notified again.
    pub repeat_interval: Dur,
    /// The dead-man's-switch URL the watchdog pings (Healthchecks.io-style), if any.
    pub watchdog_url: Option<String>,
    /// How often the watchdog pings; `monitor.interval` when absent.
    pub watchdog_interval: Option<Dur>,
    /// `[[monitor.calendars]]`: days known to be quiet, for every tenant or some.
    pub calendars: Vec<QuietCalendar>,
}

/// `[[monitor.calendars]]`: dates known in advance to be quiet (public holidays, a company's
/// closing days), for every tenant or for the tenants listed. On such a day the flow
/// detectors expect a quiet day instead of an ordinary one: `inbound_drop` does not judge the
/// tenant's flows, and `inbound_stopped` judges silences against a quiet day's traffic, so a
/// planned quiet day needs no silence while a real outage on it still pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietCalendar {
    /// A name the alerts' reasons quote (`fr-public-holidays`).
    pub name: String,
    /// The tenants it applies to; every tenant when empty.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The offset from UTC of the dates' midnight (`"+01:00"`, `"-05:00"`); UTC when absent.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// The quiet dates, `YYYY-MM-DD`, each a whole day from its local midnight.
    pub dates: Vec<String>,
}

impl QuietCalendar {
    /// The offset of the dates' midnight from UTC, in minutes; an error says what is wrong.
    pub fn offset_minutes(&self) -> Result<i64, String> {
        let Some(text) = self.utc_offset.as_deref() else {
            return Ok(0);
        };
        let bad = || format!("`{text}` is not an offset such as \"+01:00\" or \"-05:30\"");
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        if h > 14 || m > 59 || h * 60 + m > 14 * 60 {
            return Err(format!("`{text}` is more than 14 hours from UTC"));
        }
        Ok(sign * (h * 60 + m))
    }

    /// The quiet days, as days since 1970-01-01 (of the calendar's local time), in the order
    /// given; the error names the first date that is not a `YYYY-MM-DD` date.
    pub fn days(&self) -> Result<Vec<i64>, (usize, String)> {
        let epoch = jiff::civil::date(1970, 1, 1);
        self.dates
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let date: jiff::civil::Date = d
                    .parse()
                    .map_err(|_| (i, format!("`{d}` is not a date such as \"2026-12-25\"")))?;
                let days = date
                    .since((jiff::Unit::Day, epoch))
                    .map_err(|e| (i, format!("`{d}`: {e}")))?
                    .get_days();
                Ok(i64::from(days))
            })
            .collect()
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Dur::secs(60),
            max_silence: Dur::secs(24 * 3600),
            repeat_interval: Dur::secs(4 * 3600),
            watchdog_url: None,
            watchdog_interval: None,
            calendars: Vec::new(),
        }
    }
}

impl MonitorConfig {
    /// How often the watchdog pings: `watchdog_interval`, or the evaluation interval.
    pub fn watchdog_every(&self) -> Duration {
        self.watchdog_interval.unwrap_or(self.interval).0
    }
}

/// Keys someone might write to switch alerting off wholesale. None exists; each gets an error
/// that says why instead of figment's bare "unknown field".
pub(super) const OFF_SWITCHES: [&str; 12] = [
    "enabled",
    "enable",
    "disabled",
    "disable",
    "alerting",
    "alerts",
    "notify",
    "notifications",
    "mute",
    "mute_all",
    "silence_all",
    "silenced",
];

/// Why intake has no switch that turns alerting off (see docs/alerting.md).
pub const NO_OFF_SWITCH: &str = "alerting cannot be switched off: there is no global switch, \
    because the day all alerts were switched off to stop false positives is the day an outage \
    went unnoticed for 20 hours. Tune a noisy rule with [[rules]] (threshold, for, severity), \
    route it with `notifiers`, or mute one rule, tenant or source for a bounded time with \
    `intake silence add` (see docs/alerting.md)";

/// `[canary]`: the synthetic webhooks intake sends through its own front door, for every
/// source, to prove the whole path works (see `intake_core::canary`). On by default; there is
/// no key that turns them off, only the timings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// How often a canary is sent per source.
    pub interval: Dur,
    /// How long a source may go without a canary reaching the handler before `canary_failed`
    /// fires.
    pub deadline: Dur,
    /// Per-source timings, by source id (`[canary.sources.<id>]`), for a source whose handler
    /// should see canaries less often, or whose path is slow by design.
    pub sources: BTreeMap<String, CanaryOverride>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            interval: Dur::secs(60),
            deadline: Dur::secs(120),
            sources: BTreeMap::new(),
        }
    }
}

/// `[canary.sources.<id>]`: one source's canary timings; what is not set is `[canary]`'s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryOverride {
    /// How often this source's canary is sent.
    #[serde(default)]
    pub interval: Option<Dur>,
    /// This source's deadline.
    #[serde(default)]
    pub deadline: Option<Dur>,
}

/// The canary timings in force for one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryTiming {
    /// How often its canary is sent.
    pub interval: Duration,
    /// How long it may go without a successful canary.
    pub deadline: Duration,
}

impl CanaryConfig {
    /// The timings of `source`: its override where it has one, `[canary]`'s otherwise.
    pub fn timing(&self, source: &str) -> CanaryTiming {
        let o = self.sources.get(source);
        CanaryTiming {
            interval: o.and_then(|o| o.interval).unwrap_or(self.interval).0,
            deadline: o.and_then(|o| o.deadline).unwrap_or(self.deadline).0,
        }
    }
}

/// `[[rules]]`: an override of a built-in rule, optionally scoped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    /// The built-in rule id.
    pub rule: String,
    /// Scope: only this tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Scope: only this source.
    #[serde(default)]
    pub source: Option<String>,
    /// The rule's main parameter: a duration (`"5m"`) or a number, per rule.
    #[serde(default)]
    pub threshold: Option<RuleThreshold>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for")]
    pub for_: Option<Dur>,
    /// The severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// The notifiers this rule's alerts go to.
    #[serde(default)]
    pub notifiers: Vec<String>,
    /// Whether this rule's critical alerts declare an incident by themselves (overrides
    /// `[incidents] auto_declare` in this scope). Only the rules of
    /// [`crate::incident::AUTO_DECLARE_RULES`].
    #[serde(
        default,
        deserialize_with = "lenient::option_boolean",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_declare: Option<bool>,
    /// Whether an incident this rule declared tells the tenant's contacts by itself
    /// (overrides `[incidents] auto_notify_tenants` in this scope).
    #[serde(
        default,
        deserialize_with = "lenient::option_boolean",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_notify_tenants: Option<bool>,
    /// How long such an incident waits before telling the tenant, so that an alert that
    /// resolves at once does not reach customers (overrides `[incidents] notify_hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_hold: Option<Dur>,
}

/// A rule threshold: a number or a duration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RuleThreshold {
    /// A number (ratio, count, probability).
    Number(f64),
    /// A duration.
    Duration(Dur),
}

/// `[incidents]`: declaring incidents automatically, and the notices affected tenants get.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Declare an incident automatically when a critical alert of one of
    /// [`crate::incident::AUTO_DECLARE_RULES`] names a tenant (per rule and scope:
    /// `[[rules]] auto_declare`).
    #[serde(deserialize_with = "lenient::boolean")]
    pub auto_declare: bool,
    /// Whether an automatically declared incident tells the affected tenant's contacts by
    /// itself (after `notify_hold`), or waits for a person's first update.
    #[serde(deserialize_with = "lenient::boolean")]
    pub auto_notify_tenants: bool,
    /// How long an automatically declared incident waits before telling tenants; if every
    /// alert of it resolved meanwhile, tenants are not told (and the incident resolves itself).
    pub notify_hold: Dur,
    /// Whether an incident a fire drill's alert declared (a drill incident) tells the affected
    /// tenants' contacts like a real one would (each notice then says first that it is a
    /// drill, `{drill}`). Off by default: a drill tests on-call's path, and a tenant must
    /// never read of an outage that did not happen; its notices are held, and its timeline
    /// says so.
    #[serde(deserialize_with = "lenient::boolean")]
    pub drill_tenant_notices: bool,
    /// The promise every tenant notice makes: the next update comes within this long.
    pub update_every: Dur,
    /// The `email` notifier whose SMTP server and sender send tenants' e-mail contacts their
    /// notices. Unset: the only `email` notifier, if there is exactly one.
    pub email_via: Option<String>,
    /// Tenant notice templates by name (`declared`, `updated`, `resolved`), with
    /// `{placeholders}` (see [`crate::incident::PLACEHOLDERS`]); the defaults are used for
    /// the names not given.
    pub templates: BTreeMap<String, String>,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            auto_declare: false,
            auto_notify_tenants: true,
            notify_hold: Dur::secs(0),
            drill_tenant_notices: false,
            update_every: Dur::secs(30 * 60),
            email_via: None,
            templates: BTreeMap::new(),
        }
    }
}

/// What happens when a critical alert of `rule` names a tenant (and a source): the policy of
/// the most specific `[[rules]]` override that sets each key, else `[incidents]`'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDeclarePolicy {
    /// Whether it declares an incident.
    pub declare: bool,
    /// Whether that incident tells the tenant by itself.
    pub notify_tenants: bool,
    /// How long it waits before telling the tenant.
    pub hold: Duration,
}

impl IncidentsConfig {
    /// The policy for an alert of `rule` about `tenant` (and `source`), field by field from
    /// the most specific override that sets it. Rules other than
    /// [`crate::incident::AUTO_DECLARE_RULES`] never declare.
    pub fn policy(
        &self,
        rules: &[RuleOverride],
        rule: &str,
        tenant: &str,
        source: Option<&str>,
    ) -> AutoDeclarePolicy {
        let mut matching: Vec<&RuleOverride> = rules
            .iter()
            .filter(|o| o.rule == rule)
            .filter(|o| o.tenant.as_deref().is_none_or(|t| t == tenant))
            .filter(|o| o.source.is_none() || o.source.as_deref() == source)
            .collect();
        // Least specific first, so that later ones win: rule < tenant < source < both.
        matching.sort_by_key(|o| (o.source.is_some(), o.tenant.is_some()));
        let mut policy = AutoDeclarePolicy {
            declare: self.auto_declare,
            notify_tenants: self.auto_notify_tenants,
            hold: self.notify_hold.0,
        };
        for o in matching {
            if let Some(d) = o.auto_declare {
                policy.declare = d;
            }
            if let Some(n) = o.auto_notify_tenants {
                policy.notify_tenants = n;
            }
            if let Some(h) = o.notify_hold {
                policy.hold = h.0;
            }
        }
        policy.declare &= crate::incident::AUTO_DECLARE_RULES.contains(&rule);
        policy
    }

    /// The `email` notifier whose SMTP server sends tenants' e-mail contacts their notices:
    /// `email_via`, else the only `email` notifier there is. `None` when there is no such
    /// notifier, or several and none chosen (e-mail contacts then cannot be reached, which
    /// `intake check-config` says and `notifier_failing` alerts on).
    pub fn mailer<'a>(&self, notifiers: &'a [NotifierConfig]) -> Option<&'a NotifierConfig> {
        let mut emails = notifiers.iter().filter(|n| n.kind == NotifierKind::Email);
        match &self.email_via {
            Some(id) => emails.find(|n| n.id == *id),
            None => match (emails.next(), emails.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        }
    }

    /// The template text for a notice name: the configured one, else the default.
    pub fn template(&self, name: &str) -> Option<&str> {
        self.templates
            .get(name)
            .map(String::as_str)
            .or_else(|| crate::incident::default_template(name))
    }
}
