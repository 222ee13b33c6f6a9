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
