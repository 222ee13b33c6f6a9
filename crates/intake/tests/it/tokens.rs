//! Minted API tokens end to end, through the real HTTP stack: created (shown once), used,
//! listed without their text, confined to their tenant, expired on the manual clock, revoked
//! (401 at once), kept across a restart, and the `intake token` verbs of the command line.

use std::time::Duration;

use intake_testkit::{CaptureHandler, TestServer, ADMIN_TOKEN, DESTINATION_SECRET};
use reqwest::Method;
use serde_json::{json, Value};

async fn start() -> (TestServer, CaptureHandler) {
    let handler = CaptureHandler::start(DESTINATION_SECRET)
        .await
        .expect("capture handler");
    let server = TestServer::start(&handler.url(), "")
        .await
        .expect("test server");
    (server, handler)
}

async fn create(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    server
        .api_send(Method::POST, "/api/v1/tokens", token, Some(body))
        .await
        .expect("request")
}

async fn revoke(server: &TestServer, token: &str, id: &str) -> (u16, Value) {
    server
        .api_send(Method::DELETE, &format!("/api/v1/tokens/{id}"), token, None)
        .await
        .expect("request")
}

async fn status(server: &TestServer, path: &str, token: &str) -> u16 {
    server.api(path, token).await.expect("request").0
}

