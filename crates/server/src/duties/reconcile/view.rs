//! What `GET /api/v1/reconciliation` shows: the settings in force and, per reconciled source,
//! its last check, why a tick skipped it or failed, and its open gaps with what is still
//! missing. Read from the state documents, so every node answers the same.

use std::collections::BTreeMap;

use intake_core::config::{Config, SourceConfig};
use intake_core::Timestamp;
use intake_store::{Store, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use super::state::{self, Check, ClosedGap, Gap, Missing, Note, SourceState};
use super::window::Span;
use super::{budgeted, reconciled};

/// Reconciliation as configured, and each source's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliation {
    /// The `[reconcile]` settings in force.
    pub settings: Settings,
    /// One entry per source with API credentials (none while reconciliation is disabled).
    pub data: Vec<SourceView>,
}

/// The `[reconcile]` settings in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    /// Whether reconciliation runs (`source_gap` cannot fire without it).
    pub enabled: bool,
    /// Seconds between checks, and the length of each window.
    pub interval_seconds: u64,
    /// Seconds before now the checked windows end.
    pub lag_seconds: u64,
    /// Whether a gap starts a backfill job by itself.
    pub auto_backfill: bool,
    /// The share of each source's API budget reconciliation uses.
    pub budget_share: f64,
}

/// One reconciled source.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    /// The tenant.
    pub tenant: String,
    /// The source.
    pub source: String,
    /// Its kind (`kustomer`, `zendesk`, …).
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Requests a minute reconciliation allows itself against the source's API.
    pub requests_per_minute: u32,
    /// The end of the last window checked; the next one starts there.
    pub checked_until: Option<Timestamp>,
    /// The last window checked, with its numbers.
    pub last_check: Option<Check>,
    /// Why the last tick did not check the system of record (a backfill job was queued or
    /// running, or windows were too far behind).
    pub skipped: Option<Note>,
    /// Why the last check failed (it is retried at the next tick).
    pub error: Option<Note>,
    /// Events missing across the open gaps.
    pub missing: u64,
    /// The open gaps, oldest first.
    pub open_gaps: Vec<GapView>,
    /// The last gaps that closed, newest first.
    pub recently_closed: Vec<ClosedGap>,
}

/// An open gap.
#[derive(Debug, Serialize, ToSchema)]
pub struct GapView {
    /// Its window, `(from, to]`.
    pub window: Span,
    /// When a check found it.
    pub found_at: Timestamp,
    /// How many events were missing then.
    pub found: u64,
    /// How many are still missing.
    pub missing: u64,
    /// Those, by channel.
    pub missing_by_channel: BTreeMap<String, u64>,
    /// The first of them (`reconcile.sample`).
    pub first: Vec<Missing>,
    /// The backfill job started for it (`auto_backfill`).
    pub backfill: Option<String>,
    /// That job's state when the gap was last looked at.
    pub backfill_state: Option<String>,
}

impl GapView {
    fn of(g: &Gap, sample: usize) -> GapView {
        let summary = g.summary(sample);
        GapView {
            window: g.window,
            found_at: g.found_at,
            found: g.found,
            missing: summary.missing,
            missing_by_channel: summary.by_channel,
            first: g.missing.iter().take(sample).cloned().collect(),
            backfill: g.backfill.clone(),
            backfill_state: g.backfill_state.clone(),
        }
    }
}

/// One source's view.
pub fn source_view(config: &Config, source: &SourceConfig, st: SourceState) -> SourceView {
    let sample = config.reconcile.sample;
    let budget = budgeted(source, &config.reconcile);
    SourceView {
        tenant: source.tenant.clone(),
        source: source.id.clone(),
        kind: source.kind.as_str(),
        requests_per_minute: budget
            .api
            .as_ref()
            .and_then(|a| a.rate_limit_per_minute)
            .unwrap_or(1),
        checked_until: st.checked_until,
        missing: st.gaps.iter().map(|g| g.missing.len() as u64).sum(),
        open_gaps: st.gaps.iter().map(|g| GapView::of(g, sample)).collect(),
        last_check: st.last_check,
        skipped: st.skipped,
        error: st.error,
        recently_closed: st.closed,
    }
}

/// The reconciled sources `include` accepts (by tenant and source id), with their state.
pub async fn read(
    config: &Config,
    store: &dyn Store,
    include: impl Fn(&SourceConfig) -> bool,
) -> Result<Reconciliation, StoreError> {
    let r = &config.reconcile;
    let mut data = Vec::new();
    for s in reconciled(config).filter(|s| include(s)) {
        let st = state::load(store, &s.id).await?;
        data.push(source_view(config, s, st));
    }
    Ok(Reconciliation {
        settings: Settings {
            enabled: r.enabled,
            interval_seconds: r.interval.0.as_secs(),
            lag_seconds: r.lag.0.as_secs(),
            auto_backfill: r.auto_backfill,
            budget_share: r.budget_share,
        },
        data,
    })
}
