//! Incidents as data: their statuses and severities, which status changes a person may make,
//! which alerts may declare one by themselves, and the notice templates tenants read (the
//! `{placeholder}` language of `[incidents] templates`, with plain-language defaults).
//!
//! Pure values and functions; the server keeps incidents in the store, decides when to notify
//! and renders notices with [`Template::render`]. The configuration's validator checks
//! operators' templates with [`Template::parse`], so a template with a typo is refused before
//! the server starts, not when an outage needs it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The rules whose critical alerts may declare an incident by themselves
/// (`[incidents] auto_declare`, `[[rules]] auto_declare`): those that name a tenant and mean
/// its traffic is not getting through.
pub const AUTO_DECLARE_RULES: [&str; 5] = [
    "inbound_stopped",
    "canary_failed",
    "queue_stalled",
    "source_gap",
    "dead_letters",
];

/// Where an incident is in its life: `investigating → identified → monitoring → resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Something is wrong; the cause is not known yet.
    Investigating,
    /// The cause is known; a fix is being made.
    Identified,
    /// A fix is in place; people watch that it holds.
    Monitoring,
    /// Over.
    Resolved,
}

impl IncidentState {
    /// Every status, in lifecycle order.
    pub const ALL: [IncidentState; 4] = [
        IncidentState::Investigating,
        IncidentState::Identified,
        IncidentState::Monitoring,
        IncidentState::Resolved,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Investigating => "investigating",
            IncidentState::Identified => "identified",
            IncidentState::Monitoring => "monitoring",
            IncidentState::Resolved => "resolved",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        IncidentState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The status as a tenant reads it in a notice.
    pub fn in_words(self) -> &'static str {
        match self {
            IncidentState::Investigating => "investigating (we are looking for the cause)",
            IncidentState::Identified => "identified (we know the cause and are fixing it)",
            IncidentState::Monitoring => "monitoring (a fix is in place and we are watching it)",
            IncidentState::Resolved => "resolved",
        }
    }

