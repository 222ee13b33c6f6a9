//! Secrets never leave intake in output. [`mask`] is the one function that turns a
//! configuration value into what may be printed, logged, put in an error or answered by the
//! API: it decides by the value's key, so every caller that shows a value passes the key it
//! came from (`storage.url`, `sources[0].secrets[1]`, …).
//!
//! What counts as secret is decided by the key's name, not by a list of call sites, so that a
//! new key named like a secret (`…_token`, `…_secret`, `…_password`, `…_key`) is masked
//! without anyone remembering to: tokens and signing secrets are hidden whole; URLs keep
//! their scheme, host, port and path but lose their password and any query parameter named
//! like a credential; the URLs whose path *is* the credential (a Slack incoming webhook, a
//! dead-man's-switch ping, a tenant's webhook) keep only their scheme, host and port.

use std::borrow::Cow;

/// What replaces a hidden value (or the hidden part of a URL).
pub const MASK: &str = "***";

/// How the value of a configuration key may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Shown as it is (ids, durations, addresses, header names, …).
    Public,
    /// A secret as a whole (a token, a signing secret, a routing key): never shown.
    Secret,
    /// A URL that may carry credentials: its password and credential-like query parameters
    /// are hidden, the rest is shown.
    Url,
    /// A URL whose path and query are the credential (a Slack webhook, a watchdog ping, a
    /// tenant's webhook): only its scheme, host and port are shown.
    SecretPathUrl,
}

/// The keys (without indices) whose URL's path is itself a credential.
const SECRET_PATH_URLS: [&str; 3] = [
    "notifiers.url",
    "monitor.watchdog_url",
    "tenants.contacts.url",
];

/// How the value at `key` (a key path as the validator writes it, e.g.
/// `sources[0].api.token`; figment's `sources.0.api.token` works too) may be shown.
pub fn exposure(key: &str) -> Exposure {
    let segments: Vec<&str> = key
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .filter(|s| !s.is_empty() && s.parse::<usize>().is_err())
        .collect();
    if SECRET_PATH_URLS.contains(&segments.join(".").as_str()) {
        return Exposure::SecretPathUrl;
    }
    let name = segments.last().copied().unwrap_or("");
    if is_secret_name(name) {
        Exposure::Secret
    } else if name == "url" || name.ends_with("_url") {
        Exposure::Url
    } else {
        Exposure::Public
    }
}

/// Whether a key (or query parameter) with this name holds a secret as a whole.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "token" | "secret" | "secrets" | "password" | "passwd" | "key" | "routing_key"
    ) || ["_token", "_secret", "_secrets", "_password", "_key"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// Whether a URL query parameter with this name carries a credential (`password`,
/// `sslpassword`, `token`, `api_key`, `sig`, `auth`, …).
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass",
        "secret",
        "token",
        "key",
        "sig",
        "auth",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The value at `key` as it may be shown: unchanged when the key holds nothing secret,
/// otherwise with the secret replaced by [`MASK`] (see [`Exposure`]). Empty values stay
/// empty, so that "must not be empty" still reads right.
pub fn mask<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    if value.is_empty() {
        return Cow::Borrowed(value);
    }
    match exposure(key) {
        Exposure::Public => Cow::Borrowed(value),
        Exposure::Secret => Cow::Borrowed(MASK),
        Exposure::Url => mask_url_credentials(value),
        Exposure::SecretPathUrl => mask_url_path(value),
    }
}

/// Hides a URL's password and credential-like query parameters.
fn mask_url_credentials(value: &str) -> Cow<'_, str> {
    let Ok(mut url) = url::Url::parse(value) else {
        return mask_unparsed(value);
    };
    if url.host().is_none() && value.contains('@') {
        // No authority was recognised, yet something looks like credentials before an `@`.
        return Cow::Owned(format!("{}:{MASK}", url.scheme()));
    }
    let mut changed = false;
    if url.password().is_some() {
        // Only URLs that cannot have a host refuse a password, and those have none.
        changed = url.set_password(Some(MASK)).is_ok();
    }
    if url.query_pairs().any(|(k, _)| is_secret_parameter(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_parameter(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        Cow::Owned(url.to_string())
    } else {
        Cow::Borrowed(value)
    }
}

/// Keeps only a URL's scheme, host and port.
fn mask_url_path(value: &str) -> Cow<'_, str> {
    let Ok(url) = url::Url::parse(value) else {
        // The whole value may be the credential (a path without its scheme and host).
        return match value.find("://") {
            Some(i) => Cow::Owned(format!("{}://{MASK}", &value[..i])),
            None => Cow::Borrowed(MASK),
        };
    };
    let bare = url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    if bare {
        return Cow::Borrowed(value);
    }
    match url.host_str() {
        Some(host) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            Cow::Owned(format!("{}://{host}{port}/{MASK}", url.scheme()))
        }
        None => Cow::Owned(format!("{}:{MASK}", url.scheme())),
    }
}