fn slug(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("urn:intake:problem:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_created_used_listed_without_its_text_and_revoked() {
    let (server, _h) = start().await;
    let (code, made) = create(
        &server,
        ADMIN_TOKEN,
        json!({"scope": "tenant", "tenant": "maelys", "name": "zapier export"}),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let secret = made["token"].as_str().expect("the token, once").to_string();
    let id = made["id"].as_str().expect("id").to_string();
    assert!(
        secret.starts_with("itk_") && id.starts_with("tok_"),
        "{made}"
    );
    assert_eq!(made["state"], "active");

    // It works, as maelys only: another tenant's data is 404, as with a configured token.
    assert_eq!(status(&server, "/api/v1/events", &secret).await, 200);
    assert_eq!(
        status(&server, "/api/v1/events?tenant=maelys", &secret).await,
        200
    );
    assert_eq!(
        status(&server, "/api/v1/events?tenant=other", &secret).await,
        404
    );

    // Listed by the operator and by its tenant, never with its text or hash.
    let (code, all) = server.api("/api/v1/tokens", ADMIN_TOKEN).await.unwrap();
    assert_eq!(code, 200);
    let text = all.to_string();
    assert!(text.contains(&id), "{text}");
    assert!(!text.contains(&secret), "the plaintext is listed: {text}");
    assert!(
        !text.contains(&intake_core::token::hash(&secret)),
        "the hash is listed: {text}"
    );
    let (_, own) = server.api("/api/v1/tokens", &secret).await.unwrap();
    assert_eq!(own["data"].as_array().map(Vec::len), Some(1), "{own}");
    let (_, others) = server.api("/api/v1/tokens", "other-token").await.unwrap();
    assert_eq!(others["data"], json!([]), "{others}");

    // A tenant token creates nothing, and cannot revoke another tenant's token.
    let (code, body) = create(
        &server,
        &secret,
        json!({"scope": "tenant", "tenant": "maelys", "name": "x"}),
    )
    .await;
    assert_eq!(
        (code, slug(&body)),
        (403, "token-create-forbidden"),
        "{body}"
    );
    let (code, body) = create(
        &server,
        "other-token",
        json!({"scope": "operator", "name": "x"}),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = revoke(&server, "other-token", &id).await;
    assert_eq!((code, slug(&body)), (404, "no-such-token"), "{body}");
    assert_eq!(status(&server, "/api/v1/events", &secret).await, 200);

    // Revoked: refused at once.
    let (code, body) = revoke(&server, ADMIN_TOKEN, &id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "revoked");
    assert_eq!(status(&server, "/api/v1/events", &secret).await, 401);
    let (code, body) = revoke(&server, ADMIN_TOKEN, "tok_01NOPE").await;
    assert_eq!((code, slug(&body)), (404, "no-such-token"), "{body}");
    // The configuration's tokens still work.
    assert_eq!(status(&server, "/api/v1/events", ADMIN_TOKEN).await, 200);
    assert_eq!(status(&server, "/api/v1/events", "maelys-token").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_problems() {
    let (server, _h) = start().await;
    for (body, code, want) in [
        (
            json!({"scope": "tenant", "tenant": "nobody", "name": "x"}),
            404,
            "no-such-tenant",
        ),
        (
            json!({"scope": "tenant", "name": "x"}),
            400,
            "token-bad-scope",
        ),
        (
            json!({"scope": "admin", "name": "x"}),
            400,
            "token-bad-scope",
        ),
        (json!({"scope": "operator"}), 400, "token-needs-name"),
        (
            json!({"scope": "operator", "name": "x", "expires_in": "soon"}),
            400,
            "token-bad-expiry",
        ),
        (
            json!({"scope": "operator", "name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            400,
            "token-bad-expiry",
        ),
        (
            json!({"scope": "operator", "name": "x", "root": true}),
            400,
            "invalid-body",
        ),
    ] {
        let (got, problem) = create(&server, ADMIN_TOKEN, body.clone()).await;
        assert_eq!((got, slug(&problem)), (code, want), "{body}: {problem}");
    }
    // Nothing was stored.
    let (_, all) = server.api("/api/v1/tokens", ADMIN_TOKEN).await.unwrap();
    assert_eq!(all["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_token_expires_on_the_clock_and_tokens_survive_a_restart() {
    let (server, _h) = start().await;
    let (code, made) = create(
        &server,
        ADMIN_TOKEN,
        json!({"scope": "operator", "name": "deploy bot", "expires_in": "1h"}),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let short = made["token"].as_str().unwrap().to_string();
    let (_, made) = create(
        &server,
        ADMIN_TOKEN,
        json!({"scope": "operator", "name": "ops"}),
    )
    .await;
    let long = made["token"].as_str().unwrap().to_string();

    // An operator token is an operator: it sees every tenant and creates tokens.
    assert_eq!(
        status(&server, "/api/v1/events?tenant=other", &short).await,
        200
    );
    let (code, body) = create(
        &server,
        &short,
        json!({"scope": "tenant", "tenant": "other", "name": "y"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");

    server.clock.advance(Duration::from_secs(3599));
    assert_eq!(status(&server, "/api/v1/events", &short).await, 200);
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(status(&server, "/api/v1/events", &short).await, 401);
    let (_, all) = server.api("/api/v1/tokens", &long).await.unwrap();
    // (Created in the same millisecond of the manual clock: their order is not asserted.)
    let mut states: Vec<(&str, &str)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            ("deploy bot", "expired"),
            ("ops", "active"),
            ("y", "active")
        ]
    );

    let server = server.restart().await.expect("restart");
    assert_eq!(status(&server, "/api/v1/events", &long).await, 200);
    assert_eq!(status(&server, "/api/v1/events", &short).await, 401);
}

fn intake(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .env_remove("INTAKE_URL")
        .env_remove("INTAKE_TOKEN")
        .output()
        .expect("the intake binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_tokens() {
    let (server, _h) = start().await;
    let url = server.url();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            intake(&refs)
        })
    };
    let with = |v: &[&str], token: &str| -> Vec<String> {
        v.iter()
            .copied()
            .chain(["--url", url.as_str(), "--token", token])
            .map(str::to_string)
            .collect()
    };

    let out = run(with(
        &[
            "token",
            "create",
            "--scope",
            "tenant",
            "--tenant",
            "maelys",
            "--name",
            "ci",
            "--expires-in",
            "30d",
        ],
        ADMIN_TOKEN,
    ))
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(
        intake_core::token::is_minted(&stdout),
        "stdout is the token alone: {stdout}"
    );
    assert!(stderr.contains("only time"), "{stderr}");
    let id = stderr
        .split_whitespace()
        .nth(1)
        .expect("created tok_…")
        .to_string();
    assert!(id.starts_with("tok_"), "{stderr}");
    assert_eq!(status(&server, "/api/v1/events", &stdout).await, 200);

    // The new token lists its own tenant's tokens through the CLI, without their text.
    let out = run(with(&["token", "list"], &stdout)).await.unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{listed}");
    assert!(
        listed.contains(&id) && listed.contains("tenant maelys, ci"),
        "{listed}"
    );
    assert!(!listed.contains(&stdout), "{listed}");

    // A tenant token is refused creation, with the server's reason and a non-zero exit.
    let out = run(with(
        &["token", "create", "--scope", "operator", "--name", "x"],
        &stdout,
    ))
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only an operator token creates tokens"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(with(&["token", "revoke", &id], ADMIN_TOKEN))
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.starts_with(&format!("revoked {id}")), "{said}");
    assert_eq!(status(&server, "/api/v1/events", &stdout).await, 401);
    let out = run(with(&["token", "revoke", &id], &stdout)).await.unwrap();
    assert!(!out.status.success(), "a revoked token cannot act");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_tenant_removed_from_the_configuration_is_refused() {
    let (server, handler) = start().await;
    let (code, made) = create(
        &server,
        ADMIN_TOKEN,
        json!({"scope": "tenant", "tenant": "other", "name": "theirs"}),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let secret = made["token"].as_str().unwrap().to_string();
    assert_eq!(status(&server, "/api/v1/events", &secret).await, 200);

    // The tenant `other` and its source leave the configuration; the stored token stays.
    let full = intake_testkit::config_toml(server.dir.path(), &handler.url(), "");
    let without = full
        .replace("[[tenants]]\nid = \"other\"\napi_token = \"other-token\"\n", "")
        .replace(
            &format!(
                "[[sources]]\nid = \"other-kustomer\"\ntenant = \"other\"\nkind = \"kustomer\"\nsecrets = [\"{}\"]\ndestinations = [\"handler\"]\n",
                intake_testkit::SOURCE_SECRET
            ),
            "",
        );
    assert!(!without.contains("\"other\""), "{without}");
    let TestServer {
        server: running,
        dir,
        ..
    } = server;
    running.shutdown().await.unwrap();
    let server = TestServer::start_with(dir, &without).await.unwrap();
    assert_eq!(status(&server, "/api/v1/events", &secret).await, 401);
    let (_, all) = server.api("/api/v1/tokens", ADMIN_TOKEN).await.unwrap();
    assert_eq!(
        all["data"][0]["tenant"], "other",
        "still listed, to be revoked: {all}"
    );
}
