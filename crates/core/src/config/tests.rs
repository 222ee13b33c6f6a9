//! The configuration as a whole: the shipped example and the embedded default are valid, and
//! wrong files are refused with messages that point at the key.

use std::time::Duration;

use super::*;

/// The configuration example from PRODUCT.md, as shipped in `examples/intake.toml`.
const EXAMPLE: &str = include_str!("../../../../examples/intake.toml");

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
fn quiet_calendars_are_read_and_checked_with_precise_errors() {
    let c = Config::from_toml_str(
        "[[tenants]]\nid = \"maelys\"\n\
         [[monitor.calendars]]\nname = \"fr\"\ntenants = [\"maelys\"]\n\
         utc_offset = \"+01:00\"\ndates = [\"2026-12-25\", \"2027-01-01\"]\n\
         [[monitor.calendars]]\nname = \"everyone\"\ndates = [\"1970-01-02\"]\n",
    )
    .unwrap();
    assert_eq!(c.monitor.calendars.len(), 2);
    assert_eq!(c.monitor.calendars[0].offset_minutes(), Ok(60));
    assert_eq!(c.monitor.calendars[1].offset_minutes(), Ok(0));
    assert_eq!(c.monitor.calendars[1].days(), Ok(vec![1]));
    assert_eq!(
        c.monitor.calendars[0].days().map(|d| d[1] - d[0]),
        Ok(7),
        "Christmas to New Year's Day"
    );
    let p = problems(
        "[[tenants]]\nid = \"maelys\"\n\
         [[monitor.calendars]]\nname = \"fr\"\ntenants = [\"maelys\", \"nobody\"]\n\
         utc_offset = \"1h\"\ndates = [\"2026-12-25\", \"2026-12-25\"]\n\
         [[monitor.calendars]]\nname = \"fr\"\nutc_offset = \"+15:00\"\ndates = [\"25/12/2026\"]\n\
         [[monitor.calendars]]\nname = \" \"\ndates = []\n",
    );
    let want = [
        "monitor.calendars[0].tenants[1]: unknown tenant `nobody`",
        "monitor.calendars[0].utc_offset: `1h` is not an offset",
        "monitor.calendars[0].dates[1]: `2026-12-25` is listed twice",
        "monitor.calendars[1].name: `fr` names another calendar too",
        "monitor.calendars[1].utc_offset: `+15:00` is more than 14 hours from UTC",
        "monitor.calendars[1].dates[0]: `25/12/2026` is not a date",
        "monitor.calendars[2].name: must not be empty",
        "monitor.calendars[2].dates: must list at least one date",
    ];
    assert_eq!(p.len(), want.len(), "{p:#?}");
    for (got, want) in p.iter().zip(want) {
        assert!(got.starts_with(want), "{got} does not start with {want}");
    }
    // A key that is not a calendar's is named.
    let p =
        problems("[[monitor.calendars]]\nname = \"x\"\ndates = [\"2026-01-01\"]\nlevel = 0.3\n");
    assert!(p.iter().any(|m| m.contains("level")), "{p:?}");
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

/// A configuration with every key that can hold a secret set to a value holding `S3CR3T`, and
/// nothing else holding it.
const EVERY_SECRET: &str = r#"
[storage]
url = "postgres://intake:S3CR3T-storage@db.example:5432/intake"

[admin]
token = "S3CR3T-admin"

[metrics]
token = "S3CR3T-metrics"

[monitor]
watchdog_url = "https://hc-ping.example/S3CR3T-watchdog"

[[tenants]]
id = "maelys"
api_token = "S3CR3T-tenant"
contacts = [
  { kind = "webhook", url = "https://status.maelys.example/hooks/S3CR3T-contact" },
  { kind = "email", to = "ops@maelys.example" },
]

[[destinations]]
id = "handler"
url = "https://ops:S3CR3T-dest-password@handler.example/hooks?token=S3CR3T-dest-query"
secret = "whsec_S3CR3T-destination"

[[sources]]
id = "maelys-kustomer"
tenant = "maelys"
kind = "kustomer"
secrets = ["S3CR3T-source-1", "S3CR3T-source-2"]
destinations = ["handler"]
api = { base_url = "https://api:S3CR3T-base@maelys.api.example", token = "S3CR3T-api-token" }

[[sources]]
id = "maelys-freshdesk"
tenant = "maelys"
kind = "freshdesk"
secrets = ["freshdesk:S3CR3T-basic"]
auth = { scheme = "basic" }
destinations = ["handler"]

[[notifiers]]
id = "slack"
kind = "slack"
url = "https://hooks.slack.example/services/T000/B000/S3CR3T-slack"

[[notifiers]]
id = "mail"
kind = "email"
to = ["oncall@example.com"]
smtp_url = "smtps://alerts:S3CR3T-smtp@mail.example:465"

[[notifiers]]
id = "pager"
kind = "pagerduty"
routing_key = "S3CR3T-routing-key"
"#;

/// The keys (indices left out) that hold a secret in [`EVERY_SECRET`].
const SECRET_KEYS: [&str; 14] = [
    "storage.url",
    "admin.token",
    "metrics.token",
    "monitor.watchdog_url",
    "tenants.api_token",
    "tenants.contacts.url",
    "destinations.url",
    "destinations.secret",
    "sources.secrets",
    "sources.api.base_url",
    "sources.api.token",
    "notifiers.url",
    "notifiers.smtp_url",
    "notifiers.routing_key",
];

fn leaves(path: String, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::String(s) => out.push((path, s.clone())),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(format!("{path}[{i}]"), item, out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(p, item, out);
            }
        }
        _ => {}
    }
}

