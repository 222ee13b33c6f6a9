//! The configuration model: what `intake.toml` may say, its defaults, and the checks that turn
//! a wrong file into precise errors before anything starts.
//!
//! Parsing goes through [`figment`] so that the binary can layer the file and `INTAKE_…`
//! environment variables over the embedded defaults; this module only ever parses text it is
//! given (no IO), then [`Config::validate`] checks what serde cannot: references between
//! sections, duplicate ids, URLs and secrets.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::delivery::RetryPolicy;
use crate::signature::SigningKey;

/// The ids of the built-in alert rules. They are part of the external contract.
pub const RULE_IDS: [&str; 12] = [
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
    "watchdog",
];

/// A duration written as a string such as `"10s"`, `"2m"`, `"24h"` or `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Whole seconds.
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write durations like \"10s\", \"2m\" or \"24h\""
            ))
        })
    }
}

/// A size in bytes, written as an integer or a string such as `"1MiB"`, `"512KiB"`, `"2MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"1MiB"`-style text.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(mult).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{s}`; write sizes like 1048576, \"512KiB\" or \"1MiB\""
                ))
            }),
        }
    }
}

/// Scalars that environment variables can set arrive as text (`INTAKE_STORAGE_MAX_BATCH=512`);
/// these accept the text form as well as the TOML one.
mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrText {
        Bool(bool),
        Text(String),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CountOrText {
        Count(u64),
        Text(String),
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match BoolOrText::deserialize(d)? {
            BoolOrText::Bool(b) => Ok(b),
            BoolOrText::Text(t) => t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!("`{t}` is not a boolean (true or false)"))
            }),
        }
    }

    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let n = match CountOrText::deserialize(d)? {
            CountOrText::Count(n) => n,
            CountOrText::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a whole number")))?,
        };
        usize::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is too large")))
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    #[serde(default)]
    pub server: ServerConfig,
    /// `[storage]`
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[cluster]`
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// `[[tenants]]`
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// `[[sources]]`
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// `[[destinations]]`
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// `[[notifiers]]`
    #[serde(default)]
    pub notifiers: Vec<NotifierConfig>,
    /// `[monitor]`
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// `[canary]`
    #[serde(default)]
    pub canary: CanaryConfig,
    /// `[[rules]]`
    #[serde(default)]
    pub rules: Vec<RuleOverride>,
    /// `[incidents]`
    #[serde(default)]
    pub incidents: IncidentsConfig,
}

/// `[server]`: where intake listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to bind, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub listen: String,
    /// The URL the outside world reaches this server at (canaries enter here).
    pub public_url: Option<String>,
    /// The largest webhook body accepted; larger ones get 413.
    pub max_body_size: ByteSize,
    /// How long a graceful shutdown waits for in-flight deliveries before releasing them.
    pub shutdown_timeout: Dur,
    /// Serve a built-in handler at `/demo/handler` that accepts and logs deliveries. Only the
    /// embedded default turns this on, so a newcomer sees a delivery with no other program.
    #[serde(deserialize_with = "lenient::boolean")]
    pub demo_handler: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_size: ByteSize(1 << 20),
            shutdown_timeout: Dur::secs(10),
            demo_handler: false,
        }
    }
}

/// `[storage]`: where events and the queue live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path/to/intake.db` (embedded, the default) or `postgres://…`.
    pub url: String,
    /// The most requests one group commit may carry.
    #[serde(deserialize_with = "lenient::count")]
    pub max_batch: usize,
    /// PostgreSQL only: connections in the pool (one more LISTENs for new work).
    #[serde(deserialize_with = "lenient::count")]
    pub pool_size: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite://./intake-data/intake.db".into(),
            max_batch: 1024,
            pool_size: 16,
        }
    }
}

