//! `kind = "slack"`: a Slack incoming webhook. The message says what, who, how bad, since when
//! and why (with the numbers), lists every alert of a group, links to the dashboard and the
//! events query, and marks resolutions clearly (✅ RESOLVED).

use intake_core::config::NotifierConfig;
use intake_core::SharedClock;
use serde_json::{json, Value};

use crate::notice::{AlertStatus, IncidentStatus, NoticeKind, SilenceStatus, DRILL_MARK};
use crate::render;
use crate::{http, http_url, BuildError, Notice, Notifier, NotifyContext, NotifyError};

/// Slack rejects a header block longer than this.
const HEADER_MAX: usize = 150;
/// Slack rejects a section text longer than this.
const SECTION_MAX: usize = 3000;
/// The most alerts of a group listed one by one; the rest are counted.
const LISTED_ALERTS: usize = 20;

/// Posts to a Slack incoming-webhook URL.
pub struct SlackNotifier {
    id: String,
    url: reqwest::Url,
    http: reqwest::Client,
    clock: SharedClock,
}

impl SlackNotifier {
    /// Builds from `[[notifiers]]` with `url` (the incoming-webhook URL).
    pub fn new(config: &NotifierConfig, ctx: &NotifyContext) -> Result<Self, BuildError> {
        Ok(SlackNotifier {
            id: config.id.clone(),
            url: http_url(&config.id, "url", config.url.as_deref())?,
            http: ctx.http.clone(),
            clock: ctx.clock.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for SlackNotifier {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        http::post_json(&self.http, &self.url, &message(notice), self.clock.now()).await
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; everything else is literal.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn emoji(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Alert(AlertStatus::Firing) => "🔴",
        NoticeKind::Alert(AlertStatus::Repeat) => "🔁",
        NoticeKind::Alert(AlertStatus::Resolved) => "✅",
        NoticeKind::Silence(SilenceStatus::Created) => "🔕",
        NoticeKind::Silence(SilenceStatus::Expired) => "🔔",
        NoticeKind::Watchdog(_) => "💓",
        NoticeKind::Incident(IncidentStatus::Resolved) => "✅",
        NoticeKind::Incident(_) => "🚨",
        NoticeKind::Drill(_) => "🧯",
    }
}

/// The incoming-webhook body for `n`: `text` (the fallback shown in notifications) and
/// `blocks` (header, facts, the alerts of a group, links).
pub(crate) fn message(n: &Notice) -> Value {
    let title = match &n.rule {
        Some(rule) if matches!(n.kind, NoticeKind::Alert(_)) => {
            render::rule_title(rule).to_string()
        }
        _ => match (&n.silence, &n.incident) {
            (Some(_), _) => "Silence".to_string(),
            // A drill incident's title carries `[DRILL]`, which the header puts first.
            (_, Some(i)) => i
                .title
                .strip_prefix(DRILL_MARK)
                .unwrap_or(&i.title)
                .trim_start()
                .to_string(),
            _ if matches!(n.kind, NoticeKind::Drill(_)) => "Fire drill".to_string(),
            _ => "intake".to_string(),
        },
    };
    let mut header = format!("{} {}: {title}", emoji(n.kind), render::status_word(n.kind));
    if n.drill.is_some() {
        header = format!("{DRILL_MARK} {header}");
    }

    let mut facts = Vec::new();
    if let Some(rule) = &n.rule {
        facts.push(format!("*Rule:* `{}`", esc(rule)));
    }
    if !n.labels.is_empty() {
        facts.push(format!("*Who:* {}", esc(&render::labels_text(&n.labels))));
    }
    facts.push(format!("*Severity:* {}", render::severity(n)));
    match n.alerts.as_slice() {
        [one] => {
            if let Some(v) = one.value {
                facts.push(format!("*Value:* {}", render::value(v)));
            }
            facts.push(format!("*When:* {}", render::item_when(one, n.at)));
        }
        _ => {
            if let Some(since) = n.since {
                facts.push(format!(
                    "*Since:* {since} ({} before this message)",
                    render::duration(n.at.since(since))
                ));
            }
        }
    }
    if let Some(s) = &n.silence {
        facts.push(format!(
            "*Muting:* {} from {} to {}",
            esc(&render::labels_text(&s.matchers)),
            s.starts_at,
            s.ends_at
        ));
        facts.push(format!("*By:* {}", esc(&s.created_by)));
    }
    if let Some(i) = &n.incident {
        if let Some(s) = i.status {
            facts.push(format!("*Status:* {s}"));
        }
        for (label, list) in [
            ("Tenants", &i.tenants),
            ("Sources", &i.sources),
            ("Channels", &i.channels),
        ] {
            if !list.is_empty() {
                facts.push(format!("*{label}:* {}", esc(&list.join(", "))));
            }
        }
        if let Some(c) = &i.commander {
            facts.push(format!("*Lead:* {}", esc(c)));
        }
    }
    facts.push(format!("*Why:* {}", esc(&n.reason)));

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&header, HEADER_MAX), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&facts.join("\n"), SECTION_MAX)}}),
    ];

    if n.alerts.len() > 1 {
        let mut lines: Vec<String> = n
            .alerts
            .iter()
            .take(LISTED_ALERTS)
            .map(|a| {
                let line = esc(&render::item_line(a, &n.labels, n.at));
                match &a.links.events {
                    Some(url) => format!("• {line} (<{url}|events>)"),
                    None => format!("• {line}"),
                }
            })
            .collect();
        if n.alerts.len() > LISTED_ALERTS {
            lines.push(format!("…and {} more", n.alerts.len() - LISTED_ALERTS));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&lines.join("\n"), SECTION_MAX)}}));
    }

    let mut links = Vec::new();
    if let Some(d) = &n.links.dashboard {
        links.push(format!("<{d}|Dashboard>"));
    }
    if let Some(e) = &n.links.events {
        links.push(format!("<{e}|Events API query>"));
    }
    links.push(format!("key `{}`", esc(&n.key)));
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": links.join(" · ")}]}),
    );

    json!({ "text": esc(&n.summary), "blocks": blocks })
}
