//! The story, act by act. Each act does its part through the running server's admin API (a
//! drill, a recovery job, an incident's resolution), then waits, through `Pace::until`, until
//! the server shows that the act happened — the same checks at both paces — and narrates what
//! it found. An act that does not happen within its bound fails the demo, naming the act.
//!
//! What is read from JSON answers is read leniently (`text`, `n`): an answer missing a field
//! makes a check not hold yet, and the act then fails by its bound, naming what it waited for.

use std::time::Duration;

use anyhow::Context;
use intake_core::Timestamp;
use serde_json::{json, Value};

use super::narrate::{short, Act, Narrator, ACTS};
use super::setup::{Stage, SOURCE, TENANT};
use crate::api::{self, Call};
use crate::audit::Sor;

/// How long the fault may last at most (the drill's bound): it heals as soon as its alert was
/// notified, about three minutes in.
const FAULT_BOUND: &str = "10m";
/// When, after the fault began, the fake Kustomer's webhooks start being lost: the work of
/// the first seconds is held in the stalled queue, the next minute's never arrives.
const LOST_AFTER: Duration = Duration::from_secs(20);
/// How long the webhooks of the fake Kustomer are lost for.
const LOST_FOR: Duration = Duration::from_secs(60);
/// The margin the backfill's window takes before the loss.
const MARGIN: Duration = Duration::from_secs(60);
/// The bound of each wait, on the demo's clock: generous beside what each step takes.
const PATIENCE: Duration = Duration::from_secs(10 * 60);

/// What the first act started.
struct Fault {
    drill: String,
    lost: (Timestamp, Timestamp),
}

/// Plays the whole story; the error of the first act that did not happen names it.
pub async fn play(stage: &Stage, n: &mut Narrator) -> anyhow::Result<()> {
    prologue(stage, n)
        .await
        .context("the prologue did not happen: traffic flowing to the handler")?;
    begin(stage, n, ACTS[0]).await;
    let fault = stop(stage, n).await.map_err(|e| failed(ACTS[0], e))?;
    n.done(stage.pace.now());
    begin(stage, n, ACTS[1]).await;
    alert(stage, n, &fault)
        .await
        .map_err(|e| failed(ACTS[1], e))?;
    n.done(stage.pace.now());
    begin(stage, n, ACTS[2]).await;
    let incident = incident(stage, n).await.map_err(|e| failed(ACTS[2], e))?;
    n.done(stage.pace.now());
    begin(stage, n, ACTS[3]).await;
    heal(stage, n, &fault)
        .await
        .map_err(|e| failed(ACTS[3], e))?;
    n.done(stage.pace.now());
    begin(stage, n, ACTS[4]).await;
    recover(stage, n, &fault)
        .await
        .map_err(|e| failed(ACTS[4], e))?;
    n.done(stage.pace.now());
    begin(stage, n, ACTS[5]).await;
    postmortem(stage, n, &incident)
        .await
        .map_err(|e| failed(ACTS[5], e))?;
    n.done(stage.pace.now());
    Ok(())
}

/// Opens `act`, after an interlude at the live pace: acts 3 to 6 follow each other within
/// seconds, too fast for a person to look at the dashboard in between. The interlude is only
/// narration: it waits, it checks nothing.
async fn begin(stage: &Stage, n: &mut Narrator, act: Act) {
    let pause = stage.pace.interlude();
    if act.number > 1 && !pause.is_zero() {
        n.say(&format!(
            "(act {} begins in {} — time to look at the dashboard)",
            act.number,
            short(pause)
        ));
        tokio::time::sleep(pause).await;
    }
    n.begin(act, stage.pace.now(), &stage.url);
}

fn failed(act: Act, e: anyhow::Error) -> anyhow::Error {
    e.context(format!("act {} did not happen: {}", act.number, act.title))
}

