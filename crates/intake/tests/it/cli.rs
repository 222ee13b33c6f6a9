//! The `intake` binary's command line, run as a real process: `check-config` on good and bad
//! files, environment overrides, and `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The configuration example from PRODUCT.md, verbatim (also the example users copy).
const GOOD: &str = include_str!("../../../../examples/intake.toml");

/// A finished run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn assert_failed(&self) {
        assert!(
            self.code.is_some() && self.code != Some(0),
            "expected a non-zero exit, got {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
    }

    /// Asserts that stderr contains every one of `needles`.
    fn assert_stderr_has(&self, needles: &[&str]) {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr does not mention {n:?}\nstdout: {}\nstderr: {}",
                self.stdout,
                self.stderr
            );
        }
    }
}

/// Runs `intake args…` in `dir` with no `INTAKE_…` variable from the outer environment, plus
/// `env`.
fn intake(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INTAKE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("the intake binary runs"))
}

/// Writes `text` as `name` in a fresh temporary directory.
fn write_config(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// `check-config --config <file with text>`.
fn check(text: &str, env: &[(&str, &str)]) -> Run {
    let (dir, path) = write_config("intake.toml", text);
    intake(
        dir.path(),
        &[
            "check-config",
            "--config",
            path.to_str().expect("utf-8 path"),
        ],
        env,
    )
}

/// `GOOD` with `from` replaced by `to` (which must occur exactly once).
fn good_with(from: &str, to: &str) -> String {
    assert_eq!(
        GOOD.matches(from).count(),
        1,
        "{from:?} must occur once in the example"
    );
    GOOD.replace(from, to)
}

#[test]
fn check_config_accepts_the_product_example() {
    let run = check(GOOD, &[]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("OK"), "stdout: {}", run.stdout);
    assert!(
        run.stdout.contains("1 tenants") || run.stdout.contains("1 tenant"),
        "stdout: {}",
        run.stdout
    );
}

/// The example's e-mail contact has no `email` notifier to send through: check-config says
/// so (the configuration stays valid, as it was before incidents sent anything), and names the
/// notifier once there is one.
#[test]
fn check_config_says_how_e_mail_contacts_are_reached() {
    let run = check(GOOD, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("WARNING: 1 e-mail contact(s) cannot be reached")
            && run.stdout.contains("[incidents] email_via"),
        "stdout: {}",
        run.stdout
    );
    let with_mail = format!(
        "{GOOD}\n[[notifiers]]\nid = \"mail\"\nkind = \"email\"\nsmtp_url = \"smtp://mail.example:587\"\nto = [\"oncall@example.com\"]\n"
    );
    let run = check(&with_mail, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("1 e-mail contact(s) get incident notices through notifier `mail`"),
        "stdout: {}",
        run.stdout
    );
}

#[test]
fn check_config_names_an_unknown_key() {
    let run = check(
        &good_with("listen = \"127.0.0.1:8080\"", "listn = \"127.0.0.1:8080\""),
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&["server.listn"]);
    assert!(!run.stdout.contains("OK"), "stdout: {}", run.stdout);
}

#[test]
fn check_config_names_an_unknown_destination() {
    let run = check(
        &good_with(
            "destinations = [\"handler\"]",
            "destinations = [\"handlr\"]",
        ),
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&[
        "sources[0].destinations[0]",
        "unknown destination",
        "handlr",
        "handler",
    ]);
}

#[test]
fn check_config_explains_a_bad_duration() {
    let run = check(
        &good_with("timeout = \"10s\"", "timeout = \"10 parsecs\""),
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&["destinations[0].timeout", "10 parsecs", "\"10s\""]);
}

#[test]
fn check_config_refuses_duplicate_destination_ids() {
    let text = format!(
        "{GOOD}\n[[destinations]]\nid = \"handler\"\nurl = \"http://127.0.0.1:9001/hooks\"\nsecret = \"another-secret\"\n"
    );
    let run = check(&text, &[]);
    run.assert_failed();
    run.assert_stderr_has(&["destinations[1].id", "duplicate id", "handler"]);
}

#[test]
fn check_config_refuses_an_unknown_rule() {
    let run = check(
        &good_with("rule = \"queue_stalled\"", "rule = \"queue_stuck\""),
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&[
        "rules[0].rule",
        "unknown rule",
        "queue_stuck",
        "queue_stalled",
    ]);
}

#[test]
fn check_config_accepts_every_source_kind_and_refuses_settings_of_another() {
    for kind in [
        "kustomer",
        "zendesk",
        "intercom",
        "front",
        "freshdesk",
        "gorgias",
    ] {
        let run = check(
            &good_with("kind = \"kustomer\"", &format!("kind = \"{kind}\"")),
            &[],
        );
        // The example's `api` has no username, which Zendesk and Gorgias need for basic
        // authentication.
        if kind == "zendesk" || kind == "gorgias" {
            run.assert_failed();
            run.assert_stderr_has(&["sources[0].api.username", kind]);
        } else {
            assert_eq!(run.code, Some(0), "{kind}: {}", run.stderr);
        }
    }
    // `tolerance` belongs to schemes that sign a timestamp; Kustomer's does not.
    let run = check(
        &good_with(
            "kind = \"kustomer\"",
            "kind = \"kustomer\"\ntolerance = \"5m\"",
        ),
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&["sources[0].tolerance", "only for zendesk and front"]);
    let run = check(&good_with("kind = \"kustomer\"", "kind = \"jira\""), &[]);
    run.assert_failed();
    run.assert_stderr_has(&["jira", "kustomer"]);
}

#[test]
fn check_config_names_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-intake.toml");
    let run = intake(
        dir.path(),
        &["check-config", "--config", missing.to_str().expect("utf-8")],
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&["no-such-intake.toml"]);
    assert!(!run.stdout.contains("OK"), "stdout: {}", run.stdout);
}

