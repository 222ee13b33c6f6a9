//! The normalized event: what every connector turns a system of record's webhook into, and
//! what a backfill derives from the same object, so that both paths agree on the dedupe key.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How an event entered intake. Carried to the handler in `intake-origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Received from the system of record's webhook.
    Webhook,
    /// Recovered from the system of record's API.
    Backfill,
    /// A synthetic event sent through the front door to prove the pipeline works.
    Canary,
    /// A re-delivery of an event that was already accepted.
    Replay,
}

impl Origin {
    /// The wire name, as stored and as sent in `intake-origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Webhook => "webhook",
            Origin::Backfill => "backfill",
            Origin::Canary => "canary",
            Origin::Replay => "replay",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "webhook" => Origin::Webhook,
            "backfill" => Origin::Backfill,
            "canary" => Origin::Canary,
            "replay" => Origin::Replay,
            _ => return None,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The normalized channel vocabulary that flows are monitored by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// E-mail.
    Email,
    /// Live chat and messaging widgets.
    Chat,
    /// SMS and messaging apps carried over phone numbers (WhatsApp included).
    Sms,
    /// Phone calls and voicemail.
    Voice,
    /// Social networks' direct messages and comments.
    Social,
    /// Anything else, including events that carry no channel at all.
    Other,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 6] = [
        Channel::Email,
        Channel::Chat,
        Channel::Sms,
        Channel::Voice,
        Channel::Social,
        Channel::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Sms => "sms",
            Channel::Voice => "voice",
            Channel::Social => "social",
            Channel::Other => "other",
        }
    }

    /// Parses a wire name of the normalized vocabulary.
    pub fn parse(s: &str) -> Option<Self> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Maps a system of record's own channel name onto the normalized vocabulary.
    pub fn normalize(raw: &str) -> Self {
        let raw = raw.to_ascii_lowercase();
        match raw.as_str() {
            "email" | "mail" | "e-mail" => Channel::Email,
            "chat" | "livechat" | "live_chat" | "messenger" | "web" | "widget" | "portal" => {
                Channel::Chat
            }
            "sms" | "mms" | "text" | "whatsapp" => Channel::Sms,
            "voice" | "phone" | "call" | "voicemail" => Channel::Voice,
            "facebook" | "twitter" | "twitter-dm" | "twitter_dm" | "instagram" | "social" => {
                Channel::Social
            }
            _ => Channel::Other,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connector extracts from a webhook body (or a backfill from an API object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    /// The system of record's own id for this webhook, when it has one.
    pub sor_event_id: Option<String>,
    /// The key events are deduplicated on within a source. Derivable from the object itself,
    /// so a webhook and its backfilled copy produce the same key.
    pub dedupe_key: String,
    /// The event type, in the system of record's own words (e.g. `kustomer.message.create`).
    pub event_type: String,
    /// The normalized channel.
    pub channel: Channel,
    /// The system of record's own channel name, when it gave one.
    pub raw_channel: Option<String>,
    /// The kind of object the event is about (`message`, `conversation`, …).
    pub object_type: Option<String>,
    /// The id of that object.
    pub object_id: Option<String>,
    /// The conversation (ticket) the object belongs to, when it belongs to one.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// When the system of record says the event happened.
    pub occurred_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_normalize() {
        assert_eq!(Channel::normalize("EMAIL"), Channel::Email);
        assert_eq!(Channel::normalize("whatsapp"), Channel::Sms);
        assert_eq!(Channel::normalize("twitter-dm"), Channel::Social);
        assert_eq!(Channel::normalize("carrier-pigeon"), Channel::Other);
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
    }
}