/// Before the story: webhooks flow to the handler and a canary has gone all the way through
/// (a drill is only started on a healthy system).
async fn prologue(stage: &Stage, n: &Narrator) -> anyhow::Result<()> {
    n.say("The fake Kustomer sends its signed webhooks to POST /ingest/demo-kustomer, about one a second;");
    n.say("intake commits each one with its delivery, answers 200, and delivers it to the demo handler.");
    let canary = stage
        .pace
        .until(PATIENCE, "a canary delivered to the handler", || async {
            let c = stage.admin.call(&api::CANARIES, Call::default()).await?;
            Ok(of_source(&c["data"]).and_then(|e| e["last_success_at"].as_str().map(String::from)))
        })
        .await?;
    let handled = stage.admin.demo_list("/demo/handler").await?;
    anyhow::ensure!(!handled.is_empty(), "the demo handler has received nothing");
    n.say(&format!(
        "Healthy: {} webhooks accepted so far, the handler receives them, and the canary (a signed synthetic webhook through the front door, every minute) went through at {canary}.",
        stage.traffic.tally().accepted
    ));
    Ok(())
}

/// Act 1: the queue stops (a `queue-stall` fire drill), and a minute of Kustomer's webhooks is
/// lost before it reaches intake.
async fn stop(stage: &Stage, n: &Narrator) -> anyhow::Result<Fault> {
    let body = json!({"scenario": "queue-stall", "source": SOURCE, "for": FAULT_BOUND});
    let drill = stage
        .admin
        .call(
            &api::DRILL_CREATE,
            Call {
                body: Some(&body),
                ..Call::default()
            },
        )
        .await
        .context("the queue-stall drill was refused")?;
    let id = text(&drill["id"]).to_string();
    let lost_from = stage.pace.now().plus(LOST_AFTER);
    let lost = (lost_from, lost_from.plus(LOST_FOR));
    stage.traffic.lose(lost.0, lost.1);
    n.say(&format!(
        "Fire drill {id} (queue-stall on {SOURCE}): intake still commits and acknowledges every webhook,\n\
         but dispatches none of them — as in the story, work is acknowledged and never processed."
    ));
    n.say(&format!(
        "And, as in the story, Kustomer's webhooks sent between {} and {} after that never reach\n\
         intake at all: only Kustomer's API will still have them. (intake itself cannot lose one it\n\
         answered 200 for.)",
        short(LOST_AFTER),
        short(LOST_AFTER + LOST_FOR)
    ));
    let lost_at_start = stage.traffic.tally().lost;
    let (pending, age) = stage
        .pace
        .until(PATIENCE, "deliveries held in the queue", || async {
            let q = stage.admin.call(&api::QUEUE, Call::default()).await?;
            let e = of_source(&q["data"]).unwrap_or(&Value::Null);
            let held = (n_of(&e["pending"]), n_of(&e["oldest_pending_seconds"]));
            let over = stage.pace.now() > lost.1;
            // Held, not merely slow: deliveries waiting for longer than the lost minute.
            Ok((over && held.0 >= 3 && held.1 >= LOST_FOR.as_secs()).then_some(held))
        })
        .await?;
    let lost_now = stage.traffic.tally().lost;
    anyhow::ensure!(lost_now > lost_at_start, "no webhook was lost");
    n.say(&format!(
        "{pending} deliveries are held in {SOURCE}'s queue, the oldest for {}; the handler gets none.\n\
         {lost_now} webhooks never reached intake.",
        short(Duration::from_secs(age))
    ));
    Ok(Fault { drill: id, lost })
}

/// Act 2: the drill sees its alert fire and its notification sent; the notification arrives
/// at the demo's receiver.
async fn alert(stage: &Stage, n: &Narrator, fault: &Fault) -> anyhow::Result<()> {
    let id = fault.drill.as_str();
    let drill = stage
        .pace
        .until(PATIENCE, "the drill's alert notified", || async {
            let d = stage.admin.call(&api::DRILL, Call::at(&[id])).await?;
            let r = &d["report"];
            Ok((r["alert"].is_object() && r["notification"].is_object()).then_some(d))
        })
        .await?;
    let r = &drill["report"];
    let rule = text(&r["alert"]["rule"]).to_string();
    let alerts = stage.admin.call(&api::ALERTS, Call::default()).await?;
    let reason = alerts["firing"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["rule"] == rule.as_str())
        .map_or("-", |a| text(&a["reason"]));
    n.say(&format!(
        "{rule} fired {} after the fault began: {reason}",
        seconds(&drill["time_to_detect_seconds"])
    ));
    let notice = stage
        .pace
        .until(PATIENCE, "on-call's notification received", || async {
            let list = stage.admin.demo_list("/demo/notifications").await?;
            Ok(list
                .into_iter()
                .find(|x| x["drill"] == id && x["status"] == "firing"))
        })
        .await?;
    n.say(&format!(
        "On-call was notified through `{}` {} after the fault began (GET {}/demo/notifications):\n  {}",
        text(&r["notification"]["notifier"]),
        seconds(&drill["time_to_notify_seconds"]),
        stage.url,
        text(&notice["summary"])
    ));
    Ok(())
}

