//! The HTTP side shared by the Slack, webhook, PagerDuty, Alertmanager and watchdog senders:
//! one request, and the classification of its outcome into retryable or permanent.

use intake_core::rate::parse_retry_after;
use intake_core::Timestamp;
use reqwest::{Method, StatusCode};
use serde::Serialize;

use crate::error::NotifyError;

/// How much of an error response body goes into the error message.
const BODY_EXCERPT: usize = 200;

/// Where a request went, without the path or query (which may hold a secret such as a Slack
/// webhook token): `https://hooks.slack.com`.
pub(crate) fn origin(url: &reqwest::Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{p}", url.scheme(), url.host_str().unwrap_or("?")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?")),
    }
}

/// Sends `body` as JSON to `url` and classifies the answer.
pub(crate) async fn post_json<T: Serialize + ?Sized>(
    http: &reqwest::Client,
    url: &reqwest::Url,
    body: &T,
    now: Timestamp,
) -> Result<(), NotifyError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| NotifyError::permanent(format!("cannot encode the notification: {e}")))?;
    let req = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes);
    send(req, url, now).await
}

/// Sends a request with a plain-text body (or none) to `url` and classifies the answer.
pub(crate) async fn send_text(
    http: &reqwest::Client,
    method: Method,
    url: &reqwest::Url,
    body: Option<String>,
    now: Timestamp,
) -> Result<(), NotifyError> {
    let mut req = http.request(method, url.clone());
    if let Some(b) = body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(b);
    }
    send(req, url, now).await
}

async fn send(
    req: reqwest::RequestBuilder,
    url: &reqwest::Url,
    now: Timestamp,
) -> Result<(), NotifyError> {
    let to = origin(url);
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Err(transport_error(&to, e)),
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // A failure to read the error body must not hide the status, which is what matters.
    let body = resp.bytes().await.unwrap_or_default();
    Err(classify(&to, status, retry_after, location, &body))
}

/// Turns a non-2xx answer into an error: 5xx, 429 and 408 are worth retrying (with the
/// receiver's `Retry-After`), anything else will not get better by itself.
pub(crate) fn classify(
    to: &str,
    status: StatusCode,
    retry_after: Option<std::time::Duration>,
    location: Option<String>,
    body: &[u8],
) -> NotifyError {
    let excerpt = excerpt(body);
    let mut message = format!("{to} answered HTTP {}", status.as_u16());
    if !excerpt.is_empty() {
        message.push_str(&format!(": {excerpt}"));
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        NotifyError::Retryable {
            message,
            retry_after,
        }
    } else if status.is_redirection() {
        // Redirects are not followed: a notifier URL that moved is a configuration to fix, and
        // following it blindly could post alerts (and their secrets) somewhere unexpected.
        if location.is_some() {
            message.push_str(" (a redirect; configure the final URL instead)");
        }
        NotifyError::permanent(message)
    } else {
        NotifyError::permanent(message)
    }
}

/// The first bytes of a body as one line of text.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]);
    let mut one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line = one_line.trim().to_string();
    if body.len() > BODY_EXCERPT {
        one_line.push('…');
    }
    one_line
}

/// A request that got no HTTP answer: timeouts and connection failures are retryable; a
/// request that could not even be built is not.
fn transport_error(to: &str, e: reqwest::Error) -> NotifyError {
    let e = e.without_url();
    if e.is_timeout() {
        NotifyError::retryable(format!("{to} did not answer in time"))
    } else if e.is_connect() {
        NotifyError::retryable(format!("cannot connect to {to}: {}", chain(&e)))
    } else if e.is_builder() {
        NotifyError::permanent(format!("invalid request to {to}: {}", chain(&e)))
    } else {
        // Resets, closed connections and malformed answers are usually transient.
        NotifyError::retryable(format!("request to {to} failed: {}", chain(&e)))
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_status() {
        let c = |s: u16| classify("x", StatusCode::from_u16(s).unwrap(), None, None, b"");
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(c(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422, 301, 302] {
            assert!(!c(s).is_retryable(), "{s}");
        }
    }

    #[test]
    fn excerpt_is_bounded_and_one_line() {
        let long = "a\nb".repeat(500);
        let e = excerpt(long.as_bytes());
        assert!(e.chars().count() <= BODY_EXCERPT + 1);
        assert!(!e.contains('\n'));
        assert!(e.ends_with('…'));
    }

    #[test]
    fn origin_hides_path_and_query() {
        let u = reqwest::Url::parse("https://hooks.slack.com/services/T0/B0/secret?x=1").unwrap();
        assert_eq!(origin(&u), "https://hooks.slack.com");
        let u = reqwest::Url::parse("http://127.0.0.1:9000/a").unwrap();
        assert_eq!(origin(&u), "http://127.0.0.1:9000");
    }
}