fn without_indices(path: &str) -> String {
    path.split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn every_key_that_can_hold_a_secret_is_masked_and_nothing_else_is() {
    let c = Config::extract(Figment::new().merge(Toml::string(EVERY_SECRET))).unwrap();
    let masked = c.masked_json();
    let text = masked.to_string();
    assert!(!text.contains("S3CR3T"), "{text}");

    let mut plain = Vec::new();
    leaves(
        String::new(),
        &serde_json::to_value(&c).unwrap(),
        &mut plain,
    );
    let mut secret_keys = std::collections::BTreeSet::new();
    for (path, value) in &plain {
        let shown = mask(path, value);
        if value.contains("S3CR3T") {
            assert!(!shown.contains("S3CR3T"), "{path} = {shown}");
            secret_keys.insert(without_indices(path));
        } else {
            assert_eq!(
                shown,
                value.as_str(),
                "{path} is not secret and shown as is"
            );
        }
    }
    let expected: std::collections::BTreeSet<String> =
        SECRET_KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        secret_keys, expected,
        "every secret-bearing key was exercised"
    );
}

#[test]
fn debug_output_of_the_configuration_is_masked_too() {
    let c = Config::extract(Figment::new().merge(Toml::string(EVERY_SECRET))).unwrap();
    let mut shown = vec![
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{:?}", c.storage),
    ];
    shown.push(format!("{:?}", c.admin));
    shown.push(format!("{:?}", c.metrics));
    shown.push(format!("{:?}", c.monitor));
    shown.extend(c.tenants.iter().map(|t| format!("{t:?} {:?}", t.contacts)));
    shown.extend(c.sources.iter().map(|s| format!("{s:?} {:?}", s.api)));
    shown.extend(c.destinations.iter().map(|d| format!("{d:?}")));
    shown.extend(c.notifiers.iter().map(|n| format!("{n:?}")));
    for text in &shown {
        assert!(!text.contains("S3CR3T"), "{text}");
    }
    assert!(shown[0].contains("maelys-kustomer"), "{}", shown[0]);
}

#[test]
fn wrong_values_at_secret_keys_are_quoted_masked() {
    // figment quotes a value of the wrong type; at a secret key it must not.
    for text in [
        "[admin]\ntoken = 987654321\n",
        "[metrics]\ntoken = 987654321\n",
        "[[tenants]]\nid = \"t\"\napi_token = [\"S3CR3T\"]\n",
        "[[sources]]\nid = \"s\"\ntenant = \"t\"\nkind = \"kustomer\"\nsecrets = \"S3CR3T\"\n",
        "[storage]\nurl = \"postgresx://u:S3CR3T@db:port/x\"\n",
        "[storage]\nurl = \"mysql://u:S3CR3T@db/x\"\n",
        "[monitor]\nwatchdog_url = \"ftp://hc.example/S3CR3T\"\n",
        "[[notifiers]]\nid = \"n\"\nkind = \"slack\"\nurl = \"hooks.example/S3CR3T\"\n",
        "[[tenants]]\nid = \"t\"\ncontacts = [{ kind = \"webhook\", url = \"ftp://x.example/S3CR3T\" }]\n",
        "[[destinations]]\nid = \"d\"\nurl = \"ftp://u:S3CR3T@x.example/\"\nsecret = \"whsec_!!\"\n",
    ] {
        let found = problems(text);
        assert!(!found.is_empty(), "{text} should be refused");
        let all = found.join("\n");
        assert!(
            !all.contains("S3CR3T") && !all.contains("987654321"),
            "{text}\n{all}"
        );
    }
}