/// Act 3: the critical alert declared an incident for the tenant, and the tenant's status
/// page received its notice.
async fn incident(stage: &Stage, n: &Narrator) -> anyhow::Result<String> {
    let query = [("tenant", TENANT)];
    let incident = stage
        .pace
        .until(PATIENCE, "an incident declared for the tenant", || async {
            let list = stage
                .admin
                .call(&api::INCIDENTS, Call::query(&query))
                .await?;
            Ok(list["data"].as_array().and_then(|l| l.first()).cloned())
        })
        .await?;
    let id = text(&incident["id"]).to_string();
    n.say(&format!(
        "Incident {id} declared by {} (no person involved): «{}»",
        text(&incident["declared_by"]),
        text(&incident["title"])
    ));
    if let Some(drill) = incident["drill"].as_str() {
        n.say(&format!(
            "It is the drill's incident ({drill}): marked as a drill everywhere. A drill's incident \
             tells tenants nothing unless [incidents] drill_tenant_notices = true, as this demo sets, \
             and then each notice says first that it is a drill."
        ));
    }
    let notice = stage
        .pace
        .until(PATIENCE, "the tenant's notice delivered", || async {
            let detail = stage.admin.call(&api::INCIDENT, Call::at(&[&id])).await?;
            let sent = detail["timeline"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["kind"] == "notice"
                        && t["detail"]["tenant"] == TENANT
                        && t["detail"]["state"] == "sent"
                });
            Ok(stage.tenant_notices().into_iter().next().filter(|_| sent))
        })
        .await?;
    n.say("The tenant's status page received, without anyone writing it:");
    n.show(notice_text(&notice));
    n.say(&format!(
        "The incident, its timeline and notices: GET {}/api/v1/incidents/{id}",
        stage.url
    ));
    Ok(id)
}

/// Act 4: the drill ends — passed — and heals: the held deliveries go out.
async fn heal(stage: &Stage, n: &Narrator, fault: &Fault) -> anyhow::Result<()> {
    let id = fault.drill.as_str();
    let drill = stage
        .pace
        .until(PATIENCE, "the drill's end", || async {
            let d = stage.admin.call(&api::DRILL, Call::at(&[id])).await?;
            Ok((d["state"] != "running").then_some(d))
        })
        .await?;
    anyhow::ensure!(
        drill["state"] == "passed",
        "the drill ended {}: {}",
        text(&drill["state"]),
        text(&drill["report"]["summary"])
    );
    let healed = Timestamp::parse_rfc3339(text(&drill["healed_at"]))
        .context("the drill has no heal time")?;
    n.say(&format!(
        "Drill {id}: {}",
        text(&drill["report"]["summary"])
    ));
    stage
        .pace
        .until(PATIENCE, "the held deliveries delivered", || async {
            Ok(drained_since(stage, healed).await?.then_some(()))
        })
        .await?;
    n.say(&format!(
        "The fault healed at {}; every delivery it held went out to the handler.",
        text(&drill["healed_at"])
    ));
    Ok(())
}

/// Whether the source's queue holds nothing older than `since` (traffic goes on, so a
/// delivery or two may be in flight).
async fn drained_since(stage: &Stage, since: Timestamp) -> anyhow::Result<bool> {
    let q = stage.admin.call(&api::QUEUE, Call::default()).await?;
    let e = of_source(&q["data"]).unwrap_or(&Value::Null);
    Ok(match e["oldest_pending_at"].as_str() {
        None => true,
        Some(t) => Timestamp::parse_rfc3339(t).is_ok_and(|t| t >= since),
    })
}

