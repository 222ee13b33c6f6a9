//! The property test: random sequences of operations against a real store and a model of it.
//!
//! The model predicts, for every delivery, its state, attempt count, due time and lease, and
//! every attempt record; after each step the store must agree with it. Over and above the
//! model, the invariants are checked directly: no accepted event is lost or duplicated, every
//! event keeps one delivery per destination, claims never return delivered or dead work,
//! nothing is in flight after a restart, and attempt counts never decrease.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use intake_core::delivery::{DeliveryState, NextStep};
use intake_core::{DeliveryId, EventId, Timestamp};
use intake_store::{ClaimedDelivery, Store};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::common::*;

const SOURCES: [&str; 2] = ["kustomer", "zendesk"];
const DESTINATIONS: [&str; 3] = ["crm", "warehouse", "audit"];
const MODEL_LEASE: Duration = Duration::from_millis(1_000);

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Delivered,
    RetryAfter(u64),
    Dead,
}

#[derive(Debug, Clone)]
enum Op {
    Ingest {
        source: usize,
        key: usize,
        destinations: Vec<&'static str>,
    },
    Claim {
        destination: &'static str,
        limit: usize,
    },
    /// Finish one of the claims made so far (which may have lost its lease since), or, when
    /// `forged`, the same delivery under a lease that never existed.
    Finish {
        pick: Index,
        outcome: Outcome,
        forged: bool,
    },
    Advance {
        ms: u64,
    },
    Release {
        pick: Index,
    },
    /// Stop the store and open the file again: gracefully (`close`, then drop), or by just
    /// dropping it, which is all a panicking or aborted owner would do.
    Reopen {
        graceful: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SOURCES.len(), 0..4usize, proptest::sample::subsequence(DESTINATIONS.to_vec(), 1..=3))
            .prop_map(|(source, key, destinations)| Op::Ingest { source, key, destinations }),
        5 => (proptest::sample::select(DESTINATIONS.to_vec()), 1..4usize)
            .prop_map(|(destination, limit)| Op::Claim { destination, limit }),
        5 => (
            any::<Index>(),
            prop_oneof![
                Just(Outcome::Delivered),
                (0..3_000u64).prop_map(Outcome::RetryAfter),
                Just(Outcome::Dead),
            ],
            proptest::bool::weighted(0.15),
        )
            .prop_map(|(pick, outcome, forged)| Op::Finish { pick, outcome, forged }),
        3 => (0..2_500u64).prop_map(|ms| Op::Advance { ms }),
        2 => any::<Index>().prop_map(|pick| Op::Release { pick }),
        1 => proptest::bool::weighted(0.25).prop_map(|graceful| Op::Reopen { graceful }),
    ]
}

#[derive(Debug, Clone)]
struct ModelDelivery {
    event: EventId,
    source: &'static str,
    destination: &'static str,
    state: DeliveryState,
    attempts: u32,
    due_at: i64,
    lease: Option<String>,
    created_at: i64,
    /// Outcomes of the attempt records, in the order they were written.
    outcomes: Vec<String>,
}

