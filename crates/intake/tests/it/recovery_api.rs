//! `/api/v1/recoveries`' rules: a tenant token creates, sees and cancels only its own tenant's
//! jobs (another tenant's job or source is 404, as if it did not exist); requests that cannot
//! become a job are clear 400 problems that say what to change.

use intake_testkit::{CaptureHandler, TestServer, DESTINATION_SECRET};
use serde_json::{json, Value};

use crate::recovery::recovery_config;
use crate::recovery_support::Admin;

fn job(kind: &str, source: &str) -> Value {
    json!({
        "kind": kind, "source": source,
        "from": "2026-11-28T08:00:00Z", "to": "2026-11-28T09:00:00Z",
    })
}

/// The ids of the jobs a token lists.
async fn listed(admin: &Admin, query: &str) -> (u16, Vec<String>) {
    let (status, body) = admin.get(&format!("/api/v1/recoveries{query}")).await;
    let ids = body["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|j| j["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (status, ids)
}

/// Asserts a problem answer: its status, its type's slug, and words its detail must hold.
fn assert_problem(status: u16, body: &Value, want: u16, slug: &str, words: &[&str]) {
    assert_eq!(status, want, "{body:#}");
    assert_eq!(
        body["type"],
        format!("urn:intake:problem:{slug}"),
        "{body:#}"
    );
    assert_eq!(body["status"], want, "{body:#}");
    let detail = body["detail"].as_str().unwrap_or("");
    for w in words {
        assert!(detail.contains(w), "{w:?} not in {body:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_see_only_their_own_jobs_and_refusals_say_what_to_change() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens at the SOR's address, and the clock stands still: a backfill of
    // `maelys-kustomer` keeps retrying its first request, running until it is cancelled.
    let storage = format!("sqlite://{}/intake.db", dir.path().display());
    let nowhere = format!("http://127.0.0.1:{}", crate::crash::free_port());
    let text = recovery_config(&storage, &handler.url(), &nowhere, "");
    let server = TestServer::start_with(dir, &text).await.unwrap();
    let operator = Admin::of(&server);
    let maelys = operator.with_token("maelys-token");
    let other = operator.with_token("other-token");

    let (status, mine) = maelys
        .post("/api/v1/recoveries", job("backfill", "maelys-kustomer"))
        .await;
    assert_eq!(status, 201, "{mine:#}");
    assert_eq!(mine["created_by"], "tenant:maelys");
    assert_eq!(mine["tenant"], "maelys");
    let mine = mine["id"].as_str().unwrap().to_string();
    let theirs = other.create(job("replay", "other-kustomer")).await;
    let (status, p) = maelys
        .post("/api/v1/recoveries", job("replay", "other-kustomer"))
        .await;
    assert_problem(status, &p, 404, "no-such-source", &["other-kustomer"]);

    assert_eq!(listed(&maelys, "").await, (200, vec![mine.clone()]));
    assert_eq!(listed(&other, "").await, (200, vec![theirs.clone()]));
    let (status, all) = listed(&operator, "").await;
    assert_eq!(status, 200);
    assert!(all.contains(&mine) && all.contains(&theirs), "{all:?}");
    let (status, _) = listed(&maelys, "?tenant=other").await;
    assert_eq!(status, 404, "a tenant token asked for another tenant");
    let (status, p) = maelys.get("/api/v1/recoveries?state=finished").await;
    assert_problem(status, &p, 400, "invalid-parameter", &["finished"]);
    assert_eq!(
        listed(&maelys, "?state=running").await,
        (200, vec![mine.clone()])
    );

    for (method, path) in [
        ("GET", format!("/api/v1/recoveries/{theirs}")),
        ("POST", format!("/api/v1/recoveries/{theirs}/cancel")),
    ] {
        let (status, p) = if method == "GET" {
            maelys.get(&path).await
        } else {
            maelys.post(&path, json!({})).await
        };
        assert_problem(status, &p, 404, "no-such-recovery", &[&theirs]);
    }
    // The other tenant cannot cancel mine; I can.
    let (status, p) = other
        .post(&format!("/api/v1/recoveries/{mine}/cancel"), json!({}))
        .await;
    assert_problem(status, &p, 404, "no-such-recovery", &[&mine]);
    assert_eq!(maelys.job(&mine).await["cancel_requested"], false);
    let (status, j) = maelys
        .post(&format!("/api/v1/recoveries/{mine}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{j:#}");
    assert_eq!(maelys.wait_final(&mine).await["state"], "cancelled");
    assert_eq!(other.wait_final(&theirs).await["state"], "succeeded");

    // Refusals: 400 problems naming what to change.
    let cases: Vec<(Value, &str, Vec<&str>)> = vec![
        (
            json!({"kind": "replay", "source": "maelys-kustomer",
                   "from": "2026-11-28T08:00:00Z", "to": "2026-11-29T00:00:00Z"}),
            "invalid-window",
            vec!["in the future"],
        ),
        (
            json!({"kind": "replay", "source": "maelys-kustomer",
                   "from": "2026-11-28T09:00:00Z", "to": "2026-11-28T08:00:00Z"}),
            "invalid-window",
            vec!["must be before"],
        ),
        (
            job("backfill", "other-kustomer"),
            "backfill-not-configured",
            vec!["other-kustomer", "api = {"],
        ),
        (
            json!({"kind": "replay", "source": "maelys-kustomer", "state": "gone",
                   "from": "2026-11-28T08:00:00Z", "to": "2026-11-28T09:00:00Z"}),
            "invalid-parameter",
            vec!["`state`", "gone"],
        ),
        (
            json!({"kind": "requeue", "source": "maelys-kustomer", "event_type": "x",
                   "from": "2026-11-28T08:00:00Z", "to": "2026-11-28T09:00:00Z"}),
            "invalid-parameter",
            vec!["replay jobs only"],
        ),
        (
            json!({"kind": "replay", "source": "maelys-kustomer", "destination": "nowhere",
                   "from": "2026-11-28T08:00:00Z", "to": "2026-11-28T09:00:00Z"}),
            "invalid-parameter",
            vec!["nowhere"],
        ),
        (
            json!({"kind": "replay", "source": "maelys-kustomer", "from": "yesterday",
                   "to": "2026-11-28T09:00:00Z"}),
            "invalid-parameter",
            vec!["`from`"],
        ),
        (
            json!({"kind": "rewind", "source": "maelys-kustomer"}),
            "invalid-parameter",
            vec!["rewind"],
        ),
        (
            json!({"kind": "replay", "source": "maelys-kustomer", "colour": "blue"}),
            "invalid-body",
            vec!["colour"],
        ),
    ];
    let (_, before) = listed(&operator, "").await;
    for (body, slug, words) in cases {
        let (status, p) = operator.post("/api/v1/recoveries", body).await;
        assert_problem(status, &p, 400, slug, &words);
    }
    // Nothing refused was stored.
    assert_eq!(listed(&operator, "").await.1, before);
}
