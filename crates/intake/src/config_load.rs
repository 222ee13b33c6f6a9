//! Layered configuration: embedded defaults, then the TOML file, then `INTAKE_…` environment
//! variables (`INTAKE_ADMIN_TOKEN` sets `admin.token`, `INTAKE_SERVER_PUBLIC_URL` sets
//! `server.public_url`). Array sections (`tenants`, `sources`, …) come from the file only.

use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use intake_core::config::{Config, ConfigError, ConfigProblem};

/// The sections an environment variable can set a key of.
const SECTIONS: [&str; 9] = [
    "server",
    "storage",
    "admin",
    "metrics",
    "cluster",
    "monitor",
    "canary",
    "incidents",
    "reconcile",
];

/// Maps `server_public_url` to `server.public_url`; `None` for variables that are not config
/// keys (`INTAKE_URL`, `INTAKE_TOKEN` and `INTAKE_LOG` belong to the CLI).
fn env_key(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    SECTIONS.iter().find_map(|s| {
        key.strip_prefix(s)
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!("{s}.{rest}"))
    })
}

/// Loads the configuration from `path` (or the embedded default when `None`) and the
/// environment, and validates it.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    Config::from_figment(layers(path)?).map_err(blame_environment)
}

/// Loads without validating, for `check-config`, which adds its own checks and reports every
/// problem at once.
pub fn extract(path: Option<&Path>) -> Result<Config, ConfigError> {
    Config::extract(layers(path)?).map_err(blame_environment)
}

fn layers(path: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![ConfigProblem {
                    path: "(file)".into(),
                    message: format!("cannot read: {e}"),
                }],
            })?;
            Figment::new().merge(Toml::string(&text))
        }
        None => Figment::from(Serialized::defaults(Config::embedded_default())),
    };
    // Environment values are kept as text (`INTAKE_ADMIN_TOKEN=12345` is a token, not a
    // number); the few non-text keys accept their text form.
    for (name, value) in std::env::vars() {
        if let Some(key) = name.strip_prefix("INTAKE_").and_then(env_key) {
            figment = figment.merge(Serialized::default(&key, value));
        }
    }
    Ok(figment)
}

/// The environment variable that sets a problem's key, when one is set: a problem that came
/// from the environment must not be blamed on the file.
pub fn blame_environment(mut err: ConfigError) -> ConfigError {
    for p in &mut err.problems {
        let var = format!("INTAKE_{}", p.path.replace('.', "_").to_ascii_uppercase());
        if env_key(&var["INTAKE_".len()..]).is_some() && std::env::var_os(&var).is_some() {
            p.message
                .push_str(&format!(" (set by the environment variable {var})"));
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_sections() {
        assert_eq!(env_key("ADMIN_TOKEN").as_deref(), Some("admin.token"));
        assert_eq!(
            env_key("server_public_url").as_deref(),
            Some("server.public_url")
        );
        assert_eq!(env_key("STORAGE_URL").as_deref(), Some("storage.url"));
        assert_eq!(env_key("METRICS_TOKEN").as_deref(), Some("metrics.token"));
        assert_eq!(
            env_key("RECONCILE_BUDGET_SHARE").as_deref(),
            Some("reconcile.budget_share")
        );
        assert_eq!(
            env_key("RECONCILE_AUTO_BACKFILL").as_deref(),
            Some("reconcile.auto_backfill")
        );
        assert_eq!(env_key("URL"), None);
        assert_eq!(env_key("TOKEN"), None);
        assert_eq!(env_key("LOG"), None);
        assert_eq!(env_key("ADMIN"), None);
    }
}
