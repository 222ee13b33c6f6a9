//! The data set every fake serves: one tenant's conversations and their messages over a time
//! span, generated deterministically from a seed. Each fake renders the same world in its own
//! vendor's shapes (ids, channel names, envelopes), so one test can drive any of them.
//!
//! [`World::generate`] draws Poisson traffic from a [`WorldSpec`]; [`World::story`] builds the
//! product story's outage with exact counts (236 chat and 813 email conversations in 20 hours,
//! ordinary traffic around it), for the recovery benchmark.

use std::time::Duration;

use intake_core::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A channel in vendor-neutral terms; each fake maps it to its vendor's own name (Kustomer
/// `email`, Zendesk `via.channel = "email"`, Freshdesk `source = 1`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Medium {
    /// E-mail.
    Email,
    /// Live chat.
    Chat,
    /// SMS.
    Sms,
    /// Phone.
    Voice,
    /// A social network (Facebook, Instagram, X).
    Social,
    /// A web form or API-created ticket.
    Web,
}

impl Medium {
    /// Every medium.
    pub const ALL: [Medium; 6] = [
        Medium::Email,
        Medium::Chat,
        Medium::Sms,
        Medium::Voice,
        Medium::Social,
        Medium::Web,
    ];
}

/// Whether a message came from the customer or went to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From an agent.
    Outbound,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique across the world (fakes prefix or format it in their vendor's style).
    pub seq: u64,
    /// When it was written.
    pub created_at: Timestamp,
    /// Who wrote it.
    pub direction: Direction,
    /// A short text.
    pub preview: String,
}

/// One conversation (a ticket, in most vendors' words).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Unique across the world.
    pub seq: u64,
    /// The channel it came in on.
    pub medium: Medium,
    /// When it was created (its first message's time).
    pub created_at: Timestamp,
    /// Its messages, oldest first; the first is inbound.
    pub messages: Vec<Message>,
    /// The customer's number in the world.
    pub customer: u64,
    /// A subject line.
    pub subject: String,
}

impl Conversation {
    /// When it was last changed: its last message's time.
    pub fn updated_at(&self) -> Timestamp {
        self.messages
            .last()
            .map_or(self.created_at, |m| m.created_at)
    }
}

/// How to generate a world.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    /// The random seed: the same spec always gives the same world.
    pub seed: u64,
    /// First instant conversations may start.
    pub start: Timestamp,
    /// Last instant anything may happen.
    pub end: Timestamp,
    /// New conversations per hour, by medium.
    pub per_hour: Vec<(Medium, f64)>,
    /// Messages per conversation, inclusive range (at least 1).
    pub messages: (u32, u32),
    /// The largest gap between two messages of a conversation.
    pub reply_within: Duration,
}

impl WorldSpec {
    /// A small mixed world: about 30 conversations an hour (email, chat, sms, voice, social),
    /// 1–4 messages each, over `hours` hours from `start`.
    pub fn mixed(seed: u64, start: Timestamp, hours: u64) -> Self {
        WorldSpec {
            seed,
            start,
            end: start.plus(Duration::from_secs(hours * 3600)),
            per_hour: vec![
                (Medium::Email, 12.0),
                (Medium::Chat, 10.0),
                (Medium::Sms, 4.0),
                (Medium::Voice, 2.0),
                (Medium::Social, 2.0),
            ],
            messages: (1, 4),
            reply_within: Duration::from_secs(20 * 60),
        }
    }
}

/// One tenant's conversations, ordered by creation time.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// The conversations.
    pub conversations: Vec<Conversation>,
}

const PREVIEWS: [&str; 6] = [
    "Hello, my order has not arrived",
    "Can I change the delivery address?",
    "The app crashes when I log in",
    "Thanks, that solved it",
    "I was charged twice this month",
    "Where is my refund?",
];

/// How long the story's outage lasted: the 20 hours in which webhooks were acknowledged and
/// then ignored.
pub const STORY_WINDOW: Duration = Duration::from_secs(20 * 3600);
/// How much ordinary traffic [`World::story`] generates on each side of the outage.
pub const STORY_MARGIN: Duration = Duration::from_secs(6 * 3600);
/// The conversations created during the story's outage: 236 chat and 813 email.
pub const STORY_CONVERSATIONS: [(Medium, usize); 2] = [(Medium::Chat, 236), (Medium::Email, 813)];

/// The story's messages: 1–4 per conversation, answered within 20 minutes.
const STORY_MESSAGES: (u32, u32) = (1, 4);
const STORY_REPLY_WITHIN: Duration = Duration::from_secs(20 * 60);

