//! The writer: ingests, finished delivery attempts, rejections and pings, plugged into the
//! shared group-commit engine (the `group_commit` module) as a task of its own. (Claims, queue
//! and duty writes need no group commit here: each is one statement or one short transaction
//! on a pooled connection, see the store.)
//!
//! What is PostgreSQL's own: a run of consecutive ingests and finishes is written together
//! with a few multi-row statements (`UNNEST` of column arrays): the events in (source, dedupe
//! key) order, their deliveries, and one statement for all the finishes, each applied only
//! under its lease (a finish whose lease another worker or node took over is recorded as
//! `superseded`, row by row, without failing the others); counters go to one random shard, in
//! key order; a lost connection fails the whole batch; and after each batch the writer sends
//! `NOTIFY intake_new_work, '<destination>'` for the deliveries it committed, outside the
//! transaction (a `NOTIFY` inside it takes a database-wide lock until the commit has been
//! flushed, which would make the nodes commit one at a time).
//!
//! Finishes go through the writer because each used to be a transaction of its own: one
//! commit, one WAL flush and its CPU per delivered event, which made delivering cost
//! PostgreSQL several times what accepting did (`docs/benchmarks.md`, PostgreSQL).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Object, Pool};
use intake_core::delivery::{CompletionState, DeliveryState, NextStep};
use intake_core::{EventId, Timestamp};

use super::error::{injected_failure, pg_error, pool_unavailable, unavailable, WriteError};
use super::reads::parse;
use super::room::Room;
use super::{CHANNEL, COUNTER_SHARDS};
use crate::counters::{CounterKey, Counts};
use crate::group_commit::{Backend, Failure, Output};
use crate::model::*;
use crate::{Result, StoreError, StoreFault};

/// What the writer is asked to do.
pub(super) enum Request {
    Ingest(Box<NewEvent>),
    Finish(Box<FinishedAttempt>),
    Reject(Rejection),
    Ping,
    Fault(Option<StoreFault>),
}

/// The writer's pool, and the wake-ups it owes.
pub(super) struct Writer {
    pool: Pool,
    /// The fault as the writer last applied it, for the writes that do not go through it.
    shared_fault: Arc<AtomicBool>,
    /// False under [`StoreFault::AcceptWithoutQueueing`]: ingests store no deliveries.
    queueing: bool,
    /// Destinations that got deliveries in the open transaction.
    staged: HashSet<String>,
    /// Destinations that got deliveries in a committed transaction of this batch.
    committed: HashSet<String>,
    /// Whether the database has room for new events (the `room` module): marked by a write
    /// refused for want of space, cleared by a commit that stored new events.
    room: Room,
    /// Whether the open transaction stored a new event.
    stored_new: bool,
}

impl Writer {
    /// The error of a failed write, having marked the store out of room if that is why.
    fn refused(&self, e: tokio_postgres::Error) -> StoreError {
        let e = WriteError::from(e);
        if let WriteError::NoRoom(why) = &e {
            self.room.mark(why);
        }
        e.into()
    }

    pub(super) fn new(pool: Pool, shared_fault: Arc<AtomicBool>, room: Room) -> Self {
        Writer {
            pool,
            shared_fault,
            queueing: true,
            staged: HashSet::new(),
            committed: HashSet::new(),
            room,
            stored_new: false,
        }
    }

