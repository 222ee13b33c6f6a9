//! The detection benchmark of docs/benchmarks.md: the synthetic backtest over 100 tenants ×
//! 2 channels × 8 weeks for several seeds and burstiness levels, then the cost of one
//! evaluation over 10,000 flows.
//!
//! `cargo run --release -p intake-monitor --example synthetic-bench -- [SEEDS] [TENANTS] [WEEKS]`
//!
//! `SEEDS` is a count (`5`: seeds 1–5) or a range (`6-10`). The environment variable `LEVELS`
//! lists the burstiness levels (`smooth` for events that arrive one by one, a number for
//! gamma-Poisson minute counts of that shape with batched and polled flows; default
//! `smooth,4,2,1`), `THREADS` how many runs go at once (default 2), `SHOW_FALSE=1` prints the
//! false alerts' reasons, `SHOW_PROBES=1` the 90/h probe channels' pages (where in its hour
//! each stop fell, the delay and the reason) and the 10/h probes' (the local time of each
//! stop, the delay and the reason, or that it was not paged), `HOUR_LEVEL=persistent` generates hour levels
//! that persist from one hour to the next (an AR(1) level, see
//! `synthetic::HourLevel::Persistent`; default `independent`, every hour drawn afresh) and
//! `NO_TICK_COST=1` skips the cost measurement.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use intake_core::Timestamp;
use intake_monitor::synthetic::{self, HourLevel, SyntheticReport, SyntheticSpec};
use intake_monitor::{FlowKey, Monitor, MonitorSettings, RuleBook};
use rand::{Rng, SeedableRng};

fn seeds(arg: Option<&String>) -> Vec<u64> {
    match arg.map(|a| a.split_once('-')) {
        Some(Some((a, b))) => {
            let (a, b) = (a.parse().unwrap_or(1), b.parse().unwrap_or(1));
            (a..=b).collect()
        }
        _ => (1..=arg.and_then(|a| a.parse().ok()).unwrap_or(3)).collect(),
    }
}

fn levels() -> Vec<Option<f64>> {
    std::env::var("LEVELS")
        .unwrap_or_else(|_| "smooth,4,2,1".into())
        .split(',')
        .map(|l| l.trim().parse().ok())
        .collect()
}

fn hour_level() -> HourLevel {
    match std::env::var("HOUR_LEVEL").as_deref() {
        Ok("persistent") => HourLevel::Persistent,
        _ => HourLevel::Independent,
    }
}

fn level_name(l: Option<f64>) -> String {
    l.map_or("smooth".into(), |k| format!("shape {k}"))
}

