//! `intake recover backfill|replay|requeue|list|show|cancel`: recovery jobs, through the admin
//! API. The server runs the job (it survives this command, and a restart of the server); this
//! command creates it, shows its progress, and prints its report.
//!
//! A real run is confirmed first: without `--yes`, the same job runs as a dry run, its report
//! is printed, and the command asks on the terminal before running it for real — and refuses
//! when there is no terminal to ask on. The exit status is 0 only when the job succeeded.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::api::{self, Api, ApiArgs, Call};

/// How often the job is read while it runs.
const POLL: Duration = Duration::from_millis(400);
/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// `intake recover …`
#[derive(Debug, clap::Subcommand)]
pub enum RecoverCommand {
    /// Find what the system of record has and intake never received in a window, and ingest
    /// it (origin `backfill`) through the normal pipeline.
    Backfill(JobArgs),
    /// Deliver again the events of a window that match the filters (origin `replay`).
    Replay(JobArgs),
    /// Give stuck deliveries of a window a fresh pending state; re-route by the current
    /// configuration; queue events that have no delivery to a routed destination.
    Requeue(JobArgs),
    /// List recovery jobs, newest first.
    List {
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a job: its state, progress and report.
    Show {
        /// The job id (rec_…).
        id: String,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a queued or running job (it stops at its next page; what it did stays done).
    Cancel {
        /// The job id (rec_…).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// What a backfill, replay or requeue is asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// The source.
    #[arg(long)]
    source: String,
    /// Window start, RFC 3339 (e.g. 2026-11-30T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    from: String,
    /// Window end, RFC 3339.
    #[arg(long, value_name = "TIME")]
    to: String,
    /// Report what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run for real without asking first.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Backfill: the overlap listed on each side of the window (default 5m); what it lists
    /// outside the window is compared, never injected.
    #[arg(long, value_name = "DURATION")]
    margin: Option<String>,
    /// Replay: only deliveries in this state (pending, in_flight, delivered, retrying, dead), or
    /// at this stage of a handler's work on receipts (received-not-completed, completion-failed,
    /// completed).
    #[arg(long)]
    state: Option<String>,
    /// Replay: only deliveries to this destination.
    #[arg(long)]
    destination: Option<String>,
    /// Replay: only events of this type.
    #[arg(long)]
    event_type: Option<String>,
    /// Replay: only events of this origin (webhook, backfill, canary, replay).
    #[arg(long)]
    origin: Option<String>,
    /// Replay: only events of this channel.
    #[arg(long)]
    channel: Option<String>,
    /// Requeue: also restart deliveries that are retrying (due now, attempts from zero).
    #[arg(long)]
    include_retrying: bool,
    /// Replay: deliver again what the same replay already delivered.
    #[arg(long)]
    force: bool,
    /// Run beside the source's other jobs instead of after them.
    #[arg(long)]
    concurrent: bool,
    /// How many items the report lists (default 20).
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// Print the final job as JSON instead of the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

impl JobArgs {
    fn body(&self, kind: &str, dry_run: bool) -> Value {
        let mut b = json!({
            "kind": kind, "source": self.source, "from": self.from, "to": self.to,
            "dry_run": dry_run, "include_retrying": self.include_retrying,
            "force": self.force, "concurrent": self.concurrent,
        });
        let optional = [
            ("margin", &self.margin),
            ("state", &self.state),
            ("destination", &self.destination),
            ("event_type", &self.event_type),
            ("origin", &self.origin),
            ("channel", &self.channel),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                b[k] = json!(v);
            }
        }
        if let Some(n) = self.sample {
            b["sample"] = json!(n);
        }
        b
    }
}

/// Runs one `intake recover` command.
pub fn run(cmd: RecoverCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RecoverCommand::Backfill(a) => job(a, "backfill"),
        RecoverCommand::Replay(a) => job(a, "replay"),
        RecoverCommand::Requeue(a) => job(a, "requeue"),
        RecoverCommand::List { source, state, api } => {
            let api = Api::new(api)?;
            let mut query = vec![("limit", "50")];
            if let Some(s) = &source {
                query.push(("source", s));
            }
            if let Some(s) = &state {
                query.push(("state", s));
            }
            let jobs = api.call(&api::RECOVERIES, Call::query(&query))?;
            print!("{}", render_list(&jobs));
            Ok(ExitCode::SUCCESS)
        }
        RecoverCommand::Show { id, json, api } => {
            let api = Api::new(api)?;
            let job = api.call(&api::RECOVERY, Call::at(&[&id]))?;
            print_job(&job, json);
            Ok(exit_of(&job))
        }
        RecoverCommand::Cancel { id, api } => {
            let api = Api::new(api)?;
            let job = api
                .call(&api::RECOVERY_CANCEL, Call::at(&[&id]))
                .context("the job could not be cancelled")?;
            println!(
                "cancellation of {} requested; it is {} (it stops at its next page)",
                text(&job["id"]),
                text(&job["state"])
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A backfill, replay or requeue: confirmed, run, watched, reported.
fn job(args: JobArgs, kind: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(args.api.clone())?;
    if args.dry_run {
        let job = start_and_watch(&api, &args.body(kind, true), None)?;
        print_job(&job, args.json);
        return Ok(exit_of(&job));
    }
    let mut total = None;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: refusing to run a real {kind} without confirmation, and there is no terminal to ask on; \
                 look at `intake recover {kind} … --dry-run` first, then pass --yes"
            );
            return Ok(ExitCode::from(2));
        }
        let dry = start_and_watch(&api, &args.body(kind, true), None)?;
        print_job(&dry, false);
        if text(&dry["state"]) != "succeeded" {
            return Ok(exit_of(&dry));
        }
        // What the dry run found, less what the same replay already delivered.
        let todo = dry["report"]["todo"]["total"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(dry["report"]["already_done"].as_u64().unwrap_or(0));
        if todo == 0 {
            println!("nothing to do");
            return Ok(ExitCode::SUCCESS);
        }
        if !confirm(&format!("run this {kind} for real ({todo} to do)?"))? {
            eprintln!("not confirmed; nothing was changed");
            return Ok(ExitCode::from(2));
        }
        total = Some(todo);
    }
    let job = start_and_watch(&api, &args.body(kind, false), total)?;
    print_job(&job, args.json);
    Ok(exit_of(&job))
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Creates the job and follows it to its end, showing progress on stderr (`intake audit` asks
/// the system of record through it too).
pub(crate) fn start_and_watch(
    api: &Api,
    body: &Value,
    total: Option<u64>,
) -> anyhow::Result<Value> {
    let job = api
        .call(
            &api::RECOVERY_CREATE,
            Call {
                body: Some(body),
                ..Call::default()
            },
        )
        .context("the recovery job was refused")?;
    let id = text(&job["id"]).to_string();
    let what = if body["dry_run"].as_bool() == Some(true) {
        "dry run"
    } else {
        "run"
    };
    eprintln!("{} {what} {id} queued", text(&job["kind"]));
    let mut bar = Progress::new(total);
    loop {
        let job = api.call(&api::RECOVERY, Call::at(&[&id]))?;
        bar.show(&job);
        if is_final(&job) {
            bar.finish();
            return Ok(job);
        }
        std::thread::sleep(POLL);
    }
}

/// The progress of a job: an indicatif bar on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                last_line: None,
            };
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} done ({per_sec}) {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar: Some(bar),
            last_line: None,
        }
    }

    fn show(&mut self, job: &Value) {
        let p = &job["progress"];
        let done = p["done"].as_u64().unwrap_or(0);
        let msg = format!(
            "{} · {} to do of {} seen · {} pages · {} SOR requests",
            text(&job["state"]),
            p["todo"].as_u64().unwrap_or(0),
            p["seen"].as_u64().unwrap_or(0),
            p["pages"].as_u64().unwrap_or(0),
            p["requests"].as_u64().unwrap_or(0),
        );
        match &self.bar {
            Some(bar) => {
                // A dry run does nothing: its bar counts what it found.
                let pos = if job["dry_run"].as_bool() == Some(true) {
                    p["todo"].as_u64().unwrap_or(0)
                } else {
                    done
                };
                bar.set_position(pos);
                bar.set_message(msg);
            }
            None => {
                if self.last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    eprintln!("progress: {done} done · {msg}");
                    self.last_line = Some(Instant::now());
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn is_final(job: &Value) -> bool {
    matches!(text(&job["state"]), "succeeded" | "failed" | "cancelled")
}

/// 0 when the job succeeded; 1 when it failed or was cancelled; 3 while it has not ended.
fn exit_of(job: &Value) -> ExitCode {
    match text(&job["state"]) {
        "succeeded" => ExitCode::SUCCESS,
        "failed" | "cancelled" => ExitCode::FAILURE,
        _ => ExitCode::from(3),
    }
}

fn print_job(job: &Value, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(job).unwrap_or_default());
    } else {
        print!("{}", render_job(job));
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The sum of a JSON object of counts.
fn sum(v: &Value) -> u64 {
    v.as_object().map_or(0, |o| o.values().map(n).sum())
}

/// `a 3, b 2` from a JSON object of counts.
fn counts(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, c)| format!("{k} {}", n(c)))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// A job and its report, for people.
pub fn render_job(job: &Value) -> String {
    let mut out = String::new();
    let r = &job["report"];
    let p = &job["params"];
    let dry = if job["dry_run"].as_bool() == Some(true) {
        " (dry run)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{} {} of {}, {} → {}{dry}: {}",
        text(&job["kind"]),
        text(&job["id"]),
        text(&job["source"]),
        text(&p["from"]),
        text(&p["to"]),
        text(&job["state"]),
    );
    if let Some(e) = job["error"].as_str() {
        let _ = writeln!(out, "  error:        {e}");
    }
    render_counts(&mut out, job);
    if let Some(sor) = r["sor"].as_object() {
        let _ = writeln!(
            out,
            "  SOR requests: {} ({} throttled, {} retried) — {:.0} s at {}/min",
            n(&sor["requests"]),
            n(&sor["throttled"]),
            n(&sor["retried"]),
            sor["estimated_seconds"].as_f64().unwrap_or(0.0),
            n(&sor["rate_limit_per_minute"]),
        );
    }
    render_items(&mut out, &r["items"]);
    out
}

fn render_counts(out: &mut String, job: &Value) {
    let r = &job["report"];
    let todo = &r["todo"];
    let kind = text(&job["kind"]);
    let _ = writeln!(
        out,
        "  looked at:    {} events, {} pages",
        n(&r["seen"]),
        n(&r["pages"])
    );
    if kind == "backfill" {
        let _ = writeln!(
            out,
            "  received:     {} already; {} listed outside the window (never injected)",
            n(&r["already_received"]),
            n(&r["outside_window"]),
        );
        let convs = &todo["conversations_by_channel"];
        let _ = writeln!(
            out,
            "  missing:      {} events in {} conversations ({}), of which {} new ({})",
            n(&todo["total"]),
            sum(convs),
            counts(convs),
            sum(&todo["new_conversations_by_channel"]),
            counts(&todo["new_conversations_by_channel"]),
        );
    } else if kind == "requeue" {
        let q = &r["requeue"];
        let _ = writeln!(
            out,
            "  stuck:        {} stale leases, {} retrying reset, {} re-routed, {} deliveries created",
            n(&q["stale_leases"]), n(&q["retrying_reset"]), n(&q["rerouted"]), n(&q["created"]),
        );
    } else {
        let _ = writeln!(
            out,
            "  to replay:    {} deliveries ({} already replayed by the same job)",
            n(&todo["total"]),
            n(&r["already_done"])
        );
    }
    if kind != "requeue" {
        let _ = writeln!(out, "    by channel:    {}", counts(&todo["by_channel"]));
        let _ = writeln!(out, "    by event type: {}", counts(&todo["by_event_type"]));
        let _ = writeln!(out, "    by object:     {}", counts(&todo["by_object"]));
    }
    let _ = writeln!(out, "  done:         {}", n(&r["done"]));
}

fn render_items(out: &mut String, items: &Value) {
    let items = items.as_array().map_or(&[][..], Vec::as_slice);
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "  first {} items:", items.len());
    for i in items {
        let _ = writeln!(
            out,
            "    {:<12} {:<36} {:<8} {}{}{}",
            text(&i["action"]),
            i["event_type"].as_str().unwrap_or(""),
            i["channel"].as_str().unwrap_or(""),
            text(&i["key"]),
            i["occurred_at"]
                .as_str()
                .map(|t| format!("  at {t}"))
                .unwrap_or_default(),
            i["destination"]
                .as_str()
                .map(|d| format!("  → {d}"))
                .unwrap_or_default(),
        );
    }
}

/// The job list as a table.
pub fn render_list(jobs: &Value) -> String {
    let mut out = String::new();
    let list = jobs["data"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(out, "RECOVERY JOBS: {}", list.len());
    for j in list {
        let dry = if j["dry_run"].as_bool() == Some(true) {
            " dry-run"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {}  {:<8}{dry} {:<9} {}  {} → {}  done {} of {}  by {}",
            text(&j["id"]),
            text(&j["kind"]),
            text(&j["state"]),
            text(&j["source"]),
            text(&j["params"]["from"]),
            text(&j["params"]["to"]),
            n(&j["progress"]["done"]),
            n(&j["progress"]["todo"]),
            text(&j["created_by"]),
        );
    }
    out
}
