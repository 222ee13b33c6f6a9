//! Detector tests on hand-built series and simulated clocks. Every random draw is seeded.

use std::time::Duration;

use intake_core::Timestamp;
use intake_monitor::backtest::{read_counts, replay, BacktestOptions, CSV_HEADER};
use intake_monitor::stats::{bh_adjust, NegBinomial};
use intake_monitor::synthetic::{SyntheticSpec, Traffic};
use intake_monitor::{
    AlertState, FlowKey, Monitor, MonitorSettings, QueueKey, QueueSnapshot, RuleBook, Transition,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma, Poisson};

/// 2026-01-05T00:00:00Z, a Monday, in minutes.
const START: i64 = 1_767_571_200_000 / 60_000;

fn key(channel: &str) -> FlowKey {
    FlowKey {
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
        channel: channel.into(),
    }
}

fn at(m: i64) -> Timestamp {
    Timestamp(m * 60_000)
}

/// Feeds minutes `[from, to)` with counts drawn from `rate_per_hour(minute)`, with an hourly
/// Gamma multiplier of dispersion `alpha`, evaluating after each minute. Returns transitions.
fn run(
    monitor: &mut Monitor,
    k: &FlowKey,
    from: i64,
    to: i64,
    rng: &mut StdRng,
    alpha: f64,
    rate_per_hour: impl Fn(i64) -> f64,
) -> Vec<Transition> {
    let gamma = Gamma::new(1.0 / alpha, alpha).unwrap();
    let mut mult = 1.0;
    let mut out = Vec::new();
    for m in from..to {
        if m % 60 == 0 || m == from {
            mult = gamma.sample(rng);
        }
        let lambda = rate_per_hour(m) * mult / 60.0;
        let n = if lambda > 0.0 {
            Poisson::new(lambda).unwrap().sample(rng) as u32
        } else {
            0
        };
        monitor.record_flow(k, at(m), n);
        out.extend(monitor.evaluate(at(m + 1)));
    }
    out
}

fn firing<'a>(ts: &'a [Transition], rule: &str) -> Vec<&'a Transition> {
    ts.iter()
        .filter(|t| t.rule == rule && t.state == AlertState::Firing)
        .collect()
}

/// Business hours with a night floor, in UTC.
fn weekday_shape(peak: f64) -> impl Fn(i64) -> f64 {
    move |m| {
        let hour = (m - START).rem_euclid(1440) as f64 / 60.0;
        let up = ((hour - 7.0) / 2.0).clamp(0.0, 1.0);
        let down = ((20.0 - hour) / 3.0).clamp(0.0, 1.0);
        peak * (0.1 + 0.9 * up.min(down))
    }
}

#[test]
fn zero_after_steady_flow_fires_inbound_stopped_within_fifteen_minutes() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("chat");
    let mut rng = StdRng::seed_from_u64(11);
    let shape = weekday_shape(90.0);
    // Four weeks of history, then Monday 11:00 the flow stops.
    let stop = START + 4 * 10080 + 11 * 60;
    let before = run(&mut monitor, &k, START, stop, &mut rng, 0.05, &shape);
    assert!(firing(&before, "inbound_stopped").is_empty(), "{before:#?}");
    let after = run(&mut monitor, &k, stop, stop + 60, &mut rng, 0.05, |_| 0.0);
    let fired = firing(&after, "inbound_stopped");
    let first = fired.first().expect("inbound_stopped fired");
    let delay = (first.at.as_millis() / 60_000) - stop;
    assert!(delay <= 15, "fired after {delay} min: {}", first.reason);
    assert!(
        first.reason.contains("seasonal baseline, 4 weeks"),
        "{}",
        first.reason
    );
    assert!(first.reason.contains("P(0) = "), "{}", first.reason);
    assert_eq!(first.labels.channel, "chat");
}