#[test]
fn the_metrics_token_is_checked() {
    assert!(problems("[metrics]\ntoken = \"scrape-token\"\n").is_empty());
    let empty = problems("[metrics]\ntoken = \"\"\n");
    assert!(
        empty.iter().any(|p| p.starts_with("metrics.token")),
        "{empty:?}"
    );
    let same = problems("[admin]\ntoken = \"t0k\"\n[metrics]\ntoken = \"t0k\"\n");
    assert!(
        same.iter()
            .any(|p| p.starts_with("metrics.token") && p.contains("differ")),
        "{same:?}"
    );
}

#[test]
fn plain_text_email_is_allowed_only_to_a_relay_on_loopback() {
    let email = |extra: &str| {
        problems(&format!(
            "[[notifiers]]\nid = \"mail\"\nkind = \"email\"\nto = [\"ops@example.com\"]\n{extra}\n"
        ))
    };
    for ok in [
        "smtp_url = \"smtp://127.0.0.1:25\"\ntls = \"none\"",
        "smtp_url = \"smtp://localhost\"\ntls = \"none\"",
        "smtp_url = \"smtp://[::1]:2525\"\ntls = \"none\"",
        "smtp_url = \"smtp://mail.example:587\"\ntls = \"required\"",
        "smtp_url = \"smtp://mail.example:587\"\nca_file = \"/etc/intake/relay-ca.pem\"",
    ] {
        assert!(email(ok).is_empty(), "{ok}: {:?}", email(ok));
    }
    for (bad, key, says) in [
        (
            "smtp_url = \"smtp://mail.example:25\"\ntls = \"none\"",
            "notifiers[0].tls",
            "loopback",
        ),
        (
            "smtp_url = \"smtps://127.0.0.1:465\"\ntls = \"none\"",
            "notifiers[0].tls",
            "smtp://",
        ),
        ("tls = \"none\"", "notifiers[0].tls", "smtp://"),
        (
            "smtp_url = \"smtp://127.0.0.1\"\ntls = \"none\"\nca_file = \"/ca.pem\"",
            "notifiers[0].ca_file",
            "no use",
        ),
        (
            "smtp_url = \"smtp://mail.example\"\nca_file = \" \"",
            "notifiers[0].ca_file",
            "PEM file",
        ),
        (
            "smtp_url = \"smtp://mail.example\"\ntls = \"off\"",
            "notifiers[0].tls",
            "none",
        ),
    ] {
        let found = email(bad);
        assert!(
            found.iter().any(|p| p.starts_with(key) && p.contains(says)),
            "{bad}: {found:?}"
        );
    }
    let slack = problems(
        "[[notifiers]]\nid = \"s\"\nkind = \"slack\"\nurl = \"https://hooks.example/x\"\ntls = \"none\"\nca_file = \"/ca.pem\"\n",
    );
    for key in ["notifiers[0].tls", "notifiers[0].ca_file"] {
        assert!(
            slack
                .iter()
                .any(|p| p.starts_with(key) && p.contains("only email")),
            "{slack:?}"
        );
    }
}