/// `[cluster]`: how nodes sharing a PostgreSQL database see each other. With SQLite there is
/// one node, and these keys only name it and pace its (local) duties.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id. A node restarting under the same id takes its leases back at once;
    /// without one, a random id is chosen at each start (`node-1a2b3c4d`).
    pub node_id: Option<String>,
    /// How often this node records that it is alive.
    pub heartbeat: Dur,
    /// A node silent for this long is taken for dead: its deliveries in flight are made due.
    pub node_timeout: Dur,
    /// How long a node holds a singleton duty's lease without renewing it; when the holder
    /// dies, another node takes the duty over within this time.
    pub duty_lease: Dur,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            heartbeat: Dur::secs(2),
            node_timeout: Dur::secs(15),
            duty_lease: Dur::secs(10),
        }
    }
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The operator-wide bearer token. Without it the admin API answers 401 to everyone.
    pub token: Option<String>,
}

/// `[[tenants]]`: a customer of the operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Stable id, e.g. `maelys`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Who receives this tenant's incident notices.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// A bearer token for the admin API that sees only this tenant.
    #[serde(default)]
    pub api_token: Option<String>,
}

/// A tenant contact for incident notices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Contact {
    /// A JSON POST to `url`.
    Webhook {
        /// Where to POST.
        url: String,
    },
    /// An e-mail to `to`.
    Email {
        /// The address.
        to: String,
    },
}

/// The kind of system of record a source connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Kustomer.
    Kustomer,
    /// Zendesk.
    Zendesk,
    /// Intercom.
    Intercom,
    /// Front.
    Front,
    /// Freshdesk.
    Freshdesk,
    /// Gorgias.
    Gorgias,
    /// Any system that signs with an HMAC header; configured per source.
    Generic,
}

impl SourceKind {
    /// The config and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Kustomer => "kustomer",
            SourceKind::Zendesk => "zendesk",
            SourceKind::Intercom => "intercom",
            SourceKind::Front => "front",
            SourceKind::Freshdesk => "freshdesk",
            SourceKind::Gorgias => "gorgias",
            SourceKind::Generic => "generic",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[sources]]`: one system-of-record connection of one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Stable id; the ingest URL is `/ingest/{id}`.
    pub id: String,
    /// The tenant this source belongs to.
    pub tenant: String,
    /// The system of record.
    pub kind: SourceKind,
    /// Signing secrets. Two may be active while one is rotated.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The destinations every event of this source is delivered to.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// API access for backfill and reconciliation.
    #[serde(default)]
    pub api: Option<ApiConfig>,
    /// For `kind = "generic"`: how requests are signed.
    #[serde(default)]
    pub signature: Option<GenericSignature>,
    /// For `kind = "generic"`: where the event's fields are in the JSON body.
    #[serde(default)]
    pub fields: Option<GenericFields>,
    /// For systems that do not sign their webhooks (`freshdesk`, `gorgias`): how a request
    /// proves it comes from them. Defaults to the `X-Intake-Secret` header.
    #[serde(default)]
    pub auth: Option<SharedSecretAuth>,
    /// For schemes that sign a timestamp (`zendesk`, `front`): how far the request's timestamp
    /// may be from intake's clock. Default 5 minutes.
    #[serde(default)]
    pub tolerance: Option<Dur>,
}

impl SourceConfig {
    /// The timestamp tolerance of signed-timestamp schemes.
    pub fn tolerance(&self) -> Duration {
        self.tolerance.map_or(Duration::from_secs(300), |d| d.0)
    }

    /// How an unsigned system's requests are authenticated.
    pub fn auth(&self) -> SharedSecretAuth {
        self.auth.clone().unwrap_or_default()
    }
}

/// How requests from a system that does not sign its webhooks are authenticated: the source's
/// `secrets` are compared, in constant time, with a header the system is configured to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "scheme", rename_all = "lowercase")]
pub enum SharedSecretAuth {
    /// A custom header whose value is one of the secrets.
    Header {
        /// The header's name.
        #[serde(default = "default_auth_header")]
        header: String,
    },
    /// HTTP Basic authentication; each secret is `user:password`.
    Basic,
}

impl Default for SharedSecretAuth {
    fn default() -> Self {
        SharedSecretAuth::Header {
            header: default_auth_header(),
        }
    }
}

fn default_auth_header() -> String {
    "X-Intake-Secret".into()
}

/// API access to a system of record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// e.g. `https://maelys.api.kustomerapp.com`
    pub base_url: String,
    /// The API key or token.
    pub token: String,
    /// The user the token belongs to, for APIs with basic authentication (Zendesk's
    /// `{email}/token`, Gorgias' account e-mail). Unused by bearer-token APIs.
    #[serde(default)]
    pub username: Option<String>,
    /// Requests per minute intake allows itself against this API.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
}