#[test]
fn weekend_lull_does_not_fire_inbound_stopped() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("email");
    let mut rng = StdRng::seed_from_u64(12);
    let weekday = weekday_shape(40.0);
    // Weekends carry a tenth of the weekday traffic: long silences that are normal.
    let shape = move |m: i64| {
        let day = (m - START).div_euclid(1440).rem_euclid(7);
        weekday(m) * if day >= 5 { 0.1 } else { 1.0 }
    };
    let all = run(
        &mut monitor,
        &k,
        START,
        START + 6 * 10080,
        &mut rng,
        0.05,
        shape,
    );
    let week6: Vec<_> = all
        .iter()
        .filter(|t| t.at.as_millis() / 60_000 >= START + 5 * 10080)
        .cloned()
        .collect();
    assert!(firing(&week6, "inbound_stopped").is_empty(), "{week6:#?}");
    assert!(firing(&week6, "inbound_drop").is_empty(), "{week6:#?}");
}

#[test]
fn new_tenant_has_no_statistical_verdict_but_gap_rule_fires() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("sms");
    let mut rng = StdRng::seed_from_u64(13);
    let two_days = START + 2 * 1440;
    let before = run(&mut monitor, &k, START, two_days, &mut rng, 0.05, |_| 30.0);
    assert!(before.is_empty(), "{before:#?}");
    let statuses = monitor.flow_status(at(two_days));
    assert_eq!(statuses[0].baseline, None, "two days give no baseline");
    let after = run(
        &mut monitor,
        &k,
        two_days,
        two_days + 180,
        &mut rng,
        0.05,
        |_| 0.0,
    );
    assert!(firing(&after, "inbound_drop").is_empty());
    let fired = firing(&after, "inbound_stopped");
    let first = fired.first().expect("the gap rule fired");
    assert!(first.reason.contains("no baseline yet"), "{}", first.reason);
    // The silence counts from the last event, a few minutes before the stop; the gap limit is
    // at least an hour (`min_gap`), three times the longest gap (a few minutes at 30/h).
    let delay = first.at.as_millis() / 60_000 - two_days;
    assert!(
        (45..=120).contains(&delay),
        "fired after {delay} min: {}",
        first.reason
    );
    // The value is the silence in whole minutes after the last event's minute.
    assert!(first.value >= 59.0, "{}", first.value);
}

#[test]
fn benjamini_hochberg_across_1000_null_series_keeps_the_false_discovery_rate() {
    let q = 0.05;
    let seeds = 200;
    let mut any_discovery = 0;
    let mut fdp_sum = 0.0;
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let alpha = 0.1;
        let gamma = Gamma::new(1.0 / alpha, alpha).unwrap();
        let mut p = Vec::new();
        let mut is_null = Vec::new();
        // Global null: 1000 series at their baseline.
        for _ in 0..1000 {
            let mean = 50.0;
            let x = Poisson::new(mean * gamma.sample(&mut rng))
                .unwrap()
                .sample(&mut rng) as u64;
            p.push(NegBinomial { mean, alpha }.cdf(x));
        }
        let adj = bh_adjust(&p);
        if adj.iter().any(|&a| a <= q) {
            any_discovery += 1;
        }
        // Mixed: 900 null, 100 dropped to a fifth.
        p.clear();
        for i in 0..1000 {
            let mean = 50.0;
            let drop = i < 100;
            let x = Poisson::new(mean * gamma.sample(&mut rng) * if drop { 0.2 } else { 1.0 })
                .unwrap()
                .sample(&mut rng) as u64;
            p.push(NegBinomial { mean, alpha }.cdf(x));
            is_null.push(!drop);
        }
        let adj = bh_adjust(&p);
        let rejected: Vec<usize> = (0..1000).filter(|&i| adj[i] <= q).collect();
        assert!(rejected.len() > 20, "BH finds the real drops");
        let false_ones = rejected.iter().filter(|&&i| is_null[i]).count();
        fdp_sum += false_ones as f64 / rejected.len() as f64;
    }
    // Under the global null the FDR is the chance of any discovery: at most q, plus three
    // standard errors of the estimate over 200 seeds.
    let fwer = any_discovery as f64 / seeds as f64;
    assert!(
        fwer <= q + 3.0 * (q * (1.0 - q) / seeds as f64).sqrt(),
        "{fwer}"
    );
    // With 10 % real drops BH controls the FDR at 0.9 q.
    let fdr = fdp_sum / seeds as f64;
    assert!(fdr <= 0.9 * q + 0.01, "{fdr}");
    assert!(
        fdr > 0.0,
        "a test that finds no false discovery at all measures nothing"
    );
}

