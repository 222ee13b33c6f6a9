//! The admin API, in process: authentication, tenant scoping, the event log and its filters,
//! pagination, and the rejections list.

use std::collections::HashSet;
use std::time::Duration;

use intake_testkit::{
    kustomer, CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::Value;

const MAELYS: &str = "maelys-token";
const OTHER: &str = "other-token";
const PATIENCE: Duration = Duration::from_secs(20);

async fn start() -> (TestServer, CaptureHandler) {
    let handler = CaptureHandler::start(DESTINATION_SECRET)
        .await
        .expect("capture handler");
    let server = TestServer::start(&handler.url(), "")
        .await
        .expect("test server");
    (server, handler)
}

/// A raw GET: status, content type, JSON body (`Null` when not JSON).
async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut req = server.http.get(format!("{}{path}", server.url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

/// Asserts an RFC 7807 answer with this status and `type` slug; returns its `detail`.
async fn expect_problem(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    status: u16,
    slug: &str,
) -> String {
    let (got, content_type, body) = get(server, path, token).await;
    assert_eq!(got, status, "GET {path}: {body}");
    assert_eq!(
        content_type, "application/problem+json",
        "GET {path}: {body}"
    );
    assert_eq!(
        body["type"],
        format!("urn:intake:problem:{slug}"),
        "GET {path}: {body}"
    );
    assert_eq!(body["status"], status, "GET {path}: {body}");
    assert!(body["title"].is_string(), "GET {path}: {body}");
    body["detail"].as_str().unwrap_or_default().to_string()
}

/// A successful JSON GET.
async fn ok(server: &TestServer, path: &str, token: &str) -> Value {
    let (status, body) = server.api(path, token).await.expect("api");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The `data` array of a listing.
fn data(body: &Value) -> &Vec<Value> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {body}"))
}

/// The ids of a listing, in order.
fn ids(body: &Value) -> Vec<String> {
    data(body)
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

/// Sends one Kustomer message to `source`, expects 200, and returns the event id.
async fn send(server: &TestServer, source: &str, message_id: &str) -> String {
    let body = kustomer::message_create(message_id, "email");
    let resp = server
        .send_kustomer(source, &body, SOURCE_SECRET)
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["duplicate"], false, "{v}");
    v["id"].as_str().expect("id").to_string()
}

/// Waits until `n` events are listed as delivered (the handler's 200 is recorded just after it
/// answers).
async fn wait_delivered(server: &TestServer, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let body = ok(server, "/api/v1/events?state=delivered", ADMIN_TOKEN).await;
        if data(&body).len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(data(&body).len(), n, "delivered events: {body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_a_known_bearer_token() {
    let (server, _handler) = start().await;
    expect_problem(&server, "/api/v1/events", None, 401, "missing-token").await;
    expect_problem(
        &server,
        "/api/v1/events",
        Some("not-a-token"),
        401,
        "bad-token",
    )
    .await;
    expect_problem(
        &server,
        "/api/v1/rejections",
        Some("not-a-token"),
        401,
        "bad-token",
    )
    .await;
    // An unknown route is 401 without a token (nothing about the API is disclosed), 404 with one.
    expect_problem(&server, "/api/v1/nope", None, 401, "missing-token").await;
    expect_problem(
        &server,
        "/api/v1/nope",
        Some(ADMIN_TOKEN),
        404,
        "no-such-route",
    )
    .await;
    expect_problem(&server, "/api/v1/nope", Some(MAELYS), 404, "no-such-route").await;
    // Valid tokens are let in.
    assert_eq!(
        data(&ok(&server, "/api/v1/events", ADMIN_TOKEN).await).len(),
        0
    );
    assert_eq!(data(&ok(&server, "/api/v1/events", MAELYS).await).len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_see_their_scope_and_events_carry_their_history() {
    let (server, handler) = start().await;
    let m1 = send(&server, "maelys-kustomer", "msg-m1").await;
    let m2 = send(&server, "maelys-kustomer", "msg-m2").await;
    let o1 = send(&server, "other-kustomer", "msg-o1").await;
    let got = handler.wait_for(3, PATIENCE).await;
    assert_eq!(got.len(), 3, "deliveries: {got:?}");
    assert!(got.iter().all(|c| c.signature_valid));
    wait_delivered(&server, 3).await;

    // The operator sees both tenants, newest first.
    let all = ok(&server, "/api/v1/events", ADMIN_TOKEN).await;
    let all_ids: HashSet<String> = ids(&all).into_iter().collect();
    assert_eq!(all_ids, HashSet::from([m1.clone(), m2.clone(), o1.clone()]));
    assert!(all["next_before"].is_null(), "{all}");
    let tenants: HashSet<&str> = data(&all)
        .iter()
        .filter_map(|e| e["tenant"].as_str())
        .collect();
    assert_eq!(tenants, HashSet::from(["maelys", "other"]));

    // The operator may narrow to a tenant.
    let only_other = ok(&server, "/api/v1/events?tenant=other", ADMIN_TOKEN).await;
    assert_eq!(ids(&only_other), vec![o1.clone()]);

    // A tenant token sees only its tenant, asked or not.
    let mine = ok(&server, "/api/v1/events", MAELYS).await;
    let mine_ids: HashSet<String> = ids(&mine).into_iter().collect();
    assert_eq!(mine_ids, HashSet::from([m1.clone(), m2.clone()]));
    assert!(
        data(&mine).iter().all(|e| e["tenant"] == "maelys"),
        "{mine}"
    );
    let mine_asked = ok(&server, "/api/v1/events?tenant=maelys", MAELYS).await;
    assert_eq!(ids(&mine_asked).len(), 2, "{mine_asked}");
    let theirs = ok(&server, "/api/v1/events", OTHER).await;
    assert_eq!(ids(&theirs), vec![o1.clone()]);

    // … and cannot learn about another tenant, by listing or by id.
    expect_problem(
        &server,
        "/api/v1/events?tenant=other",
        Some(MAELYS),
        404,
        "no-such-tenant",
    )
    .await;
    expect_problem(
        &server,
        &format!("/api/v1/events/{o1}"),
        Some(MAELYS),
        404,
        "no-such-event",
    )
    .await;
    expect_problem(
        &server,
        &format!("/api/v1/events/{m1}"),
        Some(OTHER),
        404,
        "no-such-event",
    )
    .await;
    // The same answer as for an id that does not exist at all.
    expect_problem(
        &server,
        "/api/v1/events/evt_nope",
        Some(ADMIN_TOKEN),
        404,
        "no-such-event",
    )
    .await;
    // A tenant token reads its own event.
    let own = ok(&server, &format!("/api/v1/events/{m1}"), MAELYS).await;
    assert_eq!(own["id"], m1.as_str(), "{own}");

    // The operator reads any event with body, headers, deliveries and attempts.
    let detail = ok(&server, &format!("/api/v1/events/{o1}"), ADMIN_TOKEN).await;
    assert_eq!(detail["id"], o1.as_str(), "{detail}");
    assert_eq!(detail["tenant"], "other", "{detail}");
    assert_eq!(detail["source"], "other-kustomer", "{detail}");
    assert_eq!(detail["event_type"], "kustomer.message.create", "{detail}");
    assert_eq!(detail["channel"], "email", "{detail}");
    assert_eq!(
        detail["received_at"], "2026-11-28T10:00:00.000Z",
        "{detail}"
    );
    assert_eq!(
        detail["body"],
        kustomer::message_create("msg-o1", "email"),
        "{detail}"
    );
    let headers = detail["headers"].to_string();
    assert!(headers.contains("x-kustomer-webhook-event"), "{detail}");
    assert!(headers.contains("application/json"), "{detail}");
    let deliveries = detail["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{detail}");
    assert_eq!(deliveries[0]["destination"], "handler", "{detail}");
    assert_eq!(deliveries[0]["state"], "delivered", "{detail}");
    assert_eq!(deliveries[0]["attempts"], 1, "{detail}");
    assert_eq!(deliveries[0]["last_status"], 200, "{detail}");
    let attempts = detail["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{detail}");
    assert_eq!(attempts[0]["attempt"], 1, "{detail}");
    assert_eq!(attempts[0]["status"], 200, "{detail}");
    assert_eq!(attempts[0]["outcome"], "delivered", "{detail}");
    assert_eq!(attempts[0]["delivery_id"], deliveries[0]["id"], "{detail}");
    // What the handler received is that event.
    assert!(got.iter().any(|c| c.id == o1), "handler never got {o1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_can_be_filtered() {
    let (server, handler) = start().await;
    // Each delivery is recorded before the clock jumps: a jump past the lease (timeout + 30s)
    // while an attempt is in flight would rightly make the delivery be attempted again.
    let m1 = send(&server, "maelys-kustomer", "msg-f1").await;
    wait_delivered(&server, 1).await;
    server.clock.advance(Duration::from_secs(60));
    let o1 = send(&server, "other-kustomer", "msg-f2").await;
    wait_delivered(&server, 2).await;
    server.clock.advance(Duration::from_secs(60));
    let m2 = send(&server, "maelys-kustomer", "msg-f3").await;
    wait_delivered(&server, 3).await;
    assert_eq!(handler.received().len(), 3, "one attempt per event");

    let by_source = ok(
        &server,
        "/api/v1/events?source=maelys-kustomer",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(
        ids(&by_source),
        vec![m2.clone(), m1.clone()],
        "newest first: {by_source}"
    );
    let by_source = ok(&server, "/api/v1/events?source=other-kustomer", ADMIN_TOKEN).await;
    assert_eq!(ids(&by_source), vec![o1.clone()]);
    // A tenant token filtering on another tenant's source finds nothing.
    let none = ok(&server, "/api/v1/events?source=other-kustomer", MAELYS).await;
    assert!(data(&none).is_empty(), "{none}");

    let delivered = ok(&server, "/api/v1/events?state=delivered", ADMIN_TOKEN).await;
    assert_eq!(ids(&delivered), vec![m2.clone(), o1.clone(), m1.clone()]);
    let pending = ok(&server, "/api/v1/events?state=pending", ADMIN_TOKEN).await;
    assert!(data(&pending).is_empty(), "{pending}");
    let dead = ok(&server, "/api/v1/events?state=dead", ADMIN_TOKEN).await;
    assert!(data(&dead).is_empty(), "{dead}");

    let typed = ok(
        &server,
        "/api/v1/events?event_type=kustomer.message.create&channel=email",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(data(&typed).len(), 3, "{typed}");
    let typed = ok(
        &server,
        "/api/v1/events?event_type=kustomer.conversation.create",
        ADMIN_TOKEN,
    )
    .await;
    assert!(data(&typed).is_empty(), "{typed}");
    let chat = ok(&server, "/api/v1/events?channel=chat", ADMIN_TOKEN).await;
    assert!(data(&chat).is_empty(), "{chat}");

    // Received times follow the manual clock.
    let times: Vec<&str> = data(&delivered)
        .iter()
        .filter_map(|e| e["received_at"].as_str())
        .collect();
    assert_eq!(
        times,
        vec![
            "2026-11-28T10:02:00.000Z",
            "2026-11-28T10:01:00.000Z",
            "2026-11-28T10:00:00.000Z"
        ]
    );

    // `from` is inclusive, `to` exclusive.
    let window = ok(
        &server,
        "/api/v1/events?from=2026-11-28T10:01:00Z&to=2026-11-28T10:02:00Z",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(ids(&window), vec![o1.clone()], "{window}");
    let since = ok(
        &server,
        "/api/v1/events?from=2026-11-28T10:01:00Z",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(ids(&since), vec![m2.clone(), o1.clone()], "{since}");
    let until = ok(
        &server,
        "/api/v1/events?to=2026-11-28T10:01:00.000Z",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(ids(&until), vec![m1.clone()], "{until}");
    let offset = ok(
        &server,
        "/api/v1/events?from=2026-11-28T11:01:30%2B01:00",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(
        ids(&offset),
        vec![m2.clone()],
        "a time with an offset: {offset}"
    );
    let window_scoped = ok(
        &server,
        "/api/v1/events?from=2026-11-28T10:00:00Z&to=2026-11-28T10:02:00Z",
        MAELYS,
    )
    .await;
    assert_eq!(ids(&window_scoped), vec![m1.clone()], "{window_scoped}");

    // Bad parameters are 400 problems that name the parameter.
    let detail = expect_problem(
        &server,
        "/api/v1/events?state=bogus",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(
        detail.contains("state") && detail.contains("bogus"),
        "{detail}"
    );
    let detail = expect_problem(
        &server,
        "/api/v1/events?tenat=x",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(detail.contains("tenat"), "{detail}");
    let detail = expect_problem(
        &server,
        "/api/v1/events?from=not-a-time",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(
        detail.contains("from") && detail.contains("not-a-time"),
        "{detail}"
    );
    let detail = expect_problem(
        &server,
        "/api/v1/events?to=yesterday",
        Some(MAELYS),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(detail.contains("to"), "{detail}");
    let detail = expect_problem(
        &server,
        "/api/v1/events?limit=0",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(detail.contains("limit"), "{detail}");
    let detail = expect_problem(
        &server,
        "/api/v1/events?limit=many",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(detail.contains("limit"), "{detail}");
    let detail = expect_problem(
        &server,
        "/api/v1/events?before=garbage",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(detail.contains("before"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_paginated_without_overlap() {
    let (server, handler) = start().await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(&server, "maelys-kustomer", &format!("msg-p{i}")).await);
        server.clock.advance(Duration::from_millis(1500));
    }
    assert_eq!(handler.wait_for(5, PATIENCE).await.len(), 5);

    let mut seen = Vec::new();
    let mut path = "/api/v1/events?limit=2".to_string();
    let mut pages = Vec::new();
    loop {
        let page = ok(&server, &path, ADMIN_TOKEN).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2, "{page}");
        pages.push(page_ids.len());
        seen.extend(page_ids);
        match page["next_before"].as_str() {
            Some(cursor) => {
                assert_eq!(
                    Some(cursor),
                    seen.last().map(String::as_str),
                    "the cursor is the page's last id"
                );
                path = format!("/api/v1/events?limit=2&before={cursor}");
            }
            None => break,
        }
        assert!(pages.len() <= 5, "pagination does not end: {pages:?}");
    }
    assert_eq!(pages, vec![2, 2, 1]);
    // Newest first, every event exactly once.
    let mut expected = sent.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    // The cursor composes with filters and tenant scoping.
    let first = ok(
        &server,
        "/api/v1/events?limit=2&source=maelys-kustomer",
        MAELYS,
    )
    .await;
    assert_eq!(ids(&first), expected[..2].to_vec());
    let cursor = first["next_before"].as_str().expect("next_before");
    let rest = ok(
        &server,
        &format!("/api/v1/events?limit=10&source=maelys-kustomer&before={cursor}"),
        MAELYS,
    )
    .await;
    assert_eq!(ids(&rest), expected[2..].to_vec());
    assert!(rest["next_before"].is_null(), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_bodies_are_listed_for_their_tenant() {
    let (server, _handler) = start().await;
    let body = "this is not json {";
    let resp = server
        .send_kustomer("maelys-kustomer", body, SOURCE_SECRET)
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: Value = resp.json().await.expect("json");
    assert_eq!(
        problem["type"], "urn:intake:problem:unparseable-body",
        "{problem}"
    );

    // The rejection is recorded in the background: poll for it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let listed = loop {
        let listed = ok(&server, "/api/v1/rejections", ADMIN_TOKEN).await;
        if !data(&listed).is_empty() || tokio::time::Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rows = data(&listed);
    assert_eq!(rows.len(), 1, "{listed}");
    let r = &rows[0];
    assert_eq!(r["outcome"], "rejected_invalid", "{listed}");
    assert_eq!(r["tenant"], "maelys", "{listed}");
    assert_eq!(r["source"], "maelys-kustomer", "{listed}");
    assert_eq!(r["body"], body, "{listed}");
    assert_eq!(r["at"], "2026-11-28T10:00:00.000Z", "{listed}");
    assert!(
        !r["reason"].as_str().unwrap_or_default().is_empty(),
        "{listed}"
    );

    // Nothing was accepted.
    assert!(data(&ok(&server, "/api/v1/events", ADMIN_TOKEN).await).is_empty());

    // The tenant sees it; the other tenant does not, and cannot ask for it.
    let mine = ok(&server, "/api/v1/rejections", MAELYS).await;
    assert_eq!(data(&mine).len(), 1, "{mine}");
    assert_eq!(data(&mine)[0]["body"], body, "{mine}");
    let theirs = ok(&server, "/api/v1/rejections", OTHER).await;
    assert!(data(&theirs).is_empty(), "{theirs}");
    expect_problem(
        &server,
        "/api/v1/rejections?tenant=maelys",
        Some(OTHER),
        404,
        "no-such-tenant",
    )
    .await;
    let for_other = ok(&server, "/api/v1/rejections?tenant=other", ADMIN_TOKEN).await;
    assert!(data(&for_other).is_empty(), "{for_other}");
    let detail = expect_problem(
        &server,
        "/api/v1/rejections?tenat=x",
        Some(ADMIN_TOKEN),
        400,
        "invalid-parameter",
    )
    .await;
    assert!(detail.contains("tenat"), "{detail}");

    // A bad signature is refused with 401 and its body is never stored.
    let resp = server
        .send_kustomer("other-kustomer", "{\"secret\":1}", "wrong-secret")
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = ok(&server, "/api/v1/rejections", ADMIN_TOKEN).await;
    assert_eq!(data(&all).len(), 1, "a forged request left a trace: {all}");
    assert_eq!(data(&all)[0]["outcome"], "rejected_invalid", "{all}");
}