#[test]
fn connection_limits_have_safe_defaults_and_are_checked() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c.server.header_timeout, Dur::secs(10));
    assert_eq!(c.server.body_timeout, Dur::secs(30));
    assert_eq!(c.server.idle_timeout, Dur::secs(60));
    assert_eq!(c.server.max_connections, 4096);
    assert_eq!(c.server.max_connections_per_ip, 256);
    assert_eq!(c.server.body_budget, ByteSize(128 << 20));
    let set = "[server]\nheader_timeout = \"2s\"\nbody_timeout = \"5s\"\nidle_timeout = \"3s\"\n\
               max_connections = 100\nmax_connections_per_ip = 10\nbody_budget = \"8MiB\"\n";
    assert!(problems(set).is_empty(), "{:?}", problems(set));
    let cases = [
        ("header_timeout = \"0s\"", "server.header_timeout"),
        ("body_timeout = \"0s\"", "server.body_timeout"),
        ("idle_timeout = \"0s\"", "server.idle_timeout"),
        ("max_connections = 0", "server.max_connections"),
        (
            "max_connections_per_ip = 0",
            "server.max_connections_per_ip",
        ),
        (
            "max_connections = 10\nmax_connections_per_ip = 11",
            "server.max_connections_per_ip",
        ),
        ("body_budget = \"512KiB\"", "server.body_budget"),
    ];
    for (line, key) in cases {
        let p = problems(&format!("[server]\n{line}\n"));
        assert!(p.iter().any(|m| m.starts_with(key)), "{line}: {p:?}");
    }
}

#[test]
fn canary_timings_default_apply_per_source_and_are_checked() {
    let sources = r#"
[[tenants]]
id = "t"

[[destinations]]
id = "d"
url = "http://127.0.0.1:9000/h"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[sources]]
id = "a"
tenant = "t"
kind = "kustomer"
secrets = ["s"]
destinations = ["d"]

[[sources]]
id = "b"
tenant = "t"
kind = "kustomer"
secrets = ["s"]
destinations = ["d"]
"#;
    let c = Config::from_toml_str(&format!(
        "{sources}\n[canary]\ninterval = \"30s\"\n\n[canary.sources.b]\ninterval = \"5m\"\ndeadline = \"12m\"\n"
    ))
    .unwrap();
    let a = c.canary.timing("a");
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.deadline, Duration::from_secs(120), "the default deadline");
    let b = c.canary.timing("b");
    assert_eq!(
        (b.interval, b.deadline),
        (Duration::from_secs(300), Duration::from_secs(720))
    );
    // A deadline no longer than the interval would fire between every two canaries; an
    // override must name a source.
    let p = problems(&format!(
        "{sources}\n[canary]\ninterval = \"2m\"\ndeadline = \"2m\"\n"
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("canary.deadline") && p[0].contains("longer than"),
        "{p:?}"
    );
    let p = problems(&format!(
        "{sources}\n[canary.sources.b]\ninterval = \"3m\"\n\n[canary.sources.nope]\ndeadline = \"5m\"\n"
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter().any(|m| m.contains("canary.sources.b.deadline")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("unknown source `nope`")),
        "{p:?}"
    );
    // There is no key that turns canaries off.
    let p = problems("[canary]\nenabled = false\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("alerting cannot be switched off"), "{p:?}");
}

#[test]
fn reconcile_has_its_defaults_and_precise_errors() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c.reconcile, ReconcileConfig::default());
    assert!(c.reconcile.enabled);
    assert_eq!(c.reconcile.interval, Dur::secs(600));
    assert_eq!(c.reconcile.lag, Dur::secs(900));
    assert!(!c.reconcile.auto_backfill);
    assert_eq!(c.reconcile.budget_share, 0.2);
    assert_eq!(c.reconcile.sample, 10);
    let set =
        "[reconcile]\nenabled = true\ninterval = \"5m\"\nlag = \"0s\"\nauto_backfill = true\n\
               budget_share = 1\nsample = 0\n";
    assert!(problems(set).is_empty(), "{:?}", problems(set));
    let cases = [
        (
            "interval = \"30s\"",
            "reconcile.interval: must be at least 1m",
        ),
        (
            "budget_share = 0",
            "reconcile.budget_share: 0 is not a share",
        ),
        (
            "budget_share = 1.5",
            "reconcile.budget_share: 1.5 is not a share",
        ),
        (
            "budget_share = -0.1",
            "reconcile.budget_share: -0.1 is not a share",
        ),
        ("sample = 5000", "reconcile.sample: must be at most 1000"),
        (
            "interval = \"soon\"",
            "reconcile.interval: invalid duration `soon`",
        ),
        (
            "budget_share = \"a fifth\"",
            "reconcile.budget_share: `a fifth` is not a number",
        ),
        (
            "auto_backfill = \"yes\"",
            "reconcile.auto_backfill: `yes` is not a boolean",
        ),
        ("every = \"10m\"", "reconcile.every: unknown field"),
    ];
    for (line, want) in cases {
        let p = problems(&format!("[reconcile]\n{line}\n"));
        assert_eq!(p.len(), 1, "{line}: {p:?}");
        assert!(p[0].starts_with(want), "{line}: {p:?}");
    }
}