    /// Writes the run of ingests and finishes at the head of `requests` (any other request, a
    /// fault too, ends it): all its ingests with a few statements, then all its finishes with
    /// one. The two kinds are independent, so writing them by kind instead of in queue order
    /// changes nothing: a finish needs a lease, and a lease is only ever taken on a delivery
    /// committed before, never on one an ingest of this transaction creates. The answers are
    /// pushed in queue order. Returns how many requests the run held.
    async fn apply_run(
        &mut self,
        client: &Object,
        requests: &[Request],
        counts: &mut Counts,
        outputs: &mut Vec<Output>,
    ) -> std::result::Result<usize, WriteError> {
        let run: Vec<&Request> = requests
            .iter()
            .take_while(|r| matches!(r, Request::Ingest(_) | Request::Finish(_)))
            .collect();
        let mut events: Vec<&NewEvent> = Vec::new();
        let mut finishes: Vec<&FinishedAttempt> = Vec::new();
        for request in &run {
            match request {
                Request::Ingest(ev) => events.push(ev),
                Request::Finish(a) => finishes.push(a),
                _ => {}
            }
        }
        // The story's bug, injected: the events are stored, their deliveries are not.
        let unqueued: Vec<NewEvent>;
        if !self.queueing {
            unqueued = events.iter().map(|ev| without_deliveries(ev)).collect();
            events = unqueued.iter().collect();
        }
        let mut accepted = Vec::new();
        if !events.is_empty() {
            accepted = ingest_many(client, &events, counts, &mut self.staged).await?;
            self.stored_new |= accepted.iter().any(|a| !a.duplicate);
        }
        if !finishes.is_empty() {
            finish_many(client, &finishes, counts).await?;
        }
        let mut accepted = accepted.into_iter();
        for request in &run {
            match request {
                Request::Ingest(_) => {
                    let answer = accepted.next().ok_or_else(|| {
                        WriteError::Failed(StoreError::Corrupt("an ingest got no answer".into()))
                    })?;
                    outputs.push(Output::Accepted(answer));
                }
                _ => outputs.push(Output::Unit),
            }
        }
        Ok(run.len())
    }
}

impl Backend for Writer {
    type Request = Request;
    type Conn = Object;

    fn fault(request: &Request) -> Option<Option<StoreFault>> {
        match request {
            Request::Fault(f) => Some(*f),
            _ => None,
        }
    }

    fn fault_changed(&mut self, fault: Option<StoreFault>) {
        self.shared_fault.store(
            fault.is_some_and(StoreFault::rejects_writes),
            Ordering::SeqCst,
        );
        self.queueing = fault != Some(StoreFault::AcceptWithoutQueueing);
    }

    async fn connect(&mut self) -> Result<Object> {
        self.pool.get().await.map_err(pool_unavailable)
    }

    async fn begin(&mut self, client: &mut Object) -> Result<()> {
        client
            .batch_execute("START TRANSACTION")
            .await
            .map_err(unavailable)
    }

    async fn apply(
        &mut self,
        client: &mut Object,
        requests: &[Request],
        counts: &mut Counts,
        outputs: &mut Vec<Output>,
    ) -> Result<usize, Failure> {
        let Some(first) = requests.first() else {
            return Ok(0);
        };
        match first {
            Request::Ingest(_) | Request::Finish(_) => {
                let applied = self
                    .apply_run(client, requests, counts, outputs)
                    .await
                    .map_err(|e| match e {
                        // A lost connection fails everything; anything else may be one
                        // request's fault.
                        WriteError::Lost(e) => Failure::Batch(e),
                        WriteError::Failed(e) => Failure::Request(e),
                        WriteError::NoRoom(e) => {
                            self.room.mark(&e);
                            Failure::Request(e)
                        }
                    })?;
                Ok(applied)
            }
            Request::Reject(rej) => {
                reject(&*client, rej, counts)
                    .await
                    .map_err(|e| Failure::Request(self.refused(e)))?;
                outputs.push(Output::Unit);
                Ok(1)
            }
            Request::Ping => {
                ping(&*client)
                    .await
                    .map_err(|e| Failure::Request(self.refused(e)))?;
                outputs.push(Output::Unit);
                Ok(1)
            }
            // The engine applies faults itself.
            Request::Fault(_) => {
                outputs.push(Output::Unit);
                Ok(1)
            }
        }
    }

    async fn write_counts(&mut self, client: &mut Object, counts: Counts) -> Result<(), Failure> {
        flush_counts(&*client, counts)
            .await
            .map_err(|e| Failure::Request(self.refused(e)))
    }

    async fn commit(&mut self, client: &mut Object) -> Result<()> {
        client.batch_execute("COMMIT").await.map_err(|e| {
            self.stored_new = false;
            self.refused(e)
        })?;
        self.committed.extend(self.staged.drain());
        if std::mem::take(&mut self.stored_new) {
            self.room.stored();
        }
        Ok(())
    }