/// The HMAC of a generic source's signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA1 (older systems).
    Sha1,
    /// HMAC-SHA512.
    Sha512,
}

/// How a generic source's signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic source's signature scheme: `header: prefix + encode(HMAC(secret, raw body))`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSignature {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    /// The HMAC algorithm.
    #[serde(default = "default_algorithm")]
    pub algorithm: HmacAlgorithm,
    /// The encoding of the digest.
    #[serde(default = "default_encoding")]
    pub encoding: SignatureEncoding,
    /// A prefix before the digest, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
}

fn default_algorithm() -> HmacAlgorithm {
    HmacAlgorithm::Sha256
}

fn default_encoding() -> SignatureEncoding {
    SignatureEncoding::Hex
}

/// Where a generic source's fields are, as JSON pointers (RFC 6901) into the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericFields {
    /// The sender's event id.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The channel.
    pub channel: Option<String>,
    /// When it happened (RFC 3339 or unix seconds).
    pub occurred_at: Option<String>,
    /// The object's id.
    pub object_id: Option<String>,
    /// The conversation (ticket) id.
    pub conversation_id: Option<String>,
}

impl Default for GenericFields {
    fn default() -> Self {
        GenericFields {
            event_id: Some("/id".into()),
            event_type: Some("/type".into()),
            channel: Some("/channel".into()),
            occurred_at: None,
            object_id: None,
            conversation_id: None,
        }
    }
}

/// `[[destinations]]`: the operator's handler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Stable id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_…` or plain text).
    pub secret: String,
    /// How long one attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Attempts in all before the delivery is dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The backoff between attempts.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Attempts in flight at once to this destination.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts started per second at most (no limit when absent).
    #[serde(default)]
    pub rate_limit: Option<Rate>,
}

fn default_timeout() -> Dur {
    Dur::secs(10)
}

fn default_max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}

fn default_concurrency() -> usize {
    64
}

/// The backoff between attempts, written either as a table,
/// `retry = { initial = "5s", max = "1h", multiplier = 2.0, jitter = 0.2 }`, or as an explicit
/// schedule of delays, `retry = ["10s", "1m", "10m", "1h"]` (the last delay repeats).
#[derive(Debug, Clone, Serialize)]
pub struct RetryConfig {
    /// Delay after the first failure.
    pub initial: Dur,
    /// Longest delay between two attempts.
    pub max: Dur,
    /// Growth factor.
    pub multiplier: f64,
    /// Randomized fraction of each delay.
    pub jitter: f64,
    /// Explicit delays after the first, second, … failure; when given, `initial`, `max` and
    /// `multiplier` are not used.
    pub schedule: Vec<Dur>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = RetryPolicy::default();
        RetryConfig {
            initial: Dur(p.initial_delay),
            max: Dur(p.max_delay),
            multiplier: p.multiplier,
            jitter: p.jitter,
            schedule: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for RetryConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct Table {
            initial: Dur,
            max: Dur,
            multiplier: f64,
            jitter: f64,
            schedule: Vec<Dur>,
        }
        impl Default for Table {
            fn default() -> Self {
                let r = RetryConfig::default();
                Table {
                    initial: r.initial,
                    max: r.max,
                    multiplier: r.multiplier,
                    jitter: r.jitter,
                    schedule: r.schedule,
                }
            }
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Schedule(Vec<Dur>),
            Table(Table),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a table like { initial = \"5s\", max = \"1h\", multiplier = 2.0, jitter = 0.2 } \
                 or a list of delays like [\"10s\", \"1m\", \"10m\"]",
            )
        })?;
        Ok(match form {
            Form::Schedule(schedule) => RetryConfig {
                schedule,
                ..RetryConfig::default()
            },
            Form::Table(t) => RetryConfig {
                initial: t.initial,
                max: t.max,
                multiplier: t.multiplier,
                jitter: t.jitter,
                schedule: t.schedule,
            },
        })
    }
}

