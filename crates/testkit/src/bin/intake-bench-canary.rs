//! `intake-bench-canary`: how long after a total stop of the pipeline intake tells on-call, with
//! the default settings (`[canary]` every 60 s, deadline 2 min; the monitor every 60 s), on the
//! real binary and the real clock — the product's target is 3 minutes, at any hour and for any
//! tenant size. There is no traffic at all: the worst case for every detector that reads
//! traffic, and no help for a canary, which needs none.
//!
//! Each run:
//!
//! 1. a handler on a loopback port answering 200, a webhook notifier's receiver, and
//!    `intake serve` (the binary beside this one, or `--intake`) with a temporary SQLite store,
//!    one Kustomer source and nothing else configured but the notifier;
//! 2. a wait for the first canary to reach the handler, then a random pause of 0–60 s, so the
//!    stop falls anywhere in the canary's and the monitor's cycles;
//! 3. the stop, at instant F:
//!    * `destination-down`: the handler answers 503 to everything from then on;
//!    * `not-queued`: the story's bug — ingest keeps answering 200 and stores every event, but
//!      no delivery is created. It is made from outside the process, so the binary is the
//!      one users run: a trigger in intake's SQLite database (`BEFORE INSERT ON deliveries …
//!      RAISE(IGNORE)`) silently drops every delivery row, exactly what the store fault
//!      `AcceptWithoutQueueing` does in the tests. A webhook sent then is checked to get its
//!      200 and never reach the handler;
//! 4. the wait for the `canary_failed` notification at the notifier; the detection time is the
//!    notice's time minus F (both from the system clock), and the time since the last canary
//!    that got through is reported too.
//!
//! ```text
//! cargo build --release -p intake -p intake-testkit
//! target/release/intake-bench-canary --scenario destination-down --runs 3
//! target/release/intake-bench-canary --scenario not-queued --runs 3
//! ```
//!
//! Prints one line per run and a summary (stderr: progress). Exit status: 0 when every run
//! was notified within 3 minutes, 2 when one was not, 1 when the benchmark could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use clap::{Parser, ValueEnum};
use intake_core::Timestamp;
use intake_testkit::process::{free_port, intake_binary, IntakeProcess};
use intake_testkit::{kustomer, CaptureHandler, NotifierCapture, Reply, DESTINATION_SECRET};
use serde_json::Value;

const SOURCE: &str = "maelys-kustomer";
const SECRET: &str = "bench-kustomer-webhook-token";
const ADMIN_TOKEN: &str = "bench-admin-token";
/// The product's target.
const TARGET: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// The destination answers 503 to everything.
    DestinationDown,
    /// Ingest answers 200 and stores the event, but nothing is queued (the story's bug).
    NotQueued,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::DestinationDown => "destination-down",
            Scenario::NotQueued => "not-queued",
        }
    }
}

/// Measures the time from a total stop of the pipeline to the `canary_failed` notification.
#[derive(Debug, Parser)]
struct Args {
    /// The `intake` binary (default: the one beside this benchmark).
    #[arg(long)]
    intake: Option<PathBuf>,
    /// What stops.
    #[arg(long, value_enum, default_value = "destination-down")]
    scenario: Scenario,
    /// How many runs.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Keep each run's directory (configuration, database, intake's log).
    #[arg(long)]
    keep: bool,
}

/// What one run measured.
struct Measured {
    /// From the stop to the notification.
    detection: Duration,
    /// From the last canary that got through to the notification.
    since_success: Duration,
    /// The pause before the stop, after the first canary got through.
    phase: Duration,
    /// The notification's reason.
    reason: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: &Args) -> Result<bool> {
    let bin = intake_binary(args.intake.as_deref())?;
    let mut all = Vec::new();
    for n in 1..=args.runs {
        eprintln!("run {n}/{}: {}", args.runs, args.scenario.name());
        let m = once(&bin, args.scenario, args.keep).await?;
        println!(
            "run {n} ({}): stop {:.1} s after a canary got through; notified {:.1} s after the stop, {:.1} s after the last success — {}",
            args.scenario.name(),
            m.phase.as_secs_f64(),
            m.detection.as_secs_f64(),
            m.since_success.as_secs_f64(),
            m.reason
        );
        all.push(m);
    }
    let worst = all.iter().map(|m| m.detection).max().unwrap_or_default();
    let secs: Vec<String> = all
        .iter()
        .map(|m| format!("{:.1}", m.detection.as_secs_f64()))
        .collect();
    println!(
        "{}: {} runs, detection {} s (worst {:.1} s; target {} s)",
        args.scenario.name(),
        all.len(),
        secs.join(", "),
        worst.as_secs_f64(),
        TARGET.as_secs()
    );
    Ok(worst <= TARGET)
}

