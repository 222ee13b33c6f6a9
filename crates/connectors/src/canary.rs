//! Canaries as each system of record would send them: [`Connector::canary`] builds a
//! synthetic webhook in the system's own envelope and signs it with the source's real secret,
//! exactly as the system signs (HMAC of the body, of a timestamp and the body, or a shared
//! secret in a header for the systems that do not sign). Sent to `/ingest/{source}`, it is
//! verified and parsed by the same code as real traffic, which is the point of it.
//!
//! Every canary body carries, at its top level, the member
//! [`BODY_MARKER`](intake_core::canary::BODY_MARKER) (`"intake_canary": {"source", "id",
//! "sent_at"}`) and names the event type [`EVENT_TYPE`](intake_core::canary::EVENT_TYPE)
//! (`intake.canary`) where its envelope has a field for it, so a handler reading the body
//! can tell it from real traffic. The ingest door does not trust either: it recognises a
//! canary by intake's own mark, the `intake-canary` header (see `intake_core::canary`).
//!
//! [`Connector::canary`]: crate::Connector::canary

use intake_core::canary::{BODY_MARKER, EVENT_TYPE};
use intake_core::Timestamp;
use serde_json::{json, Value};

/// The canary to build: for which source, with which id (unique per canary: it becomes the
/// object and event ids, so each canary is a new event, never a duplicate), sent when.
#[derive(Debug, Clone, Copy)]
pub struct CanarySpec<'a> {
    /// The source it is sent to.
    pub source: &'a str,
    /// Its id, unique per canary (letters, digits, `-` and `_`).
    pub id: &'a str,
    /// When it is sent (signed timestamps are this instant).
    pub at: Timestamp,
}

/// A request ready to POST: headers (lower-case names, `content-type` included) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The headers to send.
    pub headers: Vec<(String, String)>,
    /// The body to send, byte for byte as signed.
    pub body: Vec<u8>,
}

impl SignedRequest {
    /// A JSON body with its `content-type` and the given signature headers.
    pub(crate) fn json(body: &Value, headers: &[(&str, String)]) -> Self {
        let body = body.to_string().into_bytes();
        let mut all = vec![("content-type".to_string(), "application/json".to_string())];
        all.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        SignedRequest { headers: all, body }
    }

    /// A header's value, if present (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The top-level member every canary body carries.
pub(crate) fn marker(spec: &CanarySpec<'_>) -> Value {
    json!({
        "source": spec.source,
        "id": spec.id,
        "sent_at": spec.at.to_rfc3339(),
    })
}

/// `body` (an object) with the marker added at its top level.
pub(crate) fn marked(spec: &CanarySpec<'_>, mut body: Value) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert(BODY_MARKER.to_string(), marker(spec));
    }
    body
}

/// The event type a canary names.
pub(crate) fn event_type() -> &'static str {
    EVENT_TYPE
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, HeaderName, HeaderValue};
    use intake_core::config::{
        GenericFields, GenericSignature, HmacAlgorithm, SharedSecretAuth, SignatureEncoding,
    };

    use super::*;
    use crate::{
        Connector, FreshdeskConnector, FrontConnector, GenericConnector, GorgiasConnector,
        Incoming, IntercomConnector, KustomerConnector, ZendeskConnector,
    };

    const AT: Timestamp = Timestamp(1_795_860_000_000);

    fn connectors() -> Vec<(&'static str, Box<dyn Connector>)> {
        let generic = |fields: GenericFields| {
            Box::new(GenericConnector::new(
                GenericSignature {
                    header: "X-Signature".into(),
                    algorithm: HmacAlgorithm::Sha512,
                    encoding: SignatureEncoding::Base64,
                    prefix: Some("sha512=".into()),
                },
                fields,
            )) as Box<dyn Connector>
        };
        vec![
            ("kustomer", Box::new(KustomerConnector)),
            ("zendesk", Box::new(ZendeskConnector::default())),
            ("intercom", Box::new(IntercomConnector)),
            ("front", Box::new(FrontConnector::default())),
            (
                "freshdesk (header)",
                Box::new(FreshdeskConnector::new(SharedSecretAuth::default())),
            ),
            (
                "freshdesk (basic)",
                Box::new(FreshdeskConnector::new(SharedSecretAuth::Basic)),
            ),
            (
                "gorgias",
                Box::new(GorgiasConnector::new(SharedSecretAuth::Header {
                    header: "X-Gorgias-Token".into(),
                })),
            ),
            (
                "generic (default fields)",
                generic(GenericFields::default()),
            ),
            (
                "generic (nested fields)",
                generic(GenericFields {
                    event_id: Some("/meta/event/id".into()),
                    event_type: Some("/meta/kind".into()),
                    channel: Some("/payload/medium".into()),
                    occurred_at: Some("/meta/at".into()),
                    object_id: Some("/payload/object".into()),
                    conversation_id: None,
                }),
            ),
        ]
    }

    fn headers(req: &SignedRequest) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
            map.insert(name, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn every_connector_signs_a_canary_that_it_verifies_and_parses_as_a_new_event() {
        // Basic authentication takes `user:password` secrets.
        let secret = "intake:canary-test-secret";
        for (name, c) in connectors() {
            let spec = |id| CanarySpec {
                source: "src-1",
                id,
                at: AT,
            };
            let req = c.canary(&spec("cny-01"), secret);
            let map = headers(&req);
            let incoming = Incoming {
                headers: &map,
                body: &req.body,
                now: AT.plus(Duration::from_secs(2)),
            };
            c.verify(&incoming, &[secret.to_string()])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // Another secret does not verify: it is signed, not merely shaped.
            assert!(
                c.verify(&incoming, &["intake:another".to_string()])
                    .is_err(),
                "{name}"
            );
            assert_eq!(
                req.header("content-type"),
                Some("application/json"),
                "{name}"
            );
            assert!(c.handshake(&incoming).is_none(), "{name}");
            let ev = c.parse(&incoming).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                ev.event_type.contains("canary"),
                "{name}: event type {}",
                ev.event_type
            );
            // The body says what it is, at its top level.
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body[BODY_MARKER]["id"], "cny-01", "{name}");
            assert_eq!(body[BODY_MARKER]["source"], "src-1", "{name}");
            // Each canary is a new event.
            let other = c.canary(&spec("cny-02"), secret);
            let map2 = headers(&other);
            let ev2 = c
                .parse(&Incoming {
                    headers: &map2,
                    body: &other.body,
                    now: AT,
                })
                .unwrap();
            assert_ne!(ev.dedupe_key, ev2.dedupe_key, "{name}");
        }
    }

    #[test]
    fn a_timestamped_scheme_refuses_a_canary_replayed_later() {
        let secret = "canary-test-secret";
        for (name, c) in [
            (
                "zendesk",
                Box::new(ZendeskConnector::default()) as Box<dyn Connector>,
            ),
            ("front", Box::new(FrontConnector::default())),
        ] {
            let req = c.canary(
                &CanarySpec {
                    source: "s",
                    id: "cny-1",
                    at: AT,
                },
                secret,
            );
            let map = headers(&req);
            let late = Incoming {
                headers: &map,
                body: &req.body,
                now: AT.plus(Duration::from_secs(3600)),
            };
            assert!(c.verify(&late, &[secret.to_string()]).is_err(), "{name}");
        }
    }
}