    async fn rollback(&mut self, client: &mut Object) {
        self.staged.clear();
        self.stored_new = false;
        if let Err(e) = client.batch_execute("ROLLBACK").await {
            // The connection may be gone, or the transaction already over.
            tracing::debug!(error = %pg_error(&e), "rollback");
        }
    }

    async fn refuse(&mut self, client: &mut Object) -> StoreError {
        injected_failure(&*client).await
    }

    async fn after_batch(&mut self, client: &mut Object) {
        // Wake-ups go out after the commit, outside any transaction (see the module docs).
        // They are hints: a lost one costs a dispatcher at most its safety poll.
        if self.committed.is_empty() {
            return;
        }
        notify_new_work(&*client, self.committed.drain()).await;
    }
}

/// Sends `NOTIFY intake_new_work, '<destination>'` for each destination, outside any
/// transaction (see the module docs). Wake-ups are hints: a lost one costs a dispatcher at
/// most its safety poll, so a failure is only logged.
pub(super) async fn notify_new_work(
    client: &impl GenericClient,
    destinations: impl IntoIterator<Item = String>,
) {
    let mut destinations: Vec<String> = destinations.into_iter().collect();
    if destinations.is_empty() {
        return;
    }
    destinations.sort();
    if let Err(e) = client
        .execute(
            "SELECT pg_notify($1, d) FROM UNNEST($2::text[]) AS d",
            &[&CHANNEL, &destinations],
        )
        .await
    {
        tracing::debug!(error = %pg_error(&e), "could not notify new work");
    }
}

/// `ev` as it is stored under [`StoreFault::AcceptWithoutQueueing`]: without its deliveries.
fn without_deliveries(ev: &NewEvent) -> NewEvent {
    NewEvent {
        deliveries: Vec::new(),
        ..ev.clone()
    }
}

/// Inserts events and the deliveries of those that are new, with a few multi-row statements.
/// Returns one answer per event, in order. Destinations that got deliveries go to `woken`.
async fn ingest_many(
    client: &impl GenericClient,
    events: &[&NewEvent],
    counts: &mut Counts,
    woken: &mut HashSet<String>,
) -> std::result::Result<Vec<Accepted>, WriteError> {
    let inserted = insert_events(client, events).await?;
    let originals = originals_of(client, events, &inserted).await?;
    let mut deliveries = NewDeliveries::default();
    let mut answers = Vec::with_capacity(events.len());
    for ev in events {
        if inserted.contains(ev.id.as_str()) {
            for (id, destination) in &ev.deliveries {
                deliveries.push(ev, id.as_str(), destination);
                woken.insert(destination.clone());
            }
            counts.accepted(ev);
            answers.push(Accepted {
                id: ev.id.clone(),
                duplicate: false,
            });
        } else {
            // Not inserted, yet no event with its key: cannot happen without a bug.
            let original = originals
                .get(&(ev.source.clone(), ev.normalized.dedupe_key.clone()))
                .ok_or_else(|| {
                    WriteError::Failed(StoreError::Corrupt(format!(
                        "event {} was neither stored nor a duplicate",
                        ev.id
                    )))
                })?;
            let id: EventId = parse(original, "event id").map_err(WriteError::Failed)?;
            counts.duplicate(ev);
            answers.push(Accepted {
                id,
                duplicate: true,
            });
        }
    }
    deliveries.insert(client).await?;
    Ok(answers)
}

