//! `[[destinations]]`: the operator's handlers, with their retry schedule and rate limit.

use serde::{Deserialize, Deserializer, Serialize};

use super::units::{Dur, Rate};
use crate::delivery::RetryPolicy;

/// `[[destinations]]`: the operator's handler.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Stable id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_…` or plain text).
    pub secret: String,
    /// How long one attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Attempts in all before the delivery is dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The backoff between attempts.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Attempts in flight at once to this destination.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts started per second at most (no limit when absent).
    #[serde(default)]
    pub rate_limit: Option<Rate>,
    /// When the handler's work counts as done: at its 2xx (`ack`, the default) or when it
    /// confirms with `POST /api/v1/deliveries/{id}/complete` (`receipt`).
    #[serde(default)]
    pub completion: CompletionMode,
    /// With `completion = "receipt"`: how long a received delivery may wait for its
    /// confirmation before it counts as stalled (`completion_stalled`).
    #[serde(default = "default_completion_deadline")]
    pub completion_deadline: Dur,
}

/// `completion`: what counts as the handler having done its work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionMode {
    /// A 2xx is done (today's behaviour of every webhook gateway).
    #[default]
    Ack,
    /// A 2xx means received; the work is done when the handler confirms it.
    Receipt,
}

fn default_completion_deadline() -> Dur {
    Dur::secs(600)
}

fn default_timeout() -> Dur {
    Dur::secs(10)
}

fn default_max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}

fn default_concurrency() -> usize {
    64
}

/// The backoff between attempts, written either as a table,
/// `retry = { initial = "5s", max = "1h", multiplier = 2.0, jitter = 0.2 }`, or as an explicit
/// schedule of delays, `retry = ["10s", "1m", "10m", "1h"]` (the last delay repeats).
#[derive(Debug, Clone, Serialize)]
pub struct RetryConfig {
    /// Delay after the first failure.
    pub initial: Dur,
    /// Longest delay between two attempts.
    pub max: Dur,
    /// Growth factor.
    pub multiplier: f64,
    /// Randomized fraction of each delay.
    pub jitter: f64,
    /// Explicit delays after the first, second, … failure; when given, `initial`, `max` and
    /// `multiplier` are not used.
    pub schedule: Vec<Dur>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = RetryPolicy::default();
        RetryConfig {
            initial: Dur(p.initial_delay),
            max: Dur(p.max_delay),
            multiplier: p.multiplier,
            jitter: p.jitter,
            schedule: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for RetryConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct Table {
            initial: Dur,
            max: Dur,
            multiplier: f64,
            jitter: f64,
            schedule: Vec<Dur>,
        }
        impl Default for Table {
            fn default() -> Self {
                let r = RetryConfig::default();
                Table {
                    initial: r.initial,
                    max: r.max,
                    multiplier: r.multiplier,
                    jitter: r.jitter,
                    schedule: r.schedule,
                }
            }
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Schedule(Vec<Dur>),
            Table(Table),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a table like { initial = \"5s\", max = \"1h\", multiplier = 2.0, jitter = 0.2 } \
                 or a list of delays like [\"10s\", \"1m\", \"10m\"]",
            )
        })?;
        Ok(match form {
            Form::Schedule(schedule) => RetryConfig {
                schedule,
                ..RetryConfig::default()
            },
            Form::Table(t) => RetryConfig {
                initial: t.initial,
                max: t.max,
                multiplier: t.multiplier,
                jitter: t.jitter,
                schedule: t.schedule,
            },
        })
    }
}

impl DestinationConfig {
    /// Whether this destination confirms its work (`completion = "receipt"`).
    pub fn uses_receipts(&self) -> bool {
        self.completion == CompletionMode::Receipt
    }

    /// The retry policy this destination's settings describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            initial_delay: self.retry.initial.0,
            max_delay: self.retry.max.0,
            multiplier: self.retry.multiplier,
            jitter: self.retry.jitter,
            schedule: self.retry.schedule.iter().map(|d| d.0).collect(),
        }
    }
}
