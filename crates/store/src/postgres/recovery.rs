//! Recovery jobs on PostgreSQL: the jobs' rows, the dedupe keys a backfill compares with,
//! replayed deliveries and requeue pages. Each write is one statement or one short transaction
//! on a pooled connection (recovery jobs are not the hot path and need no group commit); the
//! wake-ups of new work go out after the commit, as the writer's do.
//!
//! A requeue page's changes are guarded by the state they were decided from (`WHERE state =
//! 'retrying'`, …): a delivery another node claimed or finished meanwhile is left alone, and
//! only what changed is counted and reported.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use intake_core::delivery::DeliveryState;
use intake_core::{DeliveryId, EventId, Timestamp};

use super::error::{read_error, unavailable};
use super::reads::parse;
use super::writer::{flush_counts, notify_new_work};
use super::PostgresStore;
use crate::counters::{Counts, DeliveryLabels, Metric};
use crate::decode;
use crate::model::*;
use crate::requeue::{self, Action, Change, PageDelivery, PageEvent};
use crate::sql::{RECOVERY_COLUMNS, RECOVERY_FINAL_STATES};
use crate::{Result, StoreError};

impl PostgresStore {
    pub(super) async fn insert_recovery(&self, job: RecoveryJob) -> Result<()> {
        let client = self.write_conn().await?;
        let inserted = client
            .execute(
                "INSERT INTO recoveries (id, kind, tenant, source, dry_run, state, params, cursor,
                    progress, report, error, cancel_requested, created_by, created_at,
                    started_at, updated_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &job.id,
                    &job.kind.as_str(),
                    &job.tenant,
                    &job.source,
                    &job.dry_run,
                    &job.state.as_str(),
                    &job.params.to_string(),
                    &job.cursor.as_ref().map(|v| v.to_string()),
                    &job.progress.to_string(),
                    &job.report.to_string(),
                    &job.error,
                    &job.cancel_requested,
                    &job.created_by,
                    &job.created_at.as_millis(),
                    &job.started_at.map(Timestamp::as_millis),
                    &job.updated_at.as_millis(),
                    &job.finished_at.map(Timestamp::as_millis),
                ],
            )
            .await
            .map_err(unavailable)?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "a recovery job `{}` exists already",
                job.id
            )))
        }
    }

    pub(super) async fn recovery(&self, id: &str) -> Result<Option<RecoveryJob>> {
        let rows = self
            .read_rows(
                &format!("SELECT {RECOVERY_COLUMNS} FROM recoveries WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first().map(decode::recovery_job).transpose()
    }

    pub(super) async fn recoveries(&self, f: RecoveryFilter) -> Result<Vec<RecoveryJob>> {
        let states: Option<Vec<&str>> =
            (!f.states.is_empty()).then(|| f.states.iter().map(|s| s.as_str()).collect());
        let limit = if f.limit == 0 {
            1000
        } else {
            f.limit.min(1000)
        } as i64;
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {RECOVERY_COLUMNS} FROM recoveries
                     WHERE ($1::text IS NULL OR tenant = $1)
                       AND ($2::text IS NULL OR source = $2)
                       AND ($3::text[] IS NULL OR state = ANY($3))
                     ORDER BY created_at DESC, id DESC LIMIT $4"
                ),
                &[&f.tenant, &f.source, &states, &limit],
            )
            .await?;
        rows.iter().map(decode::recovery_job).collect()
    }

    pub(super) async fn write_recovery_step(
        &self,
        u: RecoveryUpdate,
    ) -> Result<Option<RecoveryJob>> {
        let client = self.write_conn().await?;
        // One statement: the step is written unless the job has ended, and the job comes back
        // as stored either way (the second half reads it only when the first changed nothing).
        let rows = client
            .query(
                &format!(
                    "WITH saved AS (
                        UPDATE recoveries SET state = $2, cursor = $3, progress = $4,
                            report = $5, error = $6, started_at = COALESCE($7, started_at),
                            updated_at = $8, finished_at = $9
                        WHERE id = $1 AND state NOT IN {RECOVERY_FINAL_STATES}
                        RETURNING {RECOVERY_COLUMNS})
                     SELECT * FROM saved
                     UNION ALL
                     SELECT {RECOVERY_COLUMNS} FROM recoveries
                     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM saved)"
                ),
                &[
                    &u.id,
                    &u.state.as_str(),
                    &u.cursor.as_ref().map(|v| v.to_string()),
                    &u.progress.to_string(),
                    &u.report.to_string(),
                    &u.error,
                    &u.started_at.map(Timestamp::as_millis),
                    &u.updated_at.as_millis(),
                    &u.finished_at.map(Timestamp::as_millis),
                ],
            )
            .await
            .map_err(unavailable)?;
        rows.first().map(decode::recovery_job).transpose()
    }

    pub(super) async fn request_cancel(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<RecoveryJob>> {
        let client = self.write_conn().await?;
        let rows = client
            .query(
                &format!(
                    "WITH cancelled AS (
                        UPDATE recoveries SET cancel_requested = TRUE, updated_at = $2,
                            state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                            finished_at = CASE WHEN state = 'queued' THEN $2 ELSE finished_at END
                        WHERE id = $1 AND state NOT IN {RECOVERY_FINAL_STATES}
                        RETURNING {RECOVERY_COLUMNS})
                     SELECT * FROM cancelled
                     UNION ALL
                     SELECT {RECOVERY_COLUMNS} FROM recoveries
                     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM cancelled)"
                ),
                &[&id, &now.as_millis()],
            )
            .await
            .map_err(unavailable)?;
        rows.first().map(decode::recovery_job).transpose()
    }

    pub(super) async fn dedupe_keys_known(
        &self,
        source: &str,
        keys: Vec<String>,
    ) -> Result<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = self
            .read_rows(
                "SELECT dedupe_key FROM events WHERE source = $1 AND dedupe_key = ANY($2)",
                &[&source, &keys],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn replay(&self, batch: ReplayBatch) -> Result<ReplayOutcome> {
        if batch.items.is_empty() {
            return Ok(ReplayOutcome::default());
        }
        // A pair named twice in the batch gets one delivery; rows are written in (event,
        // destination) order, so two nodes replaying the same pairs never wait for each other
        // in opposite orders.
        let mut pairs: Vec<(&str, &str)> = batch
            .items
            .iter()
            .map(|(e, d)| (e.as_str(), d.as_str()))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let labels = event_labels(&tx, &pairs).await?;
        let ids: Vec<String> = pairs
            .iter()
            .map(|_| DeliveryId::generate(batch.now).to_string())
            .collect();
        let events: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let destinations: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let created = tx
            .query(
                "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state,
                    attempts, due_at, created_at, updated_at, origin, replay_key, recovery)
                 SELECT r.id, e.id, r.destination, e.tenant, e.source, e.channel, 'pending', 0,
                    $4, $4, $4, 'replay', $5, $6
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                    AS r(id, event_id, destination, n)
                 JOIN events e ON e.id = r.event_id
                 ORDER BY r.n
                 ON CONFLICT (event_id, destination, replay_key) WHERE replay_key IS NOT NULL
                 DO NOTHING
                 RETURNING event_id, destination",
                &[
                    &ids,
                    &events,
                    &destinations,
                    &batch.now.as_millis(),
                    &batch.key,
                    &batch.recovery,
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut counts = Counts::default();
        let mut replayed: HashSet<String> = HashSet::new();
        let mut woken: HashSet<String> = HashSet::new();
        for row in &created {
            let (event_id, destination): (String, String) = (row.get(0), row.get(1));
            let (tenant, source, channel) = labels.get(&event_id).ok_or_else(|| {
                StoreError::Corrupt(format!("replayed event `{event_id}` has no labels"))
            })?;
            let delivery = DeliveryLabels {
                tenant,
                source,
                channel,
                destination: &destination,
                metric: Metric::DeliveriesCreated,
            };
            counts.delivery_changed(batch.now, &delivery);
            if replayed.insert(event_id.clone()) {
                counts.replayed(batch.now, tenant, source, channel);
            }
            woken.insert(destination);
        }
        flush_counts(&tx, counts).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        notify_new_work(&client, woken).await;
        let created = created.len() as u64;
        Ok(ReplayOutcome {
            created,
            already: batch.items.len() as u64 - created,
        })
    }

    pub(super) async fn requeue(&self, req: RequeueRequest) -> Result<RequeuePage> {
        if req.dry_run {
            let client = self.conn().await?;
            let events = load_page(&client, &req).await?;
            let changes = requeue::plan(&req, &events);
            return Ok(requeue::report(
                &req,
                &events,
                &changes,
                &mut Counts::default(),
            ));
        }
        let mut client = self.write_conn().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let events = load_page(&tx, &req).await?;
        let changes = requeue::plan(&req, &events);
        let done = apply_changes(&tx, &req, &events, &changes)
            .await
            .map_err(unavailable)?;
        let applied: Vec<Change> = changes
            .into_iter()
            .filter(|c| done.contains(c.delivery_id.as_str()))
            .collect();
        let mut counts = Counts::default();
        let page = requeue::report(&req, &events, &applied, &mut counts);
        flush_counts(&tx, counts).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        notify_new_work(&client, requeue::woken(&applied)).await;
        Ok(page)
    }
}

/// (tenant, source, channel) of each event of `pairs`, by id; an event that does not exist is
/// an error (events are never deleted: the caller named one that never was).
async fn event_labels(
    client: &impl GenericClient,
    pairs: &[(&str, &str)],
) -> Result<HashMap<String, (String, String, String)>> {
    let ids: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let rows = client
        .query(
            "SELECT id, tenant, source, channel FROM events WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(unavailable)?;
    let labels: HashMap<String, (String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    if let Some(id) = ids.iter().find(|id| !labels.contains_key(**id)) {
        return Err(StoreError::Corrupt(format!(
            "cannot replay event `{id}`: no such event"
        )));
    }
    Ok(labels)
}

/// The events of a requeue page, with their deliveries.
async fn load_page(client: &impl GenericClient, req: &RequeueRequest) -> Result<Vec<PageEvent>> {
    // Ids are ULIDs whose time part is the instant of receipt: the window is an id range.
    let rows = client
        .query(
            "SELECT id, tenant, channel FROM events
             WHERE source = $1 AND id >= $2 AND id < $3 AND id > $4
               AND received_at >= $5 AND received_at < $6
             ORDER BY id LIMIT $7",
            &[
                &req.source,
                &EventId::lower_bound(req.from),
                &EventId::lower_bound(req.to),
                &req.after.as_ref().map_or("", |a| a.as_str()),
                &req.from.as_millis(),
                &req.to.as_millis(),
                &(req.limit.clamp(1, 10_000) as i64),
            ],
        )
        .await
        .map_err(read_error)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    let mut deliveries: HashMap<String, Vec<PageDelivery>> = HashMap::new();
    for r in client
        .query(
            "SELECT event_id, id, destination, state, due_at FROM deliveries
             WHERE event_id = ANY($1) ORDER BY event_id, destination COLLATE \"C\", id",
            &[&ids],
        )
        .await
        .map_err(read_error)?
    {
        let state: &str = r.get(3);
        let state = DeliveryState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state `{state}`")))?;
        deliveries.entry(r.get(0)).or_default().push(PageDelivery {
            id: parse(r.get::<_, &str>(1), "delivery id")?,
            destination: r.get(2),
            state,
            due_at: r.get(4),
        });
    }
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: &str = r.get(0);
        events.push(PageEvent {
            id: parse(id, "event id")?,
            tenant: r.get(1),
            channel: r.get(2),
            deliveries: deliveries.remove(id).unwrap_or_default(),
        });
    }
    Ok(events)
}

/// Makes the changes of a page, each only if its delivery is still as it was read; returns the
/// ids of the deliveries changed or created.
async fn apply_changes(
    client: &impl GenericClient,
    req: &RequeueRequest,
    events: &[PageEvent],
    changes: &[Change],
) -> std::result::Result<HashSet<String>, tokio_postgres::Error> {
    let now = req.now.as_millis();
    let of = |action: Action| -> Vec<&Change> {
        changes.iter().filter(|c| c.action == action).collect()
    };
    let ids = |list: &[&Change]| -> Vec<String> {
        list.iter().map(|c| c.delivery_id.to_string()).collect()
    };
    let mut done = HashSet::new();
    let stale = of(Action::StaleLease);
    if !stale.is_empty() {
        let rows = client
            .query(
                "UPDATE deliveries SET state = 'pending', lease_id = NULL, lease_node = NULL,
                    due_at = $2, updated_at = $2
                 -- `IS TRUE`: see postgres/mod.rs (deliveries found by id while in flight).
                 WHERE id = ANY($1) AND (state = 'in_flight') IS TRUE AND due_at < $3
                 RETURNING id",
                &[&ids(&stale), &now, &req.stale_before.as_millis()],
            )
            .await?;
        done.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    let reset = of(Action::RetryingReset);
    if !reset.is_empty() {
        let rows = client
            .query(
                "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = $2,
                    updated_at = $2
                 WHERE id = ANY($1) AND state = 'retrying'
                 RETURNING id",
                &[&ids(&reset), &now],
            )
            .await?;
        done.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    let rerouted = of(Action::Rerouted);
    if !rerouted.is_empty() {
        let errors: Vec<String> = rerouted
            .iter()
            .map(|c| requeue::reroute_error(&req.recovery, &c.destination))
            .collect();
        let rows = client
            .query(
                "UPDATE deliveries d SET state = 'dead', lease_id = NULL, lease_node = NULL,
                    due_at = $3, updated_at = $3, last_error = r.error
                 FROM UNNEST($1::text[], $2::text[]) AS r(id, error)
                 WHERE d.id = r.id AND d.state IN ('pending', 'retrying', 'in_flight')
                 RETURNING d.id",
                &[&ids(&rerouted), &errors, &now],
            )
            .await?;
        done.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    let mut created: Vec<&Change> = Vec::new();
    let mut event_ids: Vec<&str> = Vec::new();
    for change in of(Action::Created) {
        if let Some(event) = events.get(change.event) {
            created.push(change);
            event_ids.push(event.id.as_str());
        }
    }
    if !created.is_empty() {
        let destinations: Vec<&str> = created.iter().map(|c| c.destination.as_str()).collect();
        let rows = client
            .query(
                "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel,
                    state, attempts, due_at, created_at, updated_at, recovery)
                 SELECT r.id, e.id, r.destination, e.tenant, e.source, e.channel, 'pending', 0,
                    $4, $4, $4, $5
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS r(id, event_id, destination)
                 JOIN events e ON e.id = r.event_id
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.event_id = e.id AND d.destination = r.destination)
                 RETURNING id",
                &[
                    &ids(&created),
                    &event_ids,
                    &destinations,
                    &now,
                    &req.recovery,
                ],
            )
            .await?;
        done.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    Ok(done)
}