impl World {
    /// Generates the world `spec` describes. Arrivals are a Poisson process per medium;
    /// messages stay inside the spec's span.
    pub fn generate(spec: &WorldSpec) -> World {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let span_ms = (spec.end.as_millis() - spec.start.as_millis()).max(0);
        let mut conversations = Vec::new();
        for &(medium, per_hour) in &spec.per_hour {
            if per_hour <= 0.0 {
                continue;
            }
            let mean_gap_ms = 3_600_000.0 / per_hour;
            let mut t = 0.0f64;
            loop {
                // Exponential inter-arrival times.
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                t += -u.ln() * mean_gap_ms;
                if t as i64 > span_ms {
                    break;
                }
                let created_at = Timestamp(spec.start.as_millis() + t as i64);
                conversations.push(conversation(&mut rng, spec, medium, created_at));
            }
        }
        World::numbered(conversations)
    }

    /// The story's world: exactly [`STORY_CONVERSATIONS`] (236 chat, 813 email) created inside
    /// the outage window `[window_start, window_start + STORY_WINDOW]` (both ends inclusive),
    /// each with 1–4 messages inside that window, and [`STORY_MARGIN`] of ordinary traffic with
    /// the same mix and rate on each side. A conversation created before the window may be
    /// answered inside it, as real ones are; conversations created after it stay after it.
    /// Creation times are uniform within each part; the same seed always gives the same world.
    pub fn story(seed: u64, window_start: Timestamp) -> World {
        let window_end = window_start.plus(STORY_WINDOW);
        let world_start = window_start.minus(STORY_MARGIN);
        let world_end = window_end.plus(STORY_MARGIN);
        let spec = |end: Timestamp| WorldSpec {
            seed,
            start: world_start,
            end,
            per_hour: Vec::new(),
            messages: STORY_MESSAGES,
            reply_within: STORY_REPLY_WITHIN,
        };
        // (first creation, last creation, last instant a message may have)
        let ms = |t: Timestamp| t.as_millis();
        let parts = [
            (ms(world_start), ms(window_start) - 1, world_end),
            (ms(window_start), ms(window_end), window_end),
            (ms(window_end) + 1, ms(world_end), world_end),
        ];
        let window_ms = STORY_WINDOW.as_millis() as f64;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut conversations = Vec::new();
        for (from, to, last) in parts {
            // The margins carry the window's rate: 6/20 of its counts, rounded.
            let share = (to - from + 1) as f64 / window_ms;
            for &(medium, in_window) in &STORY_CONVERSATIONS {
                let n = (in_window as f64 * share).round() as usize;
                for _ in 0..n {
                    let created_at = Timestamp(rng.random_range(from..=to));
                    conversations.push(conversation(&mut rng, &spec(last), medium, created_at));
                }
            }
        }
        World::numbered(conversations)
    }

    /// The world of these conversations, ordered by creation, with their sequence numbers.
    fn numbered(mut conversations: Vec<Conversation>) -> World {
        conversations.sort_by_key(|c| c.created_at);
        let mut message_seq = 0;
        for (i, c) in conversations.iter_mut().enumerate() {
            c.seq = i as u64 + 1;
            for m in &mut c.messages {
                message_seq += 1;
                m.seq = message_seq;
            }
        }
        World { conversations }
    }

    /// Every message, with its conversation, in time order.
    pub fn messages(&self) -> Vec<(&Conversation, &Message)> {
        let mut all: Vec<_> = self
            .conversations
            .iter()
            .flat_map(|c| c.messages.iter().map(move |m| (c, m)))
            .collect();
        all.sort_by_key(|(_, m)| (m.created_at, m.seq));
        all
    }

