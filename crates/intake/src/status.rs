//! `intake status`: a terminal summary of a running server, read from its admin API — the
//! alerts firing, what is coming in per source and channel, what is waiting to go out per
//! destination, the open gaps reconciliation found, and whether each source's canaries get
//! through, the silences, and the open incidents.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use crate::api::{self, Api, ApiArgs, Call};

/// Prints the summary; exits non-zero when the server cannot be read.
pub fn run(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(args)?;
    let flows = api.call(&api::FLOWS, Call::default())?;
    let queue = api.call(&api::QUEUE, Call::default())?;
    let recent = Call {
        query: &[("limit", "10")],
        ..Call::default()
    };
    let alerts = api.call(&api::ALERTS, recent)?;
    print!("{}", render(&flows, &queue, &alerts));
    let gaps = api.call(&api::RECONCILIATION, Call::default())?;
    print!("{}", render_gaps(&gaps));
    let canaries = api.call(&api::CANARIES, Call::default())?;
    print!("{}", render_canaries(&canaries));
    let silences = api.call(&api::SILENCES, Call::default())?;
    print!("{}", crate::silence::render(&silences));
    let open = Call {
        query: &[("state", "open")],
        ..Call::default()
    };
    let incidents = api.call(&api::INCIDENTS, open)?;
    print!(
        "{}",
        crate::incident::render_list(&incidents, "OPEN INCIDENTS")
    );
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

/// The canaries section: per source, the last success and its total latency, and where the
/// canaries stopped when they fail.
pub fn render_canaries(canaries: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nCANARIES (signed test webhooks through the front door to the handler)"
    );
    let _ = writeln!(
        out,
        "  {:<12} {:<24} {:>9} {:>9} {:<10} {:<26} last success",
        "TENANT", "SOURCE", "EVERY (s)", "TOTAL (s)", "STATE", "LAST CANARY"
    );
    for c in canaries["data"].as_array().into_iter().flatten() {
        let failure = &c["failure"];
        let state = if failure.is_null() {
            "ok".to_string()
        } else {
            text(&failure["state"]).to_uppercase()
        };
        let total = c["last_success_latency"]["total"]
            .as_f64()
            .map_or("-".to_string(), |t| format!("{t:.3}"));
        let last = match c["last"].as_object() {
            Some(l) => format!(
                "{} {}",
                l.get("stage").and_then(Value::as_str).unwrap_or("-"),
                l.get("sent_at").and_then(Value::as_str).unwrap_or("-")
            ),
            None => "none sent yet".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<24} {:>9} {:>9} {:<10} {:<26} {}",
            text(&c["tenant"]),
            text(&c["source"]),
            num(&c["interval_seconds"]),
            total,
            state,
            last,
            c["last_success_at"].as_str().unwrap_or("never"),
        );
        if !failure.is_null() {
            let _ = writeln!(out, "          {}", text(&failure["reason"]));
        }
    }
    out
}

/// Reconciliation in a few lines: whether it runs, and each source with open gaps (or whose
/// last check failed).
pub fn render_gaps(rec: &Value) -> String {
    let mut out = String::new();
    if rec["settings"]["enabled"] == Value::Bool(false) {
        let _ = writeln!(
            out,
            "\nRECONCILIATION: off (reconcile.enabled = false): source_gap cannot fire"
        );
        return out;
    }
    let sources = rec["data"].as_array().map_or(&[][..], Vec::as_slice);
    let gaps: usize = sources
        .iter()
        .map(|s| s["open_gaps"].as_array().map_or(0, Vec::len))
        .sum();
    let missing: i64 = sources.iter().map(|s| num(&s["missing"])).sum();
    let _ = writeln!(
        out,
        "\nRECONCILIATION: {} source(s) compared with their systems of record; {gaps} open gap(s), {missing} event(s) missing",
        sources.len()
    );
    for s in sources {
        for g in s["open_gaps"].as_array().into_iter().flatten() {
            let channels: Vec<String> = g["missing_by_channel"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(c, n)| format!("{} {c}", num(n)))
                .collect();
            let job = match g["backfill"].as_str() {
                Some(id) => format!(
                    "; backfill {id} ({})",
                    g["backfill_state"].as_str().unwrap_or("?")
                ),
                None => "; `intake recover backfill` it".into(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<24} {} missing in ({}, {}] ({}){job}",
                text(&s["tenant"]),
                text(&s["source"]),
                num(&g["missing"]),
                text(&g["window"]["from"]),
                text(&g["window"]["to"]),
                channels.join(", "),
            );
        }
        if let Some(e) = s["error"]["message"].as_str() {
            let _ = writeln!(
                out,
                "  {:<12} {:<24} last check failed: {e}",
                text(&s["tenant"]),
                text(&s["source"]),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_canaries_section_says_which_source_fails_and_where() {
        let canaries = json!({"data": [
            {"tenant": "maelys", "source": "maelys-kustomer", "interval_seconds": 60,
             "last_success_at": "2026-11-28T10:01:00.020Z",
             "last_success_latency": {"ack": 0.004, "queue": 0.001, "delivery": 0.012, "total": 0.02},
             "last": {"stage": "delivered", "sent_at": "2026-11-28T10:01:00.000Z"},
             "failure": null},
            {"tenant": "acme", "source": "acme-zendesk", "interval_seconds": 60,
             "last_success_at": null, "last_success_latency": null,
             "last": {"stage": "not_queued", "sent_at": "2026-11-28T10:02:00.000Z"},
             "failure": {"state": "firing", "stage": "not_queued",
                         "reason": "accepted but not delivered: nothing queued"}}
        ]});
        let text = render_canaries(&canaries);
        assert!(text.contains("CANARIES"), "{text}");
        assert!(
            text.contains("maelys-kustomer") && text.contains("0.020"),
            "{text}"
        );
        assert!(
            text.contains("FIRING") && text.contains("nothing queued"),
            "{text}"
        );
        assert!(
            text.contains("not_queued 2026-11-28T10:02:00.000Z"),
            "{text}"
        );
        assert!(text.contains("never"), "{text}");
    }

    #[test]
    fn reconcile_open_gaps_get_a_line_each_with_their_counts_and_job() {
        let rec = json!({
            "settings": {"enabled": true},
            "data": [
                {"tenant": "maelys", "source": "maelys-kustomer", "missing": 21,
                 "open_gaps": [{"window": {"from": "2026-11-28T09:55:00.000Z",
                                           "to": "2026-11-28T10:05:00.000Z"},
                                "missing": 21, "missing_by_channel": {"chat": 4, "email": 17},
                                "backfill": "rec_01", "backfill_state": "running"}],
                 "error": null},
                {"tenant": "acme", "source": "acme-zendesk", "missing": 0, "open_gaps": [],
                 "error": {"message": "HTTP 401"}}
            ]
        });
        let text = render_gaps(&rec);
        assert!(text.contains("2 source(s) compared with their systems of record; 1 open gap(s), 21 event(s) missing"), "{text}");
        assert!(text.contains("maelys-kustomer"), "{text}");
        assert!(text.contains("21 missing in (2026-11-28T09:55:00.000Z, 2026-11-28T10:05:00.000Z] (4 chat, 17 email); backfill rec_01 (running)"), "{text}");
        assert!(
            text.contains("acme-zendesk             last check failed: HTTP 401"),
            "{text}"
        );
        let off = render_gaps(&json!({"settings": {"enabled": false}, "data": []}));
        assert!(off.contains("RECONCILIATION: off"), "{off}");
    }
}
