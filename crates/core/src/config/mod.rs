//! The configuration model: what `intake.toml` may say, its defaults, and the checks that turn
//! a wrong file into precise errors before anything starts.
//!
//! Parsing goes through [`figment`] so that the binary can layer the file and `INTAKE_…`
//! environment variables over the embedded defaults; this module only ever parses text it is
//! given (no IO), then [`Config::validate`] checks what serde cannot: references between
//! sections, duplicate ids, URLs and secrets.
//!
//! One file per group of sections, each holding its types, defaults and serde forms:
//! `units` (durations, sizes, rates), `server` (server, storage, cluster, admin), `sources`
//! (tenants, sources), `destinations`, `alerting` (monitor, rules, notifiers, canary,
//! incidents), `reconcile` and `drills` (scheduled fire drills); `validate` holds the checks, one function per section, and the error types;
//! `mask` holds the one function that hides secrets from whatever is shown.
//! Every item is re-exported here, so its path is `intake_core::config::…` whichever file it
//! is in. The section files import only `units` (and core's `delivery`, `drill` and `incident`); only `validate` and
//! this root see every section.

mod alerting;
mod destinations;
mod drills;
mod mask;
mod reconcile;
mod server;
mod sources;
mod units;
mod validate;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use alerting::{
    is_loopback, AutoDeclarePolicy, CanaryConfig, CanaryOverride, CanaryTiming, IncidentsConfig,
    MonitorConfig, NotifierConfig, NotifierKind, QuietCalendar, RuleOverride, RuleThreshold,
    Severity, SmtpTls, NO_OFF_SWITCH, RULE_IDS,
};
pub use destinations::{CompletionMode, DestinationConfig, RetryConfig};
pub use drills::DrillConfig;
pub use mask::{exposure, mask, mask_tree, Exposure, MASK};
pub use reconcile::{ReconcileConfig, MAX_RECONCILE_SAMPLE};
pub use server::{
    AdminConfig, ClusterConfig, MetricsConfig, ServerConfig, StorageConfig, DEFAULT_RETENTION,
    MIN_RETENTION,
};
pub use sources::{
    ApiConfig, Contact, GenericFields, GenericSignature, HmacAlgorithm, SharedSecretAuth,
    SignatureEncoding, SourceConfig, SourceKind, TenantConfig,
};
pub use units::{ByteSize, Dur, DurOrOff, Rate};
pub use validate::{ConfigError, ConfigProblem};

/// The whole configuration file.
#[derive(Clone, Default, Serialize, Deserialize)]
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
    /// `[metrics]`
    #[serde(default)]
    pub metrics: MetricsConfig,
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
    /// `[reconcile]`
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// `[[drills]]`
    #[serde(default)]
    pub drills: Vec<DrillConfig>,
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
    /// Kustomer source delivering to the built-in demo handler, so a newcomer can curl it, and
    /// a webhook notifier to the built-in notification receiver, so a fire drill's alert is
    /// seen arriving.
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

# Alerts go to the demo notification receiver (GET /demo/notifications lists them).
[[notifiers]]
id = "demo-notifications"
kind = "webhook"
url = "http://127.0.0.1:8080/demo/notifications"
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

    /// The notifier with this id.
    pub fn notifier(&self, id: &str) -> Option<&NotifierConfig> {
        self.notifiers.iter().find(|n| n.id == id)
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// The whole configuration as JSON with every secret masked by [`mask`], key by key: the
    /// form in which a configuration may be shown.
    pub fn masked_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        mask_tree(&mut value);
        value
    }

    /// Checks what the types cannot: references, duplicates, URLs, secrets, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// `Debug` of the configuration types that can hold a secret goes through [`mask`] as well,
/// each at the key its values sit at.
macro_rules! masked_debug {
    ($($ty:ident => $prefix:literal),* $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                mask::debug(f, stringify!($ty), $prefix, self)
            }
        }
    )*};
}

masked_debug! {
    Config => "",
    ServerConfig => "server",
    StorageConfig => "storage",
    AdminConfig => "admin",
    MetricsConfig => "metrics",
    MonitorConfig => "monitor",
    TenantConfig => "tenants",
    Contact => "tenants.contacts",
    SourceConfig => "sources",
    ApiConfig => "sources.api",
    DestinationConfig => "destinations",
    NotifierConfig => "notifiers",
}

#[cfg(test)]
mod tests;
