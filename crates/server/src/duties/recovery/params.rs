//! What a recovery job is asked to do: the request as the API receives it, checked against the
//! configuration into the [`Params`] a job stores and runs by. A pure decision: the checks run
//! in a fixed order and the first that fails is the answer, with a message that says what to
//! change.

use std::time::Duration;

use intake_core::config::{Config, SourceConfig};
use intake_core::delivery::{CompletionState, DeliveryState};
use intake_core::event::Origin;
use intake_core::Timestamp;
use intake_store::RecoveryKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The overlap listed on each side of a backfill's window by default. Objects it brings in
/// are compared but never injected: only events inside `[from, to]` are.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The longest overlap margin a job may ask for.
pub const MAX_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// How many items a report lists by default.
pub const DEFAULT_SAMPLE: usize = 20;
/// The most items a report may list.
pub const MAX_SAMPLE: usize = 1000;

/// The body of `POST /api/v1/recoveries`.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `backfill`, `replay` or `requeue`.
    pub kind: Option<String>,
    /// The source.
    pub source: Option<String>,
    /// Window start (RFC 3339).
    pub from: Option<String>,
    /// Window end (RFC 3339).
    pub to: Option<String>,
    /// Report only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Backfill: the overlap listed on each side of the window (`"5m"`).
    pub margin: Option<String>,
    /// Replay: only deliveries in this state.
    pub state: Option<String>,
    /// Replay: only this destination.
    pub destination: Option<String>,
    /// Replay: only this event type.
    pub event_type: Option<String>,
    /// Replay: only events of this origin.
    pub origin: Option<String>,
    /// Replay: only this channel.
    pub channel: Option<String>,
    /// Requeue: also give `retrying` deliveries a fresh start (due now, attempts from zero).
    #[serde(default)]
    pub include_retrying: bool,
    /// Replay: deliver again even what a job with the same parameters already replayed.
    #[serde(default)]
    pub force: bool,
    /// Run beside other jobs of the same source instead of after them.
    #[serde(default)]
    pub concurrent: bool,
    /// How many items the report lists.
    pub sample: Option<usize>,
}

/// A job's checked parameters, as stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The window's start, inclusive.
    pub from: Timestamp,
    /// The window's end: inclusive for a backfill (the SOR's times), exclusive for replay and
    /// requeue (intake's receipt times).
    pub to: Timestamp,
    /// Backfill: the overlap listed on each side, in seconds.
    #[serde(default)]
    pub margin_secs: u64,
    /// Replay filters.
    #[serde(default)]
    pub filter: Filter,
    /// Requeue: reset `retrying` deliveries too.
    #[serde(default)]
    pub include_retrying: bool,
    /// Replay: the idempotency key (same parameters, same key; `force` makes it the job's).
    #[serde(default)]
    pub replay_key: String,
    /// Run beside the source's other jobs.
    #[serde(default)]
    pub concurrent: bool,
    /// Items listed in the report.
    pub sample: usize,
}

/// What a replay selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Deliveries in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<DeliveryState>,
    /// Deliveries whose handler's work stands here (destinations on receipts): `received`
    /// is the work a handler acknowledged and never confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<CompletionState>,
    /// To this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Of this event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Of events of this origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Of this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A request that cannot become a job: a problem slug and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The problem type's slug.
    pub slug: &'static str,
    /// For people.
    pub detail: String,
    /// The source is unknown (or not visible): 404 rather than 400.
    pub not_found: bool,
}

fn refuse(slug: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        slug,
        detail: detail.into(),
        not_found: false,
    }
}

/// A checked request: the job's kind, source and parameters.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The kind.
    pub kind: RecoveryKind,
    /// The source's configuration.
    pub source: SourceConfig,
    /// Report only.
    pub dry_run: bool,
    /// The parameters to store.
    pub params: Params,
}