#[test]
fn reconcile_keys_accept_the_text_environment_variables_set() {
    use figment::providers::Serialized;
    let figment = Figment::new()
        .merge(Serialized::default("reconcile.enabled", "false"))
        .merge(Serialized::default("reconcile.interval", "5m"))
        .merge(Serialized::default("reconcile.lag", "20m"))
        .merge(Serialized::default("reconcile.auto_backfill", "true"))
        .merge(Serialized::default("reconcile.budget_share", "0.5"))
        .merge(Serialized::default("reconcile.sample", "3"));
    let c = Config::from_figment(figment).unwrap();
    let want = ReconcileConfig {
        enabled: false,
        interval: Dur::secs(300),
        lag: Dur::secs(1200),
        auto_backfill: true,
        budget_share: 0.5,
        sample: 3,
    };
    assert_eq!(c.reconcile, want);
}

#[test]
fn scheduled_drills_name_a_scenario_its_target_and_a_schedule() {
    let base = r#"
[[tenants]]
id = "t"

[[destinations]]
id = "d"
url = "http://127.0.0.1:9000/h"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[sources]]
id = "a"
tenant = "t"
kind = "kustomer"
secrets = ["s"]
destinations = ["d"]

[[notifiers]]
id = "n"
kind = "webhook"
url = "http://127.0.0.1:9001/n"
"#;
    let c = Config::from_toml_str(&format!(
        "{base}
[[drills]]
scenario = \"queue-stall\"
source = \"a\"
schedule = \"weekly\"

[[drills]]
scenario = \"handler-down\"
destination = \"d\"
schedule = \"72h\"
for = \"10m\"

[[drills]]
scenario = \"notifier-down\"
notifier = \"n\"
schedule = \"daily\"
"
    ))
    .unwrap();
    assert_eq!(c.drills.len(), 3);
    assert_eq!(c.drills[0].key(), "queue-stall:a");
    assert_eq!(c.drills[1].target(), Some("d"));
    assert_eq!(c.drills[1].for_, Some(Dur::secs(600)));

    // Each wrong entry is named by its key, with what would be right.
    let cases: &[(&str, &str)] = &[
        (
            "scenario = \"queue-stal\"\nsource = \"a\"\nschedule = \"daily\"",
            "drills[0].scenario: unknown scenario `queue-stal` (scenarios: queue-stall, handler-down, flow-stop, notifier-down)",
        ),
        (
            "scenario = \"queue-stall\"\nschedule = \"daily\"",
            "drills[0].source: missing: queue-stall needs the source it is run on",
        ),
        (
            "scenario = \"flow-stop\"\nsource = \"zz\"\nschedule = \"daily\"",
            "drills[0].source: unknown source `zz` (known: a)",
        ),
        (
            "scenario = \"flow-stop\"\nsource = \"a\"\ndestination = \"d\"\nschedule = \"daily\"",
            "drills[0].destination: flow-stop is run on a source, not a destination",
        ),
        (
            "scenario = \"handler-down\"\ndestination = \"nope\"\nschedule = \"daily\"",
            "drills[0].destination: unknown destination `nope` (known: d)",
        ),
        (
            "scenario = \"notifier-down\"\nnotifier = \"x\"\nschedule = \"daily\"",
            "drills[0].notifier: unknown notifier `x` (known: n)",
        ),
        (
            "scenario = \"queue-stall\"\nsource = \"a\"\nschedule = \"monthly\"",
            "drills[0].schedule: `monthly` is not a schedule",
        ),
        (
            "scenario = \"queue-stall\"\nsource = \"a\"\nschedule = \"5m\"",
            "drills[0].schedule: `5m` is too often",
        ),
        (
            "scenario = \"queue-stall\"\nsource = \"a\"\nschedule = \"2h\"\nfor = \"3h\"",
            "drills[0].for: must be shorter than the schedule (2h)",
        ),
        (
            "scenario = \"queue-stall\"\nsource = \"a\"\nschedule = \"daily\"\nfor = \"0s\"",
            "drills[0].for: must be between 1s and 1day",
        ),
    ];
    for (entry, want) in cases {
        let p = problems(&format!("{base}\n[[drills]]\n{entry}\n"));
        assert_eq!(p.len(), 1, "{entry}: {p:?}");
        assert!(p[0].starts_with(want), "{entry}: {p:?}");
    }
    // One schedule per scenario and target.
    let twice = "[[drills]]\nscenario = \"queue-stall\"\nsource = \"a\"\nschedule = \"daily\"\n";
    let p = problems(&format!("{base}\n{twice}\n{twice}"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("drills[1]: a second schedule of queue-stall on `a`"),
        "{p:?}"
    );
    // `drill_failed` is a rule id like the others.
    assert!(RULE_IDS.contains(&"drill_failed"));
}

