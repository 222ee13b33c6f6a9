//! The admin API's OpenAPI document (`GET /api/v1/openapi.json`) as a contract:
//!
//! * it validates as OpenAPI 3.1 with a real validator, `openapi-spec-validator` (PyPI), run
//!   as `python3 -m openapi_spec_validator`; `scripts/install-openapi-validator` installs it
//!   (`scripts/test` runs it when it is missing). The test fails, never skips, without it;
//! * its routes (method and path) are exactly the route headings of `docs/api.md`;
//! * its routes are exactly what the server serves: each documented operation is answered by
//!   its handler (never the 404 `no-such-route` fallback, never 405), each other method on a
//!   documented path is 405, and the security it states holds (401 without a token, except
//!   the document itself, served to anyone and byte-identical to [`document`]);
//! * what the server answers is what the document says: after real traffic, every operation's
//!   answers (successes and problems) have a documented status and content type and validate
//!   against the documented schema (`openapi-schema-validator`, installed with the above).
//!
//! The router and the document are built from one list (`crates/server/src/api/openapi.rs`), so
//! the last check is a guard on that construction rather than the only thing holding them
//! together.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use intake_server::api::openapi::document;
use intake_testkit::{
    kustomer, CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET, SOURCE_SECRET,
};
use serde_json::{json, Value};

use crate::wait_delivery;

/// The methods an OpenAPI path item may hold, as the document spells them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The validator to run: `$INTAKE_OPENAPI_VALIDATOR` (a command line, split on spaces), else
/// `python3 -m openapi_spec_validator`. Panics, with what to do, when it cannot run.
fn validator() -> Vec<String> {
    let candidate = std::env::var("INTAKE_OPENAPI_VALIDATOR")
        .unwrap_or_else(|_| "python3 -m openapi_spec_validator".into());
    let argv: Vec<String> = candidate.split_whitespace().map(String::from).collect();
    let runs = argv.split_first().is_some_and(|(program, args)| {
        Command::new(program)
            .args(args)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    });
    if !runs {
        panic!(
            "openapi-spec-validator is not installed (tried `{candidate} --version`): run \
             scripts/install-openapi-validator, which installs it from PyPI with pip, or set \
             INTAKE_OPENAPI_VALIDATOR"
        );
    }
    argv
}

/// Runs the validator on `doc` as OpenAPI 3.1; returns whether it passed and what it said.
fn validate(doc: &Value) -> (bool, String) {
    let argv = validator();
    let mut file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("a temporary file");
    file.write_all(doc.to_string().as_bytes())
        .expect("the document is written");
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .args(["--schema", "3.1"])
        .arg(file.path())
        .output()
        .expect("the validator runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn generated() -> Value {
    serde_json::to_value(document()).expect("the document serializes")
}

/// Every (METHOD, path) of a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The routes `docs/api.md` documents: its headings of the form
/// ``## `METHOD /api/v1/path` `` (any heading level).
fn api_md_routes(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let heading = line.strip_prefix('#')?.trim_start_matches('#').trim();
            let inner = heading.strip_prefix('`')?.strip_suffix('`')?;
            let (method, path) = inner.split_once(' ')?;
            let is_method = !method.is_empty() && method.chars().all(|c| c.is_ascii_uppercase());
            (is_method && path.starts_with("/api/v1/")).then(|| (method.into(), path.into()))
        })
        .collect()
}

#[test]
fn openapi_document_validates_as_openapi_3_1() {
    let doc = generated();
    assert_eq!(doc["openapi"], "3.1.0", "{doc:#}");
    assert_eq!(doc["info"]["title"], "intake admin API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{doc:#}"
    );
    let (valid, said) = validate(&doc);
    assert!(valid, "openapi-spec-validator: {said}\n{doc:#}");
}

