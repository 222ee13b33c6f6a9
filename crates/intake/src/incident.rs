//! `intake incident declare|update|resolve|list|show|postmortem`: incidents, through the admin
//! API. Declaring, updating and resolving notify on-call and the affected tenants' contacts
//! (the server does, through its outbox); this command says who was told.
//!
//! `declare` prints the new incident's id alone on standard output (so that
//! `ID=$(intake incident declare …)` works) and what it did on standard error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use intake_core::Timestamp;
use serde_json::{json, Value};

use crate::api::{self, Api, ApiArgs, Call};

/// `intake incident …`
#[derive(Debug, clap::Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident: notifies on-call and every contact of the affected tenants at
    /// once. Prints the new incident's id.
    Declare {
        /// What is wrong, in a few words (tenants read it; name no tenant when there are
        /// several).
        #[arg(long)]
        title: String,
        /// An affected tenant (repeat for several).
        #[arg(long = "tenant", value_name = "ID", required = true)]
        tenants: Vec<String>,
        /// An affected source (repeat; default: all the tenants' sources).
        #[arg(long = "source", value_name = "ID")]
        sources: Vec<String>,
        /// An affected channel: email, chat, sms, voice, social, other (repeat; default: all).
        #[arg(long = "channel", value_name = "CHANNEL")]
        channels: Vec<String>,
        /// critical, major (default) or minor.
        #[arg(long)]
        severity: Option<String>,
        /// When the impact began, RFC 3339 (e.g. 2026-11-28T09:40:00Z; default: now).
        #[arg(long, value_name = "TIME")]
        impact_start: Option<String>,
        /// Who leads the response.
        #[arg(long, value_name = "NAME")]
        commander: Option<String>,
        /// What to tell on-call and the tenants now.
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// Who declares it (default: $USER).
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Post an update (and a new status): notifies on-call and every affected tenant.
    Update {
        /// The incident id (inc_…).
        id: String,
        /// investigating, identified or monitoring.
        #[arg(long)]
        status: Option<String>,
        /// What changed (tenants read it).
        #[arg(long, value_name = "TEXT")]
        message: String,
        /// A new lead.
        #[arg(long, value_name = "NAME")]
        commander: Option<String>,
        /// A new severity: critical, major or minor.
        #[arg(long)]
        severity: Option<String>,
        /// Who writes it (default: $USER).
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resolve an incident: notifies on-call and every tenant that was told of it.
    Resolve {
        /// The incident id (inc_…).
        id: String,
        /// What to tell them (default: the problem is fixed).
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// Who resolves it (default: $USER).
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List incidents, newest first.
    List {
        /// Only the open ones.
        #[arg(long)]
        open: bool,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show an incident: its status, its timeline (alerts, notices and whether they arrived,
    /// updates, recovery jobs) and its response times.
    Show {
        /// The incident id (inc_…).
        id: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the postmortem draft (Markdown) of an incident.
    Postmortem {
        /// The incident id (inc_…).
        id: String,
        /// Write it to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Runs one `intake incident` command.
pub fn run(cmd: IncidentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IncidentCommand::Declare {
            title,
            tenants,
            sources,
            channels,
            severity,
            impact_start,
            commander,
            message,
            author,
            api,
        } => {
            if let Some(t) = &impact_start {
                check_time("--impact-start", t)?;
            }
            let body = json!({
                "title": title,
                "tenants": tenants,
                "sources": sources,
                "channels": channels,
                "severity": severity,
                "impact_start": impact_start,
                "commander": commander,
                "message": message,
                "author": author_or_user(author),
            });
            let api = Api::new(api)?;
            let incident = api.call(
                &api::INCIDENT_DECLARE,
                Call {
                    body: Some(&body),
                    ..Call::default()
                },
            )?;
            let id = incident["id"]
                .as_str()
                .context("the server answered without an id")?;
            eprint!("{}", told(&incident, "declared"));
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        IncidentCommand::Update {
            id,
            status,
            message,
            commander,
            severity,
            author,
            api,
        } => {
            let body = json!({
                "status": status,
                "message": message,
                "commander": commander,
                "severity": severity,
                "author": author_or_user(author),
            });
            write_step(api, &api::INCIDENT_UPDATE, &id, &body, "updated")
        }
        IncidentCommand::Resolve {
            id,
            message,
            author,
            api,
        } => {
            let body = json!({ "message": message, "author": author_or_user(author) });
            write_step(api, &api::INCIDENT_RESOLVE, &id, &body, "resolved")
        }
        IncidentCommand::List { open, tenant, api } => {
            let api = Api::new(api)?;
            let mut query: Vec<(&str, &str)> = vec![("state", if open { "open" } else { "all" })];
            if let Some(t) = &tenant {
                query.push(("tenant", t));
            }
            let list = api.call(&api::INCIDENTS, Call::query(&query))?;
            print!("{}", render_list(&list, "INCIDENTS"));
            Ok(ExitCode::SUCCESS)
        }
        IncidentCommand::Show { id, json, api } => {
            let api = Api::new(api)?;
            let incident = api.call(&api::INCIDENT, Call::at(&[&id]))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&incident)?);
            } else {
                print!("{}", render_detail(&incident));
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentCommand::Postmortem { id, out, api } => {
            let api = Api::new(api)?;
            let text = api.call_text(&api::INCIDENT_POSTMORTEM, Call::at(&[&id]))?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &text).with_context(|| {
                        format!(
                            "cannot write {} (check the directory exists and is writable)",
                            path.display()
                        )
                    })?;
                    eprintln!("postmortem draft of {id} written to {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An update or a resolution, and who it told.
fn write_step(
    args: ApiArgs,
    endpoint: &api::Endpoint,
    id: &str,
    body: &Value,
    done: &str,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(args)?;
    let incident = api.call(
        endpoint,
        Call {
            path: &[id],
            body: Some(body),
            ..Call::default()
        },
    )?;
    print!("{}", told(&incident, done));
    Ok(ExitCode::SUCCESS)
}

/// The `--impact-start` value checked before anything is sent: a clear error, not a 400.
fn check_time(flag: &str, value: &str) -> anyhow::Result<()> {
    Timestamp::parse_rfc3339(value).map(|_| ()).map_err(|_| {
        anyhow::anyhow!(
            "{flag} `{value}` is not an RFC 3339 time; write it like 2026-11-28T09:40:00Z (UTC) or 2026-11-28T10:40:00+01:00"
        )
    })
}

fn author_or_user(author: Option<String>) -> Option<String> {
    author
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// "incident inc_… declared (investigating); told: …" from the notices of its last step.
fn told(incident: &Value, done: &str) -> String {
    let mut out = format!(
        "incident {} {done} ({})\n",
        text(&incident["id"]),
        text(&incident["status"])
    );
    let timeline = incident["timeline"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let last_at = timeline
        .iter()
        .filter(|t| t["kind"] == "notice")
        .filter_map(|t| t["at"].as_str())
        .max();
    let recipients: Vec<&str> = timeline
        .iter()
        .filter(|t| t["kind"] == "notice" && t["at"].as_str() == last_at)
        .filter_map(|t| t["detail"]["recipient"].as_str())
        .collect();
    if recipients.is_empty() {
        out.push_str("  nobody to tell: no notifier takes incident notices and no affected tenant has contacts ([[tenants]] contacts)\n");
    } else {
        let _ = writeln!(out, "  notices queued for: {}", recipients.join("; "));
    }
    if let Some(list) = timeline
        .iter()
        .find(|t| t["kind"] == "declared")
        .and_then(|t| t["detail"]["without_contacts"].as_array())
        .filter(|l| !l.is_empty())
    {
        let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        let _ = writeln!(
            out,
            "  warning: no contacts configured for {}: they were not told (add [[tenants]] contacts)",
            names.join(", ")
        );
    }
    out
}

/// A table of incidents under `heading`.
pub fn render_list(list: &Value, heading: &str) -> String {
    let data = list["data"].as_array().map_or(&[][..], Vec::as_slice);
    let mut out = format!("\n{heading}: {}\n", data.len());
    if data.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "  {:<30} {:<13} {:<8} {:<20} {:<24}  TITLE",
        "ID", "STATUS", "SEVERITY", "TENANTS", "IMPACT SINCE"
    );
    for i in data {
        let tenants: Vec<&str> = i["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(
            out,
            "  {:<30} {:<13} {:<8} {:<20} {:<24}  {}",
            text(&i["id"]),
            text(&i["status"]),
            text(&i["severity"]),
            tenants.join(","),
            text(&i["impact_start"]),
            text(&i["title"]),
        );
    }
    out
}

/// An incident, its response times and its timeline, for a terminal.
fn render_detail(i: &Value) -> String {
    let mut out = String::new();
    let list = |v: &Value, none: &str| -> String {
        let items: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if items.is_empty() {
            none.to_string()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(out, "{}  {}", text(&i["id"]), text(&i["title"]));
    if let Some(drill) = i["drill"].as_str() {
        let _ = writeln!(
            out,
            "  drill    {drill}: declared by a fire drill's alert, not a real outage (intake drill show {drill})"
        );
    }
    let _ = writeln!(
        out,
        "  status {} · severity {} · lead {}",
        text(&i["status"]),
        text(&i["severity"]),
        i["commander"].as_str().unwrap_or("not named")
    );
    let _ = writeln!(out, "  tenants  {}", list(&i["tenants"], "-"));
    let _ = writeln!(out, "  sources  {}", list(&i["sources"], "all"));
    let _ = writeln!(out, "  channels {}", list(&i["channels"], "all"));
    let _ = writeln!(
        out,
        "  impact   since {}{}",
        text(&i["impact_start"]),
        i["resolved_at"]
            .as_str()
            .map(|r| format!(" until {r}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  declared {} by {}; next update due {}",
        text(&i["declared_at"]),
        text(&i["declared_by"]),
        i["next_update_at"].as_str().unwrap_or("-")
    );
    let t = &i["times"];
    let secs = |k: &str| t[k].as_u64().map(duration).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "  times    detect {} · notify {} (declared → first tenant notice {}) · mitigate {} · resolve {}",
        secs("time_to_detect"),
        secs("time_to_notify"),
        secs("declared_to_first_tenant_notice"),
        secs("time_to_mitigate"),
        secs("time_to_resolve")
    );
    let _ = writeln!(out, "\nTIMELINE");
    for item in i["timeline"].as_array().into_iter().flatten() {
        let who = item["author"]
            .as_str()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {:<18} {}{who}",
            text(&item["at"]),
            text(&item["kind"]),
            text(&item["text"])
        );
    }
    out
}

/// `2h 5m`, `45m`, `30s`.
fn duration(s: u64) -> String {
    let (h, m) = (s / 3600, s % 3600 / 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_impact_start_says_how_to_write_one() {
        let e = check_time("--impact-start", "yesterday")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("RFC 3339") && e.contains("2026-11-28T09:40:00Z"),
            "{e}"
        );
        assert!(check_time("--impact-start", "2026-11-28T09:40:00Z").is_ok());
    }

    #[test]
    fn a_drill_incident_says_so_and_names_its_drill() {
        let i = |drill: Value| {
            json!({"id": "inc_1", "title": "[DRILL] Webhook processing stalled",
                   "status": "investigating", "severity": "critical", "drill": drill,
                   "times": {}, "timeline": []})
        };
        let text = render_detail(&i(json!("drl_1")));
        assert!(
            text.contains("drill    drl_1: declared by a fire drill's alert, not a real outage"),
            "{text}"
        );
        assert!(!render_detail(&i(Value::Null)).contains("drill "));
    }

    #[test]
    fn the_list_shows_each_incident_on_a_line() {
        let list = json!({"data": [{
            "id": "inc_1", "status": "investigating", "severity": "major",
            "tenants": ["maelys"], "impact_start": "2026-11-28T09:40:00.000Z",
            "title": "Webhooks delayed"
        }]});
        let text = render_list(&list, "OPEN INCIDENTS");
        assert!(text.contains("OPEN INCIDENTS: 1"), "{text}");
        assert!(
            text.contains("inc_1") && text.contains("Webhooks delayed"),
            "{text}"
        );
    }
}