#[derive(Default)]
struct Model {
    now: i64,
    /// Accepted events and their deliveries' (id, destination).
    events: BTreeMap<EventId, Vec<(DeliveryId, &'static str)>>,
    by_key: HashMap<(&'static str, usize), EventId>,
    deliveries: HashMap<DeliveryId, ModelDelivery>,
    /// Every claim the store ever returned, live or stale.
    claims: Vec<ClaimedDelivery>,
    leases_seen: HashSet<String>,
    /// Attempt counts as last observed in the store.
    observed_attempts: HashMap<DeliveryId, u32>,
}

impl Model {
    fn due(&self, destination: &str) -> Vec<(&DeliveryId, &ModelDelivery)> {
        self.deliveries
            .iter()
            .filter(|(_, d)| {
                d.destination == destination && !d.state.is_final() && d.due_at <= self.now
            })
            .collect()
    }
}

async fn step(store: &dyn Store, db: &Db, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let now = Timestamp(m.now);
    match op {
        Op::Ingest {
            source,
            key,
            destinations,
        } => {
            let source = SOURCES[*source];
            let ev = event(source, &format!("key-{key}"), destinations, now);
            let accepted = store
                .ingest(ev.clone())
                .await
                .map_err(|e| TestCaseError::fail(format!("ingest: {e}")))?;
            match m.by_key.get(&(source, *key)) {
                Some(first) => {
                    prop_assert!(
                        accepted.duplicate,
                        "a repeated dedupe key was not a duplicate"
                    );
                    prop_assert_eq!(&accepted.id, first);
                }
                None => {
                    prop_assert!(
                        !accepted.duplicate,
                        "a new dedupe key was taken for a duplicate"
                    );
                    prop_assert_eq!(&accepted.id, &ev.id);
                    m.by_key.insert((source, *key), ev.id.clone());
                    let mut ds = Vec::new();
                    for ((id, _), dest) in ev.deliveries.iter().zip(destinations) {
                        ds.push((id.clone(), *dest));
                        m.deliveries.insert(
                            id.clone(),
                            ModelDelivery {
                                event: ev.id.clone(),
                                source,
                                destination: dest,
                                state: DeliveryState::Pending,
                                attempts: 0,
                                due_at: m.now,
                                lease: None,
                                created_at: m.now,
                                outcomes: Vec::new(),
                            },
                        );
                    }
                    m.events.insert(ev.id.clone(), ds);
                }
            }
        }
        Op::Claim { destination, limit } => {
            let due: HashMap<DeliveryId, i64> = m
                .due(destination)
                .into_iter()
                .map(|(id, d)| (id.clone(), d.due_at))
                .collect();
            let claimed = store
                .claim_due(destination, now, MODEL_LEASE, *limit)
                .await
                .map_err(|e| TestCaseError::fail(format!("claim: {e}")))?;
            prop_assert_eq!(
                claimed.len(),
                (*limit).min(due.len()),
                "claimed {:?} of due {:?}",
                claimed,
                due
            );
            let claimed_ids: HashSet<&DeliveryId> = claimed.iter().map(|c| &c.id).collect();
            prop_assert_eq!(
                claimed_ids.len(),
                claimed.len(),
                "a delivery was claimed twice in one claim"
            );
            if let Some(first) = claimed.first() {
                prop_assert!(
                    m.leases_seen.insert(first.lease_id.clone()),
                    "a lease id was reused"
                );
            }
            for c in &claimed {
                let d = &m.deliveries[&c.id];
                prop_assert!(!d.state.is_final(), "claim returned a {} delivery", d.state);
                prop_assert!(
                    due.contains_key(&c.id),
                    "claim returned a delivery that was not due"
                );
                prop_assert_eq!(c.destination.as_str(), *destination);
                prop_assert_eq!(&c.event_id, &d.event);
                prop_assert_eq!(&c.lease_id, &claimed[0].lease_id);
                prop_assert_eq!(c.attempt, d.attempts + 1);
            }
            // The earliest due work goes first.
            let latest_claimed = claimed.iter().map(|c| due[&c.id]).max();
            let earliest_left = due
                .iter()
                .filter(|(id, _)| !claimed_ids.contains(id))
                .map(|(_, t)| *t)
                .min();
            if let (Some(a), Some(b)) = (latest_claimed, earliest_left) {
                prop_assert!(a <= b, "claimed work due at {} before work due at {}", a, b);
            }
            for c in claimed {
                let d = m.deliveries.get_mut(&c.id).unwrap();
                d.state = DeliveryState::InFlight;
                d.lease = Some(c.lease_id.clone());
                d.due_at = now.plus(MODEL_LEASE).as_millis();
                m.claims.push(c);
            }
        }
        Op::Finish {
            pick,
            outcome,
            forged,
        } => {
            if m.claims.is_empty() {
                return Ok(());
            }
            let claim = m.claims[pick.index(m.claims.len())].clone();
            let lease = if *forged {
                "forged-lease".to_string()
            } else {
                claim.lease_id.clone()
            };
            let next = match outcome {
                Outcome::Delivered => NextStep::Delivered,
                Outcome::RetryAfter(ms) => NextStep::RetryAt(Timestamp(m.now + *ms as i64)),
                Outcome::Dead => NextStep::Dead,
            };
            store
                .finish_attempt(attempt_with_lease(&claim, &lease, next, now))
                .await
                .map_err(|e| TestCaseError::fail(format!("finish: {e}")))?;
            let d = m.deliveries.get_mut(&claim.id).unwrap();
            if d.state == DeliveryState::InFlight && d.lease.as_deref() == Some(lease.as_str()) {
                d.state = next.state();
                d.attempts = claim.attempt;
                d.lease = None;
                d.due_at = match next {
                    NextStep::RetryAt(t) => t.as_millis(),
                    _ => m.now,
                };
                d.outcomes.push(next.state().as_str().to_string());
            } else {
                d.outcomes.push("superseded".to_string());
            }
        }
        Op::Advance { ms } => m.now += *ms as i64,
        Op::Release { pick } => {
            if m.claims.is_empty() {
                return Ok(());
            }
            let claim = m.claims[pick.index(m.claims.len())].clone();
            store
                .release(vec![(claim.id.clone(), claim.lease_id.clone())], now)
                .await
                .map_err(|e| TestCaseError::fail(format!("release: {e}")))?;
            let d = m.deliveries.get_mut(&claim.id).unwrap();
            if d.state == DeliveryState::InFlight
                && d.lease.as_deref() == Some(claim.lease_id.as_str())
            {
                d.state = DeliveryState::Pending;
                d.lease = None;
                d.due_at = m.now;
            }
        }
        Op::Reopen { .. } => {
            // `run` has closed the store and opened the file again, as after a crash.
            for d in m.deliveries.values_mut() {
                if d.state == DeliveryState::InFlight {
                    d.state = DeliveryState::Pending;
                    d.lease = None;
                    d.due_at = 0;
                }
            }
            let in_flight = db
                .scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'in_flight'")
                .await;
            prop_assert_eq!(
                in_flight,
                0,
                "deliveries are still in flight after a restart"
            );
        }
    }
    Ok(())
}

async fn check(store: &dyn Store, m: &mut Model) -> Result<(), TestCaseError> {
    let fail = |e: intake_store::StoreError| TestCaseError::fail(e.to_string());
    let listed: HashSet<EventId> = all_events(store).await.into_iter().map(|e| e.id).collect();
    let accepted: HashSet<EventId> = m.events.keys().cloned().collect();
    prop_assert_eq!(
        listed,
        accepted,
        "the stored events are not the accepted ones"
    );

    for (id, want) in &m.events {
        let detail = store.get_event(id).await.map_err(fail)?;
        let Some(detail) = detail else {
            return Err(TestCaseError::fail(format!("accepted event {id} is gone")));
        };
        let got = &detail.summary.deliveries;
        prop_assert_eq!(
            got.len(),
            want.len(),
            "event {} has the wrong number of deliveries",
            id
        );
        let mut got_keys: Vec<(&DeliveryId, &str)> = got
            .iter()
            .map(|d| (&d.id, d.destination.as_str()))
            .collect();
        let mut want_keys: Vec<(&DeliveryId, &str)> = want.iter().map(|(i, d)| (i, *d)).collect();
        got_keys.sort();
        want_keys.sort();
        prop_assert_eq!(got_keys, want_keys);
        for d in got {
            prop_assert!(DeliveryState::ALL.contains(&d.state));
            let md = &m.deliveries[&d.id];
            prop_assert_eq!(d.state, md.state, "state of {}", d.id);
            prop_assert_eq!(d.attempts, md.attempts, "attempts of {}", d.id);
            let want_due = if md.state.is_final() {
                None
            } else {
                Some(Timestamp(md.due_at))
            };
            prop_assert_eq!(d.due_at, want_due, "due_at of {}", d.id);
            let before = m
                .observed_attempts
                .insert(d.id.clone(), d.attempts)
                .unwrap_or(0);
            prop_assert!(
                d.attempts >= before,
                "attempts of {} went from {} to {}",
                d.id,
                before,
                d.attempts
            );
            let mut outcomes: Vec<&str> = detail
                .attempts
                .iter()
                .filter(|a| a.delivery_id == d.id)
                .map(|a| a.outcome.as_str())
                .collect();
            let mut want_outcomes: Vec<&str> = md.outcomes.iter().map(String::as_str).collect();
            outcomes.sort_unstable();
            want_outcomes.sort_unstable();
            prop_assert_eq!(outcomes, want_outcomes, "attempt records of {}", d.id);
        }
    }

    // Gauges per (source, destination): (pending, in flight, oldest non-final, dead).
    type Gauge = (u64, u64, Option<Timestamp>, u64);
    let mut want: BTreeMap<(String, String), Gauge> = BTreeMap::new();
    for d in m
        .deliveries
        .values()
        .filter(|d| d.state != DeliveryState::Delivered)
    {
        let g = want
            .entry((d.source.to_string(), d.destination.to_string()))
            .or_default();
        if d.state == DeliveryState::Dead {
            g.3 += 1;
        } else {
            g.0 += 1;
            if d.state == DeliveryState::InFlight {
                g.1 += 1;
            }
            let t = Timestamp(d.created_at);
            g.2 = Some(g.2.map_or(t, |o| o.min(t)));
        }
    }
    let got: BTreeMap<(String, String), Gauge> = store
        .queue_stats()
        .await
        .map_err(fail)?
        .into_iter()
        .map(|s| {
            prop_assert_eq!(s.tenant.as_str(), TENANT);
            Ok((
                (s.source, s.destination),
                (s.pending, s.in_flight, s.oldest_pending_at, s.dead),
            ))
        })
        .collect::<Result<_, TestCaseError>>()?;
    prop_assert_eq!(got, want, "queue stats");

    for dest in DESTINATIONS {
        let want = m
            .deliveries
            .values()
            .filter(|d| d.destination == dest && !d.state.is_final())
            .map(|d| Timestamp(d.due_at))
            .min();
        prop_assert_eq!(
            store.next_due_at(dest).await.map_err(fail)?,
            want,
            "next_due_at({})",
            dest
        );
    }
    Ok(())
}

fn run(kind: Kind, shared_pg: Option<&str>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(async {
        let db = match shared_pg {
            Some(url) => Db::shared_pg(url).await,
            None => Db::new(kind).await,
        };
        let mut store = db.open().await;
        let mut m = Model {
            now: T0,
            ..Model::default()
        };
        for op in &ops {
            if let Op::Reopen { graceful } = op {
                if *graceful {
                    store
                        .close()
                        .await
                        .map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
                }
                // The old store holds the file's lock until it is dropped. Every write was
                // answered, so its writer has nothing left to commit.
                drop(store);
                store = db.open().await;
            }
            step(&*store, &db, &mut m, op).await?;
            check(&*store, &mut m).await?;
        }
        // No close here on SQLite: a close waits for the checkpoint thread's nap, which would
        // dominate the run time. Dropping releases the file lock; the threads end on their own.
        if kind == Kind::Postgres {
            let _ = store.close().await;
        }
        drop(store);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sqlite_store_agrees_with_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(Kind::Sqlite, None, ops)?;
    }
}

/// The same property on PostgreSQL, on one database emptied before each case (creating a
/// database per case would take most of the run).
#[test]
fn postgres_store_agrees_with_its_model() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(PgDb::create());
    let url = pg.url.clone();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        run(Kind::Postgres, Some(&url), ops)
    });
    drop(pg);
    if let Err(e) = result {
        panic!("{e}");
    }
}