/// A value given as a URL that does not parse: there is no telling where a password would
/// end in it, so everything after the scheme is hidden when it could hold one.
fn mask_unparsed(value: &str) -> Cow<'_, str> {
    match value.find("://") {
        Some(i) if value[i..].contains(['@', '?', '#']) => {
            Cow::Owned(format!("{}://{MASK}", &value[..i]))
        }
        Some(_) => Cow::Borrowed(value),
        None if value.contains('@') => Cow::Borrowed(MASK),
        None => Cow::Borrowed(value),
    }
}

/// Masks every string of a configuration written as JSON (objects by key, arrays by index),
/// each by the key path it is at: what a whole configuration looks like when shown.
pub fn mask_tree(value: &mut serde_json::Value) {
    walk(String::new(), value);
}

/// `Debug` for a configuration type whose values sit at `prefix` (`destinations`,
/// `sources.api`, …): its fields as JSON, each masked by its key, so that a `{:?}` in a log
/// line or a panic message shows no secret either.
pub(crate) fn debug<T: serde::Serialize>(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    prefix: &str,
    value: &T,
) -> std::fmt::Result {
    let mut v = serde_json::to_value(value).map_err(|_| std::fmt::Error)?;
    walk(prefix.to_string(), &mut v);
    write!(f, "{name} {v}")
}