#[test]
fn incident_policy_resolves_per_rule_and_scope_and_is_checked() {
    let c = Config::from_toml_str(
        r#"
[incidents]
auto_declare = true
notify_hold = "2m"

[[tenants]]
id = "maelys"

[[rules]]
rule = "queue_stalled"
tenant = "maelys"
auto_notify_tenants = false

[[rules]]
rule = "inbound_stopped"
auto_declare = false

[[rules]]
rule = "canary_failed"
tenant = "maelys"
notify_hold = "0s"
"#,
    )
    .unwrap();
    let p = |rule: &str, tenant: &str| c.incidents.policy(&c.rules, rule, tenant, None);
    let two = Duration::from_secs(120);
    // (rule, tenant) → (declare, notify tenants, hold)
    let cases = [
        ("dead_letters", "maelys", (true, true, two)),
        ("queue_stalled", "maelys", (true, false, two)),
        ("queue_stalled", "other", (true, true, two)),
        ("inbound_stopped", "maelys", (false, true, two)),
        ("canary_failed", "maelys", (true, true, Duration::ZERO)),
        // Only the five rules that name a tenant's stopped traffic ever declare.
        ("inbound_drop", "maelys", (false, true, two)),
    ];
    for (rule, tenant, (declare, notify, hold)) in cases {
        let got = p(rule, tenant);
        assert_eq!(
            (got.declare, got.notify_tenants, got.hold),
            (declare, notify, hold),
            "{rule} {tenant}"
        );
    }
    // Off by default, so existing configurations keep working as before.
    let d = Config::from_toml_str("").unwrap();
    assert!(
        !d.incidents
            .policy(&d.rules, "inbound_stopped", "t", None)
            .declare
    );
    assert_eq!(d.incidents.update_every, Dur::secs(1800));
    assert!(d
        .incidents
        .template("declared")
        .unwrap()
        .contains("{tenant}"));

    let cases = [
        (
            "[[rules]]\nrule = \"inbound_drop\"\nauto_declare = true\n",
            "rules[0].auto_declare: `inbound_drop` cannot declare incidents",
        ),
        (
            "[[rules]]\nrule = \"queue_stalled\"\nnotify_hold = \"2h\"\n",
            "rules[0].notify_hold: 2h is too long",
        ),
        (
            "[incidents]\nnotify_hold = \"1day\"\n",
            "incidents.notify_hold: 1day is too long",
        ),
        (
            "[incidents]\nupdate_every = \"10s\"\n",
            "incidents.update_every: must be at least 1m",
        ),
        (
            "[incidents]\ntemplates = { declard = \"x\" }\n",
            "incidents.templates.declard: unknown template `declard` (templates: declared, updated, resolved)",
        ),
        (
            "[incidents]\ntemplates = { declared = \"Hello {tennant}\" }\n",
            "incidents.templates.declared: `{tennant}` is not a placeholder",
        ),
        (
            "[incidents]\nemail_via = \"mail\"\n",
            "incidents.email_via: unknown email notifier `mail` (no email notifiers are configured)",
        ),
        (
            "[incidents]\nemail_via = \"s\"\n[[notifiers]]\nid = \"s\"\nkind = \"slack\"\nurl = \"https://hooks.example/x\"\n",
            "incidents.email_via: notifier `s` is not an email notifier",
        ),
        (
            "[incidents]\nauto_declare = \"maybe\"\n",
            "incidents.auto_declare: `maybe` is not a boolean",
        ),
        (
            "[incidents]\ndrill_tenant_notices = true\ntemplates = { resolved = \"Over, {tenant}.\" }\n",
            "incidents.templates.resolved: does not use `{drill}` while `incidents.drill_tenant_notices` is on",
        ),
    ];
    for (text, want) in cases {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{text}: {p:?}");
        assert!(p[0].starts_with(want), "{text}: {p:?}");
    }
    // Drill notices are off by default; a template of one's own needs `{drill}` only when
    // they are on.
    assert!(!d.incidents.drill_tenant_notices);
    for ok in [
        "[incidents]\ntemplates = { resolved = \"Over, {tenant}.\" }\n",
        "[incidents]\ndrill_tenant_notices = true\ntemplates = { resolved = \"{drill}Over, {tenant}.\" }\n",
        "[incidents]\ndrill_tenant_notices = true\n",
    ] {
        assert!(problems(ok).is_empty(), "{ok}: {:?}", problems(ok));
    }
}