/// Act 5: a dry run finds what Kustomer has and intake never received, a backfill brings it
/// through the pipeline, and the audit of the window adds up — Kustomer's count included.
async fn recover(stage: &Stage, n: &Narrator, fault: &Fault) -> anyhow::Result<()> {
    let from = fault.lost.0.minus(MARGIN).to_rfc3339();
    let to = stage.pace.now().to_rfc3339();
    // The dry run lists a few of the missing events; the real run's report only counts them.
    let dry = json!({"kind": "backfill", "source": SOURCE, "from": from, "to": to,
        "dry_run": true, "sample": 5});
    let report = run_job(stage, &dry).await?;
    let missing = n_of(&report["report"]["todo"]["total"]);
    anyhow::ensure!(missing > 0, "the dry run found nothing missing");
    n.say("A dry run asks Kustomer's API what intake never received:");
    n.show(&crate::recover::render_job(&report));
    n.say(&format!(
        "{missing} events are missing: every conversation and message created while the webhooks were\n\
         lost, and each conversation's latest state. ({} webhooks were lost: the conversation updates in\n\
         between are superseded by the latest state, which is all Kustomer's API still shows.)",
        stage.traffic.tally().lost
    ));
    let window = json!({"kind": "backfill", "source": SOURCE, "from": from, "to": to, "sample": 0});
    let job = run_job(stage, &window).await?;
    let done = n_of(&job["report"]["done"]);
    let todo = n_of(&job["report"]["todo"]["total"]);
    anyhow::ensure!(
        done > 0 && done == todo,
        "the backfill brought {done} of the {todo} missing events"
    );
    n.say(&format!(
        "The backfill brought all {done} through the pipeline (origin `backfill`), paced by Kustomer's rate limits:"
    ));
    n.show(&crate::recover::render_job(&job));
    let backfilled_at = stage.pace.now();
    stage
        .pace
        .until(PATIENCE, "the backfilled events delivered", || async {
            Ok(drained_since(stage, backfilled_at).await?.then_some(()))
        })
        .await?;
    audit(stage, n, &from, &to).await
}

/// The audit of the story's window, with Kustomer's count (a second dry run): it must add up.
async fn audit(stage: &Stage, n: &Narrator, from: &str, to: &str) -> anyhow::Result<()> {
    let until = stage.pace.now().to_rfc3339();
    let query = [("source", SOURCE), ("from", from), ("to", until.as_str())];
    let report = stage.admin.call(&api::AUDIT, Call::query(&query)).await?;
    let sor_window = json!({"kind": "backfill", "source": SOURCE, "from": from, "to": to,
        "dry_run": true, "sample": 0});
    let sor = Sor::Job(run_job(stage, &sor_window).await?);
    let checks = crate::audit::checks(&report, &sor);
    n.say(&conservation(&report));
    n.show(&crate::audit::render(&report, &sor, &checks));
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| text(&c["name"]))
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "the audit does not add up: {}",
        failed.join(", ")
    );
    n.say(&format!(
        "The audit adds up: GET {}/audit in the dashboard shows the same.",
        stage.url
    ));
    Ok(())
}

/// `received 412 = accepted 405 + duplicates 7 + rejected 0; accepted 405 = delivered 405 +
/// pending 0 + dead 0; recovered 38 by backfill`
fn conservation(audit: &Value) -> String {
    let r = &audit["received"];
    let d = audit["destinations"]
        .as_array()
        .and_then(|l| l.first())
        .cloned()
        .unwrap_or(Value::Null);
    format!(
        "In the window: received {} = accepted {} + duplicates {} + rejected {}; \
         stored {} = delivered {} + pending {} + dead {}; recovered {} by backfill.",
        n_of(&r["total"]),
        n_of(&r["accepted"]),
        n_of(&r["duplicate"]),
        n_of(&r["rejected"]["total"]),
        n_of(&audit["accepted"]["stored"]),
        n_of(&d["delivered"]),
        n_of(&d["pending"]),
        n_of(&d["dead"]),
        n_of(&audit["accepted"]["stored_by_origin"]["backfill"]),
    )
}

/// Creates a recovery job and waits for its end; it must succeed.
async fn run_job(stage: &Stage, body: &Value) -> anyhow::Result<Value> {
    let job = stage
        .admin
        .call(
            &api::RECOVERY_CREATE,
            Call {
                body: Some(body),
                ..Call::default()
            },
        )
        .await
        .context("the recovery job was refused")?;
    let id = text(&job["id"]).to_string();
    let job = stage
        .pace
        .until(PATIENCE, "the recovery job's end", || async {
            let j = stage.admin.call(&api::RECOVERY, Call::at(&[&id])).await?;
            let ended = matches!(text(&j["state"]), "succeeded" | "failed" | "cancelled");
            Ok(ended.then_some(j))
        })
        .await?;
    anyhow::ensure!(
        job["state"] == "succeeded",
        "recovery job {id} ended {}: {}",
        text(&job["state"]),
        job["error"].as_str().unwrap_or("no error given")
    );
    Ok(job)
}

