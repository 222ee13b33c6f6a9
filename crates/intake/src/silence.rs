//! `intake silence add|list|expire`: mute the notifications of some alerts for a bounded time,
//! through the admin API. The server decides what is allowed (scoped matchers, a bounded
//! expiry, an author and a reason; never `watchdog` or `canary_failed`); a refused silence
//! exits non-zero with the server's explanation.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::api::{self, Api, ApiArgs, Call};

/// `intake silence …`
#[derive(Debug, clap::Subcommand)]
pub enum SilenceCommand {
    /// Create a silence. It must name a rule, tenant or source, and it expires.
    Add {
        /// A label matcher, LABEL=VALUE (labels: rule, tenant, source, channel, destination).
        /// Repeat for several; all must match.
        #[arg(long = "match", value_name = "LABEL=VALUE", required = true)]
        matchers: Vec<String>,
        /// How long it lasts, e.g. 30m or 2h (at most monitor.max_silence).
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        for_: Option<String>,
        /// When it ends, RFC 3339 (e.g. 2026-11-28T18:00:00Z).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why (announced to on-call with the silence).
        #[arg(long)]
        comment: String,
        /// Who creates it (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List active silences (with --all, also those ended in the last week).
    List {
        /// Include ended silences.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a silence now (announced to on-call).
    Expire {
        /// The silence id (sil_…).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Runs one `intake silence` command.
pub fn run(cmd: SilenceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SilenceCommand::Add {
            matchers,
            for_,
            until,
            comment,
            author,
            api,
        } => {
            let mut m = Map::new();
            for raw in &matchers {
                let (k, v) = raw.split_once('=').with_context(|| {
                    format!("--match `{raw}` is not LABEL=VALUE (e.g. --match tenant=maelys)")
                })?;
                m.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            let author = author
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok());
            let mut body = json!({ "matchers": m, "comment": comment });
            if let Some(a) = author {
                body["created_by"] = json!(a);
            }
            if let Some(f) = for_ {
                body["for"] = json!(f);
            }
            if let Some(u) = until {
                body["ends_at"] = json!(u);
            }
            let api = Api::new(api)?;
            let create = Call {
                body: Some(&body),
                ..Call::default()
            };
            let s = api
                .call(&api::SILENCE_CREATE, create)
                .context("the silence was refused")?;
            println!(
                "created {} ({}) until {}; announced to: {}",
                s["id"].as_str().unwrap_or("?"),
                matchers_text(&s["matchers"]),
                s["ends_at"].as_str().unwrap_or("?"),
                list_text(&s["announced_to"]),
            );
            Ok(ExitCode::SUCCESS)
        }
        SilenceCommand::List { all, api } => {
            let api = Api::new(api)?;
            let query: &[(&str, &str)] = if all { &[("state", "all")] } else { &[] };
            let list = Call {
                query,
                ..Call::default()
            };
            print!("{}", render(&api.call(&api::SILENCES, list)?));
            Ok(ExitCode::SUCCESS)
        }
        SilenceCommand::Expire { id, api } => {
            let api = Api::new(api)?;
            let expire = Call {
                path: &[&id],
                ..Call::default()
            };
            let s = api
                .call(&api::SILENCE_EXPIRE, expire)
                .context("the silence could not be expired")?;
            println!(
                "expired {} ({}); announced to: {}",
                s["id"].as_str().unwrap_or("?"),
                matchers_text(&s["matchers"]),
                list_text(&s["announced_to"]),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn matchers_text(m: &Value) -> String {
    m.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn list_text(v: &Value) -> String {
    let names: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if names.is_empty() {
        "no notifier".into()
    } else {
        names.join(", ")
    }
}

/// The silences as a table.
pub fn render(silences: &Value) -> String {
    let mut out = String::new();
    let list = silences["data"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(out, "\nSILENCES: {}", list.len());
    for s in list {
        let _ = writeln!(
            out,
            "  {}  {:<8} {}  until {}  by {}: {}",
            s["id"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            matchers_text(&s["matchers"]),
            s["ends_at"].as_str().unwrap_or("?"),
            s["created_by"].as_str().unwrap_or("?"),
            s["comment"].as_str().unwrap_or(""),
        );
    }
    out
}