#[test]
fn queue_stalled_fires_after_its_threshold_and_resolves_after_recovery() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let q = QueueKey {
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
        destination: "handler".into(),
    };
    let t0 = START * 60_000;
    // The handler goes down at t0: deliveries pile up from then on.
    let mut transitions = Vec::new();
    for i in 0..=10 {
        let now = Timestamp(t0 + i * 60_000 + 5_000);
        monitor.observe_queue(
            &q,
            now,
            QueueSnapshot {
                pending: 10 * i as u64,
                in_flight: 0,
                oldest_pending_since: Some(Timestamp(t0)),
                dead: 0,
            },
        );
        transitions.extend(monitor.evaluate(now).into_iter().map(|t| (i, t)));
    }
    let fired: Vec<_> = transitions
        .iter()
        .filter(|(_, t)| t.rule == "queue_stalled")
        .collect();
    assert_eq!(fired.len(), 1, "{fired:#?}");
    let (minute, t) = fired[0];
    // Age 5m05s at minute 5: just over the 5-minute threshold.
    assert_eq!(*minute, 5);
    assert_eq!(t.state, AlertState::Firing);
    assert!(t.reason.contains("threshold 5m"), "{}", t.reason);
    assert_eq!(t.labels.destination, "handler");
    // Recovery: nothing pending. Hysteresis: resolved on the third clear evaluation.
    let mut resolved_at = None;
    for i in 11..20 {
        let now = Timestamp(t0 + i * 60_000 + 5_000);
        monitor.observe_queue(&q, now, QueueSnapshot::default());
        for t in monitor.evaluate(now) {
            if t.rule == "queue_stalled" {
                assert_eq!(t.state, AlertState::Resolved);
                resolved_at.get_or_insert(i);
            }
        }
    }
    assert_eq!(resolved_at, Some(13));
    assert!(monitor.alerts().snapshot().is_empty());
}

#[test]
fn backtest_end_to_end_on_a_small_synthetic_set() {
    let spec = SyntheticSpec {
        tenants: 3,
        channels: 1,
        weeks: 3,
        seed: 5,
        ..SyntheticSpec::default()
    };
    let traffic = Traffic::new(&spec);
    let incidents = traffic.incidents();
    let probe = incidents
        .iter()
        .find(|i| i.series == 0)
        .expect("tenant 0 carries the 90/h probe");
    let mut csv = format!("{CSV_HEADER}\n");
    for r in traffic.rows() {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            r.minute, r.key.tenant, r.key.source, r.key.channel, r.count
        ));
    }
    let rows = read_counts(csv.as_bytes()).unwrap();
    let mut out = Vec::new();
    let summary = replay(&rows, &BacktestOptions::default(), &mut out).unwrap();
    assert_eq!(summary.series, 3);
    assert_eq!(summary.ticks, 3 * 10080);
    let lines: Vec<serde_json::Value> = std::str::from_utf8(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), summary.transitions);
    for l in &lines {
        for field in [
            "rule", "tenant", "source", "channel", "state", "at", "value", "reason",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
    }
    let detected = lines.iter().find(|l| {
        l["rule"] == "inbound_stopped"
            && l["state"] == "firing"
            && l["tenant"] == "tenant-000"
            && Timestamp::parse_rfc3339(l["at"].as_str().unwrap())
                .unwrap()
                .as_millis()
                >= probe.start * 60_000
    });
    let detected = detected.expect("the probe's stop was detected");
    let at = Timestamp::parse_rfc3339(detected["at"].as_str().unwrap()).unwrap();
    let delay = at.since(Timestamp(probe.start * 60_000));
    assert!(
        delay <= Duration::from_secs(30 * 60),
        "{delay:?}: {detected}"
    );
}
