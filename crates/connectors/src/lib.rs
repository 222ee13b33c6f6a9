//! One module per system of record: how it signs its webhooks and how its envelopes map onto
//! intake's [`NormalizedEvent`].
//!
//! A connector is pure: it looks at headers and raw body bytes and answers. The ingest door
//! calls [`Connector::verify`] first (nothing is stored for a request that fails it), then
//! [`Connector::parse`]. Unknown event types parse fine and are stored: a connector never drops
//! what a system of record sends just because it is new.
//!
//! Every connector applies one input policy ([`input`]): the body must be UTF-8 JSON nested at
//! most [`input::MAX_DEPTH`] levels deep, ids are kept as the exact text the sender wrote, and
//! times must be instants RFC 3339 can write. [`Connector::parse`] enforces it around each
//! connector's own [`Connector::read_event`].
//!
//! Each connector also signs: [`Connector::canary`] builds the synthetic webhook intake sends
//! through its own front door, in the system's envelope and signed as the system signs
//! ([`canary`]).

pub mod backfill;
pub mod canary;
pub mod freshdesk;
pub mod front;
pub mod generic;
pub mod gorgias;
pub mod input;
pub mod intercom;
pub mod kustomer;
mod lax;
pub mod unsigned;
pub mod zendesk;

use http::HeaderMap;
use intake_core::clock::SharedClock;
use intake_core::config::{SourceConfig, SourceKind};
use intake_core::event::NormalizedEvent;
use intake_core::Timestamp;

pub use canary::{CanarySpec, SignedRequest};
pub use freshdesk::FreshdeskConnector;
pub use front::FrontConnector;
pub use generic::GenericConnector;
pub use gorgias::GorgiasConnector;
pub use intercom::IntercomConnector;
pub use kustomer::KustomerConnector;
pub use zendesk::ZendeskConnector;

/// A webhook request as the ingest door received it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its raw body, exactly as received.
    pub body: &'a [u8],
    /// When it arrived (for schemes with a timestamp tolerance).
    pub now: Timestamp,
}

impl Incoming<'_> {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request's signature was refused. The message is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature header is absent.
    #[error("missing signature header `{0}`")]
    MissingHeader(String),
    /// The header is not in the scheme's format.
    #[error("malformed signature header `{header}`: {why}")]
    Malformed {
        /// The header.
        header: String,
        /// What is wrong with it.
        why: String,
    },
    /// The signed timestamp is further from intake's clock than the source's tolerance, in
    /// either direction: a replayed request, or a sender whose clock is far off.
    #[error(
        "signature timestamp is {skew_secs} s from intake's clock (tolerance {tolerance_secs} s)"
    )]
    StaleTimestamp {
        /// intake's clock minus the signed timestamp, in seconds (negative: in the future).
        skew_secs: i64,
        /// The source's tolerance, in seconds.
        tolerance_secs: u64,
    },
    /// No configured secret produces this signature.
    #[error("signature does not match any configured secret")]
    Mismatch,
}

/// Why a body could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not the envelope this system sends.
    #[error("body is not a {kind} envelope: {why}")]
    Envelope {
        /// The system of record.
        kind: &'static str,
        /// What is missing or wrong.
        why: String,
    },
    /// The body is not valid UTF-8 (the input policy: bodies are UTF-8 JSON).
    #[error("body is not valid UTF-8 (first invalid byte at offset {offset}); intake accepts UTF-8 JSON only")]
    InvalidUtf8 {
        /// The offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// A `\u` escape in a string is not valid Unicode (an unpaired surrogate).
    #[error("body has a `\\u` escape at offset {offset} that is not valid Unicode (an unpaired surrogate)")]
    InvalidEscape {
        /// The offset of the escape's backslash.
        offset: usize,
    },
    /// Arrays and objects nest deeper than the policy's limit.
    #[error("body nests arrays and objects more than {limit} levels deep")]
    TooDeep {
        /// The limit ([`input::MAX_DEPTH`]).
        limit: usize,
    },
    /// A time the connector read is outside what RFC 3339 can write.
    #[error("`{field}` is `{value}`, outside the times intake accepts (0000-01-01T00:00:00Z to 9999-12-30T22:00:00Z)")]
    TimeOutOfRange {
        /// The field the time was read from.
        field: String,
        /// The value as written (its first 40 characters).
        value: String,
    },
}

/// The answer to a setup handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The status to answer with.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: Vec<u8>,
}