    /// Whether a person may move an open incident from `self` to `to` with an update.
    ///
    /// Any open status may follow any other — a fix that did not hold sends `monitoring` back
    /// to `investigating` — but a resolved incident is over (a new outage is a new incident,
    /// with its own impact window), and an update does not resolve: resolving is its own step
    /// (`intake incident resolve`), because it is the one that tells every tenant it is over.
    pub fn check_update(self, to: IncidentState) -> Result<(), TransitionError> {
        match (self, to) {
            (IncidentState::Resolved, _) => Err(TransitionError::AlreadyResolved),
            (_, IncidentState::Resolved) => Err(TransitionError::ResolveByUpdate),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a status change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The incident is resolved already.
    #[error("the incident is resolved; a new outage is a new incident (declare one)")]
    AlreadyResolved,
    /// `resolved` was asked of an update.
    #[error("an update does not resolve an incident: resolve it with `intake incident resolve ID` (POST /api/v1/incidents/{{id}}/resolve), which tells every tenant it is over")]
    ResolveByUpdate,
}

/// How bad an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSeverity {
    /// Work is lost or stopped for a tenant.
    Critical,
    /// Work is delayed or partly failing.
    Major,
    /// Little impact.
    Minor,
}

impl IncidentSeverity {
    /// Every severity, from the worst.
    pub const ALL: [IncidentSeverity; 3] = [
        IncidentSeverity::Critical,
        IncidentSeverity::Major,
        IncidentSeverity::Minor,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSeverity::Critical => "critical",
            IncidentSeverity::Major => "major",
            IncidentSeverity::Minor => "minor",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        IncidentSeverity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for IncidentSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The notices a template may be written for, by `[incidents] templates` key.
pub const TEMPLATE_NAMES: [&str; 3] = ["declared", "updated", "resolved"];

/// What a template may say, `{name}`, and what each one is.
pub const PLACEHOLDERS: [(&str, &str); 14] = [
    ("tenant", "the tenant's name (its id when it has none)"),
    ("tenant_id", "the tenant's id"),
    ("title", "the incident's title"),
    (
        "message",
        "what this declaration, update or resolution says",
    ),
    ("status", "the status in plain words"),
    ("severity", "critical, major or minor"),
    (
        "affected",
        "what is affected: the tenant's sources and channels",
    ),
    ("impact_start", "when the impact began (UTC)"),
    ("next_update", "when the next update is due (UTC)"),
    (
        "resolved_at",
        "when it was resolved (UTC); empty while open",
    ),
    (
        "duration",
        "how long the impact lasted, or has lasted so far",
    ),
    ("incident", "the incident's id, a reference to quote"),
    ("declared_at", "when the incident was declared (UTC)"),
    (
        "drill",
        "for a fire drill's incident, a first paragraph saying it is a drill and no real outage happened; empty otherwise",
    ),
];

/// What `{drill}` says in a drill incident's tenant notice, `drill` being the drill's id: a
/// paragraph of its own, so that a template starting with `{drill}` reads well either way. It
/// does not pretend nothing happened: a drill holds or refuses the target's webhooks for a
/// bounded time, and they are delivered when it ends.
pub fn drill_notice_line(drill: &str) -> String {
    format!(
        "[DRILL] This is a fire drill ({drill}), not a real outage: we caused this on purpose, \
         for a short time, to test how we detect problems and tell you about them. Nothing is \
         lost: webhooks held during the drill are delivered when it ends.\n\n"
    )
}

/// The default tenant notice when an incident is declared.
pub const DEFAULT_DECLARED: &str = "\
{drill}We are investigating a problem that affects the webhooks we receive for {tenant}.

What is happening: {message}
What is affected: {affected}.
Since: {impact_start}.
What you need to do: nothing at this time. You do not need to resend anything: once this is \
fixed we recover what was delayed or missed, from your systems' own records where needed. We \
will tell you if you need to act.
Next update: by {next_update}, or sooner if anything changes.

Status: {status}.
Reference: {incident}";

/// The default tenant notice of an update.
pub const DEFAULT_UPDATED: &str = "\
{drill}Update on the problem affecting the webhooks we receive for {tenant}.

{message}

Status: {status}.
What is affected: {affected}, since {impact_start}.
What you need to do: nothing at this time; we will tell you if that changes.
Next update: by {next_update}, or sooner if anything changes.

Reference: {incident}";

/// The default tenant notice when an incident is resolved.
pub const DEFAULT_RESOLVED: &str = "\
{drill}Resolved: the problem affecting the webhooks we receive for {tenant} is over.

{message}

What was affected: {affected}, from {impact_start} to {resolved_at} ({duration}).
What you need to do: nothing. Events that were delayed or missed during this time are \
delivered or being recovered; if anything still looks wrong to you, contact us and quote \
the reference below.

Reference: {incident}";

/// The default template for a notice name of [`TEMPLATE_NAMES`].
pub fn default_template(name: &str) -> Option<&'static str> {
    match name {
        "declared" => Some(DEFAULT_DECLARED),
        "updated" => Some(DEFAULT_UPDATED),
        "resolved" => Some(DEFAULT_RESOLVED),
        _ => None,
    }
}

const OPEN: char = '\u{7b}';
const CLOSE: char = '\u{7d}';

/// A notice template: text with `{placeholder}`s (see [`PLACEHOLDERS`]); `{{` and `}}` write
/// a brace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(&'static str),
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Nothing to say.
    #[error("is empty")]
    Empty,
    /// `{name}` names no placeholder.
    #[error("`{{{0}}}` is not a placeholder (known: {known}); write `{{{{` for a literal brace", known = known_placeholders())]
    Unknown(String),
    /// A `{` without its `}`, or a lone `}`.
    #[error("has an unmatched brace at character {0}; write `{{{{` or `}}}}` for a literal one")]
    Unmatched(usize),
}

fn known_placeholders() -> String {
    PLACEHOLDERS
        .iter()
        .map(|(n, _)| format!("{OPEN}{n}{CLOSE}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Template {
    /// Parses a template, refusing unknown placeholders and unmatched braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                OPEN if chars.peek().is_some_and(|(_, n)| *n == OPEN) => {
                    chars.next();
                    literal.push(OPEN);
                }
                CLOSE if chars.peek().is_some_and(|(_, n)| *n == CLOSE) => {
                    chars.next();
                    literal.push(CLOSE);
                }
                OPEN => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, n) in chars.by_ref() {
                        if n == CLOSE {
                            closed = true;
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(TemplateError::Unmatched(i));
                    }
                    let known = PLACEHOLDERS
                        .iter()
                        .find(|(p, _)| *p == name.trim())
                        .map(|(p, _)| *p)
                        .ok_or(TemplateError::Unknown(name))?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Value(known));
                }
                CLOSE => return Err(TemplateError::Unmatched(i)),
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The text with each placeholder replaced by `value(name)`.
    pub fn render(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value(name) => out.push_str(&value(name)),
            }
        }
        out
    }

    /// The placeholders it uses, in order.
    pub fn placeholders(&self) -> Vec<&'static str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Value(n) => Some(*n),
                Part::Text(_) => None,
            })
            .collect()
    }
}