/// Act 6: the incident is resolved (the tenant is told it is over) and its postmortem drafted.
async fn postmortem(stage: &Stage, n: &Narrator, id: &str) -> anyhow::Result<()> {
    let body = json!({"message": "Every webhook of the outage has been delivered: the ones held \
        by the stalled queue when it healed, and the ones that never reached us recovered from \
        Kustomer. Nothing is missing.", "author": "intake demo"});
    stage
        .admin
        .call(
            &api::INCIDENT_RESOLVE,
            Call {
                path: &[id],
                body: Some(&body),
                ..Call::default()
            },
        )
        .await
        .context("the incident could not be resolved")?;
    let told = stage
        .pace
        .until(PATIENCE, "the tenant told the incident is over", || async {
            Ok((stage.tenant_notices().len() >= 2).then(|| stage.tenant_notices().len()))
        })
        .await?;
    n.say(&format!(
        "Incident {id} resolved; the tenant's status page has received {told} notices in all."
    ));
    let draft = stage
        .admin
        .call_text(&api::INCIDENT_POSTMORTEM, Call::at(&[id]))
        .await?;
    anyhow::ensure!(
        draft.contains(id),
        "the postmortem draft does not name the incident"
    );
    n.say("The postmortem draft (intake incident postmortem ID), ready to edit:");
    n.show(&draft);
    Ok(())
}

/// The entry of the demo source in a list of per-source entries (queue, canaries).
fn of_source(list: &Value) -> Option<&Value> {
    list.as_array()?.iter().find(|e| e["source"] == SOURCE)
}

/// What a tenant reads in its notice: the incident's text when the notice has one.
fn notice_text(notice: &Value) -> &str {
    notice["incident"]["text"]
        .as_str()
        .or_else(|| notice["summary"].as_str())
        .unwrap_or("(a notice without text)")
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn n_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `2m 5s` from a JSON number of seconds.
fn seconds(v: &Value) -> String {
    v.as_f64()
        .filter(|s| *s >= 0.0)
        .map_or_else(|| "-".into(), |s| short(Duration::from_secs_f64(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_act_that_did_not_happen_is_named_with_what_was_not_seen() {
        let cause = anyhow::anyhow!("the drill's alert notified: not seen after 10m");
        let e = failed(ACTS[1], cause);
        assert_eq!(
            format!("{e:#}"),
            "act 2 did not happen: the alert fires and on-call is notified: the drill's alert \
             notified: not seen after 10m"
        );
    }

    #[test]
    fn the_conservation_line_names_every_number() {
        let audit = json!({
            "received": {"total": 412, "accepted": 405, "duplicate": 7, "rejected": {"total": 0}},
            "accepted": {"stored": 405, "stored_by_origin": {"webhook": 360, "backfill": 38, "canary": 7}},
            "destinations": [{"destination": "demo-handler", "delivered": 404, "pending": 1, "dead": 0}],
        });
        assert_eq!(
            conservation(&audit),
            "In the window: received 412 = accepted 405 + duplicates 7 + rejected 0; stored 405 = \
             delivered 404 + pending 1 + dead 0; recovered 38 by backfill."
        );
        let empty = conservation(&json!({}));
        assert!(empty.contains("received 0 = accepted 0"), "{empty}");
    }

    #[test]
    fn readers_take_what_is_there_and_name_what_is_not() {
        let list = json!([{"source": "other", "pending": 9}, {"source": SOURCE, "pending": 3}]);
        assert_eq!(of_source(&list).map(|e| n_of(&e["pending"])), Some(3));
        assert!(of_source(&json!([])).is_none());
        assert!(of_source(&json!({"source": SOURCE})).is_none());
        let cases = [
            (
                json!({"incident": {"text": "delayed"}, "summary": "s"}),
                "delayed",
            ),
            (json!({"summary": "s"}), "s"),
            (json!(null), "(a notice without text)"),
        ];
        for (notice, want) in cases {
            assert_eq!(notice_text(&notice), want);
        }
        assert_eq!(seconds(&json!(125.4)), "2m 5s");
        assert_eq!(seconds(&json!(null)), "-");
        assert_eq!(seconds(&json!(-1)), "-");
    }
}