/// Checks `req` against the configuration. `visible` says whether the caller may act on a
/// tenant's data (a tenant token only on its own); an invisible source is "unknown".
/// `job_id` seeds a forced replay's key.
pub fn check(
    req: &JobRequest,
    config: &Config,
    visible: impl Fn(&str) -> bool,
    now: Timestamp,
    job_id: &str,
) -> Result<Checked, Refusal> {
    let kind = kind_of(req.kind.as_deref())?;
    let source = source_of(req.source.as_deref(), config, visible)?;
    let (from, to) = window(req.from.as_deref(), req.to.as_deref(), now)?;
    if kind == RecoveryKind::Backfill && source.api.is_none() {
        return Err(refuse(
            "backfill-not-configured",
            format!(
                "source `{}` has no API credentials; add `api = {{ base_url = \"…\", token = \"…\" }}` to it to backfill from its system of record",
                source.id
            ),
        ));
    }
    let filter = filter_of(req, kind, config)?;
    let margin = margin_of(req.margin.as_deref(), kind)?;
    let sample = match req.sample.unwrap_or(DEFAULT_SAMPLE) {
        n @ 0..=MAX_SAMPLE => n,
        _ => {
            return Err(refuse(
                "invalid-parameter",
                format!("`sample` must be between 0 and {MAX_SAMPLE}"),
            ))
        }
    };
    if req.include_retrying && kind != RecoveryKind::Requeue {
        return Err(refuse(
            "invalid-parameter",
            "`include_retrying` applies to requeue jobs only",
        ));
    }
    if req.force && kind != RecoveryKind::Replay {
        return Err(refuse(
            "invalid-parameter",
            "`force` applies to replay jobs only",
        ));
    }
    let mut params = Params {
        from,
        to,
        margin_secs: margin.as_secs(),
        filter,
        include_retrying: req.include_retrying,
        replay_key: String::new(),
        concurrent: req.concurrent,
        sample,
    };
    if kind == RecoveryKind::Replay {
        params.replay_key = if req.force {
            job_id.to_string()
        } else {
            replay_key(&source.id, &params)
        };
    }
    Ok(Checked {
        kind,
        source: source.clone(),
        dry_run: req.dry_run,
        params,
    })
}

fn kind_of(kind: Option<&str>) -> Result<RecoveryKind, Refusal> {
    let kind = kind.ok_or_else(|| {
        refuse(
            "missing-parameter",
            "`kind` is required: backfill, replay or requeue",
        )
    })?;
    RecoveryKind::parse(kind).ok_or_else(|| {
        refuse(
            "invalid-parameter",
            format!("`kind`: `{kind}` is not one of backfill, replay, requeue"),
        )
    })
}

/// The source a request names, if the caller may see it (else 404 `no-such-source`).
pub(crate) fn source_of<'c>(
    source: Option<&str>,
    config: &'c Config,
    visible: impl Fn(&str) -> bool,
) -> Result<&'c SourceConfig, Refusal> {
    let id = source.ok_or_else(|| refuse("missing-parameter", "`source` is required"))?;
    config
        .sources
        .iter()
        .find(|s| s.id == id && visible(&s.tenant))
        .ok_or_else(|| Refusal {
            slug: "no-such-source",
            detail: format!("no source `{id}` is configured (or visible to this token)"),
            not_found: true,
        })
}

/// The window: both ends required, RFC 3339, `from` before `to`, `to` not in the future.
pub(crate) fn window(
    from: Option<&str>,
    to: Option<&str>,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), Refusal> {
    let parse = |name: &str, v: Option<&str>| {
        let v = v.ok_or_else(|| {
            refuse(
                "missing-parameter",
                format!("`{name}` is required (RFC 3339, e.g. 2026-11-30T08:00:00Z)"),
            )
        })?;
        Timestamp::parse_rfc3339(v)
            .map_err(|e| refuse("invalid-parameter", format!("`{name}`: {e}")))
    };
    let from = parse("from", from)?;
    let to = parse("to", to)?;
    if from >= to {
        return Err(refuse(
            "invalid-window",
            format!("`from` ({from}) must be before `to` ({to})"),
        ));
    }
    if to > now {
        return Err(refuse(
            "invalid-window",
            format!("`to` ({to}) is in the future (now is {now}); recover what has happened"),
        ));
    }
    Ok((from, to))
}

fn filter_of(req: &JobRequest, kind: RecoveryKind, config: &Config) -> Result<Filter, Refusal> {
    let any = req.state.is_some()
        || req.destination.is_some()
        || req.event_type.is_some()
        || req.origin.is_some()
        || req.channel.is_some();
    if any && kind != RecoveryKind::Replay {
        return Err(refuse(
            "invalid-parameter",
            "`state`, `destination`, `event_type`, `origin` and `channel` filter replay jobs only",
        ));
    }
    let (state, completion) = match req.state.as_deref() {
        None => (None, None),
        Some(s) => state_of(s).ok_or_else(|| {
            refuse(
                "invalid-parameter",
                format!(
                    "`state`: `{s}` is not one of pending, in_flight, delivered, retrying, dead, \
                     received-not-completed, completion-failed, completed"
                ),
            )
        })?,
    };
    if let Some(d) = &req.destination {
        if !config.destinations.iter().any(|c| &c.id == d) {
            return Err(refuse(
                "invalid-parameter",
                format!("`destination`: no destination `{d}` is configured; a replay can only deliver to a configured destination"),
            ));
        }
    }
    let origin = req
        .origin
        .as_deref()
        .map(|o| {
            Origin::parse(o).ok_or_else(|| {
                refuse(
                    "invalid-parameter",
                    format!("`origin`: `{o}` is not one of webhook, backfill, canary, replay"),
                )
            })
        })
        .transpose()?;
    Ok(Filter {
        state,
        completion,
        destination: req.destination.clone(),
        event_type: req.event_type.clone(),
        origin,
        channel: req.channel.clone(),
    })
}

