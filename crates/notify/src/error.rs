//! The two ways a send fails: worth retrying, or not.

use std::time::Duration;

/// Why a notification was not delivered, and whether trying again can help.
///
/// Messages never contain the notifier's URL path or query, nor its routing key: Slack webhook
/// paths and PagerDuty routing keys are secrets, and these messages end up in logs, in the
/// `notifier_failing` alert and in the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The receiver is down, overloaded or slow (5xx, 429, 408, timeout, connection refused,
    /// SMTP 4xx): keep the notification and try again, no earlier than `retry_after` when the
    /// receiver asked for that (`Retry-After`).
    #[error("{message}")]
    Retryable {
        /// What happened, for people.
        message: String,
        /// How long the receiver asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// The receiver refused this notification (4xx other than 408/429, SMTP 5xx, TLS not
    /// offered, a redirect): sending the same again will fail the same way. The message
    /// carries the first bytes of the receiver's answer.
    #[error("{message}")]
    Permanent {
        /// What happened, for people.
        message: String,
    },
}

impl NotifyError {
    /// A retryable error without a requested delay.
    pub fn retryable(message: impl Into<String>) -> Self {
        NotifyError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError::Permanent {
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NotifyError::Retryable { .. })
    }

    /// The delay the receiver asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Retryable { retry_after, .. } => *retry_after,
            NotifyError::Permanent { .. } => None,
        }
    }
}

/// A notifier that cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notifier `{id}`: {message}")]
pub struct BuildError {
    /// The notifier's id.
    pub id: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl BuildError {
    pub(crate) fn new(id: &str, message: impl Into<String>) -> Self {
        BuildError {
            id: id.to_string(),
            message: message.into(),
        }
    }
}