    /// How many conversations of each medium were created in `[from, to]`.
    pub fn count_by_medium(&self, from: Timestamp, to: Timestamp) -> Vec<(Medium, usize)> {
        Medium::ALL
            .iter()
            .map(|&m| {
                let n = self
                    .conversations
                    .iter()
                    .filter(|c| c.medium == m && from <= c.created_at && c.created_at <= to)
                    .count();
                (m, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// One conversation of `medium` created at `created_at`, with `spec.messages` messages at most
/// `spec.reply_within` apart, none after `spec.end` (so it may have fewer). Its sequence
/// numbers are set by [`World::numbered`].
fn conversation(
    rng: &mut StdRng,
    spec: &WorldSpec,
    medium: Medium,
    created_at: Timestamp,
) -> Conversation {
    let (lo, hi) = spec.messages;
    let count = rng.random_range(lo.max(1)..=hi.max(lo.max(1)));
    let mut messages = Vec::with_capacity(count as usize);
    let mut at = created_at;
    for i in 0..count {
        if i > 0 {
            let gap = rng.random_range(1_000..=spec.reply_within.as_millis().max(1_000) as i64);
            at = Timestamp(at.as_millis() + gap);
            if at > spec.end {
                break;
            }
        }
        messages.push(Message {
            seq: 0,
            created_at: at,
            direction: if i % 2 == 0 {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            preview: PREVIEWS[rng.random_range(0..PREVIEWS.len())].to_string(),
        });
    }
    Conversation {
        seq: 0,
        medium,
        created_at,
        messages,
        customer: rng.random_range(1..=500),
        subject: PREVIEWS[rng.random_range(0..PREVIEWS.len())].to_string(),
    }
}

/// RFC 3339 with milliseconds and `Z`, as most vendors write times.
pub fn rfc3339_millis(t: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.as_millis()) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// RFC 3339 to the second with `Z` (Zendesk, Freshdesk, Gorgias style).
pub fn rfc3339_secs(t: Timestamp) -> String {
    match jiff::Timestamp::from_second(t.as_millis().div_euclid(1000)) {
        Ok(ts) => format!("{ts}"),
        Err(_) => String::from("1970-01-01T00:00:00Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world_and_rates_roughly_hold() {
        let start = Timestamp(1_795_000_000_000);
        let spec = WorldSpec::mixed(7, start, 24);
        let a = World::generate(&spec);
        assert_eq!(a, World::generate(&spec));
        // 30/h over 24 h: 720 expected; Poisson sd ~27.
        let n = a.conversations.len();
        assert!((600..=840).contains(&n), "{n} conversations");
        for c in &a.conversations {
            assert!(!c.messages.is_empty());
            assert!(c.created_at >= spec.start && c.updated_at() <= spec.end);
        }
        let seqs: std::collections::HashSet<_> = a.messages().iter().map(|(_, m)| m.seq).collect();
        assert_eq!(seqs.len(), a.messages().len());
    }

    #[test]
    fn the_story_world_has_exactly_the_lost_conversations_inside_its_window() {
        let window_start = Timestamp::parse_rfc3339("2026-11-27T02:00:00Z").unwrap();
        let window_end = window_start.plus(STORY_WINDOW);
        let world = World::story(42, window_start);
        assert_eq!(
            world,
            World::story(42, window_start),
            "deterministic by seed"
        );
        assert_ne!(world, World::story(43, window_start));

        let inside = world.count_by_medium(window_start, window_end);
        assert_eq!(inside, vec![(Medium::Email, 813), (Medium::Chat, 236)]);
        for c in &world.conversations {
            assert!(!c.messages.is_empty() && c.messages.len() <= 4);
            assert!(c
                .messages
                .windows(2)
                .all(|w| w[0].created_at <= w[1].created_at));
            let created_inside = window_start <= c.created_at && c.created_at <= window_end;
            if created_inside {
                assert!(c.updated_at() <= window_end, "a message after the window");
            }
            assert!(c.created_at >= window_start.minus(STORY_MARGIN));
            assert!(c.updated_at() <= window_end.plus(STORY_MARGIN));
        }
        // Ordinary traffic on both sides, at the window's rate (6/20 of its counts).
        let before = world.count_by_medium(
            window_start.minus(STORY_MARGIN),
            window_start.minus(Duration::from_millis(1)),
        );
        let after = world.count_by_medium(
            window_end.plus(Duration::from_millis(1)),
            window_end.plus(STORY_MARGIN),
        );
        assert_eq!(before, vec![(Medium::Email, 244), (Medium::Chat, 71)]);
        assert_eq!(after, before);
        assert_eq!(world.conversations.len(), 1049 + 2 * 315);
        let seqs: std::collections::HashSet<_> =
            world.messages().iter().map(|(_, m)| m.seq).collect();
        assert_eq!(seqs.len(), world.messages().len());
    }

    #[test]
    fn times_render_like_vendors_write_them() {
        let t = Timestamp(1_795_000_000_123);
        assert!(
            rfc3339_millis(t).ends_with(".123Z"),
            "{}",
            rfc3339_millis(t)
        );
        assert!(rfc3339_secs(t).ends_with(":40Z"), "{}", rfc3339_secs(t));
    }
}