#[test]
fn check_config_without_a_file_in_the_directory_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = intake(dir.path(), &["check-config"], &[]);
    run.assert_failed();
    run.assert_stderr_has(&["intake.toml"]);
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let text = good_with("destinations = [\"handler\"]", "destinations = [\"handlr\"]")
        .replace("rule = \"queue_stalled\"", "rule = \"queue_stuck\"")
        .replace("tenant = \"maelys\"                           #", "tenant = \"maelis\"  #")
        + "\n[[notifiers]]\nid = \"oncall\"\nkind = \"webhook\"\nurl = \"https://hooks.example/x\"\n";
    let run = check(&text, &[]);
    run.assert_failed();
    run.assert_stderr_has(&[
        "sources[0].destinations[0]",
        "unknown destination",
        "rules[0].rule",
        "unknown rule",
        "rules[0].tenant",
        "unknown tenant `maelis`",
        "notifiers[1].id",
        "duplicate id",
    ]);
    assert!(run.stderr.contains("4 problems"), "stderr: {}", run.stderr);
}

#[test]
fn check_config_reads_the_storage_url_from_the_environment() {
    let run = check(GOOD, &[("INTAKE_STORAGE_URL", "ftp://nope")]);
    run.assert_failed();
    run.assert_stderr_has(&["storage.url", "ftp://nope"]);

    // A valid override is accepted and shown.
    let run = check(
        GOOD,
        &[(
            "INTAKE_STORAGE_URL",
            "postgres://intake@db.example:5432/intake",
        )],
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout
            .contains("postgres://intake@db.example:5432/intake"),
        "stdout: {}",
        run.stdout
    );
}

#[test]
fn check_config_refuses_an_empty_admin_token_from_the_environment() {
    let run = check(GOOD, &[("INTAKE_ADMIN_TOKEN", "")]);
    run.assert_failed();
    run.assert_stderr_has(&["admin.token"]);
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = intake(dir.path(), &["--help"], &[]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("serve"), "stdout: {}", run.stdout);
    assert!(
        run.stdout.contains("check-config"),
        "stdout: {}",
        run.stdout
    );

    let run = intake(dir.path(), &["check-config", "--help"], &[]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("--config"), "stdout: {}", run.stdout);
}

#[test]
fn an_unknown_command_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = intake(dir.path(), &["frobnicate"], &[]);
    run.assert_failed();
    assert!(run.stderr.contains("frobnicate"), "stderr: {}", run.stderr);
}

#[test]
fn check_config_reports_validation_and_server_problems_together() {
    let text = good_with("kind = \"kustomer\"", "kind = \"zendesk\"")
        .replace("rule = \"queue_stalled\"", "rule = \"queue_stuck\"");
    let run = check(&text, &[]);
    run.assert_failed();
    run.assert_stderr_has(&["rules[0].rule", "unknown rule", "sources[0].api.username"]);
}

