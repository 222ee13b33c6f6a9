//! What every fuzz target does, for one source kind: arbitrary headers (biased towards the
//! signature and timestamp headers systems of record send) and an arbitrary body go through the
//! kind's `verify`, `handshake` and `parse`. None of them may panic, whatever the input.

use std::sync::OnceLock;

use arbitrary::Unstructured;
use http::{HeaderMap, HeaderName, HeaderValue};
use intake_connectors::{for_source, Connector, Incoming};
use intake_core::config::SourceConfig;
use intake_core::Timestamp;

/// Header names systems of record sign or identify with.
const HEADERS: &[&str] = &[
    "x-kustomer-webhook-signature",
    "x-kustomer-webhook-event",
    "x-zendesk-webhook-signature",
    "x-zendesk-webhook-signature-timestamp",
    "x-zendesk-webhook-id",
    "x-hub-signature",
    "x-front-signature",
    "x-front-request-timestamp",
    "x-front-challenge",
    "x-intake-secret",
    "authorization",
    "x-signature",
    "content-type",
];

const SECRETS: [&str; 2] = ["fuzz-secret-one", "user:fuzz-secret-two"];

fn connector(kind: &'static str) -> &'static dyn Connector {
    static CONNECTORS: OnceLock<std::sync::Mutex<Vec<(&'static str, &'static dyn Connector)>>> =
        OnceLock::new();
    let all = CONNECTORS.get_or_init(Default::default);
    let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = all.iter().find(|(k, _)| *k == kind) {
        return *c;
    }
    let mut source = serde_json::json!({
        "id": "fuzz", "tenant": "fuzz", "kind": kind,
        "secrets": SECRETS, "destinations": ["handler"],
    });
    if kind == "generic" {
        source["signature"] = serde_json::json!({ "header": "X-Signature", "prefix": "sha256=" });
    }
    let source: SourceConfig = match serde_json::from_value(source) {
        Ok(s) => s,
        Err(e) => panic!("fuzz source config for {kind}: {e}"),
    };
    let c: &'static dyn Connector = match for_source(&source) {
        Ok(c) => Box::leak(c),
        Err(e) => panic!("no connector for {kind}: {e}"),
    };
    all.push((kind, c));
    c
}

/// Runs `data` through the `kind` connector.
pub fn exercise(kind: &'static str, data: &[u8]) {
    let connector = connector(kind);
    let mut u = Unstructured::new(data);
    let mut headers = HeaderMap::new();
    let count = u.int_in_range(0..=6u8).unwrap_or(0);
    for _ in 0..count {
        let name: &str = if u.ratio(7, 8u8).unwrap_or(true) {
            u.choose(HEADERS).copied().unwrap_or("x-signature")
        } else {
            u.arbitrary().unwrap_or("x-other")
        };
        let value: &str = u.arbitrary().unwrap_or("");
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    // Around the timestamps fuzzed headers are likely to carry.
    let now = Timestamp(u.int_in_range(0..=4_102_444_800_000i64).unwrap_or(1_795_000_000_000));
    let body = u.take_rest();
    let req = Incoming {
        headers: &headers,
        body,
        now,
    };
    let secrets: Vec<String> = SECRETS.iter().map(|s| s.to_string()).collect();
    let _ = connector.verify(&req, &secrets);
    let _ = connector.handshake(&req);
    let _ = connector.parse(&req);
}
