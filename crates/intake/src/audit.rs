//! `intake audit --source S --from T --to T [--json] [--no-sor]`: the conservation report of one
//! source's window, read from the admin API (`GET /api/v1/audit`), with the system of record's
//! count beside it when the source has API credentials: a dry-run backfill of the same window
//! (`POST /api/v1/recoveries`), followed to its end, says how many events the system of record
//! implies inside the window (`seen`) and how many of them intake never received
//! (`todo.total`), by channel.
//!
//! The exit status is 0 only when every check holds: the server's (received, stored and
//! delivered add up) and, when it was asked, the system of record's (it has nothing intake did
//! not receive). Otherwise 1, and the failed checks are named.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::api::{self, Api, ApiArgs, Call};

/// The name of the check the system of record's answer is judged by.
const SOR_CHECK: &str = "sor_all_received";

/// `intake audit …`
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// The source.
    #[arg(long)]
    source: String,
    /// Window start, RFC 3339: events received at or after (e.g. 2026-11-30T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    from: String,
    /// Window end, RFC 3339: events received before (not in the future).
    #[arg(long, value_name = "TIME")]
    to: String,
    /// Print the report as JSON (the server's audit, the system of record's answer, and the
    /// verdict).
    #[arg(long)]
    json: bool,
    /// Do not ask the system of record (no dry-run backfill).
    #[arg(long)]
    no_sor: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// What the system of record said about the window, or why it was not asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Sor {
    /// Not asked: `--no-sor`, or the source has no API credentials.
    NotAsked(&'static str),
    /// The dry-run backfill ended (succeeded or not): the job as the API answers it.
    Job(Value),
    /// The dry-run backfill could not be started.
    Refused(String),
}