/// A replay's `state`: a delivery state, or a stage of a handler's work on receipts (spelt
/// with `-` or `_`), which selects delivered deliveries in that stage.
fn state_of(s: &str) -> Option<(Option<DeliveryState>, Option<CompletionState>)> {
    if let Some(state) = DeliveryState::parse(s) {
        return Some((Some(state), None));
    }
    let completion = match s.replace('-', "_").as_str() {
        "received_not_completed" | "received" => CompletionState::Received,
        "completion_failed" => CompletionState::CompletionFailed,
        "completed" => CompletionState::Completed,
        _ => return None,
    };
    Some((Some(DeliveryState::Delivered), Some(completion)))
}

fn margin_of(margin: Option<&str>, kind: RecoveryKind) -> Result<Duration, Refusal> {
    let Some(m) = margin else {
        return Ok(if kind == RecoveryKind::Backfill {
            DEFAULT_MARGIN
        } else {
            Duration::ZERO
        });
    };
    if kind != RecoveryKind::Backfill {
        return Err(refuse(
            "invalid-parameter",
            "`margin` applies to backfill jobs only",
        ));
    }
    let d = humantime::parse_duration(m)
        .map_err(|e| refuse("invalid-parameter", format!("`margin`: `{m}`: {e}")))?;
    if d > MAX_MARGIN {
        return Err(refuse("invalid-parameter", "`margin` must be at most 24h"));
    }
    Ok(d)
}

