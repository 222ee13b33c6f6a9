//! Notifier senders for intake: what one notification says ([`Notice`]) and how it reaches
//! people and their tools — Slack, a JSON webhook, e-mail (SMTP with STARTTLS), PagerDuty
//! (Events API v2), Prometheus Alertmanager, and a dead-man's-switch ping for the watchdog.
//!
//! This crate only *sends*. Deciding what to send (alert lifecycle, grouping, repeat
//! intervals), to whom (routing by severity and labels), keeping it durable (the outbox) and
//! retrying is the caller's job; a [`NotifyError`] tells the caller whether a retry can help
//! and how long the receiver asked it to wait.
//!
//! ```no_run
//! # async fn example(cfg: intake_core::config::Config, clock: intake_core::SharedClock) -> Result<(), Box<dyn std::error::Error>> {
//! use intake_notify::{AlertItem, AlertStatus, LinkBuilder, Notice, NotifyContext};
//! let ctx = NotifyContext::new(clock.clone());
//! let notifiers = cfg.notifiers.iter().map(|n| intake_notify::build(n, &ctx)).collect::<Result<Vec<_>, _>>()?;
//! let links = LinkBuilder::new(cfg.server.public_url.as_deref())?;
//! let notice = Notice::alert(AlertStatus::Firing, "inbound_stopped", intake_core::config::Severity::Critical,
//!     [("tenant".to_string(), "maelys".to_string())].into(), vec![/* AlertItem … */], clock.now(), &links);
//! for n in &notifiers {
//!     if let Err(e) = n.send(&notice).await {
//!         if e.is_retryable() { /* keep it in the outbox, retry after e.retry_after() or back-off */ }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! **Invariants:** no notifier reads the wall clock (times come from the notice, and
//! `Retry-After` dates are read against the injected clock); error messages never contain a
//! notifier's URL path, query or routing key.

mod alertmanager;
mod email;
mod error;
mod http;
pub mod notice;
mod pagerduty;
mod render;
mod slack;
mod watchdog;
mod webhook;

use std::time::Duration;

use intake_core::config::{NotifierConfig, NotifierKind};
use intake_core::SharedClock;

pub use alertmanager::AlertmanagerNotifier;
pub use email::{EmailNotifier, SmtpSecurity};
pub use error::{BuildError, NotifyError};
pub use notice::{
    group_key, AlertItem, AlertStatus, DrillStatus, IncidentInfo, IncidentStatus, Labels,
    LinkBuilder, Links, Notice, NoticeKind, SilenceInfo, SilenceStatus, WatchdogStatus,
    DRILL_LABEL, DRILL_MARK,
};
pub use pagerduty::PagerDutyNotifier;
pub use slack::SlackNotifier;
pub use watchdog::{PingMethod, WatchdogPing};
pub use webhook::{WebhookNotifier, WEBHOOK_VERSION};

/// Something that delivers a [`Notice`] to one receiver.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The configured id (`[[notifiers]] id`).
    fn id(&self) -> &str;

    /// Whether this notifier has anything to do with `notice`. The caller should not queue a
    /// notice for a notifier that does not accept it (Alertmanager has no place for silence or
    /// incident announcements); `send` of such a notice does nothing and returns `Ok`.
    fn accepts(&self, notice: &Notice) -> bool {
        let _ = notice;
        true
    }

    /// Sends one notice. `Ok` means the receiver accepted it (2xx, SMTP 250). On error,
    /// [`NotifyError::is_retryable`] says whether the same notice may succeed later.
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError>;
}

/// What every notifier shares: the HTTP client, the clock and the per-send timeout.
#[derive(Clone)]
pub struct NotifyContext {
    /// The HTTP client (rustls; redirects are not followed).
    pub http: reqwest::Client,
    /// The injected clock, used to read `Retry-After` dates.
    pub clock: SharedClock,
    /// The longest one send may take, connection included.
    pub timeout: Duration,
    /// Extra trust anchors (DER) for SMTP TLS, besides the public web roots: a private CA, or
    /// a test's self-signed certificate.
    pub smtp_root_certificates: Vec<Vec<u8>>,
}

/// The default time one send may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl NotifyContext {
    /// A context with a fresh HTTP client and [`DEFAULT_TIMEOUT`].
    pub fn new(clock: SharedClock) -> Self {
        NotifyContext::with_timeout(clock, DEFAULT_TIMEOUT)
    }

    /// A context whose sends give up after `timeout`.
    pub fn with_timeout(clock: SharedClock, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")))
            .build()
            // Building fails only when the TLS backend cannot initialise; the default client
            // then fails each send with a clear error instead of failing startup.
            .unwrap_or_else(|_| reqwest::Client::new());
        NotifyContext {
            http,
            clock,
            timeout,
            smtp_root_certificates: Vec::new(),
        }
    }
}

/// Builds the notifier a `[[notifiers]]` entry describes.
pub fn build(
    config: &NotifierConfig,
    ctx: &NotifyContext,
) -> Result<Box<dyn Notifier>, BuildError> {
    Ok(match config.kind {
        NotifierKind::Slack => Box::new(SlackNotifier::new(config, ctx)?),
        NotifierKind::Webhook => Box::new(WebhookNotifier::new(config, ctx)?),
        NotifierKind::Email => Box::new(EmailNotifier::new(config, ctx)?),
        NotifierKind::Pagerduty => Box::new(PagerDutyNotifier::new(config, ctx)?),
        NotifierKind::Alertmanager => Box::new(AlertmanagerNotifier::new(config, ctx)?),
    })
}

/// Parses an `http(s)://` URL from a notifier's configuration.
pub(crate) fn http_url(id: &str, key: &str, raw: Option<&str>) -> Result<reqwest::Url, BuildError> {
    let raw = raw.ok_or_else(|| BuildError::new(id, format!("`{key}` is required")))?;
    let u = reqwest::Url::parse(raw)
        .map_err(|e| BuildError::new(id, format!("`{key}` is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(BuildError::new(
            id,
            format!("`{key}` must be an http:// or https:// URL"),
        ));
    }
    Ok(u)
}