#[test]
fn a_numeric_token_from_the_environment_is_a_token() {
    let run = check(GOOD, &[("INTAKE_ADMIN_TOKEN", "12345")]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
}

/// `intake status` against a live server (in this process, on a loopback port): flows and
/// queues by name; a wrong token or an unreachable server is a non-zero exit that says why.
#[test]
fn status_summarizes_a_running_server_and_fails_clearly() {
    use intake_testkit::{
        kustomer, CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (server, _handler) = runtime.block_on(async {
        let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
        let server = TestServer::start(&handler.url(), "").await.unwrap();
        let body = kustomer::message_create("status-1", "chat");
        let r = server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        (server, handler)
    });
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();

    let ok = intake(
        dir.path(),
        &["status", "--url", &url, "--token", ADMIN_TOKEN],
        &[],
    );
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    for needle in [
        "INBOUND",
        "maelys-kustomer",
        "other-kustomer",
        "chat",
        "QUEUE",
        "handler",
        "CANARIES",
        "none sent yet",
        "RECONCILIATION: 0 source(s)",
    ] {
        assert!(
            ok.stdout.contains(needle),
            "no {needle:?} in\n{}",
            ok.stdout
        );
    }
    // The environment works as well as flags.
    let env = intake(
        dir.path(),
        &["status"],
        &[
            ("INTAKE_URL", url.as_str()),
            ("INTAKE_TOKEN", "maelys-token"),
        ],
    );
    assert_eq!(env.code, Some(0), "{}", env.stderr);
    assert!(!env.stdout.contains("other-kustomer"), "{}", env.stdout);

    let bad = intake(
        dir.path(),
        &["status", "--url", &url, "--token", "nope"],
        &[],
    );
    bad.assert_failed();
    bad.assert_stderr_has(&["401", "bearer token"]);

    drop(server);
    let gone = intake(
        dir.path(),
        &[
            "status",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            ADMIN_TOKEN,
        ],
        &[],
    );
    gone.assert_failed();
    gone.assert_stderr_has(&["cannot reach intake at http://127.0.0.1:9"]);
    drop(runtime);
}

/// `intake backtest`: a steady flow that stops is alerted in the JSON lines output, with the
/// contract's fields; a bad line is refused with its number; `--synthetic` reports.
#[test]
fn backtest_replays_counts_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    // Five days of a flow at 1–2 events a minute (about 90 an hour), then silence for 2 hours.
    let mut csv = String::from("minute,tenant,source,channel,count\n");
    let start = 1_767_571_200i64; // 2026-01-05T00:00:00Z
    for m in 0..(5 * 1440 + 120) {
        let count = if m < 5 * 1440 { 1 + (m % 2) } else { 0 };
        let t = jiff::Timestamp::from_second(start + m * 60).unwrap();
        csv.push_str(&format!("{t},maelys,maelys-kustomer,chat,{count}\n"));
    }
    std::fs::write(dir.path().join("counts.csv"), &csv).unwrap();
    let run = intake(
        dir.path(),
        &[
            "backtest",
            "--counts",
            "counts.csv",
            "--out",
            "alerts.jsonl",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let out = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let fired = lines
        .iter()
        .find(|l| l["rule"] == "inbound_stopped" && l["state"] == "firing")
        .unwrap_or_else(|| panic!("no inbound_stopped firing in\n{out}"));
    for field in [
        "rule", "tenant", "source", "channel", "state", "at", "value", "reason",
    ] {
        assert!(!fired[field].is_null(), "{field} missing in {fired}");
    }
    assert_eq!(fired["tenant"], "maelys");
    assert_eq!(fired["channel"], "chat");
    // Fired during the silence, not before it.
    let at = fired["at"].as_str().unwrap();
    assert!(at > "2026-01-10T00:00:00Z", "{at}");

    std::fs::write(
        dir.path().join("bad.csv"),
        "minute,tenant,source,channel,count\n2026-01-05T00:00:00Z,maelys,s,chat,lots\n",
    )
    .unwrap();
    let bad = intake(
        dir.path(),
        &["backtest", "--counts", "bad.csv", "--out", "x.jsonl"],
        &[],
    );
    bad.assert_failed();
    bad.assert_stderr_has(&["bad.csv", "line 2"]);

    let missing = intake(dir.path(), &["backtest", "--out", "x.jsonl"], &[]);
    missing.assert_failed();
    missing.assert_stderr_has(&["--counts"]);

    let synthetic = intake(
        dir.path(),
        &[
            "backtest",
            "--synthetic",
            "--tenants",
            "3",
            "--weeks",
            "3",
            "--seed",
            "2",
        ],
        &[],
    );
    assert_eq!(synthetic.code, Some(0), "{}", synthetic.stderr);
    assert!(
        synthetic.stdout.contains("tenant-weeks"),
        "{}",
        synthetic.stdout
    );
}

/// `intake backtest --synthetic --counts-out`: the generated traffic is written in the
/// `--counts` format and replays through `--counts`; bad generator settings are refused
/// with what is expected.
#[test]
fn backtest_writes_synthetic_counts_that_replay_and_refuses_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let write = intake(
        dir.path(),
        &[
            "backtest",
            "--synthetic",
            "--tenants",
            "2",
            "--weeks",
            "3",
            "--burst-shape",
            "2",
            "--hour-level",
            "persistent",
            "--counts-out",
            "synthetic.csv",
        ],
        &[],
    );
    assert_eq!(write.code, Some(0), "{}", write.stderr);
    write.assert_stderr_has(&["synthetic.csv", "persistent hour levels", "--counts"]);
    let csv = std::fs::read_to_string(dir.path().join("synthetic.csv")).unwrap();
    assert!(csv.starts_with("minute,tenant,source,channel,count\n"));
    let flows: std::collections::BTreeSet<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).take(3).collect())
        .collect();
    assert_eq!(flows.len(), 4, "2 tenants × 2 channels: {flows:?}");

    let replay = intake(
        dir.path(),
        &[
            "backtest",
            "--counts",
            "synthetic.csv",
            "--out",
            "alerts.jsonl",
        ],
        &[],
    );
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    replay.assert_stderr_has(&["of 4 flows read from synthetic.csv"]);
    let alerts = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    // Tenant 0 carries a 90/h probe that stops in week 3.
    assert!(
        alerts.lines().any(|l| l.contains("\"inbound_stopped\"")
            && l.contains("\"firing\"")
            && l.contains("tenant-000")),
        "{alerts}"
    );

    for (flag, value, says) in [
        ("--burst-shape", "0", "not a positive number"),
        ("--burst-shape", "NaN", "not a positive number"),
        ("--tenants", "0", "--tenants"),
        ("--hour-level", "sticky", "independent"),
    ] {
        let bad = intake(dir.path(), &["backtest", "--synthetic", flag, value], &[]);
        bad.assert_failed();
        bad.assert_stderr_has(&[says]);
    }
    let alone = intake(
        dir.path(),
        &["backtest", "--counts-out", "x.csv", "--out", "x.jsonl"],
        &[],
    );
    alone.assert_failed();
    alone.assert_stderr_has(&["--synthetic"]);
}

