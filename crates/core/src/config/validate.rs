//! The checks serde cannot make (references between sections, duplicate ids, URLs, secrets,
//! ranges), one small function per section, and the errors they and figment report: every
//! [`ConfigProblem`] with the key it is about, collected into one [`ConfigError`].

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use figment::error::{Actual, Kind};

use super::alerting::{is_loopback, NO_OFF_SWITCH, OFF_SWITCHES, RULE_IDS};
use super::mask::{exposure, mask, Exposure, MASK};
use super::reconcile::MAX_RECONCILE_SAMPLE;
use super::{
    AdminConfig, CanaryConfig, ClusterConfig, Config, Contact, DestinationConfig, DrillConfig,
    IncidentsConfig, MetricsConfig, MonitorConfig, NotifierConfig, NotifierKind, Rate,
    ReconcileConfig, RuleOverride, ServerConfig, SharedSecretAuth, SmtpTls, SourceConfig,
    SourceKind, StorageConfig, TenantConfig, MIN_RETENTION,
};
use crate::drill::{Scenario, Schedule, TargetKind, MAX_FOR};
use crate::incident::{Template, AUTO_DECLARE_RULES, TEMPLATE_NAMES};
use crate::signature::SigningKey;

/// The longest an automatically declared incident may wait before telling tenants: longer,
/// and "tell the affected tenants at once" is no longer what it does.
const MAX_NOTIFY_HOLD: Duration = Duration::from_secs(3600);

/// One thing wrong with a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, e.g. `sources[1].destinations[0]`.
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// Every problem, in file order where possible.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        let problems = err
            .into_iter()
            .map(|mut e| {
                // figment names array elements `sources.0.kind`; write them as the validator
                // does, `sources[0].kind`, so every message points at keys the same way.
                let mut path = String::new();
                for seg in &e.path {
                    if seg.parse::<usize>().is_ok() {
                        path.push_str(&format!("[{seg}]"));
                    } else {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(seg);
                    }
                }
                if path.is_empty() {
                    path = "(top level)".into();
                }
                // A value of the wrong type is quoted by figment; at a key that holds a secret
                // (`token = 12345`, `secrets = "…"`) it is quoted masked.
                e.kind = masked_kind(&path, e.kind);
                // figment quotes the list of expected keys as a whole and each key in it; keep
                // only the inner quotes: "expected one of `listen`, `public_url`".
                let mut message = e
                    .kind
                    .to_string()
                    .replace("expected `one of ", "expected one of ");
                if message.ends_with("``") {
                    message.pop();
                }
                if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                    let section = e.path.first().map(String::as_str).unwrap_or("");
                    if matches!(section, "monitor" | "rules" | "notifiers" | "canary" | "")
                        && OFF_SWITCHES.contains(&field.as_str())
                    {
                        message = format!("unknown key `{field}`: {NO_OFF_SWITCH}");
                    }
                }
                if let Some(figment::Source::File(file)) =
                    e.metadata.as_ref().and_then(|m| m.source.as_ref())
                {
                    message.push_str(&format!(" (from {})", file.display()));
                }
                ConfigProblem { path, message }
            })
            .collect();
        ConfigError { problems }
    }
}

/// `kind` with the value it quotes masked as the value at `path` is (see [`mask`]).
fn masked_kind(path: &str, kind: Kind) -> Kind {
    if exposure(path) == Exposure::Public {
        return kind;
    }
    let hide = |actual: Actual| match actual {
        Actual::Str(s) => Actual::Str(mask(path, &s).into_owned()),
        Actual::Other(s) => Actual::Other(mask(path, &s).into_owned()),
        Actual::Bytes(_) => Actual::Other(format!("bytes `{MASK}`")),
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) | Actual::Char(_) => {
            Actual::Other(format!("a number or character `{MASK}`"))
        }
        other => other,
    };
    match kind {
        Kind::InvalidType(actual, expected) => Kind::InvalidType(hide(actual), expected),
        Kind::InvalidValue(actual, expected) => Kind::InvalidValue(hide(actual), expected),
        other => other,
    }
}

/// Every problem of `c` that serde could not see, in the order of the file's sections.
pub(super) fn problems(c: &Config) -> Vec<ConfigProblem> {
    let mut v = Validator::default();
    v.check(c);
    v.problems
}

/// The ids other sections refer to.
struct Known<'a> {
    sources: &'a HashSet<&'a str>,
    destinations: &'a HashSet<&'a str>,
    notifiers: &'a HashSet<&'a str>,
}