/// A rate in events per second, written as a number (`50`, per second) or as text with a unit
/// (`"50/s"`, `"600/m"`, `"10000/h"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl Rate {
    /// Parses `"600/m"`-style text.
    pub fn parse(s: &str) -> Option<Self> {
        let (n, unit) = s.split_once('/').unwrap_or((s, "s"));
        let n: f64 = n.trim().parse().ok()?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return None,
        };
        Some(Rate(n / per))
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Rate(n)),
            Raw::Text(t) => Rate::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid rate `{t}`; write a number per second (50) or \"50/s\", \"600/m\", \"10000/h\""
                ))
            }),
        }
    }
}

impl DestinationConfig {
    /// The retry policy this destination's settings describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            initial_delay: self.retry.initial.0,
            max_delay: self.retry.max.0,
            multiplier: self.retry.multiplier,
            jitter: self.retry.jitter,
            schedule: self.retry.schedule.iter().map(|d| d.0).collect(),
        }
    }
}

/// The kind of a notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// PagerDuty routing key.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Only alerts of these severities (all when empty).
    #[serde(default)]
    pub severities: Vec<Severity>,
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Dur::secs(60),
            max_silence: Dur::secs(24 * 3600),
            repeat_interval: Dur::secs(4 * 3600),
            watchdog_url: None,
            watchdog_interval: None,
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
const OFF_SWITCHES: [&str; 12] = [
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

/// `[canary]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// How often a canary is sent per source.
    pub interval: Dur,
    /// How long a canary may take to reach the handler.
    pub deadline: Dur,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            interval: Dur::secs(60),
            deadline: Dur::secs(120),
        }
    }
}

/// `[[rules]]`: an override of a built-in rule, optionally scoped.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// `[incidents]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Declare an incident automatically when a critical alert names a tenant.
    #[serde(deserialize_with = "lenient::boolean")]
    pub auto_declare: bool,
    /// Notice templates by name (`declared`, `updated`, `resolved`).
    pub templates: BTreeMap<String, String>,
}

/// One thing wrong with a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, e.g. `sources[1].destinations[0]`.
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// Every problem, in file order where possible.
    pub problems: Vec<Problem>,
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
            .map(|e| {
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
                    if matches!(section, "monitor" | "rules" | "notifiers" | "")
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
                Problem { path, message }
            })
            .collect();
        ConfigError { problems }
    }
}