/// Inserts the events that are not duplicates; returns the ids of those inserted.
async fn insert_events(
    client: &impl GenericClient,
    events: &[&NewEvent],
) -> std::result::Result<HashSet<String>, tokio_postgres::Error> {
    // Rows are inserted in (source, dedupe key) order: two nodes inserting the same keys in
    // opposite orders would otherwise wait for each other.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| {
        (&events[a].source, &events[a].normalized.dedupe_key)
            .cmp(&(&events[b].source, &events[b].normalized.dedupe_key))
    });
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut origins = Vec::with_capacity(n);
    let mut sor_ids = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut raw_channels = Vec::with_capacity(n);
    let mut object_types = Vec::with_capacity(n);
    let mut object_ids = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut headers = Vec::with_capacity(n);
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
    let mut conversations = Vec::with_capacity(n);
    for &i in &order {
        let ev = events[i];
        let e = &ev.normalized;
        ids.push(ev.id.as_str());
        tenants.push(ev.tenant.as_str());
        sources.push(ev.source.as_str());
        origins.push(ev.origin.as_str());
        sor_ids.push(e.sor_event_id.as_deref());
        keys.push(e.dedupe_key.as_str());
        types.push(e.event_type.as_str());
        channels.push(e.channel.as_str());
        raw_channels.push(e.raw_channel.as_deref());
        object_types.push(e.object_type.as_deref());
        object_ids.push(e.object_id.as_deref());
        occurred.push(e.occurred_at.map(Timestamp::as_millis));
        received.push(ev.received_at.as_millis());
        headers.push(serde_json::to_string(&ev.headers).unwrap_or_else(|_| "[]".into()));
        bodies.push(ev.body.as_slice());
        conversations.push(e.conversation_id.as_deref());
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO events (id, tenant, source, origin, sor_event_id, dedupe_key, event_type,
                channel, raw_channel, object_type, object_id, occurred_at, received_at, headers,
                body, conversation_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                $12::int8[], $13::int8[], $14::text[], $15::bytea[], $16::text[])
             ON CONFLICT (source, dedupe_key) DO NOTHING
             RETURNING id",
        )
        .await?;
    let inserted = client
        .query(
            &stmt,
            &[
                &ids,
                &tenants,
                &sources,
                &origins,
                &sor_ids,
                &keys,
                &types,
                &channels,
                &raw_channels,
                &object_types,
                &object_ids,
                &occurred,
                &received,
                &headers,
                &bodies,
                &conversations,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(inserted)
}

/// For events that were not inserted: the id of the event each duplicates, by source and
/// dedupe key.
async fn originals_of(
    client: &impl GenericClient,
    events: &[&NewEvent],
    inserted: &HashSet<String>,
) -> std::result::Result<HashMap<(String, String), String>, tokio_postgres::Error> {
    // Duplicates (of a stored event, or of an earlier copy in this very batch): the id of the
    // event they duplicate. In READ COMMITTED, this statement sees a copy that a concurrent
    // transaction committed while our insert waited for it.
    let mut originals: HashMap<(String, String), String> = HashMap::new();
    if inserted.len() < events.len() {
        let mut dup_sources = Vec::new();
        let mut dup_keys = Vec::new();
        for ev in events.iter().filter(|e| !inserted.contains(e.id.as_str())) {
            dup_sources.push(ev.source.as_str());
            dup_keys.push(ev.normalized.dedupe_key.as_str());
        }
        let stmt = client
            .prepare_cached(
                "SELECT e.source, e.dedupe_key, e.id FROM events e
                 JOIN UNNEST($1::text[], $2::text[]) AS k(source, dedupe_key)
                   ON e.source = k.source AND e.dedupe_key = k.dedupe_key",
            )
            .await?;
        for r in client.query(&stmt, &[&dup_sources, &dup_keys]).await? {
            originals.insert((r.get(0), r.get(1)), r.get(2));
        }
    }
    Ok(originals)
}

/// The deliveries of a run of ingests, as column arrays for one `UNNEST` insert.
#[derive(Default)]
struct NewDeliveries<'a> {
    ids: Vec<&'a str>,
    events: Vec<&'a str>,
    destinations: Vec<&'a str>,
    tenants: Vec<&'a str>,
    sources: Vec<&'a str>,
    channels: Vec<&'a str>,
    times: Vec<i64>,
}