/// Collects problems. Each section has its own check; [`Validator::check`] calls them in file
/// order.
#[derive(Default)]
struct Validator {
    problems: Vec<ConfigProblem>,
}

impl Validator {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn ids<'a>(&mut self, section: &str, ids: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
        let mut seen = HashSet::new();
        for (i, id) in ids.enumerate() {
            if id.is_empty() {
                self.push(format!("{section}[{i}].id"), "must not be empty");
            } else if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.push(
                    format!("{section}[{i}].id"),
                    format!("`{id}` may only contain letters, digits, `-` and `_`"),
                );
            }
            if !seen.insert(id) {
                self.push(format!("{section}[{i}].id"), format!("duplicate id `{id}`"));
            }
        }
        seen
    }

    fn reference(&mut self, path: String, what: &str, id: &str, known: &HashSet<&str>) {
        if !known.contains(id) {
            let mut names: Vec<&str> = known.iter().copied().collect();
            names.sort_unstable();
            let hint = if names.is_empty() {
                format!("no {what}s are configured")
            } else {
                format!("known: {}", names.join(", "))
            };
            self.push(path, format!("unknown {what} `{id}` ({hint})"));
        }
    }

    fn http_url(&mut self, path: String, value: &str) {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => {
                let shown = mask(&path, value);
                let message = format!("`{shown}` must be an http(s) URL, not {}", u.scheme());
                self.push(path, message)
            }
            Err(e) => {
                let message = format!("`{}` is not a URL ({e})", mask(&path, value));
                self.push(path, message)
            }
        }
    }

    /// Checks every section in file order. The id sets are built before the sections that
    /// refer to them, and every message keeps its place in that order.
    fn check(&mut self, c: &Config) {
        self.server(&c.server);
        self.storage(&c.storage);
        self.retention(&c.storage, &c.destinations);
        self.cluster(&c.cluster);
        self.admin(&c.admin);
        self.metrics(&c.metrics, &c.admin, &c.tenants);

        let tenants = self.ids("tenants", c.tenants.iter().map(|t| t.id.as_str()));
        let destinations = self.ids("destinations", c.destinations.iter().map(|d| d.id.as_str()));
        let sources = self.ids("sources", c.sources.iter().map(|s| s.id.as_str()));
        let notifiers = self.ids("notifiers", c.notifiers.iter().map(|n| n.id.as_str()));

        self.tenants(&c.admin, &c.tenants);
        for (i, d) in c.destinations.iter().enumerate() {
            self.destination(&format!("destinations[{i}]"), d);
        }
        for (i, s) in c.sources.iter().enumerate() {
            let p = format!("sources[{i}]");
            self.source_references(&p, s, &tenants, &destinations);
            self.source_secrets(&p, s);
            self.source_scheme(&p, s);
            self.source_fields(&p, s);
            self.source_api(&p, s);
        }
        for (i, n) in c.notifiers.iter().enumerate() {
            self.notifier(&format!("notifiers[{i}]"), n);
        }
        self.monitor(&c.monitor);
        self.calendars(&c.monitor, &tenants);
        self.canary(&c.canary, &sources);
        for (i, r) in c.rules.iter().enumerate() {
            self.rule(&format!("rules[{i}]"), r, &tenants, &sources, &notifiers);
        }
        self.incidents(&c.incidents, &c.notifiers);
        self.reconcile(&c.reconcile);
        let known = Known {
            sources: &sources,
            destinations: &destinations,
            notifiers: &notifiers,
        };
        let mut schedules = HashSet::new();
        for (i, d) in c.drills.iter().enumerate() {
            let p = format!("drills[{i}]");
            self.drill(&p, d, &known);
            if d.target().is_some() && !schedules.insert(d.key()) {
                self.push(
                    p,
                    format!(
                        "a second schedule of {} on `{}`: one schedule per scenario and target",
                        d.scenario,
                        d.target().unwrap_or("")
                    ),
                );
            }
        }
    }

    /// `[server]`: a listen address, an http(s) public URL, a body limit above zero.
    fn server(&mut self, s: &ServerConfig) {
        if s.listen.parse::<SocketAddr>().is_err() {
            self.push(
                "server.listen",
                format!("`{}` is not an address like 127.0.0.1:8080", s.listen),
            );
        }
        if let Some(u) = &s.public_url {
            self.http_url("server.public_url".into(), u);
        }
        if s.max_body_size.0 == 0 {
            self.push("server.max_body_size", "must be more than 0 bytes");
        }
        self.connection_limits(s);
    }

    /// `[server]`'s connection hygiene: timeouts above zero, caps of at least one connection
    /// (one client never allowed more than everyone), a body budget that fits the largest body.
    fn connection_limits(&mut self, s: &ServerConfig) {
        for (key, d) in [
            ("server.header_timeout", s.header_timeout),
            ("server.body_timeout", s.body_timeout),
            ("server.idle_timeout", s.idle_timeout),
        ] {
            if d.0.is_zero() {
                self.push(key, "must be more than 0s");
            }
        }
        if s.max_connections == 0 {
            self.push("server.max_connections", "must be at least 1");
        }
        if s.max_connections_per_ip == 0 {
            self.push("server.max_connections_per_ip", "must be at least 1");
        } else if s.max_connections_per_ip > s.max_connections {
            self.push(
                "server.max_connections_per_ip",
                format!(
                    "must not be more than server.max_connections ({})",
                    s.max_connections
                ),
            );
        }
        if s.body_budget.0 < s.max_body_size.0 {
            self.push(
                "server.body_budget",
                format!(
                    "must be at least server.max_body_size ({} bytes), or the largest body could never be read",
                    s.max_body_size.0
                ),
            );
        }
    }

    /// `[storage]`: a store URL intake can open, a batch of at least one, a pool of two.
    fn storage(&mut self, s: &StorageConfig) {
        if !(s.url.starts_with("sqlite://")
            || s.url.starts_with("postgres://")
            || s.url.starts_with("postgresql://"))
        {
            self.push(
                "storage.url",
                format!(
                    "`{}` must start with sqlite:// (e.g. sqlite://./intake-data/intake.db) or postgres://",
                    mask("storage.url", &s.url)
                ),
            );
        }
        if s.max_batch == 0 {
            self.push("storage.max_batch", "must be at least 1");
        }
        if s.pool_size < 2 {
            self.push("storage.pool_size", "must be at least 2");
        }
    }

    /// `storage.retention`: at least an hour, and longer than every destination's retries, so
    /// that a pass never meets work it must keep merely because it is still being retried.
    fn retention(&mut self, s: &StorageConfig, destinations: &[DestinationConfig]) {
        let Some(retention) = s.retention.0 else {
            return;
        };
        let shown = humantime::format_duration(retention);
        if retention < MIN_RETENTION {
            self.push(
                "storage.retention",
                format!("`{shown}` is too short: keep events at least 1h (e.g. \"30d\"), or write \"off\" to keep everything"),
            );
            return;
        }
        let longest = destinations
            .iter()
            .map(|d| (d, d.retry_policy().horizon()))
            .max_by_key(|(_, h)| *h);
        if let Some((d, horizon)) = longest {
            if retention <= horizon {
                let horizon = humantime::format_duration(Duration::from_secs(horizon.as_secs()));
                self.push(
                    "storage.retention",
                    format!(
                        "`{shown}` is not longer than the retries of destination `{}` (up to {horizon} from the first attempt to the last); make storage.retention longer, or that destination's retries shorter",
                        d.id
                    ),
                );
            }
        }
    }

    /// `[cluster]`: a usable node id, and timings under which a slow node is not taken for dead.
    fn cluster(&mut self, c: &ClusterConfig) {
        if let Some(id) = &c.node_id {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                self.push(
                    "cluster.node_id",
                    format!("`{id}`: use letters, digits, `-` and `_`"),
                );
            }
        }
        if c.heartbeat.0.is_zero() {
            self.push("cluster.heartbeat", "must be longer than 0s");
        }
        if c.node_timeout.0 < c.heartbeat.0 * 3 {
            self.push(
                "cluster.node_timeout",
                "must be at least three heartbeats, or a node that is merely slow is taken for dead",
            );
        }
        if c.duty_lease.0 < Duration::from_secs(1) {
            self.push("cluster.duty_lease", "must be at least 1s");
        }
    }

    /// `[admin]`: a token, when given, is not empty.
    fn admin(&mut self, a: &AdminConfig) {
        if matches!(&a.token, Some(t) if t.is_empty()) {
            self.push(
                "admin.token",
                "must not be empty (remove the key to have no operator token in the configuration)",
            );
        }
    }

    /// `[metrics]`: a token, when given, is not empty and opens nothing else: a scraper's
    /// token lives in Prometheus' configuration and must not open the admin API.
    fn metrics(&mut self, m: &MetricsConfig, admin: &AdminConfig, tenants: &[TenantConfig]) {
        let Some(token) = &m.token else { return };
        if token.is_empty() {
            self.push(
                "metrics.token",
                "must not be empty (remove the key to leave /metrics open)",
            );
        } else if admin.token.as_ref() == Some(token)
            || tenants.iter().any(|t| t.api_token.as_ref() == Some(token))
        {
            self.push(
                "metrics.token",
                "must differ from admin.token and every tenant's api_token: a scraper's token must not open the admin API",
            );
        }
    }

    /// `[[tenants]]`: webhook contacts are URLs, and every API token differs from the admin
    /// token and from every other tenant's.
    fn tenants(&mut self, admin: &AdminConfig, tenants: &[TenantConfig]) {
        let mut tokens = HashSet::new();
        if let Some(t) = &admin.token {
            tokens.insert(t.as_str());
        }
        for (i, t) in tenants.iter().enumerate() {
            for (j, contact) in t.contacts.iter().enumerate() {
                if let Contact::Webhook { url } = contact {
                    self.http_url(format!("tenants[{i}].contacts[{j}].url"), url);
                }
            }
            if let Some(tok) = &t.api_token {
                if tok.is_empty() || !tokens.insert(tok.as_str()) {
                    self.push(
                        format!("tenants[{i}].api_token"),
                        "must be non-empty and differ from every other token",
                    );
                }
            }
        }
    }

    /// One `[[destinations]]` entry at `p`: URL, secret, limits and retry schedule.
    fn destination(&mut self, p: &str, d: &DestinationConfig) {
        self.http_url(format!("{p}.url"), &d.url);
        if let Err(e) = SigningKey::from_secret(&d.secret) {
            self.push(format!("{p}.secret"), e.to_string());
        }
        if d.timeout.0.is_zero() {
            self.push(format!("{p}.timeout"), "must be longer than 0s");
        }
        if d.max_attempts == 0 {
            self.push(format!("{p}.max_attempts"), "must be at least 1");
        }
        if d.concurrency == 0 {
            self.push(format!("{p}.concurrency"), "must be at least 1");
        }
        if matches!(d.rate_limit, Some(Rate(r)) if !(r > 0.0 && r.is_finite())) {
            self.push(
                format!("{p}.rate_limit"),
                "must be a positive number of attempts per second",
            );
        }
        if d.retry.schedule.iter().any(|s| s.0.is_zero()) {
            self.push(
                format!("{p}.retry"),
                "every delay of the schedule must be longer than 0s",
            );
        }
        if d.retry.initial.0.is_zero() || d.retry.max < d.retry.initial {
            self.push(format!("{p}.retry"), "needs 0 < initial <= max");
        }
        if !(d.retry.multiplier >= 1.0 && d.retry.multiplier.is_finite()) {
            self.push(format!("{p}.retry.multiplier"), "must be at least 1.0");
        }
        if !(0.0..=1.0).contains(&d.retry.jitter) {
            self.push(format!("{p}.retry.jitter"), "must be between 0.0 and 1.0");
        }
        if d.completion_deadline.0.is_zero() {
            self.push(format!("{p}.completion_deadline"), "must be longer than 0s");
        }
    }

    /// A source's tenant and destinations exist, and it has at least one destination, each
    /// listed once.
    fn source_references(
        &mut self,
        p: &str,
        s: &SourceConfig,
        tenants: &HashSet<&str>,
        destinations: &HashSet<&str>,
    ) {
        self.reference(format!("{p}.tenant"), "tenant", &s.tenant, tenants);
        if s.destinations.is_empty() {
            self.push(
                format!("{p}.destinations"),
                "a source needs at least one destination, or its events would go nowhere",
            );
        }
        let mut seen = HashSet::new();
        for (j, d) in s.destinations.iter().enumerate() {
            self.reference(
                format!("{p}.destinations[{j}]"),
                "destination",
                d,
                destinations,
            );
            if !seen.insert(d) {
                self.push(
                    format!("{p}.destinations[{j}]"),
                    format!("`{d}` is listed twice"),
                );
            }
        }
    }

    /// A source has one or two non-empty secrets (two while one is rotated).
    fn source_secrets(&mut self, p: &str, s: &SourceConfig) {
        if s.secrets.is_empty() {
            self.push(
                format!("{p}.secrets"),
                "at least one secret is needed to verify this source's requests",
            );
        }
        if s.secrets.len() > 2 {
            self.push(
                format!("{p}.secrets"),
                "at most two secrets may be active at once (the old and the new during rotation)",
            );
        }
        if s.secrets.iter().any(|s| s.is_empty()) {
            self.push(format!("{p}.secrets"), "secrets must not be empty");
        }
    }

    /// How a source's requests are authenticated fits its kind: a signature scheme only for
    /// generic sources, `auth` only for unsigned systems, `tolerance` only where a timestamp
    /// is signed.
    fn source_scheme(&mut self, p: &str, s: &SourceConfig) {
        match (s.kind, &s.signature) {
            (SourceKind::Generic, None) => self.push(
                format!("{p}.signature"),
                "a generic source needs `signature = { header = \"X-Signature\", algorithm = \"sha256\", encoding = \"hex\" }`",
            ),
            (SourceKind::Generic, Some(sig)) if sig.header.is_empty() => {
                self.push(format!("{p}.signature.header"), "must name a header")
            }
            (kind, Some(_)) if kind != SourceKind::Generic => self.push(
                format!("{p}.signature"),
                format!("only generic sources take a signature scheme; {kind} has its own"),
            ),
            _ => {}
        }
        let unsigned = matches!(s.kind, SourceKind::Freshdesk | SourceKind::Gorgias);
        if !unsigned && s.auth.is_some() {
            self.push(
                format!("{p}.auth"),
                format!(
                    "{} signs its webhooks; `auth` is only for freshdesk and gorgias sources",
                    s.kind
                ),
            );
        }
        if let Some(SharedSecretAuth::Header { header }) = &s.auth {
            if header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                self.push(
                    format!("{p}.auth.header"),
                    format!("`{header}` is not a valid header name"),
                );
            }
        }
        if matches!(s.auth, Some(SharedSecretAuth::Basic))
            && s.secrets.iter().any(|x| !x.contains(':'))
        {
            self.push(
                format!("{p}.secrets"),
                "with `auth = { scheme = \"basic\" }` each secret is `user:password`",
            );
        }
        if s.tolerance.is_some() && !matches!(s.kind, SourceKind::Zendesk | SourceKind::Front) {
            self.push(
                format!("{p}.tolerance"),
                format!(
                    "{} signs no timestamp; `tolerance` is only for zendesk and front sources",
                    s.kind
                ),
            );
        }
    }

    /// Field pointers only for generic sources, each a JSON pointer.
    fn source_fields(&mut self, p: &str, s: &SourceConfig) {
        if s.kind != SourceKind::Generic && s.fields.is_some() {
            self.push(
                format!("{p}.fields"),
                "only generic sources take field pointers",
            );
        }
        if let Some(f) = &s.fields {
            for (name, ptr) in [
                ("event_id", &f.event_id),
                ("event_type", &f.event_type),
                ("channel", &f.channel),
                ("occurred_at", &f.occurred_at),
                ("object_id", &f.object_id),
                ("conversation_id", &f.conversation_id),
            ] {
                if let Some(ptr) = ptr {
                    if !ptr.is_empty() && !ptr.starts_with('/') {
                        self.push(
                            format!("{p}.fields.{name}"),
                            format!("`{ptr}` is not a JSON pointer (write e.g. \"/data/id\")"),
                        );
                    }
                }
            }
        }
    }

    /// A source's API access: an http(s) base URL, and a user where the API needs one.
    fn source_api(&mut self, p: &str, s: &SourceConfig) {
        if let Some(api) = &s.api {
            self.http_url(format!("{p}.api.base_url"), &api.base_url);
            let needs_user = matches!(s.kind, SourceKind::Zendesk | SourceKind::Gorgias);
            if needs_user && api.username.as_deref().is_none_or(str::is_empty) {
                self.push(
                    format!("{p}.api.username"),
                    format!(
                        "{} authenticates API calls as a user: set `username` (the agent's or account's e-mail) beside `token`",
                        s.kind
                    ),
                );
            }
        }
    }

    /// One `[[notifiers]]` entry at `p`: the keys its kind needs.
    fn notifier(&mut self, p: &str, n: &NotifierConfig) {
        if n.kind != NotifierKind::Email {
            for (key, set) in [("ca_file", n.ca_file.is_some()), ("tls", n.tls.is_some())] {
                if set {
                    self.push(
                        format!("{p}.{key}"),
                        "only email notifiers take this key (it is about the SMTP connection)",
                    );
                }
            }
        }
        match n.kind {
            NotifierKind::Slack | NotifierKind::Webhook | NotifierKind::Alertmanager => {
                match &n.url {
                    Some(u) => self.http_url(format!("{p}.url"), u),
                    None => self.push(format!("{p}.url"), "is required for this kind"),
                }
            }
            NotifierKind::Email => {
                if n.to.is_empty() {
                    self.push(
                        format!("{p}.to"),
                        "an email notifier needs at least one recipient",
                    );
                }
                self.email_security(p, n);
            }
            NotifierKind::Pagerduty => {
                if n.routing_key.is_none() {
                    self.push(format!("{p}.routing_key"), "is required for pagerduty");
                }
            }
        }
    }

    /// An email notifier's TLS: `ca_file` names a file, and `tls = "none"` (plain text) is
    /// allowed only for `smtp://` to a relay on loopback, where nothing crosses a network.
    fn email_security(&mut self, p: &str, n: &NotifierConfig) {
        if matches!(&n.ca_file, Some(f) if f.trim().is_empty()) {
            self.push(
                format!("{p}.ca_file"),
                "must name a PEM file of CA certificates (remove the key to trust the public roots only)",
            );
        }
        if n.tls != Some(SmtpTls::None) {
            return;
        }
        if n.ca_file.is_some() {
            self.push(
                format!("{p}.ca_file"),
                "has no use with `tls = \"none\"`: nothing is encrypted, so no certificate is checked",
            );
        }
        let smtp_url = n.smtp_url.as_deref().unwrap_or("");
        match url::Url::parse(smtp_url) {
            Ok(u) if u.scheme() == "smtp" && is_loopback(&u) => {}
            Ok(u) if u.scheme() == "smtp" => self.push(
                format!("{p}.tls"),
                format!(
                    "`tls = \"none\"` sends mail and any SMTP password in plain text, so it is allowed only to a relay on loopback (127.0.0.1, ::1 or localhost), not to {}",
                    u.host_str().unwrap_or("a host")
                ),
            ),
            _ => self.push(
                format!("{p}.tls"),
                "`tls = \"none\"` needs `smtp_url = \"smtp://127.0.0.1:25\"` (a relay on loopback; smtps:// is always TLS)",
            ),
        }
    }

    /// `[monitor]`: intervals above zero, repeats no more often than a minute, a watchdog URL.
    fn monitor(&mut self, m: &MonitorConfig) {
        if m.interval.0.is_zero() {
            self.push("monitor.interval", "must be longer than 0s");
        }
        if m.max_silence.0.is_zero() {
            self.push(
                "monitor.max_silence",
                "must be longer than 0s (silences need an expiry of at most this long)",
            );
        }
        if m.repeat_interval.0 < Duration::from_secs(60) {
            self.push(
                "monitor.repeat_interval",
                "must be at least 1m; a firing alert is repeated this often",
            );
        }
        if let Some(u) = &m.watchdog_url {
            self.http_url("monitor.watchdog_url".into(), u);
        }
        if let Some(d) = m.watchdog_interval {
            if d.0 < Duration::from_secs(1) {
                self.push("monitor.watchdog_interval", "must be at least 1s");
            }
        }
    }

    /// `[[monitor.calendars]]`: a unique name, tenants that exist, an offset and dates that
    /// parse, at least one date and none twice.
    fn calendars(&mut self, m: &MonitorConfig, tenants: &HashSet<&str>) {
        let mut names = HashSet::new();
        for (i, c) in m.calendars.iter().enumerate() {
            let p = format!("monitor.calendars[{i}]");
            if c.name.trim().is_empty() {
                self.push(
                    format!("{p}.name"),
                    "must not be empty: alerts' reasons quote it",
                );
            } else if !names.insert(c.name.as_str()) {
                self.push(
                    format!("{p}.name"),
                    format!(
                        "`{}` names another calendar too; names must be unique",
                        c.name
                    ),
                );
            }
            for (j, t) in c.tenants.iter().enumerate() {
                if !tenants.contains(t.as_str()) {
                    self.push(
                        format!("{p}.tenants[{j}]"),
                        format!("unknown tenant `{t}` (not in [[tenants]])"),
                    );
                }
            }
            if let Err(e) = c.offset_minutes() {
                self.push(format!("{p}.utc_offset"), e);
            }
            if c.dates.is_empty() {
                self.push(
                    format!("{p}.dates"),
                    "must list at least one date, such as \"2026-12-25\"",
                );
            }
            match c.days() {
                Err((j, e)) => self.push(format!("{p}.dates[{j}]"), e),
                Ok(days) => {
                    let mut seen = HashSet::new();
                    for (j, d) in days.iter().enumerate() {
                        if !seen.insert(*d) {
                            self.push(
                                format!("{p}.dates[{j}]"),
                                format!("`{}` is listed twice", c.dates[j]),
                            );
                        }
                    }
                }
            }
        }
    }

    /// `[canary]`: both timings above zero, and a deadline longer than the interval (else
    /// every wait between two canaries would fire `canary_failed`); the same for each
    /// source's override, which must name a configured source.
    fn canary(&mut self, c: &CanaryConfig, sources: &HashSet<&str>) {
        if c.interval.0.is_zero() || c.deadline.0.is_zero() {
            self.push("canary", "interval and deadline must be longer than 0s");
        } else if c.deadline.0 <= c.interval.0 {
            self.push(
                "canary.deadline",
                format!(
                    "must be longer than canary.interval ({}): a source waits an interval between two canaries, so a shorter deadline fires canary_failed between every two",
                    humantime::format_duration(c.interval.0)
                ),
            );
        }
        for (id, o) in &c.sources {
            let p = format!("canary.sources.{id}");
            self.reference(p.clone(), "source", id, sources);
            if o.interval.is_some_and(|d| d.0.is_zero())
                || o.deadline.is_some_and(|d| d.0.is_zero())
            {
                self.push(p, "interval and deadline must be longer than 0s");
                continue;
            }
            let t = c.timing(id);
            if (o.interval.is_some() || o.deadline.is_some()) && t.deadline <= t.interval {
                self.push(
                    format!("{p}.deadline"),
                    format!(
                        "must be longer than the source's canary interval ({}): a shorter deadline fires canary_failed between every two canaries",
                        humantime::format_duration(t.interval)
                    ),
                );
            }
        }
    }

    /// `[reconcile]`: windows of at least a minute, a share of the API budget in (0, 1], a
    /// sample the reports can hold.
    fn reconcile(&mut self, r: &ReconcileConfig) {
        if r.interval.0 < Duration::from_secs(60) {
            self.push(
                "reconcile.interval",
                "must be at least 1m: each interval costs at least one listing of every source's API",
            );
        }
        if !(r.budget_share > 0.0 && r.budget_share <= 1.0) {
            self.push(
                "reconcile.budget_share",
                format!(
                    "{} is not a share of the API budget: write a number above 0 and at most 1 (0.2 = a fifth of api.rate_limit_per_minute)",
                    r.budget_share
                ),
            );
        }
        if r.sample > MAX_RECONCILE_SAMPLE {
            self.push(
                "reconcile.sample",
                format!("must be at most {MAX_RECONCILE_SAMPLE}"),
            );
        }
    }

    /// One `[[drills]]` entry at `p`: a known scenario, the one target key it takes naming a
    /// configured source, destination or notifier (and no other), a schedule, and a `for`
    /// between a second and a day that leaves room before the next drill of the schedule.
    fn drill(&mut self, p: &str, d: &DrillConfig, known: &Known<'_>) {
        let Some(scenario) = Scenario::parse(&d.scenario) else {
            self.push(
                format!("{p}.scenario"),
                format!(
                    "unknown scenario `{}` (scenarios: {})",
                    d.scenario,
                    Scenario::names()
                ),
            );
            return;
        };
        let takes = scenario.target_kind();
        let keys = [
            (TargetKind::Source, &d.source, known.sources),
            (TargetKind::Destination, &d.destination, known.destinations),
            (TargetKind::Notifier, &d.notifier, known.notifiers),
        ];
        for (kind, value, ids) in keys {
            let key = format!("{p}.{}", kind.as_str());
            match (kind == takes, value) {
                (true, Some(id)) => self.reference(key, kind.as_str(), id, ids),
                (true, None) => self.push(
                    key,
                    format!(
                        "missing: {scenario} needs the {} it is run on",
                        kind.as_str()
                    ),
                ),
                (false, Some(_)) => self.push(
                    key,
                    format!(
                        "{scenario} is run on a {}, not a {}",
                        takes.as_str(),
                        kind.as_str()
                    ),
                ),
                (false, None) => {}
            }
        }
        let schedule = match Schedule::parse(&d.schedule) {
            Ok(s) => Some(s),
            Err(message) => {
                self.push(format!("{p}.schedule"), message);
                None
            }
        };
        if let Some(f) = d.for_ {
            if f.0 < Duration::from_secs(1) || f.0 > MAX_FOR {
                self.push(
                    format!("{p}.for"),
                    format!(
                        "must be between 1s and {}",
                        humantime::format_duration(MAX_FOR)
                    ),
                );
            } else if schedule.is_some_and(|s| f.0 >= s.0) {
                self.push(
                    format!("{p}.for"),
                    format!(
                        "must be shorter than the schedule ({}): a drill ends before the next one starts",
                        d.schedule
                    ),
                );
            }
        }
    }

    /// One `[[rules]]` entry at `p`: a built-in rule, scoped to known tenants and sources,
    /// routed to known notifiers.
    fn rule(
        &mut self,
        p: &str,
        r: &RuleOverride,
        tenants: &HashSet<&str>,
        sources: &HashSet<&str>,
        notifiers: &HashSet<&str>,
    ) {
        if !RULE_IDS.contains(&r.rule.as_str()) {
            self.push(
                format!("{p}.rule"),
                format!(
                    "unknown rule `{}` (built-in rules: {})",
                    r.rule,
                    RULE_IDS.join(", ")
                ),
            );
        }
        if let Some(t) = &r.tenant {
            self.reference(format!("{p}.tenant"), "tenant", t, tenants);
        }
        if let Some(s) = &r.source {
            self.reference(format!("{p}.source"), "source", s, sources);
        }
        for (j, n) in r.notifiers.iter().enumerate() {
            self.reference(format!("{p}.notifiers[{j}]"), "notifier", n, notifiers);
        }
        self.rule_incident_policy(p, r);
    }

    /// A `[[rules]]` entry's incident keys: only on the rules that may declare an incident,
    /// and a hold that still tells tenants soon.
    fn rule_incident_policy(&mut self, p: &str, r: &RuleOverride) {
        let set = [
            ("auto_declare", r.auto_declare.is_some()),
            ("auto_notify_tenants", r.auto_notify_tenants.is_some()),
            ("notify_hold", r.notify_hold.is_some()),
        ];
        if !AUTO_DECLARE_RULES.contains(&r.rule.as_str()) && RULE_IDS.contains(&r.rule.as_str()) {
            for (key, _) in set.iter().filter(|(_, is_set)| *is_set) {
                self.push(
                    format!("{p}.{key}"),
                    format!(
                        "`{}` cannot declare incidents: only the critical alerts that name a tenant do ({})",
                        r.rule,
                        AUTO_DECLARE_RULES.join(", ")
                    ),
                );
            }
        }
        if let Some(h) = r.notify_hold {
            self.notify_hold(format!("{p}.notify_hold"), h.0);
        }
    }

    fn notify_hold(&mut self, path: String, hold: Duration) {
        if hold > MAX_NOTIFY_HOLD {
            self.push(
                path,
                format!(
                    "{} is too long: tenants must hear of an incident within {} (write a shorter hold, or auto_notify_tenants = false to let a person tell them)",
                    humantime::format_duration(hold),
                    humantime::format_duration(MAX_NOTIFY_HOLD)
                ),
            );
        }
    }

    /// `[incidents]`: templates that parse, a hold that still tells tenants soon, an update
    /// promise of at least a minute, and `email_via` naming an e-mail notifier.
    fn incidents(&mut self, i: &IncidentsConfig, notifiers: &[NotifierConfig]) {
        for (name, text) in &i.templates {
            let path = format!("incidents.templates.{name}");
            if !TEMPLATE_NAMES.contains(&name.as_str()) {
                self.push(
                    path,
                    format!(
                        "unknown template `{name}` (templates: {})",
                        TEMPLATE_NAMES.join(", ")
                    ),
                );
            } else {
                match Template::parse(text) {
                    Err(e) => self.push(path, e.to_string()),
                    // A drill's notice must say it is one: with drill notices on, a template of
                    // the operator's own that leaves `{drill}` out would tell a tenant of an
                    // outage that never happened, unmarked.
                    Ok(t) if i.drill_tenant_notices && !t.placeholders().contains(&"drill") => {
                        self.push(
                            path,
                            "does not use `{drill}` while `incidents.drill_tenant_notices` is on: put `{drill}` first, so a drill's notice tells the tenant it is a drill and no real outage happened",
                        )
                    }
                    Ok(_) => {}
                }
            }
        }
        self.notify_hold("incidents.notify_hold".into(), i.notify_hold.0);
        if i.update_every.0 < Duration::from_secs(60) {
            self.push(
                "incidents.update_every",
                "must be at least 1m: every tenant notice promises the next update within this long",
            );
        }
        if let Some(id) = &i.email_via {
            match notifiers.iter().find(|n| n.id == *id) {
                Some(n) if n.kind == NotifierKind::Email => {}
                Some(_) => self.push(
                    "incidents.email_via",
                    format!("notifier `{id}` is not an email notifier: name one whose SMTP server sends tenants' e-mail contacts their notices"),
                ),
                None => {
                    let known: HashSet<&str> = notifiers
                        .iter()
                        .filter(|n| n.kind == NotifierKind::Email)
                        .map(|n| n.id.as_str())
                        .collect();
                    self.reference("incidents.email_via".into(), "email notifier", id, &known);
                }
            }
        }
    }
}