#[test]
fn the_mailer_of_e_mail_contacts_is_named_or_the_only_email_notifier() {
    let mail = |id: &str| {
        format!("[[notifiers]]\nid = \"{id}\"\nkind = \"email\"\nto = [\"oncall@example.com\"]\nsmtp_url = \"smtp://mail.example:587\"\n")
    };
    let one = Config::from_toml_str(&mail("m1")).unwrap();
    assert_eq!(one.incidents.mailer(&one.notifiers).unwrap().id, "m1");
    let two = Config::from_toml_str(&format!("{}{}", mail("m1"), mail("m2"))).unwrap();
    assert!(two.incidents.mailer(&two.notifiers).is_none());
    let chosen = Config::from_toml_str(&format!(
        "[incidents]\nemail_via = \"m2\"\n{}{}",
        mail("m1"),
        mail("m2")
    ))
    .unwrap();
    assert_eq!(chosen.incidents.mailer(&chosen.notifiers).unwrap().id, "m2");
    let none = Config::from_toml_str("").unwrap();
    assert!(none.incidents.mailer(&none.notifiers).is_none());
}

#[test]
fn retention_defaults_to_30_days_may_be_off_and_refuses_nonsense() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c.storage.retention, DurOrOff(Some(DEFAULT_RETENTION)));
    let off = Config::from_toml_str("[storage]\nretention = \"off\"\n").unwrap();
    assert_eq!(off.storage.retention, DurOrOff(None));
    let week = Config::from_toml_str("[storage]\nretention = \"7d\"\n").unwrap();
    assert_eq!(
        week.storage.retention,
        DurOrOff(Some(Duration::from_secs(7 * 86_400)))
    );
    // A destination retrying hourly for two days.
    let slow = "[[destinations]]\nid = \"slow\"\nurl = \"http://127.0.0.1:9001/\"\n\
                secret = \"s\"\nmax_attempts = 49\nretry = [\"1h\"]\n";
    // (storage lines, the start of the problem, or None when accepted)
    let cases: [(&str, Option<&str>); 6] = [
        (
            "retention = \"59m\"",
            Some("storage.retention: `59m` is too short"),
        ),
        (
            "retention = \"0s\"",
            Some("storage.retention: `0s` is too short"),
        ),
        (
            "retention = \"soon\"",
            Some("storage.retention: invalid duration"),
        ),
        (
            "retention = \"1d\"",
            Some("storage.retention: `1day` is not longer than the retries of destination `slow`"),
        ),
        ("retention = \"3d\"", None),
        ("retention = \"OFF\"", None),
    ];
    for (line, expected) in cases {
        let p = problems(&format!("[storage]\n{line}\n{slow}"));
        match expected {
            None => assert!(p.is_empty(), "{line}: {p:?}"),
            Some(start) => assert!(p.iter().any(|m| m.starts_with(start)), "{line}: {p:?}"),
        }
    }
}