/// What every system-of-record connector provides.
pub trait Connector: Send + Sync + 'static {
    /// The system of record.
    fn kind(&self) -> SourceKind;

    /// Checks the request's signature against the source's secrets (one or two, during
    /// rotation), in constant time.
    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError>;

    /// A reply the system of record expects instead of an event, for a request that is a setup
    /// handshake (Front's `x-front-challenge`). Called after [`Connector::verify`] succeeded;
    /// a handshake is answered and nothing is stored.
    fn handshake(&self, _req: &Incoming<'_>) -> Option<Handshake> {
        None
    }

    /// Extracts the normalized event from the body, under the input policy ([`input`]) that
    /// every connector shares: the body is checked before the connector reads it
    /// ([`input::check_body`]), and the event's time after. Connectors implement
    /// [`Connector::read_event`] and do not override this.
    fn parse(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        input::policed(req.body, |_| self.read_event(req))
    }

    /// Reads the normalized event out of a body that passed [`input::check_body`]: the
    /// connector's own envelope. Called by [`Connector::parse`] only.
    fn read_event(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError>;

    /// Request headers worth keeping with the event (lower-case names). Signatures are not
    /// among them: they are useless after verification.
    fn kept_headers(&self) -> &'static [&'static str];

    /// A canary for this source: a webhook in this system's envelope, carrying the body
    /// marker of [`canary`] and naming the event type `intake.canary` where the envelope
    /// has one, signed with `secret` exactly as the system signs its webhooks (with a
    /// timestamp of `spec.at` for the schemes that sign one). [`Connector::verify`] accepts it
    /// and [`Connector::parse`] reads it as a new event.
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest;
}

/// A source whose connector cannot be built from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The connector for a configured source.
pub fn for_source(source: &SourceConfig) -> Result<Box<dyn Connector>, SetupError> {
    match source.kind {
        SourceKind::Kustomer => Ok(Box::new(KustomerConnector)),
        SourceKind::Front => Ok(Box::new(FrontConnector::new(source.tolerance()))),
        SourceKind::Freshdesk => Ok(Box::new(FreshdeskConnector::new(source.auth()))),
        SourceKind::Gorgias => Ok(Box::new(GorgiasConnector::new(source.auth()))),
        SourceKind::Zendesk => Ok(Box::new(ZendeskConnector::new(source.tolerance()))),
        SourceKind::Intercom => Ok(Box::new(IntercomConnector)),
        SourceKind::Generic => match &source.signature {
            Some(sig) => Ok(Box::new(GenericConnector::new(
                sig.clone(),
                source.fields.clone().unwrap_or_default(),
            ))),
            // Config validation refuses a generic source without a signature scheme.
            None => Err(SetupError(
                "a generic source needs `signature = { header = \"…\" }`".into(),
            )),
        },
    }
}

/// The backfill client of a configured source, reading its `api` settings.
pub fn backfill_for(
    source: &SourceConfig,
    clock: SharedClock,
) -> Result<Box<dyn backfill::Backfill>, backfill::BackfillError> {
    let api = source.api.as_ref().ok_or_else(|| {
        backfill::BackfillError::NotConfigured(format!(
            "source `{}` has no `api = {{ base_url = \"…\", token = \"…\" }}`",
            source.id
        ))
    })?;
    let client = backfill::ApiClient::for_api(clock.clone(), api);
    match source.kind {
        SourceKind::Kustomer => Ok(Box::new(kustomer::backfill::KustomerBackfill::new(
            client, api,
        ))),
        SourceKind::Front => Ok(Box::new(front::FrontBackfill::new(client, api))),
        SourceKind::Freshdesk => Ok(Box::new(freshdesk::FreshdeskBackfill::new(api, clock))),
        SourceKind::Gorgias => Ok(Box::new(gorgias::GorgiasBackfill::new(api, clock)?)),
        SourceKind::Generic => match &source.signature {
            Some(sig) => Ok(Box::new(generic::GenericBackfill::new(
                client,
                api,
                GenericConnector::new(sig.clone(), source.fields.clone().unwrap_or_default()),
            ))),
            None => Err(backfill::BackfillError::NotConfigured(format!(
                "generic source `{}` has no `signature`",
                source.id
            ))),
        },
        SourceKind::Zendesk => Ok(Box::new(zendesk::backfill::ZendeskBackfill::new(
            clock, api,
        )?)),
        SourceKind::Intercom => Ok(Box::new(intercom::backfill::IntercomBackfill::new(
            clock, api,
        ))),
    }
}

/// Decodes hex of either case; `None` when it is not hex.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim()).ok()
}