#[test]
fn openapi_validator_refuses_a_broken_document() {
    // The check above can fail: the validator does find what this document gets wrong.
    let mut doc = generated();
    doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"] = serde_json::json!({ "$ref": "#/components/schemas/NoSuchSchema" });
    let (valid, said) = validate(&doc);
    assert!(!valid, "the validator accepted a dangling $ref: {said}");
    let mut doc = generated();
    doc["paths"]["/api/v1/events"]["get"]["responses"] = serde_json::json!("none");
    let (valid, said) = validate(&doc);
    assert!(
        !valid,
        "the validator accepted responses that are not a map: {said}"
    );
}

#[test]
fn openapi_routes_are_the_routes_of_docs_api_md() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
    let text = std::fs::read_to_string(path).expect("docs/api.md is readable");
    let documented = api_md_routes(&text);
    let generated = operations(&generated());
    let missing_from_md: Vec<_> = generated.difference(&documented).collect();
    let missing_from_api: Vec<_> = documented.difference(&generated).collect();
    assert!(
        missing_from_md.is_empty() && missing_from_api.is_empty(),
        "docs/api.md and the OpenAPI document disagree.\n\
         Served and in the document, but no ``## `METHOD /api/v1/…` `` heading in docs/api.md: \
         {missing_from_md:?}\n\
         A heading in docs/api.md, but no such route: {missing_from_api:?}"
    );
    assert!(generated.len() >= 15, "{generated:?}");
}

#[test]
fn openapi_heading_parser_reads_only_route_headings() {
    let text = "# Admin API\n## `GET /api/v1/events`\n### `DELETE /api/v1/tokens/{id}`\n\
                ## Tokens\n`GET /api/v1/queue` in prose\n## `POST /ingest/{source_id}`\n";
    let routes: Vec<_> = api_md_routes(text).into_iter().collect();
    assert_eq!(
        routes,
        [
            ("DELETE".to_string(), "/api/v1/tokens/{id}".to_string()),
            ("GET".to_string(), "/api/v1/events".to_string()),
        ]
    );
}

/// `path` with each `{param}` replaced by a value no resource has.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "x_no_such_id"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends `method path` (with `{}` as JSON body for methods that take one).
async fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = server.http.request(
        method.clone(),
        format!("{}{}", server.url(), concrete(path)),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if method == reqwest::Method::POST || method == reqwest::Method::PUT {
        req = req.json(&serde_json::json!({}));
    }
    let resp = req.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_routes_are_the_routes_the_server_serves() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let server = TestServer::start(&handler.url(), "").await.unwrap();
    let doc = generated();

    // The served document is the generated one, and needs no token.
    let resp = server
        .http
        .get(format!("{}/api/v1/openapi.json", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served: Value = resp.json().await.unwrap();
    assert_eq!(served, doc);

    let no_such_route = "urn:intake:problem:no-such-route";
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let method = m.to_uppercase();
            let Some(op) = item.get(m) else {
                // A method the document does not list on this path is not served either.
                if m != "head" && m != "options" && m != "trace" {
                    let (status, body) = request(&server, &method, path, Some(ADMIN_TOKEN)).await;
                    assert_eq!(
                        status, 405,
                        "{method} {path} is served but not documented: {body}"
                    );
                }
                continue;
            };
            let (status, body) = request(&server, &method, path, Some(ADMIN_TOKEN)).await;
            assert!(
                status != 405 && body["type"] != no_such_route,
                "{method} {path} is documented but not served: {status} {body}"
            );
            let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                documented.contains(&&status.to_string()),
                "{method} {path} answered {status}, which it does not document ({documented:?}): {body}"
            );
            // The security the document states is the one enforced.
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            let (status, body) = request(&server, &method, path, None).await;
            if secured {
                assert_eq!(status, 401, "{method} {path} without a token: {body}");
                assert_eq!(body["type"], "urn:intake:problem:missing-token");
            } else {
                assert_eq!(status, 200, "{method} {path} is documented as open: {body}");
            }
        }
    }

    // A path the document does not have is the fallback's 404.
    let (status, body) = request(&server, "GET", "/api/v1/nothing-here", Some(ADMIN_TOKEN)).await;
    assert_eq!((status, &body["type"]), (404, &Value::from(no_such_route)));
}