/// The key that makes a replay idempotent: the same source, window and filters give the same
/// key, so running the same replay twice delivers nothing the second time.
fn replay_key(source: &str, p: &Params) -> String {
    let canonical = serde_json::json!({
        "source": source, "from": p.from, "to": p.to, "filter": p.filter,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    format!("replay:{}", hex::encode(&digest[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let toml = r#"
            [[tenants]]
            id = "maelys"
            name = "Maelys"
            [[tenants]]
            id = "other"
            name = "Other"
            [[destinations]]
            id = "handler"
            url = "http://127.0.0.1:9/hooks"
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            [[sources]]
            id = "maelys-kustomer"
            tenant = "maelys"
            kind = "kustomer"
            secrets = ["s"]
            destinations = ["handler"]
            api = { base_url = "http://127.0.0.1:9", token = "k" }
            [[sources]]
            id = "other-zendesk"
            tenant = "other"
            kind = "zendesk"
            secrets = ["s"]
            destinations = ["handler"]
        "#;
        Config::from_toml_str(toml).expect("test config")
    }

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-12-01T12:00:00Z").expect("time")
    }

    fn req(kind: &str, source: &str) -> JobRequest {
        JobRequest {
            kind: Some(kind.into()),
            source: Some(source.into()),
            from: Some("2026-11-30T00:00:00Z".into()),
            to: Some("2026-11-30T20:00:00Z".into()),
            ..JobRequest::default()
        }
    }

    #[test]
    fn requests_are_checked_in_order_and_refused_with_what_to_change() {
        type Edit = fn(&mut JobRequest);
        let cases: &[(&str, Edit, Option<&str>)] = &[
            ("a complete backfill", |_| {}, None),
            ("no kind", |r| r.kind = None, Some("missing-parameter")),
            (
                "an unknown kind",
                |r| r.kind = Some("rewind".into()),
                Some("invalid-parameter"),
            ),
            (
                "an unknown source",
                |r| r.source = Some("nope".into()),
                Some("no-such-source"),
            ),
            (
                "another tenant's source",
                |r| r.source = Some("other-zendesk".into()),
                Some("no-such-source"),
            ),
            ("no from", |r| r.from = None, Some("missing-parameter")),
            (
                "a from that is not RFC 3339",
                |r| r.from = Some("yesterday".into()),
                Some("invalid-parameter"),
            ),
            (
                "from after to",
                |r| r.from = Some("2026-11-30T21:00:00Z".into()),
                Some("invalid-window"),
            ),
            (
                "a window ending in the future",
                |r| r.to = Some("2026-12-02T00:00:00Z".into()),
                Some("invalid-window"),
            ),
            (
                "a replay filter on a backfill",
                |r| r.state = Some("dead".into()),
                Some("invalid-parameter"),
            ),
            (
                "a margin over 24 h",
                |r| r.margin = Some("2d".into()),
                Some("invalid-parameter"),
            ),
            (
                "a margin that is not a duration",
                |r| r.margin = Some("soon".into()),
                Some("invalid-parameter"),
            ),
            (
                "force on a backfill",
                |r| r.force = true,
                Some("invalid-parameter"),
            ),
            (
                "include_retrying on a backfill",
                |r| r.include_retrying = true,
                Some("invalid-parameter"),
            ),
            (
                "a huge sample",
                |r| r.sample = Some(5000),
                Some("invalid-parameter"),
            ),
        ];
        let config = config();
        for (what, edit, expected) in cases {
            let mut r = req("backfill", "maelys-kustomer");
            edit(&mut r);
            let got = check(&r, &config, |t| t == "maelys", now(), "rec_1")
                .err()
                .map(|e| e.slug);
            assert_eq!(got, *expected, "{what}");
        }
    }

    #[test]
    fn a_backfill_needs_api_credentials() {
        let r = req("backfill", "other-zendesk");
        let e = check(&r, &config(), |_| true, now(), "rec_1").unwrap_err();
        assert_eq!(e.slug, "backfill-not-configured");
        assert!(e.detail.contains("api = {"), "{}", e.detail);
        // A replay of the same source needs none.
        assert!(check(
            &req("replay", "other-zendesk"),
            &config(),
            |_| true,
            now(),
            "rec_1"
        )
        .is_ok());
    }

    #[test]
    fn replay_states_include_the_stages_of_a_handlers_work() {
        use CompletionState as C;
        use DeliveryState as D;
        let cases = [
            ("dead", Some((Some(D::Dead), None))),
            ("delivered", Some((Some(D::Delivered), None))),
            (
                "received-not-completed",
                Some((Some(D::Delivered), Some(C::Received))),
            ),
            (
                "received_not_completed",
                Some((Some(D::Delivered), Some(C::Received))),
            ),
            ("received", Some((Some(D::Delivered), Some(C::Received)))),
            (
                "completion-failed",
                Some((Some(D::Delivered), Some(C::CompletionFailed))),
            ),
            (
                "completion_failed",
                Some((Some(D::Delivered), Some(C::CompletionFailed))),
            ),
            ("completed", Some((Some(D::Delivered), Some(C::Completed)))),
            ("received-not", None),
            ("gone", None),
        ];
        for (text, want) in cases {
            assert_eq!(state_of(text), want, "{text}");
        }
    }

    #[test]
    fn replay_filters_are_parsed_and_checked() {
        let config = config();
        let mut r = req("replay", "maelys-kustomer");
        r.state = Some("dead".into());
        r.origin = Some("webhook".into());
        r.destination = Some("handler".into());
        let c = check(&r, &config, |_| true, now(), "rec_1").unwrap();
        assert_eq!(c.params.filter.state, Some(DeliveryState::Dead));
        assert_eq!(c.params.filter.origin, Some(Origin::Webhook));
        for (field, value) in [
            ("state", "gone"),
            ("origin", "email"),
            ("destination", "elsewhere"),
        ] {
            let mut bad = r.clone();
            match field {
                "state" => bad.state = Some(value.into()),
                "origin" => bad.origin = Some(value.into()),
                _ => bad.destination = Some(value.into()),
            }
            let e = check(&bad, &config, |_| true, now(), "rec_1").unwrap_err();
            assert_eq!(e.slug, "invalid-parameter", "{field}");
            assert!(e.detail.contains(field), "{}", e.detail);
        }
    }

    #[test]
    fn the_same_replay_gets_the_same_key_and_force_gets_its_own() {
        let config = config();
        let r = req("replay", "maelys-kustomer");
        let a = check(&r, &config, |_| true, now(), "rec_1").unwrap();
        let b = check(&r, &config, |_| true, now(), "rec_2").unwrap();
        assert_eq!(a.params.replay_key, b.params.replay_key);
        assert!(a.params.replay_key.starts_with("replay:"));
        let mut other = r.clone();
        other.state = Some("dead".into());
        let c = check(&other, &config, |_| true, now(), "rec_3").unwrap();
        assert_ne!(a.params.replay_key, c.params.replay_key);
        let mut forced = r;
        forced.force = true;
        let f = check(&forced, &config, |_| true, now(), "rec_4").unwrap();
        assert_eq!(f.params.replay_key, "rec_4");
    }

    #[test]
    fn a_backfill_lists_a_margin_by_default_and_others_none() {
        let config = config();
        let b = check(
            &req("backfill", "maelys-kustomer"),
            &config,
            |_| true,
            now(),
            "r",
        )
        .unwrap();
        assert_eq!(b.params.margin_secs, DEFAULT_MARGIN.as_secs());
        let q = check(
            &req("requeue", "maelys-kustomer"),
            &config,
            |_| true,
            now(),
            "r",
        )
        .unwrap();
        assert_eq!(q.params.margin_secs, 0);
        let mut m = req("replay", "maelys-kustomer");
        m.margin = Some("1m".into());
        assert_eq!(
            check(&m, &config, |_| true, now(), "r").unwrap_err().slug,
            "invalid-parameter"
        );
    }
}