/// Whether `text` names `word` as a whole word, ignoring case: `maelys` in "Maelys' chats" but
/// not in "maelysian". Used to keep one tenant's name out of another tenant's notice.
pub fn mentions(text: &str, word: &str) -> bool {
    let word = word.trim();
    if word.is_empty() {
        return false;
    }
    let hay = text.to_lowercase();
    let needle = word.to_lowercase();
    let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
    hay.match_indices(&needle).any(|(i, m)| {
        boundary(hay[..i].chars().next_back()) && boundary(hay[i + m.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_changes_a_person_may_make() {
        use IncidentState::*;
        let cases = [
            (Investigating, Identified, Ok(())),
            (Identified, Monitoring, Ok(())),
            (Monitoring, Investigating, Ok(())),
            (Investigating, Investigating, Ok(())),
            (Monitoring, Resolved, Err(TransitionError::ResolveByUpdate)),
            (Resolved, Monitoring, Err(TransitionError::AlreadyResolved)),
            (Resolved, Resolved, Err(TransitionError::AlreadyResolved)),
        ];
        for (from, to, want) in cases {
            assert_eq!(from.check_update(to), want, "{from} → {to}");
        }
        for s in IncidentState::ALL {
            assert_eq!(IncidentState::parse(s.as_str()), Some(s));
        }
        assert_eq!(IncidentState::parse("fixed"), None);
        assert_eq!(
            IncidentSeverity::parse("major"),
            Some(IncidentSeverity::Major)
        );
        assert_eq!(IncidentSeverity::parse("sev1"), None);
    }

    #[test]
    fn templates_render_placeholders_and_escaped_braces() {
        let t = Template::parse("Hello {tenant}, {{literal}} {title}!").unwrap();
        let out = t.render(|n| match n {
            "tenant" => "Maelys".into(),
            "title" => "Webhooks delayed".into(),
            _ => String::new(),
        });
        assert_eq!(out, "Hello Maelys, {literal} Webhooks delayed!");
        assert_eq!(t.placeholders(), vec!["tenant", "title"]);
        assert_eq!(
            Template::parse(" { tenant } ").unwrap().placeholders(),
            ["tenant"]
        );
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let cases = [
            ("", TemplateError::Empty),
            ("   ", TemplateError::Empty),
            ("Hi {tennant}", TemplateError::Unknown("tennant".into())),
            ("Hi {tenant", TemplateError::Unmatched(3)),
            ("Hi tenant}", TemplateError::Unmatched(9)),
        ];
        for (text, want) in cases {
            assert_eq!(Template::parse(text), Err(want), "{text:?}");
        }
        let msg = Template::parse("{x}").unwrap_err().to_string();
        assert!(msg.contains("`{x}` is not a placeholder"), "{msg}");
        assert!(msg.contains("{tenant}"), "{msg}");
    }

    #[test]
    fn the_default_templates_parse_and_every_name_has_one() {
        for name in TEMPLATE_NAMES {
            let t = default_template(name).unwrap();
            // A drill's notice says so before anything else.
            assert_eq!(Template::parse(t).unwrap().placeholders()[0], "drill");
        }
        assert!(drill_notice_line("drl_1").starts_with("[DRILL] This is a fire drill (drl_1)"));
        assert_eq!(default_template("other"), None);
    }

    #[test]
    fn mentions_are_whole_words_ignoring_case() {
        let cases = [
            ("Maelys' chats are late", "maelys", true),
            ("maelysian", "maelys", false),
            ("for other-tenant only", "other", true),
            ("another problem", "other", false),
            ("ACME down", "acme", true),
            ("anything", "", false),
        ];
        for (text, word, want) in cases {
            assert_eq!(mentions(text, word), want, "{text:?} {word:?}");
        }
    }
}