impl<'a> NewDeliveries<'a> {
    fn push(&mut self, ev: &'a NewEvent, id: &'a str, destination: &'a str) {
        self.ids.push(id);
        self.events.push(ev.id.as_str());
        self.destinations.push(destination);
        self.tenants.push(ev.tenant.as_str());
        self.sources.push(ev.source.as_str());
        self.channels.push(ev.normalized.channel.as_str());
        self.times.push(ev.received_at.as_millis());
    }

    async fn insert(
        &self,
        client: &impl GenericClient,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        {
            let stmt = client
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state,
                    attempts, due_at, created_at, updated_at)
                 SELECT d.id, d.event_id, d.destination, d.tenant, d.source, d.channel, 'pending',
                    0, d.t, d.t, d.t
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::text[], $7::int8[])
                    AS d(id, event_id, destination, tenant, source, channel, t)",
            )
            .await?;
            client
                .execute(
                    &stmt,
                    &[
                        &self.ids,
                        &self.events,
                        &self.destinations,
                        &self.tenants,
                        &self.sources,
                        &self.channels,
                        &self.times,
                    ],
                )
                .await?;
        }
        Ok(())
    }
}

/// What a finished attempt leaves on its delivery: the state, when it is next due, and when it
/// was delivered.
fn outcome_of(a: &FinishedAttempt) -> (DeliveryState, Timestamp, Option<i64>) {
    match a.next {
        NextStep::Delivered => (
            DeliveryState::Delivered,
            a.finished_at,
            Some(a.finished_at.as_millis()),
        ),
        NextStep::RetryAt(t) => (DeliveryState::Retrying, t, None),
        NextStep::Dead => (DeliveryState::Dead, a.finished_at, None),
    }
}

/// Records finished attempts with one statement: each delivery changes only under its lease,
/// every attempt is recorded (`superseded` when its lease was lost), and the deliveries that
/// changed are counted into `counts`. A finish whose lease was taken over is refused alone,
/// row by row; it fails nothing else.
async fn finish_many(
    client: &impl GenericClient,
    attempts: &[&FinishedAttempt],
    counts: &mut Counts,
) -> std::result::Result<(), WriteError> {
    let n = attempts.len();
    let mut ids = Vec::with_capacity(n);
    let mut leases = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut numbers = Vec::with_capacity(n);
    let mut due = Vec::with_capacity(n);
    let mut finished = Vec::with_capacity(n);
    let mut delivered = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut completions = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    for a in attempts {
        let (state, due_at, delivered_at) = outcome_of(a);
        ids.push(a.delivery_id.as_str());
        leases.push(a.lease_id.as_str());
        states.push(state.as_str());
        numbers.push(i32::try_from(a.attempt).unwrap_or(i32::MAX));
        due.push(due_at.as_millis());
        finished.push(a.finished_at.as_millis());
        delivered.push(delivered_at);
        statuses.push(a.status.map(i32::from));
        errors.push(a.error.as_deref());
        // A destination on receipts: the 2xx leaves the delivery `received`, unless its
        // handler confirmed before its answer was read (the first word stands).
        completions.push(
            (a.awaits_completion && state == DeliveryState::Delivered)
                .then_some(CompletionState::Received.as_str()),
        );
        started.push(a.started_at.as_millis());
        durations.push(a.finished_at.since(a.started_at).as_millis() as i64);
    }
    // `n` numbers the finishes, so the attempt rows are inserted in queue order and a finish
    // that changed its delivery is told from one that did not, even when a late finish and
    // the one holding the lease now name the same delivery. Under READ COMMITTED, a row that
    // another node claims meanwhile is read again once its lock is released, with its new
    // lease, and is then left alone.
    let stmt = client
        .prepare_cached(
            "WITH f AS (
                SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int8[],
                    $6::int8[], $7::int8[], $8::int4[], $9::text[], $10::text[], $11::int8[],
                    $12::int8[])
                    WITH ORDINALITY AS f(id, lease_id, state, attempt, due_at, finished_at,
                        delivered_at, status, error, completion, started_at, duration_ms, n)
             ), finished AS (
                UPDATE deliveries d SET state = f.state, attempts = f.attempt, due_at = f.due_at,
                    lease_id = NULL, lease_node = NULL, updated_at = f.finished_at,
                    delivered_at = f.delivered_at, last_status = f.status, last_error = f.error,
                    completion = COALESCE(d.completion, f.completion),
                    delivered_ms = CASE WHEN f.state = 'delivered' THEN f.duration_ms END
                FROM f
                -- `IS TRUE`: see postgres/mod.rs (deliveries found by id while in flight).
                WHERE d.id = f.id AND (d.state = 'in_flight') IS TRUE
                    AND d.lease_id = f.lease_id
                RETURNING f.n
             ), recorded AS (
                INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status,
                    error, outcome)
                SELECT f.id, f.attempt, f.started_at, f.duration_ms, f.status, f.error,
                    CASE WHEN x.n IS NULL THEN 'superseded' ELSE f.state END
                FROM f LEFT JOIN finished x ON x.n = f.n
                -- A success under its lease is kept on its delivery row (`delivered_ms`), not
                -- as an attempt row; failures, dead letters and superseded finishes get rows.
                WHERE f.state <> 'delivered' OR x.n IS NULL
                ORDER BY f.n
             )
             SELECT n FROM finished",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids,
                &leases,
                &states,
                &numbers,
                &due,
                &finished,
                &delivered,
                &statuses,
                &errors,
                &completions,
                &started,
                &durations,
            ],
        )
        .await?;
    for row in rows {
        let n: i64 = row.get(0);
        let a = usize::try_from(n - 1)
            .ok()
            .and_then(|i| attempts.get(i))
            .ok_or_else(|| {
                WriteError::Failed(StoreError::Corrupt(format!(
                    "finish number {n} is not one of the {} sent",
                    attempts.len()
                )))
            })?;
        counts.finished(a, outcome_of(a).0);
    }
    Ok(())
}