/// A PostgreSQL URL with a password, as operators write it.
const PG_WITH_PASSWORD: &str = "postgres://intake:S3CR3T-pg@db.example:5432/intake";
/// What check-config shows of it.
const PG_MASKED: &str = "postgres://intake:***@db.example:5432/intake";

#[test]
fn check_config_never_prints_the_storage_password_from_the_file() {
    let run = check(
        &good_with(
            "url = \"sqlite://./intake-data/intake.db\"",
            &format!("url = \"{PG_WITH_PASSWORD}\""),
        ),
        &[],
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains(PG_MASKED), "stdout: {}", run.stdout);
    assert!(
        !run.stdout.contains("S3CR3T") && !run.stderr.contains("S3CR3T"),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn check_config_never_prints_the_storage_password_from_the_environment() {
    for (url, shown) in [
        (PG_WITH_PASSWORD, PG_MASKED),
        (
            "postgres://intake@db.example/intake?password=S3CR3T-query&sslmode=disable",
            "postgres://intake@db.example/intake?password=***&sslmode=disable",
        ),
    ] {
        let run = check(GOOD, &[("INTAKE_STORAGE_URL", url)]);
        assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
        assert!(run.stdout.contains(shown), "stdout: {}", run.stdout);
        assert!(!run.stdout.contains("S3CR3T"), "stdout: {}", run.stdout);
    }
    // A refused value is quoted masked too.
    let run = check(
        GOOD,
        &[("INTAKE_STORAGE_URL", "mysql://intake:S3CR3T@db/intake")],
    );
    run.assert_failed();
    run.assert_stderr_has(&["storage.url", "mysql://intake:***@db/intake"]);
    assert!(!run.stderr.contains("S3CR3T"), "stderr: {}", run.stderr);
}

#[test]
fn check_config_errors_never_quote_a_secret() {
    // A value of the wrong type, which the parser quotes.
    let run = check(
        &good_with("token = \"change-me\"", "token = 987654321"),
        &[],
    );
    run.assert_failed();
    run.assert_stderr_has(&["admin.token", "invalid type"]);
    assert!(!run.stderr.contains("987654321"), "stderr: {}", run.stderr);

    // Values the validator refuses, and quotes.
    let text = good_with(
        "url = \"sqlite://./intake-data/intake.db\"",
        "url = \"mysql://intake:S3CR3T-storage@db/intake\"",
    )
    .replace(
        "url = \"https://hooks.slack.example/services/T000/B000/XXX\"",
        "url = \"ftp://hooks.slack.example/services/S3CR3T-slack\"",
    )
    .replace(
        "url = \"https://status.maelys.example/hooks/intake\"",
        "url = \"status.maelys.example/hooks/S3CR3T-contact\"",
    );
    let run = check(
        &text,
        &[
            (
                "INTAKE_MONITOR_WATCHDOG_URL",
                "hc-ping.example/S3CR3T-watchdog",
            ),
            ("INTAKE_METRICS_TOKEN", "change-me"),
        ],
    );
    run.assert_failed();
    run.assert_stderr_has(&[
        "storage.url",
        "notifiers[0].url",
        "tenants[0].contacts[0].url",
        "monitor.watchdog_url",
        "metrics.token",
    ]);
    for secret in ["S3CR3T", "change-me"] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "{secret} was printed\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn serve_never_prints_the_password_of_a_store_it_cannot_open() {
    // Nothing listens on this port: opening the store fails at once.
    let port = crate::crash::free_port();
    let (dir, path) = write_config("intake.toml", GOOD);
    for url in [
        format!("postgres://intake:S3CR3T-user-info@127.0.0.1:{port}/intake"),
        format!("postgres://intake@127.0.0.1:{port}/intake?password=S3CR3T-query"),
    ] {
        let run = intake(
            dir.path(),
            &["serve", "--config", path.to_str().expect("utf-8 path")],
            &[("INTAKE_STORAGE_URL", &url), ("INTAKE_LOG", "debug")],
        );
        run.assert_failed();
        run.assert_stderr_has(&[&format!("127.0.0.1:{port}")]);
        assert!(
            !run.stderr.contains("S3CR3T") && !run.stdout.contains("S3CR3T"),
            "stdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn check_config_states_plain_text_email_to_a_local_relay() {
    let text = format!(
        "{GOOD}\n[[notifiers]]\nid = \"relay\"\nkind = \"email\"\nto = [\"ops@example.com\"]\n\
         smtp_url = \"smtp://intake:S3CR3T-relay@127.0.0.1:25\"\ntls = \"none\"\n"
    );
    let run = check(&text, &[]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stdout
            .contains("notifiers[1] (`relay`): e-mail WITHOUT TLS (tls = \"none\")")
            && run.stdout.contains("smtp://intake:***@127.0.0.1:25"),
        "stdout: {}",
        run.stdout
    );
    assert!(!run.stdout.contains("S3CR3T"), "stdout: {}", run.stdout);

    // Anywhere but loopback it is refused.
    let run = check(&text.replace("127.0.0.1:25", "mail.example:25"), &[]);
    run.assert_failed();
    run.assert_stderr_has(&["notifiers[1].tls", "loopback"]);
}

#[test]
fn check_config_reads_reconcile_keys_from_the_environment_and_blames_it() {
    let run = check(
        GOOD,
        &[
            ("INTAKE_RECONCILE_BUDGET_SHARE", "0.5"),
            ("INTAKE_RECONCILE_AUTO_BACKFILL", "true"),
            ("INTAKE_RECONCILE_INTERVAL", "5m"),
        ],
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let run = check(GOOD, &[("INTAKE_RECONCILE_BUDGET_SHARE", "2")]);
    run.assert_failed();
    run.assert_stderr_has(&[
        "reconcile.budget_share",
        "2 is not a share",
        "(set by the environment variable INTAKE_RECONCILE_BUDGET_SHARE)",
    ]);
}
