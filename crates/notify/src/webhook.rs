//! `kind = "webhook"`: the notice itself as JSON, versioned, for any program to consume.

use intake_core::config::NotifierConfig;
use intake_core::SharedClock;
use serde::Serialize;

use crate::{http, http_url, BuildError, Notice, Notifier, NotifyContext, NotifyError};

/// The version of the webhook body. It changes only when a field changes meaning or goes away;
/// new fields may appear within a version.
pub const WEBHOOK_VERSION: u32 = 1;

/// Posts `{"version": 1, …the notice…}` to a URL.
pub struct WebhookNotifier {
    id: String,
    url: reqwest::Url,
    http: reqwest::Client,
    clock: SharedClock,
}

/// The documented body: the version, then every field of the notice.
#[derive(Serialize)]
struct Body<'a> {
    version: u32,
    #[serde(flatten)]
    notice: &'a Notice,
}

impl WebhookNotifier {
    /// Builds from `[[notifiers]]` with `url`.
    pub fn new(config: &NotifierConfig, ctx: &NotifyContext) -> Result<Self, BuildError> {
        Ok(WebhookNotifier {
            id: config.id.clone(),
            url: http_url(&config.id, "url", config.url.as_deref())?,
            http: ctx.http.clone(),
            clock: ctx.clock.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let body = Body {
            version: WEBHOOK_VERSION,
            notice,
        };
        http::post_json(&self.http, &self.url, &body, self.clock.now()).await
    }
}