async fn once(bin: &Path, scenario: Scenario, keep: bool) -> Result<Measured> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let handler = CaptureHandler::start(DESTINATION_SECRET).await?;
    let hook = NotifierCapture::start().await?;
    let port = free_port()?;
    let db = dir.path().join("intake.db");
    let config = dir.path().join("intake.toml");
    std::fs::write(
        &config,
        config_text(port, &db, &handler.url(), &hook.url("/hook")),
    )
    .context("writing the configuration")?;
    let log = dir.path().join("intake.log");
    let mut intake = IntakeProcess::start(bin, &config, &log, port).await?;
    let result = measure(&intake, scenario, &handler, &hook, &db).await;
    intake.stop().await;
    if keep || result.is_err() {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
    }
    result
}

async fn measure(
    intake: &IntakeProcess,
    scenario: Scenario,
    handler: &CaptureHandler,
    hook: &NotifierCapture,
    db: &Path,
) -> Result<Measured> {
    let http = reqwest::Client::new();
    // The first canary gets through (an interval after the start).
    let started = Instant::now();
    loop {
        if !canary(&http, &intake.url).await?["last_success_at"].is_null() {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "no canary got through within 3 minutes of the start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let phase = Duration::from_millis(rand::random_range(0..60_000));
    eprintln!(
        "  first canary delivered after {:.1} s; stopping the pipeline in {:.1} s",
        started.elapsed().as_secs_f64(),
        phase.as_secs_f64()
    );
    tokio::time::sleep(phase).await;

    let stopped_at = Timestamp::from_system_time(SystemTime::now());
    match scenario {
        Scenario::DestinationDown => handler.set_default(Reply::Status(503)),
        Scenario::NotQueued => drop_deliveries(db)?,
    }
    let mut lost_event = None;
    if scenario == Scenario::NotQueued {
        // The story: the door says 200, and the work goes nowhere.
        let body = kustomer::message_create("bench-lost-1", "chat");
        let r = http
            .post(format!("{}/ingest/{SOURCE}", intake.url))
            .header("content-type", "application/json")
            .header(
                "x-kustomer-webhook-signature",
                kustomer::sign(SECRET, &body),
            )
            .body(body)
            .send()
            .await?;
        ensure!(r.status() == 200, "the webhook got {}", r.status());
        let v: Value = r.json().await?;
        lost_event = v["id"].as_str().map(str::to_string);
    }

    let notice = loop {
        let firing = hook.accepted().iter().map(|r| r.json()).find(|n| {
            n["kind"] == "alert" && n["status"] == "firing" && n["rule"] == "canary_failed"
        });
        if let Some(n) = firing {
            break n;
        }
        let waited = Timestamp::from_system_time(SystemTime::now()).since(stopped_at);
        ensure!(
            waited < Duration::from_secs(600),
            "no canary_failed notification 10 minutes after the stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at = time(&notice["at"])?;
    let entry = canary(&http, &intake.url).await?;
    let last_success = time(&entry["last_success_at"])?;
    if let Some(id) = lost_event {
        // Never delivered: it was acknowledged and dropped, as in the story.
        let (_, event) = api(&http, &intake.url, &format!("/api/v1/events/{id}")).await?;
        ensure!(
            event["deliveries"].as_array().is_some_and(Vec::is_empty),
            "the lost webhook has deliveries: {event}"
        );
        ensure!(
            handler.received().iter().all(|c| c.is_canary()),
            "the lost webhook reached the handler"
        );
    }
    Ok(Measured {
        detection: at.since(stopped_at),
        since_success: at.since(last_success),
        phase,
        reason: notice["alerts"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

/// The story's bug, from outside: every delivery row is silently dropped from now on.
fn drop_deliveries(db: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(db).context("opening intake's database")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "CREATE TRIGGER bench_not_queued BEFORE INSERT ON deliveries
         BEGIN SELECT RAISE(IGNORE); END;",
    )
    .context("creating the trigger that drops deliveries")?;
    Ok(())
}

async fn api(http: &reqwest::Client, url: &str, path: &str) -> Result<(u16, Value)> {
    let r = http
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// The source's entry of `GET /api/v1/canaries`.
async fn canary(http: &reqwest::Client, url: &str) -> Result<Value> {
    let (status, body) = api(http, url, "/api/v1/canaries").await?;
    ensure!(
        status == 200,
        "GET /api/v1/canaries answered {status}: {body}"
    );
    body["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["source"] == SOURCE).cloned())
        .context("no canary entry for the source")
}

fn time(v: &Value) -> Result<Timestamp> {
    let text = v.as_str().with_context(|| format!("not a time: {v}"))?;
    Timestamp::parse_rfc3339(text).map_err(|e| anyhow::anyhow!("{text}: {e}"))
}

/// The default settings: no `[canary]` nor `[monitor]` section.
fn config_text(port: u16, db: &Path, handler: &str, hook: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[storage]
url = "sqlite://{db}"

[admin]
token = "{ADMIN_TOKEN}"

[[tenants]]
id = "maelys"

[[destinations]]
id = "handler"
url = "{handler}"
secret = "{DESTINATION_SECRET}"

[[sources]]
id = "{SOURCE}"
tenant = "maelys"
kind = "kustomer"
secrets = ["{SECRET}"]
destinations = ["handler"]

[[notifiers]]
id = "oncall"
kind = "webhook"
url = "{hook}"
"#,
        db = db.display()
    )
}
