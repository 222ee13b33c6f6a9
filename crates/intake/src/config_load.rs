//! Layered configuration: embedded defaults, then the TOML file, then `INTAKE_…` environment
//! variables (`INTAKE_ADMIN_TOKEN` sets `admin.token`, `INTAKE_SERVER_PUBLIC_URL` sets
//! `server.public_url`). Array sections (`tenants`, `sources`, …) come from the file only.

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use intake_core::config::{Config, ConfigError, Problem};

/// The sections an environment variable can set a key of.
const SECTIONS: [&str; 6] = ["server", "storage", "admin", "monitor", "canary", "incidents"];

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
    let base = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![Problem { path: "(file)".into(), message: format!("cannot read: {e}") }],
            })?;
            Figment::new().merge(Toml::string(&text))
        }
        None => Figment::from(figment::providers::Serialized::defaults(Config::embedded_default())),
    };
    let env = Env::prefixed("INTAKE_")
        .filter_map(|k| env_key(k.as_str()).map(Into::into))
        .split(".");
    Config::from_figment(base.merge(env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_sections() {
        assert_eq!(env_key("ADMIN_TOKEN").as_deref(), Some("admin.token"));
        assert_eq!(env_key("server_public_url").as_deref(), Some("server.public_url"));
        assert_eq!(env_key("STORAGE_URL").as_deref(), Some("storage.url"));
        assert_eq!(env_key("URL"), None);
        assert_eq!(env_key("TOKEN"), None);
        assert_eq!(env_key("LOG"), None);
        assert_eq!(env_key("ADMIN"), None);
    }
}