fn walk(path: String, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            let masked = mask(&path, s).into_owned();
            if masked != *s {
                *s = masked;
            }
        }
        serde_json::Value::Number(_) if exposure(&path) == Exposure::Secret => {
            *value = serde_json::Value::String(MASK.into());
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(format!("{path}[{i}]"), item);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key that can hold a secret, with a value holding `S3CR3T` and what may be shown.
    const SECRET_KEYS: &[(&str, &str, &str)] = &[
        ("admin.token", "S3CR3T-admin", "***"),
        ("metrics.token", "S3CR3T-metrics", "***"),
        ("tenants[0].api_token", "S3CR3T-tenant", "***"),
        ("sources[0].secrets[0]", "S3CR3T-source", "***"),
        ("sources[1].secrets[1]", "user:S3CR3T", "***"),
        ("sources.0.secrets", "S3CR3T-figment-path", "***"),
        ("sources[0].api.token", "S3CR3T-api", "***"),
        ("destinations[0].secret", "whsec_S3CR3T", "***"),
        ("notifiers[0].routing_key", "S3CR3T0123456789", "***"),
        (
            "storage.url",
            "postgres://intake:S3CR3T@db.example:5432/intake",
            "postgres://intake:***@db.example:5432/intake",
        ),
        (
            "storage.url",
            "postgres://intake@db.example/intake?sslmode=require&password=S3CR3T",
            "postgres://intake@db.example/intake?sslmode=require&password=***",
        ),
        (
            "storage.url",
            "postgresql://intake:p%40ss%3AS3CR3T@db.example/intake",
            "postgresql://intake:***@db.example/intake",
        ),
        // Not a URL the parser takes (a port that is not a number): everything after the
        // scheme is hidden, since there is no telling where the password ends.
        (
            "storage.url",
            "postgres://intake:S3CR3T@db:port/intake",
            "postgres://***",
        ),
        // A scheme but no authority: the parser takes it as an opaque path.
        ("storage.url", "intake:S3CR3T@db", "intake:***"),
        (
            "notifiers[2].smtp_url",
            "smtps://alerts:S3CR3T@mail.example:465",
            "smtps://alerts:***@mail.example:465",
        ),
        (
            "destinations[0].url",
            "https://handler.example/hooks?token=S3CR3T&v=2",
            "https://handler.example/hooks?token=***&v=2",
        ),
        (
            "destinations[3].url",
            "https://ops:S3CR3T@handler.example/hooks",
            "https://ops:***@handler.example/hooks",
        ),
        (
            "sources[0].api.base_url",
            "https://user:S3CR3T@maelys.api.kustomerapp.com",
            "https://user:***@maelys.api.kustomerapp.com/",
        ),
        (
            "server.public_url",
            "https://intake.example/?api_key=S3CR3T",
            "https://intake.example/?api_key=***",
        ),
        (
            "notifiers[0].url",
            "https://hooks.slack.example/services/T000/B000/S3CR3T",
            "https://hooks.slack.example/***",
        ),
        (
            "notifiers[1].url",
            "http://127.0.0.1:9093/api/v2/alerts?S3CR3T",
            "http://127.0.0.1:9093/***",
        ),
        (
            "monitor.watchdog_url",
            "https://hc-ping.example/S3CR3T-uuid",
            "https://hc-ping.example/***",
        ),
        (
            "tenants[0].contacts[1].url",
            "https://status.maelys.example/hooks/S3CR3T",
            "https://status.maelys.example/***",
        ),
        ("notifiers[0].url", "hooks.slack.example/S3CR3T", "***"),
        (
            "monitor.watchdog_url",
            "hc ping://x/S3CR3T",
            "hc ping://***",
        ),
    ];

    #[test]
    fn every_secret_bearing_key_is_masked() {
        for (key, value, shown) in SECRET_KEYS {
            let masked = mask(key, value);
            assert_eq!(masked, *shown, "{key} = {value:?}");
            assert!(!masked.contains("S3CR3T"), "{key}: {masked}");
            assert_ne!(exposure(key), Exposure::Public, "{key}");
        }
    }

    #[test]
    fn public_values_and_urls_without_credentials_are_shown_unchanged() {
        for (key, value) in [
            ("server.listen", "127.0.0.1:8080"),
            ("storage.url", "sqlite://./intake-data/intake.db"),
            ("storage.url", "sqlite:///var/lib/intake/intake.db"),
            ("storage.url", "postgres://intake@db.example:5432/intake"),
            (
                "storage.url",
                "postgres://db.example/intake?sslmode=require",
            ),
            ("storage.url", "ftp://nope"),
            ("destinations[0].url", "http://127.0.0.1:9000/webhooks"),
            ("destinations[0].id", "handler"),
            ("sources[0].id", "maelys-kustomer"),
            ("sources[0].api.username", "agent@maelys.example"),
            ("sources[0].auth.header", "X-Intake-Secret"),
            ("notifiers[0].to[0]", "oncall@example.com"),
            ("notifiers[0].url", "http://127.0.0.1:9093"),
            ("notifiers[0].url", "http://127.0.0.1:9093/"),
            ("server.shutdown_timeout", "10s"),
        ] {
            assert_eq!(mask(key, value), value, "{key}");
        }
    }

    #[test]
    fn empty_values_stay_empty() {
        assert_eq!(mask("admin.token", ""), "");
        assert_eq!(mask("storage.url", ""), "");
    }

    #[test]
    fn keys_named_like_secrets_are_secret_without_being_listed() {
        for key in [
            "notifiers[0].password",
            "sources[0].api.client_secret",
            "future.section.refresh_token",
            "smtp.api_key",
        ] {
            assert_eq!(exposure(key), Exposure::Secret, "{key}");
        }
        assert_eq!(exposure("notifiers[0].ca_file"), Exposure::Public);
        assert_eq!(exposure("sources[0].fields.event_id"), Exposure::Public);
    }

    #[test]
    fn a_tree_is_masked_key_by_key() {
        let mut v = serde_json::json!({
            "admin": { "token": "S3CR3T" },
            "metrics": { "token": 12345 },
            "sources": [{ "id": "s", "secrets": ["S3CR3T-a", "S3CR3T-b"] }],
            "storage": { "url": "postgres://u:S3CR3T@h/db" },
        });
        mask_tree(&mut v);
        let text = v.to_string();
        assert!(!text.contains("S3CR3T"), "{text}");
        assert!(!text.contains("12345"), "{text}");
        assert_eq!(v["sources"][0]["id"], "s");
        assert_eq!(v["storage"]["url"], "postgres://u:***@h/db");
    }
}