async fn reject(
    client: &impl GenericClient,
    rej: &Rejection,
    counts: &mut Counts,
) -> std::result::Result<(), tokio_postgres::Error> {
    if rej.body.is_some() || rej.kind == RejectionKind::Invalid {
        let stmt = client
            .prepare_cached(
                "INSERT INTO rejections (at, tenant, source, outcome, reason, body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &rej.at.as_millis(),
                    &rej.tenant,
                    &rej.source,
                    &rej.kind.outcome(),
                    &rej.reason,
                    &rej.body,
                ],
            )
            .await?;
    }
    counts.rejected(rej);
    Ok(())
}

async fn ping(client: &impl GenericClient) -> std::result::Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ('ping', '1')
             ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text",
            &[],
        )
        .await
        .map(|_| ())
}

/// Adds `counts` to the counters, in key order (transactions that lock the same rows in the
/// same order cannot deadlock), on one random shard.
pub(super) async fn flush_counts(
    client: &impl GenericClient,
    counts: Counts,
) -> std::result::Result<(), tokio_postgres::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(CounterKey, i64)> = counts.into_rows().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let shard: i16 = rand::random_range(0..COUNTER_SHARDS);
    let mut minutes = Vec::with_capacity(rows.len());
    let mut tenants = Vec::with_capacity(rows.len());
    let mut sources = Vec::with_capacity(rows.len());
    let mut channels = Vec::with_capacity(rows.len());
    let mut destinations = Vec::with_capacity(rows.len());
    let mut metrics = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        minutes.push(k.minute);
        tenants.push(k.tenant);
        sources.push(k.source);
        channels.push(k.channel);
        destinations.push(k.destination);
        metrics.push(k.metric.as_str());
        values.push(v);
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO counters (minute, tenant, source, channel, destination, metric, shard, count)
             SELECT c.minute, c.tenant, c.source, c.channel, c.destination, c.metric, $7, c.count
             FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::int8[])
                  AS c(minute, tenant, source, channel, destination, metric, count)
             ON CONFLICT (minute, tenant, source, channel, destination, metric, shard)
             DO UPDATE SET count = counters.count + excluded.count",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &minutes,
                &tenants,
                &sources,
                &channels,
                &destinations,
                &metrics,
                &shard,
                &values,
            ],
        )
        .await?;
    Ok(())
}