/// One line per run, for the tables of docs/detectors.md.
fn summary(level: Option<f64>, seed: u64, r: &SyntheticReport) -> String {
    let d = |label: &str, rule: &str| {
        r.delays
            .get(&(label.to_string(), rule.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let q = |s: &synthetic::DelayStats, x: f64| s.quantile(x).map_or("-".into(), |v| v.to_string());
    let fast = d("zero@90/h", "inbound_stopped");
    let busy = d(synthetic::BUSY_ZERO, "inbound_stopped");
    let batched = d(
        &format!("{}/batched", synthetic::BUSY_ZERO),
        "inbound_stopped",
    );
    let polled = d(
        &format!("{}/polled", synthetic::BUSY_ZERO),
        "inbound_stopped",
    );
    let slow = d("zero@10/h", "inbound_stopped");
    let half = d("half", "inbound_drop");
    let count = |rule: &str| r.false_alerts.get(rule).copied().unwrap_or(0);
    format!(
        "SUMMARY {:?} {:<9} seed {seed:>2}: stopped false {:>2} ({:.2}/100tw) | drop false {:>3} \
         ({:.2}/100tw, grouped {}) | 90/h {}/{} med {} p90 {} max {} | >=90/h {}/{} {:?} \
         (batched {}/{} {:?}, polled {}/{} {:?}) | 10/h {}/{} med {} | half drop {}/{}",
        hour_level(),
        level_name(level),
        count("inbound_stopped"),
        r.false_rate("inbound_stopped"),
        count("inbound_drop"),
        r.false_rate("inbound_drop"),
        r.grouped.len(),
        fast.detected,
        fast.incidents,
        q(&fast, 0.5),
        q(&fast, 0.9),
        fast.delays.last().map_or("-".into(), |v| v.to_string()),
        busy.detected,
        busy.incidents,
        busy.delays,
        batched.detected,
        batched.incidents,
        batched.delays,
        polled.detected,
        polled.incidents,
        polled.delays,
        slow.detected,
        slow.incidents,
        q(&slow, 0.5),
        half.detected,
        half.incidents,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds = seeds(args.first());
    let tenants = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let weeks = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let rules = RuleBook::default();
    let settings = MonitorSettings::default();
    let jobs: Vec<(Option<f64>, u64)> = levels()
        .into_iter()
        .flat_map(|l| seeds.iter().map(move |&s| (l, s)))
        .collect();
    let queue = Mutex::new(jobs.iter().enumerate());
    let done = Mutex::new(Vec::new());
    // Runs go on `threads` threads (each is independent and deterministic); reports are
    // printed in level and seed order.
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            // The queue's lock is taken and released inside `next` (a `while let` on the lock
            // itself would hold it for the whole run).
            let (queue, done, rules, settings) = (&queue, &done, &rules, &settings);
            let next = move || {
                queue
                    .lock()
                    .ok()
                    .and_then(|mut q| q.next())
                    .map(|(i, &j)| (i, j))
            };
            scope.spawn(move || {
                while let Some((i, (level, seed))) = next() {
                    let spec = SyntheticSpec {
                        tenants,
                        weeks,
                        seed,
                        burst_shape: level,
                        hour_level: hour_level(),
                        ..SyntheticSpec::default()
                    };
                    let t0 = Instant::now();
                    let report = synthetic::run(&spec, rules, settings);
                    eprintln!("{}", summary(level, seed, &report));
                    if let Ok(mut d) = done.lock() {
                        d.push((i, level, seed, report, t0.elapsed()));
                    }
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|d| d.0);
    for (_, level, seed, report, took) in &done {
        println!(
            "== {} seed {seed}: {tenants} tenants × 2 channels × {weeks} weeks ({:.1} s)",
            level_name(*level),
            took.as_secs_f64()
        );
        print!("{report}");
        if std::env::var_os("SHOW_FALSE").is_some() {
            for l in &report.false_samples {
                println!("    {l}");
            }
        }
        if std::env::var_os("SHOW_PROBES").is_some() {
            for l in &report.probe_samples {
                println!("    {l}");
            }
        }
    }
    for (_, level, seed, report, _) in &done {
        println!("{}", summary(*level, *seed, report));
    }
    if std::env::var_os("NO_TICK_COST").is_none() {
        tick_cost(10_000);
    }
}

/// One evaluation over `n` flows with four weeks of history each.
fn tick_cost(n: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let start_hour: i64 = 1_767_571_200_000 / 3_600_000;
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
    let t0 = Instant::now();
    for (k, &r) in keys.iter().zip(&rates) {
        for h in 0..hours - 6 {
            let v = (r * rng.random_range(0.7..1.3)) as u32;
            monitor.record_flow_hour(k, Timestamp((start_hour + h) * 3_600_000), v);
        }
    }
    let first_min = (start_hour + hours - 6) * 60;
    let feed = |monitor: &mut Monitor, rng: &mut rand::rngs::StdRng, m: i64| {
        for (k, &r) in keys.iter().zip(&rates) {
            let v = if rng.random_bool((r / 60.0).min(1.0)) {
                (r / 60.0).ceil() as u32
            } else {
                0
            };
            monitor.record_flow(k, Timestamp(m * 60_000), v);
        }
    };
    for m in first_min..first_min + 360 {
        feed(&mut monitor, &mut rng, m);
    }
    println!(
        "== tick cost over {n} flows (4 weeks of history each; built in {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let mut plain = Vec::new();
    let mut aligned = Vec::new();
    let mut first = None;
    for m in first_min + 360..first_min + 421 {
        let t = Instant::now();
        monitor.evaluate(Timestamp(m * 60_000));
        let d = t.elapsed();
        if first.is_none() {
            first = Some(d);
        } else if m % 30 == 0 {
            aligned.push(d);
        } else {
            plain.push(d);
        }
        feed(&mut monitor, &mut rng, m);
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!(
        "first evaluation (estimates every dispersion): {:.1} ms",
        first.unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "evaluation, median: {:.1} ms (max {:.1} ms, at an hour's end when bursts are learnt); \
         with the inbound_drop test and Benjamini–Hochberg (every 30 min): {:.1} ms",
        med(&mut plain).as_secs_f64() * 1e3,
        max(&plain).as_secs_f64() * 1e3,
        med(&mut aligned).as_secs_f64() * 1e3
    );
}