/// Runs `intake audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(args.api.clone())?;
    let query = [
        ("source", args.source.as_str()),
        ("from", args.from.as_str()),
        ("to", args.to.as_str()),
    ];
    let audit = api.call(&api::AUDIT, Call::query(&query))?;
    let sor = if args.no_sor {
        Sor::NotAsked("not asked (--no-sor)")
    } else if audit["sor_api"].as_bool() != Some(true) {
        Sor::NotAsked("not asked: the source has no API credentials (sources[].api)")
    } else {
        ask_sor(&api, &args)
    };
    let checks = checks(&audit, &sor);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c["ok"].as_bool() != Some(true))
        .map(|c| c["name"].as_str().unwrap_or("?"))
        .collect();
    if args.json {
        let sor_json = match &sor {
            Sor::NotAsked(why) => json!({"asked": false, "why": why}),
            Sor::Refused(why) => json!({"asked": true, "error": why}),
            Sor::Job(job) => json!({"asked": true, "job": job}),
        };
        let out = json!({
            "audit": audit, "sor": sor_json, "checks": checks,
            "adds_up": failed.is_empty(), "failed": failed,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", render(&audit, &sor, &checks));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the audit of {} does not add up: {} failed (see the checks above)",
            args.source,
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Asks the system of record through a dry-run backfill of the window, followed to its end.
fn ask_sor(api: &Api, args: &AuditArgs) -> Sor {
    let body = json!({
        "kind": "backfill", "source": args.source, "from": args.from, "to": args.to,
        "dry_run": true, "sample": 0,
    });
    match crate::recover::start_and_watch(api, &body, None) {
        Ok(job) => Sor::Job(job),
        Err(e) => Sor::Refused(format!("{e:#}")),
    }
}

/// The server's checks, then the system of record's when it was asked.
pub fn checks(audit: &Value, sor: &Sor) -> Vec<Value> {
    let mut checks: Vec<Value> = audit["checks"].as_array().cloned().unwrap_or_default();
    if checks.is_empty() {
        // An answer without checks cannot vouch for anything.
        checks.push(json!({"name": "audit", "ok": false,
            "detail": "the server's answer has no checks; is it an older intake?"}));
    }
    let (ok, detail) = match sor {
        Sor::NotAsked(_) => return checks,
        Sor::Refused(why) => (
            false,
            format!("the system of record could not be asked: {why}"),
        ),
        Sor::Job(job) if job["state"] != "succeeded" => (
            false,
            format!(
                "the dry-run backfill {} ended {}: {}; the system of record's count is unknown",
                text(&job["id"]),
                text(&job["state"]),
                job["error"].as_str().unwrap_or("no error given")
            ),
        ),
        Sor::Job(job) => {
            let r = &job["report"];
            let missing = n(&r["todo"]["total"]);
            if missing == 0 {
                (
                    true,
                    format!(
                        "the system of record implies {} events in the window; intake \
                         received every one",
                        n(&r["seen"])
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "the system of record implies {} events in the window; {missing} were \
                         never received ({}); recover them with `intake recover backfill \
                         --source {} --from {} --to {}`",
                        n(&r["seen"]),
                        counts(&r["todo"]["by_channel"]),
                        text(&job["source"]),
                        text(&job["params"]["from"]),
                        text(&job["params"]["to"]),
                    ),
                )
            }
        }
    };
    checks.push(json!({"name": SOR_CHECK, "ok": ok, "detail": detail}));
    checks
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `chat 3, email 2` from a JSON object of counts; `-` when empty.
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

/// The report as a table for people.
pub fn render(audit: &Value, sor: &Sor, checks: &[Value]) -> String {
    let mut out = String::new();
    let w = &audit["window"];
    let _ = writeln!(
        out,
        "AUDIT of {} (tenant {}), received {} → {}",
        text(&audit["source"]),
        text(&audit["tenant"]),
        text(&audit["from"]),
        text(&audit["to"]),
    );
    let _ = writeln!(
        out,
        "  counted per {} over {} → {}{}",
        text(&w["resolution"]),
        text(&w["from"]),
        text(&w["to"]),
        if w["counters_kept"].as_bool() == Some(false) {
            " (some counters of this window were deleted by retention)"
        } else {
            ""
        }
    );
    render_received(&mut out, audit);
    render_destinations(&mut out, audit);
    render_sor(&mut out, sor);
    let _ = writeln!(out, "\nCHECKS");
    let mut failed = Vec::new();
    for c in checks {
        let ok = c["ok"].as_bool() == Some(true);
        if !ok {
            failed.push(text(&c["name"]));
        }
        let _ = writeln!(
            out,
            "  {:<5} {:<22} {}",
            if ok { "ok" } else { "FAIL" },
            text(&c["name"]),
            text(&c["detail"]),
        );
    }
    if failed.is_empty() {
        let _ = writeln!(out, "\nRESULT: adds up");
    } else {
        let _ = writeln!(
            out,
            "\nRESULT: does not add up (failed: {})",
            failed.join(", ")
        );
    }
    out
}

/// One line of counts: a label, the number in the column of the section's total, a note.
fn row(out: &mut String, label: &str, count: u64, note: &str) {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("   {note}")
    };
    let _ = writeln!(out, "  {label:<24}{count:>10}{note}");
}

fn render_received(out: &mut String, audit: &Value) {
    let r = &audit["received"];
    let rej = &r["rejected"];
    let a = &audit["accepted"];
    let _ = writeln!(out, "\n{:<26}{:>10}", "RECEIVED", n(&r["total"]));
    row(
        out,
        "accepted",
        n(&r["accepted"]),
        &counts(&a["counted_by_origin"]),
    );
    row(out, "duplicates", n(&r["duplicate"]), "");
    let reasons = format!(
        "signature {}, invalid {}, too large {}",
        n(&rej["signature"]),
        n(&rej["invalid"]),
        n(&rej["too_large"]),
    );
    row(out, "rejected", n(&rej["total"]), &reasons);
    let _ = writeln!(out, "\nACCEPTED");
    row(
        out,
        "counted (requests)",
        n(&a["counted"]),
        &counts(&a["counted_by_origin"]),
    );
    row(
        out,
        "stored (event rows)",
        n(&a["stored"]),
        &counts(&a["stored_by_origin"]),
    );
    let _ = writeln!(
        out,
        "  {:<34}   {}",
        "stored by channel",
        counts(&a["stored_by_channel"])
    );
}

fn render_destinations(out: &mut String, audit: &Value) {
    let events = n(&audit["accepted"]["stored"]);
    let _ = writeln!(
        out,
        "\n{:<24} {:>10} {:>9} {:>7} {:>9} {:>9}",
        "DELIVERIES", "DELIVERED", "PENDING", "DEAD", "MISSING", "EVENTS"
    );
    let list = audit["destinations"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        let _ = writeln!(out, "  (the source routes to no destination)");
    }
    for d in list {
        let routed = d["routed"].as_bool() == Some(true);
        let name = if routed {
            text(&d["destination"]).to_string()
        } else {
            format!("{} (not routed)", text(&d["destination"]))
        };
        let (missing, total) = if routed {
            (n(&d["missing"]).to_string(), events.to_string())
        } else {
            ("-".to_string(), "-".to_string())
        };
        let _ = writeln!(
            out,
            "  {:<22} {:>10} {:>9} {:>7} {:>9} {:>9}",
            name,
            n(&d["delivered"]),
            n(&d["pending"]),
            n(&d["dead"]),
            missing,
            total,
        );
    }
}

fn render_sor(out: &mut String, sor: &Sor) {
    match sor {
        Sor::NotAsked(why) => {
            let _ = writeln!(out, "\nSYSTEM OF RECORD: {why}");
        }
        Sor::Refused(why) => {
            let _ = writeln!(out, "\nSYSTEM OF RECORD: could not be asked: {why}");
        }
        Sor::Job(job) => {
            let r = &job["report"];
            let _ = writeln!(
                out,
                "\nSYSTEM OF RECORD (dry-run backfill {}: {})",
                text(&job["id"]),
                text(&job["state"])
            );
            if job["state"] != "succeeded" {
                return;
            }
            let todo = &r["todo"];
            row(
                out,
                "implies",
                n(&r["seen"]),
                "events that happened in the window",
            );
            row(out, "already received", n(&r["already_received"]), "");
            row(
                out,
                "never received",
                n(&todo["total"]),
                &counts(&todo["by_channel"]),
            );
            if !todo["conversations_by_channel"]
                .as_object()
                .is_none_or(|o| o.is_empty())
            {
                let _ = writeln!(
                    out,
                    "  {:<34}   in conversations: {}",
                    "",
                    counts(&todo["conversations_by_channel"])
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(adds_up: bool) -> Value {
        json!({
            "tenant": "maelys", "source": "maelys-kustomer",
            "from": "2026-11-28T10:00:00.000Z", "to": "2026-11-28T11:00:00.000Z",
            "window": {"resolution": "minute", "from": "2026-11-28T10:00:00.000Z",
                       "to": "2026-11-28T11:00:00.000Z", "counters_kept": true},
            "received": {"total": 9, "accepted": 5, "duplicate": 1,
                         "rejected": {"total": 3, "signature": 1, "invalid": 1, "too_large": 1}},
            "accepted": {"counted": 5, "counted_by_origin": {"webhook": 5}, "stored": 5,
                         "stored_by_origin": {"webhook": 5},
                         "stored_by_channel": {"chat": 2, "email": 3}},
            "destinations": [
                {"destination": "handler", "routed": true, "delivered": 4, "pending": 0,
                 "dead": 1, "missing": 0, "missing_sample": []},
                {"destination": "old", "routed": false, "delivered": 2, "pending": 0,
                 "dead": 0, "missing": 0, "missing_sample": []}],
            "checks": [
                {"name": "accepted_stored", "ok": true, "detail": "5 = 5"},
                {"name": "deliveries_add_up", "ok": adds_up, "detail": "handler: …"},
                {"name": "no_missing_deliveries", "ok": true, "detail": "none missing"}],
            "adds_up": adds_up, "sor_api": true,
        })
    }

    fn job(state: &str, missing: u64) -> Value {
        json!({"id": "rec_1", "state": state, "source": "maelys-kustomer",
               "error": if state == "failed" { json!("the SOR answered 401") } else { Value::Null },
               "params": {"from": "2026-11-28T10:00:00.000Z", "to": "2026-11-28T11:00:00.000Z"},
               "report": {"seen": 7, "already_received": 7 - missing,
                          "todo": {"total": missing, "by_channel": {"email": missing},
                                   "conversations_by_channel": {}}}})
    }

    fn verdict(checks: &[Value]) -> Vec<(String, bool)> {
        checks
            .iter()
            .map(|c| (text(&c["name"]).to_string(), c["ok"] == true))
            .collect()
    }

    #[test]
    fn the_system_of_record_adds_its_check_when_it_was_asked() {
        let cases: &[(Sor, Option<bool>, &str)] = &[
            (Sor::NotAsked("not asked (--no-sor)"), None, ""),
            (Sor::Job(job("succeeded", 0)), Some(true), "received every one"),
            (
                Sor::Job(job("succeeded", 2)),
                Some(false),
                "2 were never received (email 2); recover them with `intake recover backfill --source maelys-kustomer --from 2026-11-28T10:00:00.000Z",
            ),
            (Sor::Job(job("failed", 0)), Some(false), "ended failed: the SOR answered 401"),
            (Sor::Refused("HTTP 404".into()), Some(false), "could not be asked: HTTP 404"),
        ];
        for (sor, want, detail) in cases {
            let checks = checks(&audit(true), sor);
            let v = verdict(&checks);
            assert_eq!(v.len(), 3 + usize::from(want.is_some()), "{sor:?}");
            if let Some(ok) = want {
                assert_eq!(v[3], (SOR_CHECK.to_string(), *ok), "{sor:?}");
                let got = text(&checks[3]["detail"]);
                assert!(got.contains(detail), "{sor:?}: {got}");
            }
        }
    }

    #[test]
    fn the_table_names_every_number_and_the_failed_checks() {
        let sor = Sor::Job(job("succeeded", 2));
        let c = checks(&audit(false), &sor);
        let out = render(&audit(false), &sor, &c);
        for needle in [
            "AUDIT of maelys-kustomer (tenant maelys)",
            "counted per minute",
            "RECEIVED                           9",
            "  rejected                         3   signature 1",
            "signature 1, invalid 1, too large 1",
            "stored (event rows)              5   webhook 5",
            "chat 2, email 3",
            "handler",
            "old (not routed)",
            "  never received                   2   email 2",
            "FAIL  deliveries_add_up",
            "FAIL  sor_all_received",
            "RESULT: does not add up (failed: deliveries_add_up, sor_all_received)",
        ] {
            assert!(out.contains(needle), "no {needle:?} in\n{out}");
        }
        let ok = render(
            &audit(true),
            &Sor::NotAsked("not asked (--no-sor)"),
            &checks(&audit(true), &Sor::NotAsked("")),
        );
        assert!(ok.contains("RESULT: adds up"), "{ok}");
        assert!(
            ok.contains("SYSTEM OF RECORD: not asked (--no-sor)"),
            "{ok}"
        );
    }

    #[test]
    fn an_answer_without_checks_vouches_for_nothing() {
        let c = checks(&json!({"adds_up": true}), &Sor::NotAsked(""));
        assert_eq!(verdict(&c), [("audit".to_string(), false)]);
    }
}