#[test]
#[ignore = "writes the document to $OPENAPI_DUMP for a person to read"]
fn openapi_dump() {
    let path = std::env::var("OPENAPI_DUMP").unwrap_or_else(|_| "/tmp/openapi.json".into());
    std::fs::write(path, serde_json::to_string_pretty(&generated()).unwrap()).unwrap();
}

/// Checks each `(what, schema, instance)` with openapi-schema-validator's OpenAPI 3.1 validator
/// (formats included), the schemas' `$ref`s resolved in `components`; returns, per check,
/// what is wrong with it (empty when it validates).
fn schema_errors(components: &Value, checks: &[(String, Value, Value)]) -> Vec<String> {
    const SCRIPT: &str = r#"
import json, sys
from openapi_schema_validator import OAS31Validator
request = json.load(sys.stdin)
out = []
for check in request["checks"]:
    schema = dict(check["schema"], components=request["components"])
    validator = OAS31Validator(schema, format_checker=OAS31Validator.FORMAT_CHECKER)
    try:
        errors = [f"{e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(check["instance"])]
    except Exception as e:
        errors = [f"the validator failed: {e!r}"]
    out.append("; ".join(errors))
json.dump(out, sys.stdout)
"#;
    let request = json!({
        "components": components,
        "checks": checks.iter().map(|(_, s, i)| json!({"schema": s, "instance": i})).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes())
        .expect("the checks are written");
    let out = child.wait_with_output().expect("python3 finishes");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openapi-schema-validator did not run (scripts/install-openapi-validator installs it): {said}"
    );
    serde_json::from_slice(&out.stdout).expect("one answer per check")
}

/// One answer of the server: what was asked (method and documented path), and what came back.
struct Answer {
    method: &'static str,
    path: &'static str,
    status: u16,
    content_type: String,
    body: Value,
}

/// Sends `method path` (concrete, with ids) as `token`, and records the answer under the
/// documented `template`.
async fn ask(
    server: &TestServer,
    (method, template, path): (&'static str, &'static str, &str),
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = server.http.request(m, format!("{}{path}", server.url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the server answers");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    // A JSON answer is checked as JSON; any other (the Markdown postmortem) as a string.
    let body = if content_type.contains("json") {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    } else {
        Value::String(text)
    };
    Answer {
        method,
        path: template,
        status,
        content_type,
        body,
    }
}

/// The documented response of an operation for a status, `$ref`s to shared responses resolved.
fn documented_response<'d>(doc: &'d Value, a: &Answer) -> Option<&'d Value> {
    let response =
        doc["paths"][a.path][a.method.to_lowercase()]["responses"].get(a.status.to_string())?;
    match response["$ref"].as_str() {
        Some(r) => doc["components"]["responses"].get(r.rsplit('/').next()?),
        None => Some(response),
    }
}

/// One request of [`traffic`]: (method, documented path, concrete path), token, body.
type Ask<'a> = (
    (&'static str, &'static str, &'a str),
    Option<&'a str>,
    Option<Value>,
);

/// An audit of the hour before the test server's clock (2026-11-28T10:00:00Z).
const AUDIT: &str =
    "/api/v1/audit?source=maelys-kustomer&from=2026-11-28T09:00:00Z&to=2026-11-28T10:00:00Z";

/// Real traffic through every operation, successes and problems alike.
async fn traffic(server: &TestServer) -> Vec<Answer> {
    let body = kustomer::message_create("msg-openapi", "email");
    let resp = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .expect("send");
    let accepted: Value = resp.json().await.expect("json");
    let event = accepted["id"].as_str().expect("an event id").to_string();
    wait_delivery(server, &event, "delivered", 1).await;
    let refused = server
        .send_kustomer("maelys-kustomer", "not json {", SOURCE_SECRET)
        .await
        .expect("send");
    assert_eq!(refused.status(), 400);

    let op = Some(ADMIN_TOKEN);
    let silence =
        json!({"matchers": {"tenant": "maelys"}, "for": "1h", "created_by": "t", "comment": "c"});
    let token = json!({"scope": "tenant", "tenant": "maelys", "name": "n", "expires_in": "90d"});
    let mut answers = Vec::new();
    let created = ask(
        server,
        ("POST", "/api/v1/silences", "/api/v1/silences"),
        op,
        Some(silence),
    )
    .await;
    let silence_path = format!(
        "/api/v1/silences/{}",
        created.body["id"].as_str().unwrap_or("?")
    );
    answers.push(created);
    let created = ask(
        server,
        ("POST", "/api/v1/tokens", "/api/v1/tokens"),
        op,
        Some(token),
    )
    .await;
    let token_path = format!(
        "/api/v1/tokens/{}",
        created.body["id"].as_str().unwrap_or("?")
    );
    answers.push(created);
    // A backfill whose system of record never answers stays running until it is cancelled.
    let backfill = json!({"kind": "backfill", "source": "maelys-unreachable",
        "from": "2026-11-27T00:00:00Z", "to": "2026-11-27T01:00:00Z"});
    let created = ask(
        server,
        ("POST", "/api/v1/recoveries", "/api/v1/recoveries"),
        op,
        Some(backfill),
    )
    .await;
    let recovery_path = format!(
        "/api/v1/recoveries/{}",
        created.body["id"].as_str().unwrap_or("?")
    );
    let cancel_path = format!("{recovery_path}/cancel");
    answers.push(created);
    // A drill on a source nobody sends to, cancelled at the end.
    let drill = json!({"scenario": "flow-stop", "source": "maelys-unreachable", "for": "10m"});
    let created = ask(
        server,
        ("POST", "/api/v1/drills", "/api/v1/drills"),
        op,
        Some(drill.clone()),
    )
    .await;
    let drill_path = format!(
        "/api/v1/drills/{}",
        created.body["id"].as_str().unwrap_or("?")
    );
    let drill_cancel = format!("{drill_path}/cancel");
    answers.push(created);
    let declared = ask(
        server,
        ("POST", "/api/v1/incidents", "/api/v1/incidents"),
        op,
        Some(json!({"title": "Webhooks delayed", "tenants": ["maelys"],
            "impact_start": "2026-11-28T09:40:00Z", "commander": "alice"})),
    )
    .await;
    let incident_path = format!(
        "/api/v1/incidents/{}",
        declared.body["id"].as_str().unwrap_or("?")
    );
    answers.push(declared);
    let update_path = format!("{incident_path}/updates");
    let resolve_path = format!("{incident_path}/resolve");
    let postmortem_path = format!("{incident_path}/postmortem");
    let incident_asks: Vec<Ask> = vec![
        (
            ("POST", "/api/v1/incidents", "/api/v1/incidents"),
            op,
            Some(json!({"title": "x", "tenants": ["nobody"]})),
        ),
        (
            ("POST", "/api/v1/incidents", "/api/v1/incidents"),
            Some("maelys-token"),
            Some(json!({"title": "x", "tenants": ["maelys"]})),
        ),
        (("GET", "/api/v1/incidents", "/api/v1/incidents"), op, None),
        (
            ("GET", "/api/v1/incidents", "/api/v1/incidents?state=open"),
            Some("maelys-token"),
            None,
        ),
        (
            ("GET", "/api/v1/incidents", "/api/v1/incidents?state=bogus"),
            op,
            None,
        ),
        (("GET", "/api/v1/incidents/{id}", &incident_path), op, None),
        (
            ("GET", "/api/v1/incidents/{id}", &incident_path),
            Some("other-token"),
            None,
        ),
        (
            ("POST", "/api/v1/incidents/{id}/updates", &update_path),
            op,
            Some(json!({"status": "identified", "message": "Found it."})),
        ),
        (
            ("POST", "/api/v1/incidents/{id}/updates", &update_path),
            op,
            Some(json!({"status": "fixed", "message": "x"})),
        ),
        (
            ("POST", "/api/v1/incidents/{id}/resolve", &resolve_path),
            op,
            Some(json!({})),
        ),
        (
            ("POST", "/api/v1/incidents/{id}/resolve", &resolve_path),
            op,
            Some(json!({})),
        ),
        (
            ("GET", "/api/v1/incidents/{id}/postmortem", &postmortem_path),
            op,
            None,
        ),
        (
            ("GET", "/api/v1/incidents/{id}/postmortem", &postmortem_path),
            Some("maelys-token"),
            None,
        ),
    ];
    for (what, token, body) in incident_asks {
        answers.push(ask(server, what, token, body).await);
    }
    let event_path = format!("/api/v1/events/{event}");
    let (_, detail) = server
        .api(&event_path, ADMIN_TOKEN)
        .await
        .expect("the event");
    let delivery = detail["deliveries"][0]["id"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let complete_path = format!("/api/v1/deliveries/{delivery}/complete");
    let receipts: Vec<Ask> = vec![
        (
            ("POST", "/api/v1/deliveries/{id}/complete", &complete_path),
            op,
            Some(json!({"outcome": "ok"})),
        ),
        (
            ("POST", "/api/v1/deliveries/{id}/complete", &complete_path),
            Some("other-token"),
            Some(json!({})),
        ),
        (
            ("POST", "/api/v1/deliveries/{id}/complete", &complete_path),
            op,
            Some(json!({"outcome": "done"})),
        ),
        (
            (
                "POST",
                "/api/v1/deliveries/complete",
                "/api/v1/deliveries/complete",
            ),
            op,
            Some(json!({"items": [{"id": delivery}, {"id": "dlv_01J00000000000000000000000"}]})),
        ),
    ];
    for (what, token, body) in receipts {
        answers.push(ask(server, what, token, body).await);
    }
    let asks: Vec<Ask> = vec![
        (
            ("GET", "/api/v1/recoveries", "/api/v1/recoveries"),
            op,
            None,
        ),
        (
            (
                "GET",
                "/api/v1/recoveries",
                "/api/v1/recoveries?state=bogus",
            ),
            op,
            None,
        ),
        (("GET", "/api/v1/recoveries/{id}", &recovery_path), op, None),
        (
            ("GET", "/api/v1/recoveries/{id}", &recovery_path),
            Some("other-token"),
            None,
        ),
        (
            ("POST", "/api/v1/recoveries", "/api/v1/recoveries"),
            op,
            Some(json!({"kind": "backfill", "source": "maelys-kustomer"})),
        ),
        (
            ("POST", "/api/v1/recoveries/{id}/cancel", &cancel_path),
            op,
            None,
        ),
        (("GET", "/api/v1/drills", "/api/v1/drills"), op, None),
        (
            ("GET", "/api/v1/drills", "/api/v1/drills?state=bogus"),
            op,
            None,
        ),
        (("GET", "/api/v1/drills/{id}", &drill_path), op, None),
        (
            ("GET", "/api/v1/drills/{id}", &drill_path),
            Some("other-token"),
            None,
        ),
        (
            ("POST", "/api/v1/drills", "/api/v1/drills"),
            op,
            Some(drill),
        ),
        (
            ("POST", "/api/v1/drills", "/api/v1/drills"),
            Some("maelys-token"),
            Some(json!({"scenario": "queue-stall", "source": "maelys-kustomer"})),
        ),
        (
            ("POST", "/api/v1/drills", "/api/v1/drills"),
            op,
            Some(json!({"scenario": "bogus"})),
        ),
        (
            ("POST", "/api/v1/drills", "/api/v1/drills"),
            op,
            Some(json!({"scenario": "queue-stall", "source": "nope"})),
        ),
        (
            ("POST", "/api/v1/drills/{id}/cancel", &drill_cancel),
            op,
            None,
        ),
        (
            ("POST", "/api/v1/drills/{id}/cancel", &drill_cancel),
            op,
            None,
        ),
        (("GET", "/api/v1/audit", AUDIT), op, None),
        (("GET", "/api/v1/audit", AUDIT), Some("other-token"), None),
        (
            (
                "GET",
                "/api/v1/audit",
                "/api/v1/audit?source=maelys-kustomer",
            ),
            op,
            None,
        ),
        (("GET", "/api/v1/events", "/api/v1/events"), op, None),
        (
            ("GET", "/api/v1/events", "/api/v1/events?state=bogus"),
            op,
            None,
        ),
        (("GET", "/api/v1/events/{id}", &event_path), op, None),
        (
            ("GET", "/api/v1/events/{id}", "/api/v1/events/evt_nothing"),
            op,
            None,
        ),
        (
            ("GET", "/api/v1/rejections", "/api/v1/rejections"),
            op,
            None,
        ),
        (("GET", "/api/v1/flows", "/api/v1/flows"), op, None),
        (
            ("GET", "/api/v1/flows", "/api/v1/flows?tenant=other"),
            Some("maelys-token"),
            None,
        ),
        (("GET", "/api/v1/queue", "/api/v1/queue"), op, None),
        (("GET", "/api/v1/canaries", "/api/v1/canaries"), op, None),
        (
            ("GET", "/api/v1/canaries", "/api/v1/canaries?tenant=other"),
            Some("maelys-token"),
            None,
        ),
        (
            ("GET", "/api/v1/reconciliation", "/api/v1/reconciliation"),
            op,
            None,
        ),
        (
            (
                "GET",
                "/api/v1/reconciliation",
                "/api/v1/reconciliation?tenant=maelys",
            ),
            Some("other-token"),
            None,
        ),
        (
            (
                "GET",
                "/api/v1/reconciliation",
                "/api/v1/reconciliation?window=1h",
            ),
            op,
            None,
        ),
        (("GET", "/api/v1/alerts", "/api/v1/alerts"), op, None),
        (("GET", "/api/v1/rules", "/api/v1/rules"), op, None),
        (("GET", "/api/v1/notifiers", "/api/v1/notifiers"), op, None),
        (("GET", "/api/v1/cluster", "/api/v1/cluster"), op, None),
        (
            ("GET", "/api/v1/cluster", "/api/v1/cluster"),
            Some("maelys-token"),
            None,
        ),
        (
            ("GET", "/api/v1/silences", "/api/v1/silences?state=all"),
            op,
            None,
        ),
        (
            ("POST", "/api/v1/silences", "/api/v1/silences"),
            op,
            Some(json!({})),
        ),
        (("DELETE", "/api/v1/silences/{id}", &silence_path), op, None),
        (("DELETE", "/api/v1/silences/{id}", &silence_path), op, None),
        (("GET", "/api/v1/tokens", "/api/v1/tokens"), None, None),
        (("GET", "/api/v1/tokens", "/api/v1/tokens"), op, None),
        (
            ("POST", "/api/v1/tokens", "/api/v1/tokens"),
            Some("maelys-token"),
            Some(json!({})),
        ),
        (("DELETE", "/api/v1/tokens/{id}", &token_path), op, None),
        (
            ("GET", "/api/v1/openapi.json", "/api/v1/openapi.json"),
            None,
            None,
        ),
    ];
    for (what, token, body) in asks {
        answers.push(ask(server, what, token, body).await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_answers_are_what_the_document_says() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let unreachable = "[[sources]]\nid = \"maelys-unreachable\"\ntenant = \"maelys\"\n\
        kind = \"kustomer\"\nsecrets = [\"s\"]\ndestinations = [\"handler\"]\n\
        api = { base_url = \"http://127.0.0.1:9\", token = \"k\" }\n";
    // The handler is on completion receipts, so a confirmation is part of the traffic.
    let extra = format!("completion = \"receipt\"\n{unreachable}");
    let server = TestServer::start(&handler.url(), &extra).await.unwrap();
    let doc = generated();
    let answers = traffic(&server).await;

    let mut checks = Vec::new();
    for a in &answers {
        let what = format!("{} {} -> {}: {}", a.method, a.path, a.status, a.body);
        let response = documented_response(&doc, a)
            .unwrap_or_else(|| panic!("an undocumented status: {what}"));
        let content = response["content"].as_object().expect("a documented body");
        let (content_type, media) = content.iter().next().expect("one content type");
        assert_eq!(&a.content_type, content_type, "{what}");
        checks.push((what, media["schema"].clone(), a.body.clone()));
    }
    // Reconciliation answers with what the duty recorded; the server above has checked
    // nothing yet, so a source's full state (open and closed gaps, a skip, an error) is
    // checked as the door would show it.
    assert!(
        doc["components"]["schemas"]["SourceView"].is_object(),
        "SourceView is a component"
    );
    checks.push((
        "a reconciled source with gaps".into(),
        json!({ "$ref": "#/components/schemas/SourceView" }),
        reconciled_source(&server),
    ));
    // The validator does find a wrong answer: a page whose `data` is not a list.
    let page = json!({ "$ref": "#/components/schemas/EventPage" });
    checks.push((
        "a wrong page".into(),
        page,
        json!({ "data": "x", "next_before": null }),
    ));

    let errors = schema_errors(&doc["components"], &checks);
    let (wrong, real) = errors.split_last().expect("answers");
    assert!(
        wrong.contains("is not of type"),
        "the wrong page validated: {wrong:?}"
    );
    let failures: Vec<String> = checks
        .iter()
        .zip(real)
        .filter(|(_, e)| !e.is_empty())
        .map(|((what, _, _), e)| format!("{what}\n    {e}"))
        .collect();
    assert!(
        failures.is_empty(),
        "answers that do not match the document:\n{}",
        failures.join("\n")
    );

    // Every operation was exercised with a success.
    for (method, path) in operations(&doc) {
        assert!(
            answers
                .iter()
                .any(|a| a.method == method && a.path == path && a.status < 300),
            "no successful {method} {path} was checked"
        );
    }
}

/// What `GET /api/v1/reconciliation` shows of a source with every part of its state filled.
fn reconciled_source(server: &TestServer) -> Value {
    use intake_server::duties::reconcile::state::{Missing, Note, SourceState};
    use intake_server::duties::reconcile::view::source_view;
    use intake_server::duties::reconcile::window::Span;
    let at = |s: &str| intake_core::Timestamp::parse_rfc3339(s).unwrap();
    let missing = |key: &str| Missing {
        key: key.into(),
        channel: "email".into(),
        event_type: "kustomer.message.create".into(),
        object_id: Some(format!("obj-{key}")),
        occurred_at: Some(at("2026-11-28T09:58:00Z")),
    };
    let mut st = SourceState::default();
    let first = Span {
        from: at("2026-11-28T09:45:00Z"),
        to: at("2026-11-28T09:55:00Z"),
    };
    let second = Span {
        from: first.to,
        to: at("2026-11-28T10:05:00Z"),
    };
    st.record_check(
        first,
        at("2026-11-28T10:10:00Z"),
        9,
        vec![missing("a")],
        4,
        10,
    );
    st.record_check(
        second,
        at("2026-11-28T10:20:00Z"),
        12,
        vec![missing("b")],
        5,
        10,
    );
    st.gaps[1].backfill = Some("rec_01".into());
    st.gaps[1].backfill_state = Some("running".into());
    st.settle(&["a".to_string()].into(), at("2026-11-28T10:30:00Z"));
    st.skipped = Some(Note {
        at: at("2026-11-28T10:30:00Z"),
        message: "backfill job rec_01 is running".into(),
        job: Some("rec_01".into()),
    });
    st.error = Some(Note {
        at: at("2026-11-28T10:20:00Z"),
        message: "HTTP 503".into(),
        job: None,
    });
    let source = server
        .config
        .sources
        .iter()
        .find(|s| s.id == "maelys-unreachable")
        .unwrap();
    serde_json::to_value(source_view(&server.config, source, st)).unwrap()
}
