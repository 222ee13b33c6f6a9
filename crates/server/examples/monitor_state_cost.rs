//! What the monitor duty writes to the store at each evaluation, for 10,000 flows: the single
//! document of every flow's status it used to rewrite every minute, against the per-flow
//! expectation documents it now writes only when they change (`duties::book`): the numbers
//! of each flow are compared with those stored, and only a changed flow's document is encoded. Both are
//! written to a real SQLite store (WAL, `synchronous=FULL`) in a temporary directory.
//!
//! `cargo run --release -p intake-server --example monitor-state-cost -- [FLOWS]`
//!
//! The flows and their four weeks of history are those of `intake-monitor`'s tick-cost
//! measurement (`synthetic-bench`, seed 42); the 61 evaluations run from an hour's start to
//! the next one's, each after a minute of counts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use intake_core::Timestamp;
use intake_monitor::{FlowKey, Monitor, MonitorSettings, RuleBook};
use intake_server::duties::book;
use intake_store::OpenOptions;
use rand::{Rng, SeedableRng};

const HOUR_MS: i64 = 3_600_000;

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().context("FLOWS must be a number"))
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let url = format!("sqlite://{}/intake.db", dir.path().display());
    let store = intake_store::open(
        &url,
        OpenOptions {
            max_batch: 512,
            pool_size: 1,
            node_id: "bench".into(),
        },
    )
    .await?;
    let (mut monitor, keys, rates, first_min) = history(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    let mut stored = book::StoredFlows::default();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    println!("== what one evaluation writes, over {n} flows");
    for m in first_min..first_min + 61 {
        let now = Timestamp(m * 60_000);
        // Before: every flow's status, one document, every evaluation.
        let t = Instant::now();
        let doc = serde_json::to_string(&monitor.flow_status(now))?;
        let bytes = doc.len();
        store.put_state(book::FLOWS_STATE, doc).await?;
        before.push((t.elapsed(), bytes, 1));
        // After: the expectation documents that changed.
        let t = Instant::now();
        let changes = book::changes(&stored, monitor.flow_hours(now));
        let writes = book::encode(&changes)?;
        let bytes: usize = writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
            .sum();
        let rows = writes.len();
        if !writes.is_empty() {
            store.put_states(writes).await?;
        }
        stored.apply(changes);
        after.push((t.elapsed(), bytes, rows));
        if m % 60 == 0 || m == first_min + 1 || m == first_min + 30 {
            println!(
                "minute {:>2}: before {:>7.1} ms, {:>9} bytes in 1 row | after {:>7.1} ms, {:>9} bytes in {:>5} rows",
                m % 60,
                before.last().map_or(0.0, |b| b.0.as_secs_f64() * 1e3),
                before.last().map_or(0, |b| b.1),
                after.last().map_or(0.0, |a| a.0.as_secs_f64() * 1e3),
                bytes,
                rows
            );
        }
        feed(&mut monitor, &mut rng, &keys, &rates, m);
    }
    for (name, runs) in [("before", &before), ("after", &after)] {
        // The first evaluation after a start writes every flow; the other 60 are an hour.
        let hour = &runs[1..];
        let bytes: usize = hour.iter().map(|r| r.1).sum();
        let rows: usize = hour.iter().map(|r| r.2).sum();
        let mut times: Vec<Duration> = hour.iter().map(|r| r.0).collect();
        times.sort();
        println!(
            "{name}: over the hour {:.1} MB in {rows} rows; a tick's median {:.1} ms, max {:.1} ms",
            bytes as f64 / 1e6,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// `n` flows with four weeks of hourly history and six hours of minutes, ending at an hour's
/// start (the same flows as `intake-monitor`'s tick-cost measurement).
fn history(n: usize) -> (Monitor, Vec<FlowKey>, Vec<f64>, i64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let start_hour: i64 = 1_767_571_200_000 / HOUR_MS;
    let hours = 28 * 24;
    let keys: Vec<FlowKey> = (0..n)
        .map(|i| FlowKey {
            tenant: format!("tenant-{}", i / 2),
            source: format!("tenant-{}-src", i / 2),
            channel: if i % 2 == 0 { "email" } else { "chat" }.into(),
        })
        .collect();
    let rates: Vec<f64> = (0..n)
        .map(|_| 10f64.powf(rng.random_range(0.0..3.0)))
        .collect();
    for (k, &r) in keys.iter().zip(&rates) {
        for h in 0..hours - 6 {
            let v = (r * rng.random_range(0.7..1.3)) as u32;
            monitor.record_flow_hour(k, Timestamp((start_hour + h) * HOUR_MS), v);
        }
    }
    let first_min = (start_hour + hours - 6) * 60;
    for m in first_min..first_min + 360 {
        feed(&mut monitor, &mut rng, &keys, &rates, m);
    }
    (monitor, keys, rates, first_min + 360)
}

/// One minute of counts for every flow.
fn feed(
    monitor: &mut Monitor,
    rng: &mut rand::rngs::StdRng,
    keys: &[FlowKey],
    rates: &[f64],
    m: i64,
) {
    for (k, &r) in keys.iter().zip(rates) {
        let v = if rng.random_bool((r / 60.0).min(1.0)) {
            (r / 60.0).ceil() as u32
        } else {
            0
        };
        monitor.record_flow(k, Timestamp(m * 60_000), v);
    }
}
