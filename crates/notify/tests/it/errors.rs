//! Retryable or permanent: what each failure of a receiver becomes, and what the error says.

use std::sync::Arc;
use std::time::Duration;

use intake_core::config::NotifierKind;
use intake_core::ManualClock;
use intake_notify::{build, AlertStatus, BuildError, NotifyContext, NotifyError};

use crate::capture::{Answer, HttpCapture};
use crate::fixtures::*;

async fn webhook_failure(answer: Answer) -> NotifyError {
    let cap = HttpCapture::start(Answer::status(200)).await;
    cap.script([answer]);
    let n = build(
        &config(NotifierKind::Webhook, Some(cap.url("/hooks/s3cr3t-token"))),
        &ctx(),
    )
    .unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .expect_err("the receiver refused");
    // The URL path can be a secret (Slack's is): it never appears in an error.
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    err
}

#[tokio::test]
async fn http_500_is_retryable_and_quotes_the_body() {
    let err = webhook_failure(Answer::status(500).body("database is down")).await;
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), None);
    assert!(
        err.to_string().contains("HTTP 500: database is down"),
        "{err}"
    );
}

#[tokio::test]
async fn http_429_honours_retry_after_seconds() {
    let err = webhook_failure(Answer::status(429).header("retry-after", "120")).await;
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn http_503_honours_retry_after_date_against_the_injected_clock() {
    // The fixtures' clock reads 10:20:00; the receiver asks for 10:21:30.
    let err =
        webhook_failure(Answer::status(503).header("retry-after", "Sat, 28 Nov 2026 10:21:30 GMT"))
            .await;
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(90)));
}

#[tokio::test]
async fn http_400_is_permanent_with_the_first_bytes_of_the_body() {
    let long = format!("invalid_payload: {}", "x".repeat(5000));
    let err = webhook_failure(Answer::status(400).body(long)).await;
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("HTTP 400: invalid_payload: xxx"), "{msg}");
    assert!(msg.len() < 400, "the body is cut: {} bytes", msg.len());
}

#[tokio::test]
async fn redirects_are_not_followed_and_are_permanent() {
    let err =
        webhook_failure(Answer::status(302).header("location", "http://elsewhere.test/")).await;
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("configure the final URL"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // A port that was free a moment ago and that nobody listens on now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let n = build(
        &config(
            NotifierKind::Slack,
            Some(format!("http://127.0.0.1:{port}/services/T0/B0/s3cr3t")),
        ),
        &ctx(),
    )
    .unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retryable() {
    let cap = HttpCapture::start(Answer::status(200).delay(Duration::from_secs(30))).await;
    let clock = ManualClock::new(t("2026-11-28T10:20:00Z"));
    let ctx = NotifyContext::with_timeout(Arc::new(clock), Duration::from_millis(200));
    let n = build(&config(NotifierKind::Webhook, Some(cap.url("/slow"))), &ctx).unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("did not answer in time"), "{err}");
}

#[tokio::test]
async fn pagerduty_400_is_permanent() {
    let cap = HttpCapture::start(
        Answer::status(400)
            .body(r#"{"status":"invalid event","message":"Event object is invalid"}"#),
    )
    .await;
    let mut c = config(NotifierKind::Pagerduty, Some(cap.url("")));
    c.routing_key = Some("R0UT1NG".into());
    let n = build(&c, &ctx()).unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("Event object is invalid"), "{err}");
    assert!(!err.to_string().contains("R0UT1NG"), "{err}");
    // The origin given without a path gets the Events API path.
    assert_eq!(cap.received()[0].uri, "/v2/enqueue");
}

fn build_err(c: &intake_core::config::NotifierConfig) -> BuildError {
    match build(c, &ctx()) {
        Ok(_) => panic!("{:?} should not build", c.kind),
        Err(e) => e,
    }
}

#[test]
fn configurations_that_cannot_work_are_refused_at_build_time() {
    let e = build_err(&config(NotifierKind::Slack, None));
    assert_eq!(e.to_string(), "notifier `n1`: `url` is required");
    let e = build_err(&config(NotifierKind::Webhook, Some("ftp://x/y".into())));
    assert!(e.message.contains("http:// or https://"), "{e}");
    let e = build_err(&config(NotifierKind::Pagerduty, None));
    assert!(e.message.contains("routing_key"), "{e}");

    let mut email = config(NotifierKind::Email, None);
    email.to = vec!["oncall@example.com".into()];
    assert!(build_err(&email).message.contains("smtp_url"));
    email.smtp_url = Some("http://mail.example.com".into());
    assert!(build_err(&email)
        .message
        .contains("smtp:// (STARTTLS) or smtps://"));
    email.smtp_url = Some("smtp://mail.example.com:25?tls=none".into());
    assert!(build_err(&email).message.contains("cannot be turned off"));
    email.smtp_url = Some("smtp://mail.example.com".into());
    email.to = vec!["not an address".into()];
    assert!(build_err(&email).message.contains("`to` entry"));
    email.to = vec![];
    assert!(build_err(&email).message.contains("at least one recipient"));
    email.to = vec!["oncall@example.com".into()];
    assert!(build(&email, &ctx()).is_ok());
}
