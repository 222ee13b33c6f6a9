//! `intake status`: a terminal summary of a running server, read from its admin API — the
//! alerts firing, what is coming in per source and channel, and what is waiting to go out per
//! destination.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The server's base URL.
    #[arg(long, env = "INTAKE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An operator token (admin.token) or a tenant's api_token.
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// A small blocking client for the admin API.
pub struct Api {
    args: ApiArgs,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    /// A client for `args`.
    pub fn new(args: ApiArgs) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            args,
            http,
            runtime,
        })
    }

    /// GETs `path` and returns its JSON, or an error that says what the server answered.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }

    /// Sends a request with an optional JSON body and returns the JSON answer, or an error
    /// that quotes the server's explanation (the problem's `detail`).
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.args.url.trim_end_matches('/'));
        self.runtime.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.args.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach intake at {}", self.args.url))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let detail = body["detail"].as_str().unwrap_or("no detail");
                anyhow::bail!("{method} {url}: HTTP {status}: {detail}");
            }
            Ok(body)
        })
    }
}

/// Prints the summary; exits non-zero when the server cannot be read.
pub fn run(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(args)?;
    let flows = api.get("/api/v1/flows")?;
    let queue = api.get("/api/v1/queue")?;
    let alerts = api.get("/api/v1/alerts?limit=10")?;
    print!("{}", render(&flows, &queue, &alerts));
    let silences = api.get("/api/v1/silences")?;
    print!("{}", crate::silence::render(&silences));
    Ok(ExitCode::SUCCESS)
}

fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The summary as text.
pub fn render(flows: &Value, queue: &Value, alerts: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "intake status as of {}", text(&flows["as_of"]));
    let firing = alerts["firing"].as_array().map_or(&[][..], Vec::as_slice);
    let pending = alerts["pending"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(
        out,
        "\nALERTS: {} firing, {} pending",
        firing.len(),
        pending.len()
    );
    for (state, list) in [("FIRING", firing), ("pending", pending)] {
        for a in list {
            let l = &a["labels"];
            let scope: Vec<String> = ["tenant", "source", "channel", "destination", "notifier"]
                .iter()
                .filter_map(|k| {
                    l[*k]
                        .as_str()
                        .filter(|v| !v.is_empty())
                        .map(|v| format!("{k}={v}"))
                })
                .collect();
            if let Some(id) = a["silenced_by"].as_str() {
                let _ = writeln!(out, "  (silenced by {id}: still evaluated, not notified)");
            }
            let _ = writeln!(
                out,
                "  {state:<7} {:<9} {:<18} {}  since {}\n          {}",
                text(&a["severity"]),
                text(&a["rule"]),
                scope.join(" "),
                a["firing_since"]
                    .as_str()
                    .or(a["active_since"].as_str())
                    .unwrap_or("-"),
                text(&a["reason"]),
            );
        }
    }
    let _ = writeln!(out, "\nINBOUND (events received)");
    let _ = writeln!(
        out,
        "  {:<12} {:<24} {:<10} {:<8} {:>9} {:>9} {:>9}  last event",
        "TENANT", "SOURCE", "KIND", "CHANNEL", "LAST 1H", "LAST 24H", "REJ 1H"
    );
    for f in flows["data"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<12} {:<24} {:<10} {:<8} {:>9} {:>9} {:>9}  {}",
            text(&f["tenant"]),
            text(&f["source"]),
            text(&f["kind"]),
            "(all)",
            num(&f["last_hour"]),
            num(&f["last_24h"]),
            num(&f["rejected_last_hour"]),
            f["last_event_minute"].as_str().unwrap_or("none in 24h"),
        );
        for c in f["channels"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<12} {:<24} {:<10} {:<8} {:>9} {:>9} {:>9}  {}",
                "",
                "",
                "",
                text(&c["channel"]),
                num(&c["last_hour"]),
                num(&c["last_24h"]),
                "",
                c["last_event_minute"].as_str().unwrap_or("none in 24h"),
            );
        }
    }
    let _ = writeln!(out, "\nQUEUE (deliveries not yet final)");
    let _ = writeln!(
        out,
        "  {:<12} {:<24} {:<16} {:>9} {:>9} {:>12} {:>9}",
        "TENANT", "SOURCE", "DESTINATION", "PENDING", "IN FLIGHT", "OLDEST (s)", "DEAD"
    );
    for q in queue["data"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<12} {:<24} {:<16} {:>9} {:>9} {:>12} {:>9}",
            text(&q["tenant"]),
            text(&q["source"]),
            text(&q["destination"]),
            num(&q["pending"]),
            num(&q["in_flight"]),
            num(&q["oldest_pending_seconds"]),
            num(&q["dead"]),
        );
    }
    out
}
