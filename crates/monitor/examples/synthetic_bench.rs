//! The detection benchmark of docs/benchmarks.md: the synthetic backtest over 100 tenants ×
//! 2 channels × 8 weeks for several seeds, then the cost of one evaluation over 10,000 flows.
//!
//! `cargo run --release -p intake-monitor --example synthetic-bench -- [SEEDS] [TENANTS] [WEEKS]`

use std::time::{Duration, Instant};

use intake_core::Timestamp;
use intake_monitor::synthetic::{self, SyntheticSpec};
use intake_monitor::{FlowKey, Monitor, MonitorSettings, RuleBook};
use rand::{Rng, SeedableRng};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seeds = args.first().copied().unwrap_or(3);
    let tenants = args.get(1).copied().unwrap_or(100) as usize;
    let weeks = args.get(2).copied().unwrap_or(8) as u32;
    let rules = RuleBook::default();
    let settings = MonitorSettings::default();
    // Seeds run on parallel threads (each is independent and deterministic); reports are
    // printed in seed order.
    let reports: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=seeds)
            .map(|seed| {
                let (rules, settings) = (&rules, &settings);
                scope.spawn(move || {
                    let spec = SyntheticSpec {
                        tenants,
                        weeks,
                        seed,
                        ..SyntheticSpec::default()
                    };
                    let t0 = Instant::now();
                    let report = synthetic::run(&spec, rules, settings);
                    (spec, report, t0.elapsed())
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut stopped = Vec::new();
    for (spec, report, took) in &reports {
        println!(
            "== seed {}: {tenants} tenants × {} channels × {weeks} weeks ({:.1} s)",
            spec.seed,
            spec.channels,
            took.as_secs_f64()
        );
        print!("{report}");
        if std::env::var_os("SHOW_FALSE").is_some() {
            for l in &report.false_samples {
                println!("    {l}");
            }
        }
        stopped.push(report.false_rate("inbound_stopped"));
    }
    println!(
        "inbound_stopped false alerts per 100 tenant-weeks over {seeds} seeds: {:?}",
        stopped
    );
    tick_cost(10_000);
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
    println!(
        "first evaluation (estimates every dispersion): {:.1} ms",
        first.unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "evaluation, median: {:.1} ms; with the inbound_drop test and Benjamini–Hochberg (every 30 min): {:.1} ms",
        med(&mut plain).as_secs_f64() * 1e3,
        med(&mut aligned).as_secs_f64() * 1e3
    );
}
