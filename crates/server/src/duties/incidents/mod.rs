//! Incidents: declared by a person through the admin API, or by a critical alert in the
//! monitor's notification pipeline; every step notifies on-call and the affected tenants'
//! contacts through the durable outbox; the timeline records itself; a postmortem draft is
//! written from it.
//!
//! | module | its one job |
//! |---|---|
//! | [`contacts`] | tenants' contacts as outbox destinations (`contact:<tenant>:<index>`) and their senders |
//! | [`notices`] | the notices of one step, to on-call and to each tenant's contacts, from the templates (pure) |
//! | [`lifecycle`] | a person's request checked into a write: declare, update, resolve (pure) |
//! | [`pipeline`] | the monitor's part: declaring from critical alerts, alerts joining and resolving, holds (pure) |
//! | [`view`] | what the API shows: the merged timeline, a tenant's slice, the response times (pure) |
//! | [`postmortem`] | the Markdown draft (pure) |
//! | here | the IO around them, for the admin API door: read, decide, write, again if someone wrote first |
//!
//! **Why the notices of a step are written with the step.** An incident's change, its new
//! timeline entries and its notices are one [`IncidentWrite`], one transaction, exactly like the
//! alert notifications of an evaluation: a crash or a fail-over can neither tell tenants of an
//! update that was not recorded nor record one that nobody was told of. Each write names the
//! version of the incident it was decided from, so a person's update and the monitor's
//! pipeline, on any nodes, never overwrite each other: the one that comes second reads again
//! and decides again.
//!
//! **A tenant's notice never mentions another tenant.** Each tenant's contacts get a notice of
//! their own, rendered from the tenant template with that tenant's name, sources and channels
//! only; the title and messages people write for an incident of several tenants may not name
//! any tenant (they are refused with a reason), and a tenant token sees only its own slice.

pub mod contacts;
pub mod lifecycle;
pub mod notices;
pub mod pipeline;
pub mod postmortem;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use intake_core::config::{Config, NotifierConfig};
use intake_core::{IncidentId, SharedClock, Timestamp};
use intake_notify::{LinkBuilder, Notifier};
use intake_store::{
    AuditQuery, Incident, IncidentFilter, IncidentWrite, RecoveryFilter, Store, StoreError,
};
use serde::{Deserialize, Serialize};

use lifecycle::{DeclareRequest, ResolveRequest, UpdateRequest};
use notices::Notices;
pub use view::{IncidentDetail, IncidentView};

/// How many times a person's write is decided again when someone else wrote first.
const WRITE_ATTEMPTS: usize = 5;

/// How long after its resolution an incident still keeps an alert from declaring another:
/// an alert that fired through a resolved incident does not open a new one while it fires.
pub const REMEMBERED: Duration = Duration::from_secs(7 * 86_400);

/// What the notification pipeline follows for an incident, stored with it (`tracking`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracking {
    /// The alerts recorded in its timeline, by key (rule and labels).
    #[serde(default)]
    pub alerts: BTreeMap<String, TrackedAlert>,
    /// The tenants whose contacts have been sent a notice of it.
    #[serde(default)]
    pub told: BTreeSet<String>,
    /// For an incident an alert declared: what its rule's policy said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoDeclared>,
    /// Whether a person has written to it (updated it): the pipeline then never resolves it
    /// by itself.
    #[serde(default)]
    pub touched: bool,
}

/// One alert of an incident's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedAlert {
    /// The rule.
    pub rule: String,
    /// Its labels (tenant, source, channel, destination).
    pub labels: BTreeMap<String, String>,
    /// When its condition started.
    pub active_since: Timestamp,
    /// When it started firing.
    pub firing_since: Timestamp,
    /// When it resolved, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
}

/// The policy an alert declared an incident under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoDeclared {
    /// The rule whose alert declared it.
    pub rule: String,
    /// Whether tenants are told without a person.
    pub notify_tenants: bool,
    /// When the hold ends: tenants are told then if an alert still fires.
    pub hold_until: Timestamp,
}

impl Tracking {
    /// The tracking document of a stored incident (an unreadable one starts afresh: it only
    /// steers notifications, and the timeline keeps what happened).
    pub fn of(incident: &Incident) -> Tracking {
        serde_json::from_value(incident.tracking.clone()).unwrap_or_default()
    }

    /// As stored.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A request refused, and why: the API door turns it into a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 403, 404 or 409.
    pub status: u16,
    /// The problem's stable slug.
    pub slug: &'static str,
    /// What is wrong and what to do.
    pub detail: String,
}