impl Config {
    /// Parses TOML text (no environment, no file) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::new().merge(Toml::string(text)))
    }

    /// Extracts a configuration from layered providers over the defaults, then validates it.
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config = Config::extract(figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Extracts a configuration from layered providers over the defaults, without the checks
    /// of [`Config::validate`] (so that a caller can add its own and report all at once).
    pub fn extract(figment: Figment) -> Result<Config, ConfigError> {
        Ok(Figment::from(Serialized::defaults(Config::default()))
            .merge(figment)
            .extract()?)
    }

    /// The configuration `intake serve` runs with when given no file: one demo tenant with a
    /// Kustomer source delivering to the built-in demo handler, so a newcomer can curl it.
    pub fn embedded_default() -> Config {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
demo_handler = true

[admin]
token = "dev-admin-token"

[[tenants]]
id = "demo"
name = "Demo tenant"

[[destinations]]
id = "demo-handler"
url = "http://127.0.0.1:8080/demo/handler"
secret = "whsec_ZGVtby1kZXN0aW5hdGlvbi1zZWNyZXQ="
timeout = "5s"
max_attempts = 5

[[sources]]
id = "demo-kustomer"
tenant = "demo"
kind = "kustomer"
secrets = ["demo-kustomer-secret"]
destinations = ["demo-handler"]
"#;
        match Config::from_toml_str(text) {
            Ok(c) => c,
            // The text above is a constant checked by a unit test; failing here is a bug in
            // this file, not bad input.
            Err(e) => unreachable!("embedded default configuration is invalid: {e}"),
        }
    }

    /// The source with this id.
    pub fn source(&self, id: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.id == id)
    }

    /// The destination with this id.
    pub fn destination(&self, id: &str) -> Option<&DestinationConfig> {
        self.destinations.iter().find(|d| d.id == id)
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// Checks what the types cannot: references, duplicates, URLs, secrets, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut v = Validator::default();
        v.check(self);
        if v.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: v.problems,
            })
        }
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
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
            Ok(u) => self.push(
                path,
                format!("`{value}` must be an http(s) URL, not {}", u.scheme()),
            ),
            Err(e) => self.push(path, format!("`{value}` is not a URL ({e})")),
        }
    }

    fn check(&mut self, c: &Config) {
        if c.server.listen.parse::<SocketAddr>().is_err() {
            self.push(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    c.server.listen
                ),
            );
        }
        if let Some(u) = &c.server.public_url {
            self.http_url("server.public_url".into(), u);
        }
        if c.server.max_body_size.0 == 0 {
            self.push("server.max_body_size", "must be more than 0 bytes");
        }
        if !(c.storage.url.starts_with("sqlite://")
            || c.storage.url.starts_with("postgres://")
            || c.storage.url.starts_with("postgresql://"))
        {
            self.push(
                "storage.url",
                format!(
                    "`{}` must start with sqlite:// (e.g. sqlite://./intake-data/intake.db) or postgres://",
                    c.storage.url
                ),
            );
        }
        if c.storage.max_batch == 0 {
            self.push("storage.max_batch", "must be at least 1");
        }
        if c.storage.pool_size < 2 {
            self.push("storage.pool_size", "must be at least 2");
        }
        if let Some(id) = &c.cluster.node_id {
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
        if c.cluster.heartbeat.0.is_zero() {
            self.push("cluster.heartbeat", "must be longer than 0s");
        }
        if c.cluster.node_timeout.0 < c.cluster.heartbeat.0 * 3 {
            self.push(
                "cluster.node_timeout",
                "must be at least three heartbeats, or a node that is merely slow is taken for dead",
            );
        }
        if c.cluster.duty_lease.0 < std::time::Duration::from_secs(1) {
            self.push("cluster.duty_lease", "must be at least 1s");
        }
        if matches!(&c.admin.token, Some(t) if t.is_empty()) {
            self.push(
                "admin.token",
                "must not be empty (remove the key to disable the admin API)",
            );
        }

        let tenants = self.ids("tenants", c.tenants.iter().map(|t| t.id.as_str()));
        let destinations = self.ids("destinations", c.destinations.iter().map(|d| d.id.as_str()));
        let sources = self.ids("sources", c.sources.iter().map(|s| s.id.as_str()));
        let notifiers = self.ids("notifiers", c.notifiers.iter().map(|n| n.id.as_str()));

        let mut tokens = HashSet::new();
        if let Some(t) = &c.admin.token {
            tokens.insert(t.as_str());
        }
        for (i, t) in c.tenants.iter().enumerate() {
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

        for (i, d) in c.destinations.iter().enumerate() {
            let p = format!("destinations[{i}]");
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
        }

        for (i, s) in c.sources.iter().enumerate() {
            let p = format!("sources[{i}]");
            self.reference(format!("{p}.tenant"), "tenant", &s.tenant, &tenants);
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
                    &destinations,
                );
                if !seen.insert(d) {
                    self.push(
                        format!("{p}.destinations[{j}]"),
                        format!("`{d}` is listed twice"),
                    );
                }
            }
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

        for (i, n) in c.notifiers.iter().enumerate() {
            let p = format!("notifiers[{i}]");
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
                }
                NotifierKind::Pagerduty => {
                    if n.routing_key.is_none() {
                        self.push(format!("{p}.routing_key"), "is required for pagerduty");
                    }
                }
            }
        }

        if c.monitor.interval.0.is_zero() {
            self.push("monitor.interval", "must be longer than 0s");
        }
        if c.monitor.max_silence.0.is_zero() {
            self.push(
                "monitor.max_silence",
                "must be longer than 0s (silences need an expiry of at most this long)",
            );
        }
        if c.monitor.repeat_interval.0 < Duration::from_secs(60) {
            self.push(
                "monitor.repeat_interval",
                "must be at least 1m; a firing alert is repeated this often",
            );
        }
        if let Some(u) = &c.monitor.watchdog_url {
            self.http_url("monitor.watchdog_url".into(), u);
        }
        if let Some(d) = c.monitor.watchdog_interval {
            if d.0 < Duration::from_secs(1) {
                self.push("monitor.watchdog_interval", "must be at least 1s");
            }
        }
        if c.canary.interval.0.is_zero() || c.canary.deadline.0.is_zero() {
            self.push("canary", "interval and deadline must be longer than 0s");
        }

        for (i, r) in c.rules.iter().enumerate() {
            let p = format!("rules[{i}]");
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
                self.reference(format!("{p}.tenant"), "tenant", t, &tenants);
            }
            if let Some(s) = &r.source {
                self.reference(format!("{p}.source"), "source", s, &sources);
            }
            for (j, n) in r.notifiers.iter().enumerate() {
                self.reference(format!("{p}.notifiers[{j}]"), "notifier", n, &notifiers);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration example from PRODUCT.md, as shipped in `examples/intake.toml`.
    const EXAMPLE: &str = include_str!("../../../examples/intake.toml");

    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml_str(text) {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn there_is_no_switch_that_turns_alerting_off() {
        for text in [
            "[monitor]\nenabled = false\n",
            "[monitor]\nsilence_all = true\n",
            "[[rules]]\nrule = \"inbound_drop\"\nenabled = false\n",
        ] {
            let p = problems(text);
            assert_eq!(p.len(), 1, "{text}: {p:?}");
            assert!(p[0].contains("alerting cannot be switched off"), "{p:?}");
            assert!(p[0].contains("intake silence add"), "{p:?}");
        }
        // Other unknown keys keep figment's plain message.
        let p = problems("[monitor]\nintervall = \"1m\"\n");
        assert!(!p[0].contains("switched off"), "{p:?}");
    }

    #[test]
    fn monitor_watchdog_and_repeat_keys_are_checked() {
        let c = Config::from_toml_str(
            "[monitor]\ninterval = \"30s\"\nwatchdog_url = \"https://hc-ping.com/abc\"\n",
        )
        .unwrap();
        assert_eq!(c.monitor.watchdog_every(), Duration::from_secs(30));
        assert_eq!(c.monitor.repeat_interval, Dur::secs(4 * 3600));
        let p = problems(
            "[monitor]\nwatchdog_url = \"ftp://x\"\nwatchdog_interval = \"0s\"\nrepeat_interval = \"10s\"\nmax_silence = \"0s\"\n",
        );
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("monitor.watchdog_url")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains("monitor.repeat_interval")),
            "{p:?}"
        );
    }

    #[test]
    fn product_example_is_valid() {
        let c = Config::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(c.destinations[0].timeout, Dur::secs(10));
        assert_eq!(c.server.max_body_size, ByteSize(1 << 20));
        assert_eq!(c.sources[0].kind, SourceKind::Kustomer);
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert!(c.server.demo_handler);
        assert_eq!(c.sources.len(), 1);
    }

    #[test]
    fn unknown_key_is_named() {
        let p = problems(&EXAMPLE.replace(
            "interval = \"60s\"\n\n[[rules]]",
            "intervall = \"60s\"\n\n[[rules]]",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("monitor") && p[0].contains("intervall"),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_destination_is_named_with_the_known_ones() {
        let p = problems(&EXAMPLE.replace(
            "destinations = [\"handler\"]",
            "destinations = [\"handlr\"]",
        ));
        assert_eq!(
            p,
            vec!["sources[0].destinations[0]: unknown destination `handlr` (known: handler)"]
        );
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let p = problems(&EXAMPLE.replace("timeout = \"10s\"", "timeout = \"10 parsecs\""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("destinations[0].timeout: invalid duration"),
            "{p:?}"
        );
        assert!(p[0].contains("\"10s\""), "{p:?}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let dup = EXAMPLE.to_string()
            + "\n[[destinations]]\nid = \"handler\"\nurl = \"http://127.0.0.1:9001/\"\nsecret = \"s\"\n";
        assert_eq!(
            problems(&dup),
            vec!["destinations[1].id: duplicate id `handler`"]
        );
    }

    #[test]
    fn unknown_rule_and_kind_are_refused() {
        let p = problems(&EXAMPLE.replace("rule = \"queue_stalled\"", "rule = \"queue_stuck\""));
        assert!(
            p[0].starts_with("rules[0].rule: unknown rule `queue_stuck`"),
            "{p:?}"
        );
        let p = problems(&EXAMPLE.replace("kind = \"kustomer\"", "kind = \"kustomerr\""));
        assert!(p[0].contains("kustomerr"), "{p:?}");
    }

    #[test]
    fn retry_accepts_a_table_or_a_schedule_and_rates_take_units() {
        let base = EXAMPLE.replace(
            "max_attempts = 10",
            "max_attempts = 10\nretry = [\"10s\", \"1m\"]\nrate_limit = \"600/m\"",
        );
        let c = Config::from_toml_str(&base).unwrap();
        let p = c.destinations[0].retry_policy();
        assert_eq!(
            p.schedule,
            vec![Duration::from_secs(10), Duration::from_secs(60)]
        );
        assert_eq!(c.destinations[0].rate_limit, Some(Rate(10.0)));
        let table = EXAMPLE.replace(
            "max_attempts = 10",
            "max_attempts = 10\nretry = { initial = \"1s\" }\nrate_limit = 5",
        );
        let c = Config::from_toml_str(&table).unwrap();
        assert_eq!(c.destinations[0].retry.initial, Dur::secs(1));
        assert_eq!(c.destinations[0].retry.max, Dur::secs(3600));
        assert_eq!(c.destinations[0].rate_limit, Some(Rate(5.0)));
        let bad = EXAMPLE.replace("max_attempts = 10", "max_attempts = 10\nretry = 3");
        let p = problems(&bad);
        assert!(
            p[0].contains("destinations[0].retry") && p[0].contains("list of delays"),
            "{p:?}"
        );
        let bad = EXAMPLE.replace(
            "max_attempts = 10",
            "max_attempts = 10\nrate_limit = \"fast\"",
        );
        assert!(problems(&bad)[0].contains("600/m"));
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(ByteSize::parse("1MiB"), Some(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("512 KiB"), Some(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("2MB"), Some(ByteSize(2_000_000)));
        assert_eq!(ByteSize::parse("lots"), None);
    }
}
