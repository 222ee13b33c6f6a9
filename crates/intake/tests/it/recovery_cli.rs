//! `intake recover` through the real binary, against a server in this process: a dry run
//! prints the report (by channel, by event type) and exits 0; a real run without `--yes` and
//! without a terminal refuses with exit 2 and changes nothing; with `--yes` it runs, shows
//! progress on stderr, prints the report and exits 0; `list` and `show` work; a job that fails
//! exits 1.

use std::collections::BTreeMap;

use intake_fake_sors::kustomer::KustomerLimits;
use intake_testkit::{ADMIN_TOKEN, SOURCE_SECRET};
use serde_json::Value;

use crate::recovery::{count, Backend, Scenario};
use crate::recovery_support::{intake_cli, Run};
use crate::PATIENCE;

/// `intake recover <args…> --url … --token …`.
async fn recover(s: &Scenario, args: &[&str]) -> Run {
    let url = s.server.url();
    let mut all = vec!["recover"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &url, "--token", ADMIN_TOKEN]);
    intake_cli(&all).await
}

async fn jobs(s: &Scenario) -> Vec<Value> {
    let (status, body) = s.admin.get("/api/v1/recoveries").await;
    assert_eq!(status, 200, "{body:#}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_backfill_reports_confirms_runs_and_exits_by_the_outcome() {
    let extra = format!(
        "\n[[sources]]\nid = \"maelys-wrong-key\"\ntenant = \"maelys\"\nkind = \"kustomer\"\n\
         secrets = [\"{SOURCE_SECRET}\"]\ndestinations = [\"handler\"]\n\
         api = {{ base_url = \"{{API}}\", token = \"not-the-key\" }}\n"
    );
    let s = Scenario::start_with(
        Backend::Sqlite,
        61,
        4,
        (60, 180),
        KustomerLimits::default(),
        &extra,
    )
    .await;
    let expected = s.reproducible();
    let (from, to) = (s.lost.0.to_rfc3339(), s.lost.1.to_rfc3339());
    let window = [
        "--source",
        "maelys-kustomer",
        "--from",
        from.as_str(),
        "--to",
        to.as_str(),
    ];
    let with = |more: &[&'static str]| {
        let mut v: Vec<&str> = vec!["backfill"];
        v.extend_from_slice(&window);
        v.extend_from_slice(more);
        v
    };

    // A dry run: the report, counts by channel and by event type, exit 0.
    let dry = recover(&s, &with(&["--dry-run"])).await;
    dry.assert_code(0);
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for e in expected.values() {
        *by_type.entry(e.event_type.as_str()).or_default() += 1;
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    for needle in [
        "(dry run): succeeded".to_string(),
        format!("missing:      {} events", expected.len()),
        "by channel:".to_string(),
        format!("by event type: {}", types.join(", ")),
        "done:         0".to_string(),
    ] {
        assert!(dry.stdout.contains(&needle), "{needle:?} not in {dry:?}");
    }
    assert!(s.received("backfill").is_empty(), "a dry run ingested");

    // No --yes and no terminal to ask on: refused, exit 2, nothing created or changed.
    let before = jobs(&s).await.len();
    let refused = recover(&s, &with(&[])).await;
    refused.assert_code(2);
    assert!(refused.stderr.contains("--yes"), "{refused:?}");
    assert_eq!(jobs(&s).await.len(), before, "a refused run created a job");
    assert!(s.received("backfill").is_empty());

    // --yes: runs, shows progress on stderr, prints the report, exit 0.
    let real = recover(&s, &with(&["--yes"])).await;
    real.assert_code(0);
    assert!(real.stderr.contains("backfill run rec_"), "{real:?}");
    assert!(real.stderr.contains("progress: "), "{real:?}");
    assert!(real.stdout.contains(": succeeded"), "{real:?}");
    assert!(
        real.stdout
            .contains(&format!("done:         {}", expected.len())),
        "{real:?}"
    );
    s.handler
        .wait_for(s.sent.delivered.len() + expected.len(), PATIENCE)
        .await;
    assert_eq!(s.received("backfill").len(), expected.len());

    // list and show.
    let all = jobs(&s).await;
    let real_job = all
        .iter()
        .find(|j| j["dry_run"] == false)
        .expect("the real job");
    let id = real_job["id"].as_str().unwrap();
    let list = recover(&s, &["list"]).await;
    list.assert_code(0);
    assert!(
        list.stdout
            .contains(&format!("RECOVERY JOBS: {}", all.len())),
        "{list:?}"
    );
    for j in &all {
        assert!(list.stdout.contains(j["id"].as_str().unwrap()), "{list:?}");
    }
    let show = recover(&s, &["show", id]).await;
    show.assert_code(0);
    assert!(
        show.stdout.contains(id) && show.stdout.contains("succeeded"),
        "{show:?}"
    );
    let json = recover(&s, &["show", id, "--json"]).await;
    json.assert_code(0);
    let shown: Value = serde_json::from_str(&json.stdout).expect("show --json prints JSON");
    assert_eq!(count(&shown["report"]["done"]), expected.len() as u64);

    // A request the server refuses is an error that says what to change.
    let future = recover(
        &s,
        &[
            "replay",
            "--source",
            "maelys-kustomer",
            "--from",
            &from,
            "--to",
            "2030-01-01T00:00:00Z",
            "--dry-run",
        ],
    )
    .await;
    future.assert_code(1);
    assert!(
        future.stderr.contains("400") && future.stderr.contains("in the future"),
        "{future:?}"
    );

    // A job that fails (the SOR refuses the API key) exits 1 and says why.
    let failing = recover(
        &s,
        &[
            "backfill",
            "--source",
            "maelys-wrong-key",
            "--from",
            &from,
            "--to",
            &to,
            "--yes",
        ],
    )
    .await;
    failing.assert_code(1);
    assert!(
        failing.stdout.contains("failed") && failing.stdout.contains("401"),
        "{failing:?}"
    );
    s.admin.audit("maelys-kustomer", &["handler"]).await;
}
