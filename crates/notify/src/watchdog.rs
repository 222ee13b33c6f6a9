//! The watchdog's ping to an external dead-man's switch (Healthchecks.io, Dead Man's Snitch,
//! Cronitor, a PagerDuty/Opsgenie heartbeat URL): a plain request to a URL, every interval.
//! The switch alarms when the pings stop, which is exactly when intake cannot alarm by itself.

use intake_core::SharedClock;
use reqwest::Method;

use crate::notice::NoticeKind;
use crate::{http, http_url, BuildError, Notice, Notifier, NotifyContext, NotifyError};

/// How the ping is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PingMethod {
    /// `GET url` with no body (every service accepts it).
    #[default]
    Get,
    /// `POST url` with the notice's summary and reason as a text body (Healthchecks.io shows
    /// it in the check's log).
    Post,
}

/// Pings a dead-man's-switch URL.
pub struct WatchdogPing {
    id: String,
    url: reqwest::Url,
    method: PingMethod,
    http: reqwest::Client,
    clock: SharedClock,
}

impl WatchdogPing {
    /// A ping to `url` (e.g. `https://hc-ping.com/<uuid>` or `https://nosnch.in/<token>`), named
    /// `id` in errors and logs.
    pub fn new(
        id: &str,
        url: &str,
        method: PingMethod,
        ctx: &NotifyContext,
    ) -> Result<Self, BuildError> {
        Ok(WatchdogPing {
            id: id.to_string(),
            url: http_url(id, "url", Some(url))?,
            method,
            http: ctx.http.clone(),
            clock: ctx.clock.clone(),
        })
    }

    /// Pings once. `message` is the body of a `POST` ping (ignored for `GET`).
    pub async fn ping(&self, message: &str) -> Result<(), NotifyError> {
        let (method, body) = match self.method {
            PingMethod::Get => (Method::GET, None),
            PingMethod::Post => (Method::POST, Some(message.to_string())),
        };
        http::send_text(&self.http, method, &self.url, body, self.clock.now()).await
    }
}

#[async_trait::async_trait]
impl Notifier for WatchdogPing {
    fn id(&self) -> &str {
        &self.id
    }

    /// Only the watchdog heartbeat goes to a dead-man's switch: any other notice would count
    /// as a heartbeat and could hide the watchdog's own silence.
    fn accepts(&self, notice: &Notice) -> bool {
        matches!(notice.kind, NoticeKind::Watchdog(_))
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        if !self.accepts(notice) {
            return Ok(());
        }
        self.ping(&format!("{}\n{}", notice.summary, notice.reason))
            .await
    }
}