impl Refusal {
    pub(crate) fn bad(slug: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            status: 400,
            slug,
            detail: detail.into(),
        }
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Refusal {
            status: 404,
            slug: "no-such-incident",
            detail: format!("no incident `{id}`"),
        }
    }

    pub(crate) fn conflict(slug: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            status: 409,
            slug,
            detail: detail.into(),
        }
    }
}

/// Why an incident operation did not happen.
#[derive(Debug, Clone)]
pub enum IncidentError {
    /// The request was refused.
    Refused(Refusal),
    /// The store failed.
    Store(StoreError),
}

impl From<Refusal> for IncidentError {
    fn from(r: Refusal) -> Self {
        IncidentError::Refused(r)
    }
}

impl From<StoreError> for IncidentError {
    fn from(e: StoreError) -> Self {
        IncidentError::Store(e)
    }
}

/// What a person's incident operations need: the configuration, the clock, the store, the
/// links notices carry, on-call's notifiers, and the outbox sender's wake-up.
pub struct Desk {
    pub(crate) config: Arc<Config>,
    pub(crate) clock: SharedClock,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) links: LinkBuilder,
    pub(crate) oncall: Vec<(NotifierConfig, Arc<dyn Notifier>)>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl Desk {
    /// A desk for `config`, building on-call's notifiers (to know which take incident notices).
    pub(crate) fn new(
        config: Arc<Config>,
        clock: SharedClock,
        store: Arc<dyn Store>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        let oncall = super::notify::build_notifiers(&config, clock.clone());
        Desk {
            links: super::notify::link_builder(&config),
            oncall,
            config,
            clock,
            store,
            wake,
        }
    }

    /// A desk that only reads (lists, details, postmortems): it builds no notifier.
    pub(crate) fn reader(config: Arc<Config>, clock: SharedClock, store: Arc<dyn Store>) -> Self {
        Desk {
            links: super::notify::link_builder(&config),
            oncall: Vec::new(),
            config,
            clock,
            store,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn notices(&self, now: Timestamp) -> Notices<'_> {
        Notices {
            config: &self.config,
            links: &self.links,
            oncall: &self.oncall,
            now,
        }
    }

    /// Declares an incident: stores it with its first entry and its notices, and wakes the
    /// sender.
    pub async fn declare(
        &self,
        req: &DeclareRequest,
        author: &str,
    ) -> Result<IncidentDetail, IncidentError> {
        let now = self.clock.now();
        let id = IncidentId::generate(now).to_string();
        let write = lifecycle::declare(req, &self.config, &id, author, &self.notices(now))?;
        self.store.write_incident(write.clone()).await?;
        self.wake.notify_one();
        tracing::info!(incident = %id, by = author, tenants = ?write.incident.tenants, "incident declared");
        self.detail(&id, None).await
    }

    /// Updates an open incident (status, message, lead, severity) and notifies.
    pub async fn update(
        &self,
        id: &str,
        req: &UpdateRequest,
        author: &str,
    ) -> Result<IncidentDetail, IncidentError> {
        self.change(id, |incident, notices| {
            lifecycle::update(incident, req, author, notices)
        })
        .await?;
        tracing::info!(incident = %id, by = author, "incident updated");
        self.detail(id, None).await
    }

    /// Resolves an open incident and notifies.
    pub async fn resolve(
        &self,
        id: &str,
        req: &ResolveRequest,
        author: &str,
    ) -> Result<IncidentDetail, IncidentError> {
        self.change(id, |incident, notices| {
            lifecycle::resolve(incident, req, author, notices)
        })
        .await?;
        tracing::info!(incident = %id, by = author, "incident resolved");
        self.detail(id, None).await
    }

    /// Reads the incident, decides its change, writes it — again if someone wrote first.
    async fn change(
        &self,
        id: &str,
        decide: impl Fn(&Incident, &Notices<'_>) -> Result<IncidentWrite, Refusal>,
    ) -> Result<(), IncidentError> {
        for _ in 0..WRITE_ATTEMPTS {
            let incident = self
                .store
                .get_incident(id)
                .await?
                .ok_or_else(|| Refusal::not_found(id))?;
            let now = self.clock.now();
            let write = decide(&incident, &self.notices(now))?;
            if self.store.write_incident(write).await? {
                self.wake.notify_one();
                return Ok(());
            }
        }
        Err(Refusal::conflict(
            "incident-busy",
            format!("incident `{id}` kept changing while this update was written; try again"),
        )
        .into())
    }

    /// The incident `id` seen by `tenant` (or by the operator when `None`): the record, its
    /// merged timeline and its response times. Another tenant's incident is not found.
    pub async fn detail(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<IncidentDetail, IncidentError> {
        let incident = self
            .store
            .get_incident(id)
            .await?
            .filter(|i| tenant.is_none_or(|t| self.tenant_sees(i, t)))
            .ok_or_else(|| Refusal::not_found(id))?;
        let entries = self.store.incident_entries(id).await?;
        let notices = self.store.incident_notices(id).await?;
        let recoveries = self.recoveries(&incident).await?;
        let detail = view::detail(
            &incident,
            &entries,
            &notices,
            &recoveries,
            &self.config,
            self.clock.now(),
        );
        Ok(match tenant {
            Some(t) => view::for_tenant(detail, t, &self.config),
            None => detail,
        })
    }

    /// Whether `tenant`'s token sees `incident`: one of its own, unless it is a drill incident
    /// whose tenants are not told ([`notices::Notices::tenants_hear`]): a tenant reads of a
    /// drill only where it would have been sent its notices.
    fn tenant_sees(&self, incident: &Incident, tenant: &str) -> bool {
        incident.tenants.iter().any(|x| x == tenant)
            && (incident.drill.is_none() || self.config.incidents.drill_tenant_notices)
    }

    /// Incidents visible to `tenant` (all for the operator), newest first.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<IncidentView>, IncidentError> {
        let filter = IncidentFilter {
            tenant: tenant.map(str::to_string),
            open_or_resolved_since: open_only.then_some(None),
            limit,
        };
        let now = self.clock.now();
        Ok(self
            .store
            .list_incidents(filter)
            .await?
            .iter()
            .filter(|i| tenant.is_none_or(|t| self.tenant_sees(i, t)))
            .map(|i| {
                let v = view::summary(i, now);
                match tenant {
                    Some(t) => view::summary_for_tenant(v, t, &self.config),
                    None => v,
                }
            })
            .collect())
    }

    /// The postmortem draft of incident `id`, in Markdown.
    pub async fn postmortem(&self, id: &str) -> Result<String, IncidentError> {
        let detail = self.detail(id, None).await?;
        let incident = self
            .store
            .get_incident(id)
            .await?
            .ok_or_else(|| Refusal::not_found(id))?;
        let recoveries = self.recoveries(&incident).await?;
        let mut audits = Vec::new();
        let end = incident.resolved_at.unwrap_or(self.clock.now());
        for source in postmortem::audited_sources(&incident, &self.config) {
            let routes = self
                .config
                .source(&source)
                .map(|s| s.destinations.clone())
                .unwrap_or_default();
            let counts = self
                .store
                .audit(AuditQuery {
                    source: source.clone(),
                    from: incident.impact_start,
                    to: end.max(incident.impact_start.plus(Duration::from_millis(1))),
                    routes,
                    sample: 0,
                })
                .await?;
            audits.push((source, counts));
        }
        Ok(postmortem::draft(&detail, &recoveries, &audits))
    }

    /// The recovery jobs of the incident's tenants (and sources) whose window overlaps its
    /// impact window, oldest first: what was done to recover what it lost.
    async fn recoveries(
        &self,
        incident: &Incident,
    ) -> Result<Vec<intake_store::RecoveryJob>, StoreError> {
        let mut jobs = Vec::new();
        for tenant in &incident.tenants {
            jobs.extend(
                self.store
                    .list_recoveries(RecoveryFilter {
                        tenant: Some(tenant.clone()),
                        source: None,
                        states: Vec::new(),
                        limit: 1000,
                    })
                    .await?,
            );
        }
        let end = incident.resolved_at.unwrap_or(self.clock.now());
        let mut jobs: Vec<_> = jobs
            .into_iter()
            .filter(|j| view::recovery_belongs(j, incident, end))
            .collect();
        jobs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(jobs)
    }
}

/// The incidents the pipeline looks at: the open ones and those resolved recently (whose
/// alerts must not declare again while they fire).
pub(crate) fn pipeline_filter(now: Timestamp) -> IncidentFilter {
    IncidentFilter {
        tenant: None,
        open_or_resolved_since: Some(Some(now.minus(REMEMBERED))),
        limit: 1000,
    }
}
