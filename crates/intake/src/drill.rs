//! `intake drill queue-stall|handler-down|flow-stop|notifier-down|list|show|cancel`: fire
//! drills, through the admin API.
//!
//! A drill runs on the server: this command starts it, follows it (progress on stderr), and
//! prints its report — pass or fail, time to detect, time to notify, healed — exiting 0 only
//! when it passed. Ctrl-C or a lost connection stops the following, not the drill: the server
//! heals it by itself (at its bound at the latest), and `intake drill show ID` reads the
//! verdict later.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::api::{self, Api, ApiArgs, Call};

/// How often a running drill is read.
const POLL: Duration = Duration::from_millis(500);
/// Reads that may fail in a row (a restart of the server, a blip) before giving up following.
const PATIENCE: u32 = 20;

/// `intake drill …`
#[derive(Debug, clap::Subcommand)]
pub enum DrillCommand {
    /// Keep accepting a source's webhooks but dispatch none of its deliveries (the story's
    /// effect: work lined up, never processed). Passes when canary_failed or queue_stalled
    /// fires and is notified.
    QueueStall {
        /// The source.
        #[arg(long)]
        source: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Fail every delivery attempt to a destination (recorded, retried; the handler is not
    /// called). Passes when canary_failed or delivery_errors fires and is notified.
    HandlerDown {
        /// The destination.
        #[arg(long)]
        destination: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Refuse a source's webhooks at the door with 503, canaries included (the system of
    /// record retries them). Passes when canary_failed or inbound_stopped fires and is notified.
    FlowStop {
        /// The source.
        #[arg(long)]
        source: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Fail every send through a notifier (retried: nothing is lost). Passes when
    /// notifier_failing fires and is notified through another notifier.
    NotifierDown {
        /// The notifier.
        #[arg(long)]
        notifier: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List drills, newest first.
    List {
        /// Only drills in this state (running, passed, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a drill: its state, timings and report.
    Show {
        /// The drill id (drl_…).
        id: String,
        /// Print the drill as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a running drill now (it heals at once, without a verdict).
    Cancel {
        /// The drill id (drl_…).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// What every scenario takes besides its target.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The longest the fault may last (default 5m); the drill heals as soon as its alert was
    /// notified, and fails if that has not happened by then.
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// Print the final drill as JSON instead of the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs one `intake drill` command.
pub fn run(cmd: DrillCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DrillCommand::QueueStall { source, run } => drill(run, "queue-stall", "source", &source),
        DrillCommand::HandlerDown { destination, run } => {
            drill(run, "handler-down", "destination", &destination)
        }
        DrillCommand::FlowStop { source, run } => drill(run, "flow-stop", "source", &source),
        DrillCommand::NotifierDown { notifier, run } => {
            drill(run, "notifier-down", "notifier", &notifier)
        }
        DrillCommand::List { state, api } => {
            let api = Api::new(api)?;
            let mut query = vec![("limit", "50")];
            if let Some(s) = &state {
                query.push(("state", s));
            }
            let drills = api.call(&api::DRILLS, Call::query(&query))?;
            print!("{}", render_list(&drills));
            Ok(ExitCode::SUCCESS)
        }
        DrillCommand::Show { id, json, api } => {
            let api = Api::new(api)?;
            let drill = api.call(&api::DRILL, Call::at(&[&id]))?;
            print_drill(&drill, json);
            Ok(exit_of(&drill))
        }
        DrillCommand::Cancel { id, api } => {
            let api = Api::new(api)?;
            let drill = api
                .call(&api::DRILL_CANCEL, Call::at(&[&id]))
                .context("the drill could not be cancelled")?;
            println!("{} cancelled; healed", text(&drill["id"]));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Starts a drill, follows it to its end and prints its report.
fn drill(args: RunArgs, scenario: &str, key: &str, target: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(args.api.clone())?;
    let mut body = json!({ "scenario": scenario, key: target });
    if let Some(f) = &args.for_ {
        body["for"] = json!(f);
    }
    let started = api
        .call(
            &api::DRILL_CREATE,
            Call {
                body: Some(&body),
                ..Call::default()
            },
        )
        .context("the drill was refused")?;
    let id = text(&started["id"]).to_string();
    eprintln!(
        "drill {id} started: {}",
        text(&started["report"]["summary"])
            .strip_prefix("running: ")
            .unwrap_or("")
    );
    eprintln!(
        "waiting for {} to fire and be notified (until {} at the latest); Ctrl-C stops watching, \
         the server still heals it (`intake drill cancel {id}` stops it now)",
        list_of(&started["report"]["expected"]),
        text(&started["expires_at"])
    );
    let drill = follow(&api, &id)?;
    print_drill(&drill, args.json);
    Ok(exit_of(&drill))
}

/// Reads the drill until it ends, writing each step as it is seen.
fn follow(api: &Api, id: &str) -> anyhow::Result<Value> {
    let mut said_alert = false;
    let mut said_notice = false;
    let mut failures = 0u32;
    loop {
        let drill = match api.call(
            &api::DRILL,
            Call::at(&[id]),
        ) {
            Ok(d) => {
                failures = 0;
                d
            }
            Err(e) if failures < PATIENCE => {
                failures += 1;
                eprintln!("cannot read the drill ({e:#}); trying again");
                std::thread::sleep(POLL * 4);
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "lost the connection to intake; drill {id} goes on on the server, which heals it \
                         by itself; see `intake drill show {id}`"
                    )
                })
            }
        };
        let report = &drill["report"];
        if !said_alert && report["alert"].is_object() {
            said_alert = true;
            eprintln!(
                "alert {} fired after {} ({})",
                text(&report["alert"]["rule"]),
                seconds(&drill["time_to_detect_seconds"]),
                labels(&report["alert"]["labels"])
            );
        }
        if !said_notice && report["notification"].is_object() {
            said_notice = true;
            eprintln!(
                "notification sent through `{}` after {}",
                text(&report["notification"]["notifier"]),
                seconds(&drill["time_to_notify_seconds"])
            );
        }
        if drill["state"] != "running" {
            return Ok(drill);
        }
        std::thread::sleep(POLL);
    }
}

/// 0 only for a drill that passed.
fn exit_of(drill: &Value) -> ExitCode {
    if drill["state"] == "passed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_drill(drill: &Value, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(drill).unwrap_or_default()
        );
    } else {
        print!("{}", render(drill));
    }
}

/// The report of one drill, for people.
fn render(d: &Value) -> String {
    let mut out = String::new();
    let r = &d["report"];
    let _ = writeln!(
        out,
        "drill {} — {} on {} `{}` ({}): {}",
        text(&d["id"]),
        text(&d["scenario"]),
        text(&d["target_kind"]),
        text(&d["target"]),
        text(&d["trigger"]),
        text(&d["state"]).to_uppercase()
    );
    let _ = writeln!(out, "  started:        {}", text(&d["started_at"]));
    let _ = writeln!(out, "  expected:       {}", list_of(&r["expected"]));
    let detect = match r["alert"].is_object() {
        true => format!(
            "{} ({} fired at {})",
            seconds(&d["time_to_detect_seconds"]),
            text(&r["alert"]["rule"]),
            text(&r["alert"]["at"])
        ),
        false => "-".into(),
    };
    let _ = writeln!(out, "  time to detect: {detect}");
    let notify = match r["notification"].is_object() {
        true => format!(
            "{} (through `{}` at {})",
            seconds(&d["time_to_notify_seconds"]),
            text(&r["notification"]["notifier"]),
            text(&r["notification"]["at"])
        ),
        false => "-".into(),
    };
    let _ = writeln!(out, "  time to notify: {notify}");
    let healed = match d["healed_at"].as_str() {
        Some(at) => format!("yes, at {at}"),
        None => format!(
            "not yet (the fault ends by {} at the latest)",
            text(&d["expires_at"])
        ),
    };
    let _ = writeln!(out, "  healed:         {healed}");
    let _ = writeln!(out, "  {}", text(&r["summary"]));
    out
}

fn render_list(drills: &Value) -> String {
    let mut out = String::new();
    let data = drills["data"].as_array().cloned().unwrap_or_default();
    if data.is_empty() {
        out.push_str("no drills\n");
        return out;
    }
    for d in &data {
        let _ = writeln!(
            out,
            "{}  {:<13} {:<24} {:<9} {:<9} started {}  detect {}  notify {}",
            text(&d["id"]),
            text(&d["scenario"]),
            text(&d["target"]),
            text(&d["trigger"]),
            text(&d["state"]),
            text(&d["started_at"]),
            seconds(&d["time_to_detect_seconds"]),
            seconds(&d["time_to_notify_seconds"]),
        );
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn list_of(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(" or "))
        .unwrap_or_else(|| "-".into())
}

fn labels(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `2m 5s` from a number of seconds; `-` when there is none.
fn seconds(v: &Value) -> String {
    let Some(s) = v.as_f64().filter(|s| *s >= 0.0) else {
        return "-".into();
    };
    // Whole seconds, cut as the server's summaries cut them.
    let s = s as u64;
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let parts: Vec<String> = [(h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_drill_reads_with_its_timings() {
        let d = json!({
            "id": "drl_1", "scenario": "queue-stall", "target_kind": "source",
            "target": "maelys-kustomer", "trigger": "manual", "state": "passed",
            "started_at": "2026-11-28T10:00:00.000Z", "expires_at": "2026-11-28T10:05:00.000Z",
            "healed_at": "2026-11-28T10:02:06.000Z",
            "time_to_detect_seconds": 125.0, "time_to_notify_seconds": 126.0,
            "report": {
                "expected": ["canary_failed", "queue_stalled"],
                "alert": {"rule": "canary_failed", "labels": {"source": "maelys-kustomer"}, "at": "2026-11-28T10:02:05.000Z"},
                "notification": {"notifier": "hook", "key": "k", "at": "2026-11-28T10:02:06.000Z"},
                "summary": "passed: …; healed"
            }
        });
        let text = render(&d);
        for needle in [
            "drill drl_1 — queue-stall on source `maelys-kustomer` (manual): PASSED",
            "expected:       canary_failed or queue_stalled",
            "time to detect: 2m 5s (canary_failed fired at 2026-11-28T10:02:05.000Z)",
            "time to notify: 2m 6s (through `hook` at 2026-11-28T10:02:06.000Z)",
            "healed:         yes, at 2026-11-28T10:02:06.000Z",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
        assert_eq!(exit_of(&d), ExitCode::SUCCESS);
        let failed = json!({"state": "failed", "report": {}});
        assert_eq!(exit_of(&failed), ExitCode::FAILURE);
        assert!(render(&failed).contains("time to detect: -"));
    }
}
