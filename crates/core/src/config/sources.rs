//! `[[tenants]]` and `[[sources]]`: the operator's customers and their systems of record, with
//! how each source's requests are authenticated and, for generic sources, read.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::Dur;

/// `[[tenants]]`: a customer of the operator.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Stable id, e.g. `maelys`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Who receives this tenant's incident notices.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// A bearer token for the admin API that sees only this tenant.
    #[serde(default)]
    pub api_token: Option<String>,
}

/// A tenant contact for incident notices.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Contact {
    /// A JSON POST to `url`.
    Webhook {
        /// Where to POST.
        url: String,
    },
    /// An e-mail to `to`.
    Email {
        /// The address.
        to: String,
    },
}

/// The kind of system of record a source connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Kustomer.
    Kustomer,
    /// Zendesk.
    Zendesk,
    /// Intercom.
    Intercom,
    /// Front.
    Front,
    /// Freshdesk.
    Freshdesk,
    /// Gorgias.
    Gorgias,
    /// Any system that signs with an HMAC header; configured per source.
    Generic,
}

impl SourceKind {
    /// The config and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Kustomer => "kustomer",
            SourceKind::Zendesk => "zendesk",
            SourceKind::Intercom => "intercom",
            SourceKind::Front => "front",
            SourceKind::Freshdesk => "freshdesk",
            SourceKind::Gorgias => "gorgias",
            SourceKind::Generic => "generic",
        }
    }

    /// The vendor's name as people write it (`Kustomer`), for messages.
    pub fn vendor(self) -> &'static str {
        match self {
            SourceKind::Kustomer => "Kustomer",
            SourceKind::Zendesk => "Zendesk",
            SourceKind::Intercom => "Intercom",
            SourceKind::Front => "Front",
            SourceKind::Freshdesk => "Freshdesk",
            SourceKind::Gorgias => "Gorgias",
            SourceKind::Generic => "the source",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[sources]]`: one system-of-record connection of one tenant.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Stable id; the ingest URL is `/ingest/{id}`.
    pub id: String,
    /// The tenant this source belongs to.
    pub tenant: String,
    /// The system of record.
    pub kind: SourceKind,
    /// Signing secrets. Two may be active while one is rotated.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The destinations every event of this source is delivered to.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// API access for backfill and reconciliation.
    #[serde(default)]
    pub api: Option<ApiConfig>,
    /// For `kind = "generic"`: how requests are signed.
    #[serde(default)]
    pub signature: Option<GenericSignature>,
    /// For `kind = "generic"`: where the event's fields are in the JSON body.
    #[serde(default)]
    pub fields: Option<GenericFields>,
    /// For systems that do not sign their webhooks (`freshdesk`, `gorgias`): how a request
    /// proves it comes from them. Defaults to the `X-Intake-Secret` header.
    #[serde(default)]
    pub auth: Option<SharedSecretAuth>,
    /// For schemes that sign a timestamp (`zendesk`, `front`): how far the request's timestamp
    /// may be from intake's clock. Default 5 minutes.
    #[serde(default)]
    pub tolerance: Option<Dur>,
}

impl SourceConfig {
    /// The timestamp tolerance of signed-timestamp schemes.
    pub fn tolerance(&self) -> Duration {
        self.tolerance.map_or(Duration::from_secs(300), |d| d.0)
    }

    /// How an unsigned system's requests are authenticated.
    pub fn auth(&self) -> SharedSecretAuth {
        self.auth.clone().unwrap_or_default()
    }
}

/// How requests from a system that does not sign its webhooks are authenticated: the source's
/// `secrets` are compared, in constant time, with a header the system is configured to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "scheme", rename_all = "lowercase")]
pub enum SharedSecretAuth {
    /// A custom header whose value is one of the secrets.
    Header {
        /// The header's name.
        #[serde(default = "default_auth_header")]
        header: String,
    },
    /// HTTP Basic authentication; each secret is `user:password`.
    Basic,
}

impl Default for SharedSecretAuth {
    fn default() -> Self {
        SharedSecretAuth::Header {
            header: default_auth_header(),
        }
    }
}

fn default_auth_header() -> String {
    "X-Intake-Secret".into()
}

/// API access to a system of record.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// e.g. `https://maelys.api.kustomerapp.com`
    pub base_url: String,
    /// The API key or token.
    pub token: String,
    /// The user the token belongs to, for APIs with basic authentication (Zendesk's
    /// `{email}/token`, Gorgias' account e-mail). Unused by bearer-token APIs.
    #[serde(default)]
    pub username: Option<String>,
    /// Requests per minute intake allows itself against this API.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
}

/// The HMAC of a generic source's signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA1 (older systems).
    Sha1,
    /// HMAC-SHA512.
    Sha512,
}

/// How a generic source's signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic source's signature scheme: `header: prefix + encode(HMAC(secret, raw body))`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSignature {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    /// The HMAC algorithm.
    #[serde(default = "default_algorithm")]
    pub algorithm: HmacAlgorithm,
    /// The encoding of the digest.
    #[serde(default = "default_encoding")]
    pub encoding: SignatureEncoding,
    /// A prefix before the digest, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
}

fn default_algorithm() -> HmacAlgorithm {
    HmacAlgorithm::Sha256
}

fn default_encoding() -> SignatureEncoding {
    SignatureEncoding::Hex
}

/// Where a generic source's fields are, as JSON pointers (RFC 6901) into the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericFields {
    /// The sender's event id.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The channel.
    pub channel: Option<String>,
    /// When it happened (RFC 3339 or unix seconds).
    pub occurred_at: Option<String>,
    /// The object's id.
    pub object_id: Option<String>,
    /// The conversation (ticket) id.
    pub conversation_id: Option<String>,
}

impl Default for GenericFields {
    fn default() -> Self {
        GenericFields {
            event_id: Some("/id".into()),
            event_type: Some("/type".into()),
            channel: Some("/channel".into()),
            occurred_at: None,
            object_id: None,
            conversation_id: None,
        }
    }
}
