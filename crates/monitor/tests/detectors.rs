//! Detector tests on hand-built series and simulated clocks. Every random draw is seeded.

use std::time::Duration;

use intake_core::config::{Dur, RuleOverride, RuleThreshold, Severity};
use intake_core::Timestamp;
use intake_monitor::backtest::{read_counts, replay, BacktestOptions, CSV_HEADER};
use intake_monitor::stats::{bh_adjust, NegBinomial};
use intake_monitor::synthetic::{SyntheticSpec, Traffic};
use intake_monitor::{
    AlertState, FlowKey, Monitor, MonitorSettings, QueueKey, QueueMinute, QueueSnapshot,
    RequestMinute, RuleBook, SourceKey, Transition,
};
use rand::rngs::StdRng;
use rand::Rng;
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

/// Under the rules of `book`, a flow on `channel` carries `weekday_shape(peak)` traffic
/// (hour-to-hour dispersion 0.05, draws seeded by `seed`) from `START` to minute `stop`,
/// paging nothing, then stops for `outage` minutes. Returns the first `inbound_stopped` page
/// of the stop, with its delay after `stop` in minutes; panics if none came.
fn first_page_of_stop(
    book: RuleBook,
    channel: &str,
    seed: u64,
    peak: f64,
    stop: i64,
    outage: i64,
) -> (Transition, i64) {
    let mut monitor = Monitor::new(book, MonitorSettings::default());
    let k = key(channel);
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = weekday_shape(peak);
    let before = run(&mut monitor, &k, START, stop, &mut rng, 0.05, &shape);
    assert!(firing(&before, "inbound_stopped").is_empty(), "{before:#?}");
    let after = run(
        &mut monitor,
        &k,
        stop,
        stop + outage,
        &mut rng,
        0.05,
        |_| 0.0,
    );
    let first = firing(&after, "inbound_stopped")
        .first()
        .map(|t| (*t).clone())
        .expect("inbound_stopped fired within the outage");
    let delay = first.at.as_millis() / 60_000 - stop;
    (first, delay)
}

#[test]
fn zero_after_steady_flow_fires_inbound_stopped_within_fifteen_minutes() {
    // Four weeks of history, then Monday 11:07 the flow stops.
    let stop = START + 4 * 10080 + 11 * 60 + 7;
    let (first, delay) = first_page_of_stop(RuleBook::default(), "chat", 11, 90.0, stop, 60);
    assert!(delay <= 15, "fired after {delay} min: {}", first.reason);
    assert!(
        first.reason.contains("seasonal baseline, 4 weeks"),
        "{}",
        first.reason
    );
    assert!(first.reason.contains("P(0) = "), "{}", first.reason);
    assert_eq!(first.labels.channel, "chat");
}

/// A stop exactly on the hour cannot be told at once from a quiet spell (a holiday, a
/// Saturday) beginning at that hour: nothing of the hour was seen. It is called later, but
/// within half an hour.
#[test]
fn zero_exactly_on_the_hour_fires_inbound_stopped_within_half_an_hour() {
    let stop = START + 4 * 10080 + 11 * 60;
    let (first, delay) = first_page_of_stop(RuleBook::default(), "chat", 11, 90.0, stop, 60);
    assert!(delay <= 30, "fired after {delay} min: {}", first.reason);
    assert!(
        first.reason.contains("P(quiet since this hour)"),
        "{}",
        first.reason
    );
}

/// A flow of 10 events an hour that stops in the afternoon: the three hours before the
/// silence carry some 30 events, too few to tell its day's level from a quiet day's, so its
/// exposure reaches back through its working day (to the morning, not into the night
/// before), and the statistical verdict pages within the four-hour outage, saying so.
#[test]
fn a_slow_flow_that_stops_in_the_afternoon_is_judged_on_its_working_day() {
    // Four weeks of history, then Thursday 15:07 the flow stops.
    let stop = START + 4 * 10080 + 3 * 1440 + 15 * 60 + 7;
    let (first, delay) = first_page_of_stop(RuleBook::default(), "voice", 23, 10.0, stop, 240);
    // Judged on the 3 h before the silence alone, this stop was paged after 161 min.
    assert!(delay <= 140, "fired after {delay} min: {}", first.reason);
    for said in ["working day so far", "decided by the statistical verdict"] {
        assert!(first.reason.contains(said), "{}", first.reason);
    }
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

/// An office open 08:30–17:30 on weekdays (600 events an hour, 6 at night): its 17:00 hour
/// carries all its events in the first half. After three weeks, a silence from its closing
/// to 18:00 is ordinary and pages nothing, though the hour's baseline spread evenly would
/// expect about 150 events in it. A stop at 16:45, while the office is open, is still paged
/// within minutes (6 here: the steps read as bursts at the minute scale, which slows the
/// verdict a little).
#[test]
fn an_office_that_closes_at_half_past_is_not_paged_when_it_closes() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("email");
    let mut rng = StdRng::seed_from_u64(21);
    let office = |m: i64| {
        let day = (m - START).div_euclid(1440);
        let minute = (m - START).rem_euclid(1440);
        let open = day.rem_euclid(7) < 5 && (8 * 60 + 30..17 * 60 + 30).contains(&minute);
        if open {
            600.0
        } else {
            6.0
        }
    };
    // Weeks 1–3, then the Tuesday of week 4 until its closing.
    let tuesday = START + 3 * 10080 + 1440;
    let closing = tuesday + 17 * 60 + 30;
    let before = run(&mut monitor, &k, START, closing, &mut rng, 0.02, office);
    let late = |ts: &[Transition]| -> Vec<Transition> {
        ts.iter()
            .filter(|t| {
                t.rule == "inbound_stopped" && t.at.as_millis() >= at(START + 14 * 1440).as_millis()
            })
            .cloned()
            .collect()
    };
    assert!(late(&before).is_empty(), "{:#?}", late(&before));
    let evening = run(
        &mut monitor,
        &k,
        closing,
        closing + 30,
        &mut rng,
        0.02,
        |_| 0.0,
    );
    assert!(
        firing(&evening, "inbound_stopped").is_empty(),
        "{evening:#?}"
    );
    // Wednesday: open as usual until 16:45, then nothing.
    let stop = tuesday + 1440 + 16 * 60 + 45;
    let day = run(&mut monitor, &k, closing + 30, stop, &mut rng, 0.02, office);
    assert!(firing(&day, "inbound_stopped").is_empty(), "{day:#?}");
    let after = run(&mut monitor, &k, stop, stop + 30, &mut rng, 0.02, |_| 0.0);
    let page = firing(&after, "inbound_stopped");
    let page = page.first().expect("the stop at 16:45 is paged");
    let delay = (page.at.as_millis() / 60_000) - stop;
    assert!(delay <= 10, "paged after {delay} min: {}", page.reason);
    // The silence runs on past the closing into the night, where long gaps are ordinary:
    // the page holds until an event arrives, and resolves after it.
    let night = run(
        &mut monitor,
        &k,
        stop + 30,
        stop + 5 * 60,
        &mut rng,
        0.02,
        |_| 0.0,
    );
    let stopped: Vec<_> = night
        .iter()
        .filter(|t| t.rule == "inbound_stopped")
        .collect();
    assert!(stopped.is_empty(), "{stopped:#?}");
    let back = run(
        &mut monitor,
        &k,
        stop + 5 * 60,
        stop + 5 * 60 + 10,
        &mut rng,
        0.02,
        |_| 600.0,
    );
    assert!(
        back.iter()
            .any(|t| t.rule == "inbound_stopped" && t.state == AlertState::Resolved),
        "{back:#?}"
    );
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

/// A low-volume flow with a seasonal baseline: the statistical verdict stays cautious for
/// hours (a handful of events an hour cannot rule out a quiet spell), so the gap rule watches
/// it too, against the longest gap seen at the same hours of the day over the last two weeks.
/// The statistical threshold is made stricter here (1e-9) so that only the gap rule can fire.
#[test]
fn low_volume_flow_with_a_baseline_is_caught_by_the_gap_rule() {
    let strict = RuleOverride {
        rule: "inbound_stopped".into(),
        tenant: Some("maelys".into()),
        source: None,
        threshold: Some(RuleThreshold::Number(1e-9)),
        for_: None,
        severity: None,
        notifiers: vec![],
        ..Default::default()
    };
    let book = RuleBook::new(&[strict]).expect("valid override");
    // Three weeks of history, then Tuesday 10:07 the flow stops.
    let stop = START + 3 * 10080 + 1440 + 10 * 60 + 7;
    let (first, delay) = first_page_of_stop(book, "voice", 17, 8.0, stop, 10 * 60);
    // Never before `baseline_min_gap` (4 h) of silence, counted from the last event, nor
    // before the baseline expected 30 events over it.
    assert!(
        (230..=420).contains(&delay),
        "fired after {delay} min: {}",
        first.reason
    );
    assert!(
        first
            .reason
            .contains("the longest gap between events at these hours"),
        "{}",
        first.reason
    );
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
    let mut csv = Vec::new();
    let written = traffic.write_counts(&mut csv).unwrap();
    assert!(csv.starts_with(format!("{CSV_HEADER}\n").as_bytes()));
    let counts = read_counts(csv.as_slice()).unwrap();
    assert_eq!(counts.len() as u64, written);
    assert_eq!(counts.flows().len(), 3);
    let mut out = Vec::new();
    let summary = replay(&counts, &BacktestOptions::default(), &mut out).unwrap();
    assert_eq!(summary.series, 3);
    // One tick a minute from the first row's minute to one minute after the last row's (the
    // file only has minutes with events, so the span ends at the last event).
    let (first, last) = counts.span().unwrap();
    let span = (last.as_millis() - first.as_millis()) / 60_000 + 1;
    assert_eq!(summary.ticks as i64, span);
    assert!(span > 3 * 10080 - 60, "{span}");
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

fn queue(tenant: &str) -> QueueKey {
    QueueKey {
        tenant: tenant.into(),
        source: format!("{tenant}-kustomer"),
        destination: "handler".into(),
    }
}

/// Feeds a queue minute by minute from `from` (minutes after START) for `minutes`, with the
/// counters and gauges `at(i)` gives, evaluating 5 s after each minute boundary. Returns the
/// firing transitions of `rule` with the minute index they came at.
fn drive_queue(
    monitor: &mut Monitor,
    q: &QueueKey,
    from: i64,
    minutes: i64,
    rule: &str,
    at_minute: impl Fn(i64) -> (QueueMinute, QueueSnapshot),
) -> Vec<(i64, Transition)> {
    let mut out = Vec::new();
    for i in from..from + minutes {
        let (counts, snap) = at_minute(i);
        monitor.record_queue(q, at(START + i), counts);
        let now = Timestamp((START + i + 1) * 60_000 + 5_000);
        monitor.observe_queue(q, now, snap);
        for t in monitor.evaluate(now) {
            if t.rule == rule && t.state == AlertState::Firing {
                out.push((i, t));
            }
        }
    }
    out
}

fn steady(created: u32, pending: u64) -> (QueueMinute, QueueSnapshot) {
    (
        QueueMinute {
            created,
            delivered: created,
            failed: 0,
            dead: 0,
            ..QueueMinute::default()
        },
        QueueSnapshot {
            pending,
            ..QueueSnapshot::default()
        },
    )
}

#[test]
fn rejections_spike_fires_on_a_rotated_secret_and_not_on_steady_rejections() {
    let s = SourceKey {
        tenant: "maelys".into(),
        source: "maelys-kustomer".into(),
    };
    let run_source = |spike: bool| {
        let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
        let mut fired = Vec::new();
        // A day with 20 requests a minute and one rejection every ten minutes (a scanner),
        // then an hour in which, with a spike, 60 % are rejected.
        for i in 0..26 * 60 {
            let late = i >= 25 * 60;
            let v = RequestMinute {
                accepted: if spike && late { 8 } else { 20 },
                rejected: if spike && late {
                    12
                } else {
                    u32::from(i % 10 == 0)
                },
            };
            monitor.record_requests(&s, at(START + i), v);
            let now = Timestamp((START + i + 1) * 60_000 + 5_000);
            for t in monitor.evaluate(now) {
                if t.rule == "rejections_spike" && t.state == AlertState::Firing {
                    fired.push((i - 25 * 60, t));
                }
            }
        }
        fired
    };
    let fired = run_source(true);
    let (minute, t) = fired.first().expect("rejections_spike fired");
    // 10 rejections are reached in the first minute; `for` is 5 minutes.
    assert!((4..=7).contains(minute), "fired at minute {minute}");
    assert!(t.reason.contains("rejected"), "{}", t.reason);
    assert_eq!(t.labels.source, "maelys-kustomer");
    assert!(run_source(false).is_empty());
}

#[test]
fn queue_backlog_fires_when_pending_is_high_and_rising_only() {
    let q = queue("maelys");
    // Rising: 800 pending, +40 a minute.
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let fired = drive_queue(&mut monitor, &q, 0, 60, "queue_backlog", |i| {
        steady(100, 800 + 40 * i as u64)
    });
    let (minute, t) = fired.first().expect("queue_backlog fired");
    // Over 1000 from minute 5, but "rising" needs a gauge from 15 minutes before, which the
    // monitor has from minute 14 on; then `for` is 10 minutes.
    assert!((23..=26).contains(minute), "fired at minute {minute}");
    assert!(t.reason.contains("pending, up from"), "{}", t.reason);
    // High but flat (a big tenant's normal backlog) does not fire.
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let fired = drive_queue(&mut monitor, &q, 0, 60, "queue_backlog", |_| {
        steady(100, 5000)
    });
    assert!(fired.is_empty(), "{fired:#?}");
}

#[test]
fn processing_drop_fires_when_deliveries_fall_behind_creations() {
    let q = queue("maelys");
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let fired = drive_queue(&mut monitor, &q, 0, 90, "processing_drop", |i| {
        if i < 30 {
            steady(10, 0)
        } else {
            // A slow handler: one delivery a minute for ten created.
            (
                QueueMinute {
                    created: 10,
                    delivered: 1,
                    failed: 0,
                    dead: 0,
                    ..QueueMinute::default()
                },
                QueueSnapshot {
                    pending: 9 * (i - 29) as u64,
                    ..QueueSnapshot::default()
                },
            )
        }
    });
    let (minute, t) = fired.first().expect("processing_drop fired");
    assert!((40..=60).contains(minute), "fired at minute {minute}");
    assert!(t.reason.contains("deliveries done for"), "{}", t.reason);
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let fired = drive_queue(&mut monitor, &q, 0, 90, "processing_drop", |_| {
        steady(10, 3)
    });
    assert!(fired.is_empty(), "{fired:#?}");
}

#[test]
fn delivery_errors_fire_above_the_previous_days_error_ratio() {
    let q = queue("maelys");
    let run_queue = |broken: bool| {
        let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
        // A day at 5 % errors (a flaky handler that is normal for this tenant), then an hour
        // at 60 % errors if broken, still 5 % if not.
        drive_queue(&mut monitor, &q, 0, 26 * 60, "delivery_errors", |i| {
            let late = broken && i >= 25 * 60;
            let failed = if late { 12 } else { 1 };
            (
                QueueMinute {
                    created: 20,
                    delivered: 20 - failed,
                    failed,
                    dead: 0,
                    ..QueueMinute::default()
                },
                QueueSnapshot::default(),
            )
        })
    };
    let fired = run_queue(true);
    let (minute, t) = fired.first().expect("delivery_errors fired");
    assert!(
        (25 * 60..25 * 60 + 15).contains(minute),
        "fired at {minute}"
    );
    assert!(t.reason.contains("attempts failed"), "{}", t.reason);
    assert!(run_queue(false).is_empty());
}

#[test]
fn dead_letters_fire_at_once_and_resolve_after_a_clean_window() {
    let q = queue("maelys");
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let mut transitions = Vec::new();
    for i in 0..60 {
        let dead = u32::from(i == 20);
        monitor.record_queue(
            &q,
            at(START + i),
            QueueMinute {
                created: 5,
                delivered: 5 - dead,
                failed: 0,
                dead,
                ..QueueMinute::default()
            },
        );
        let now = Timestamp((START + i + 1) * 60_000 + 5_000);
        transitions.extend(
            monitor
                .evaluate(now)
                .into_iter()
                .filter(|t| t.rule == "dead_letters")
                .map(|t| (i, t.state)),
        );
    }
    assert_eq!(
        transitions,
        vec![(20, AlertState::Firing), (35, AlertState::Resolved)]
    );
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let fired = drive_queue(&mut monitor, &q, 0, 60, "dead_letters", |_| steady(5, 0));
    assert!(fired.is_empty(), "{fired:#?}");
}

#[test]
fn tenant_scoped_override_tightens_queue_stalled_for_that_tenant_only() {
    let tight = RuleOverride {
        rule: "queue_stalled".into(),
        tenant: Some("acme".into()),
        source: None,
        threshold: Some(RuleThreshold::Duration(Dur(Duration::from_secs(60)))),
        for_: None,
        severity: Some(Severity::Warning),
        notifiers: vec![],
        ..Default::default()
    };
    let mut monitor = Monitor::new(
        RuleBook::new(&[tight]).expect("valid override"),
        MonitorSettings::default(),
    );
    let (acme, maelys) = (queue("acme"), queue("maelys"));
    let t0 = START * 60_000;
    let mut fired = Vec::new();
    // Both handlers go down at t0; evaluate for four minutes (under the default 5 min).
    for i in 0..4 {
        let now = Timestamp(t0 + (i + 1) * 60_000 + 5_000);
        for q in [&acme, &maelys] {
            monitor.observe_queue(
                q,
                now,
                QueueSnapshot {
                    pending: 10,
                    in_flight: 0,
                    oldest_pending_since: Some(Timestamp(t0)),
                    dead: 0,
                },
            );
        }
        fired.extend(
            monitor
                .evaluate(now)
                .into_iter()
                .filter(|t| t.rule == "queue_stalled" && t.state == AlertState::Firing)
                .map(|t| (i, t)),
        );
    }
    assert_eq!(fired.len(), 1, "{fired:#?}");
    let (i, t) = &fired[0];
    // Age 1m05s at the first evaluation: over the tenant's 1-minute threshold.
    assert_eq!(*i, 0);
    assert_eq!(t.labels.tenant, "acme");
    assert_eq!(t.severity, Severity::Warning);
    assert!(t.reason.contains("threshold 1m"), "{}", t.reason);
}

/// Feeds minutes `[from, to)` with counts from `count(minute, rng)`, evaluating after each
/// minute. Returns the transitions.
fn feed(
    monitor: &mut Monitor,
    keys: &[FlowKey],
    from: i64,
    to: i64,
    rng: &mut StdRng,
    mut count: impl FnMut(usize, i64, &mut StdRng) -> u32,
) -> Vec<Transition> {
    let mut out = Vec::new();
    for m in from..to {
        for (i, k) in keys.iter().enumerate() {
            let n = count(i, m, rng);
            monitor.record_flow(k, at(m), n);
        }
        out.extend(monitor.evaluate(at(m + 1)));
    }
    out
}

fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        0
    } else {
        Poisson::new(lambda).unwrap().sample(rng) as u32
    }
}

/// Feeds the flow `k` from `START` to minute `stop` with `count(minute, rng)` and asserts
/// that nothing paged `inbound_stopped`.
fn no_page_until(
    monitor: &mut Monitor,
    k: &FlowKey,
    stop: i64,
    rng: &mut StdRng,
    mut count: impl FnMut(i64, &mut StdRng) -> u32,
) {
    let before = feed(
        monitor,
        std::slice::from_ref(k),
        START,
        stop,
        rng,
        |_, m, rng| count(m, rng),
    );
    let pages = firing(&before, "inbound_stopped");
    assert!(pages.is_empty(), "{pages:#?}");
}

/// The flow `k` stops at minute `stop`: an hour of empty minutes, then the first
/// `inbound_stopped` page's delay (minutes after `stop`) and reason. Panics if none came.
fn page_after_stop(
    monitor: &mut Monitor,
    k: FlowKey,
    stop: i64,
    rng: &mut StdRng,
) -> (i64, String) {
    let after = feed(monitor, &[k], stop, stop + 60, rng, |_, _, _| 0);
    let fired = firing(&after, "inbound_stopped");
    let first = fired.first().expect("inbound_stopped fired");
    (first.at.as_millis() / 60_000 - stop, first.reason.clone())
}

/// The traffic: a busy flow (about 250 an hour in business hours) whose minute counts
/// are gamma-Poisson with shape 2, so runs of 3–6 empty minutes happen every week. Four weeks
/// of it page nothing; a real stop still pages within minutes, and the reason says which
/// evidence decided.
#[test]
fn bursty_minutes_of_a_busy_flow_do_not_page_but_a_stop_does() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("email");
    let mut rng = StdRng::seed_from_u64(21);
    let shape = weekday_shape(250.0);
    let minute = Gamma::new(2.0, 0.5).unwrap();
    let stop = START + 4 * 10080 + 11 * 60 + 7;
    no_page_until(&mut monitor, &k, stop, &mut rng, |m, rng| {
        let g: f64 = minute.sample(rng);
        poisson(rng, shape(m) / 60.0 * g)
    });
    let status = monitor.flow_status(at(stop));
    assert_eq!(status.len(), 1);
    let (delay, reason) = page_after_stop(&mut monitor, k, stop, &mut rng);
    assert!(delay <= 12, "fired after {delay} min: {reason}");
    assert!(reason.contains("minute-scale shape"), "{reason}");
    assert!(reason.contains("decided by"), "{reason}");
}

/// A flow that pauses for 12 minutes at 10:30 every day (a scheduled job on the tenant's
/// side) has shown that such a silence is normal at that hour: the burst model alone would
/// page it, the flow's own gaps do not. A longer silence pages, decided by those gaps.
#[test]
fn a_silence_the_flow_has_had_at_these_hours_does_not_page_a_longer_one_does() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("chat");
    let mut rng = StdRng::seed_from_u64(23);
    let paused = |m: i64| (630..642).contains(&(m - START).rem_euclid(1440));
    let rate = |m: i64| {
        let hour = (m - START).rem_euclid(1440) / 60;
        if (8..18).contains(&hour) {
            240.0
        } else {
            20.0
        }
    };
    let day = START + 3 * 10080 + 2 * 1440;
    let before = feed(
        &mut monitor,
        std::slice::from_ref(&k),
        START,
        day + 630,
        &mut rng,
        |_, m, rng| {
            if paused(m) {
                0
            } else {
                poisson(rng, rate(m) / 60.0)
            }
        },
    );
    assert!(firing(&before, "inbound_stopped").is_empty(), "{before:#?}");
    // The usual pause, then traffic: nothing.
    let usual = feed(
        &mut monitor,
        std::slice::from_ref(&k),
        day + 630,
        day + 642,
        &mut rng,
        |_, _, _| 0,
    );
    assert!(firing(&usual, "inbound_stopped").is_empty(), "{usual:#?}");
    let resumed = feed(
        &mut monitor,
        std::slice::from_ref(&k),
        day + 642,
        day + 660,
        &mut rng,
        |_, m, rng| poisson(rng, rate(m) / 60.0),
    );
    assert!(firing(&resumed, "inbound_stopped").is_empty());
    // The next day the flow stops at the same time for good: paged once the silence is
    // longer than the pause.
    let next = day + 1440;
    feed(
        &mut monitor,
        std::slice::from_ref(&k),
        day + 660,
        next + 630,
        &mut rng,
        |_, m, rng| {
            if paused(m) {
                0
            } else {
                poisson(rng, rate(m) / 60.0)
            }
        },
    );
    let stop = feed(
        &mut monitor,
        &[k],
        next + 630,
        next + 690,
        &mut rng,
        |_, _, _| 0,
    );
    let fired = firing(&stop, "inbound_stopped");
    let first = fired.first().expect("inbound_stopped fired");
    let delay = first.at.as_millis() / 60_000 - (next + 630);
    assert!(
        (13..=25).contains(&delay),
        "fired after {delay} min: {}",
        first.reason
    );
    assert!(
        first.reason.contains("decided by this flow's own gaps"),
        "{}",
        first.reason
    );
}

/// A mailbox polled every 5 ± 1 minutes whose mail arrives at `weekday_shape(peak)` times
/// the `level` it is called with: the minute's count (0 between fetches; each fetch brings
/// the mail of the minutes since the last).
fn poller(peak: f64) -> impl FnMut(i64, f64, &mut StdRng) -> u32 {
    let shape = weekday_shape(peak);
    let (mut next, mut last) = (START, START);
    move |m, level, rng| {
        if m < next {
            return 0;
        }
        let mail: f64 = (last..m).map(|x| shape(x) * level / 60.0).sum();
        last = m;
        next = m + 4 + rng.random_range(0..=2i64);
        poisson(rng, mail)
    }
}

/// The poller `k` stops at minute `stop` and is paged within half an hour by its regular
/// arrivals.
fn assert_regular_page_within_half_an_hour(
    monitor: &mut Monitor,
    k: FlowKey,
    stop: i64,
    rng: &mut StdRng,
) {
    let (delay, reason) = page_after_stop(monitor, k, stop, rng);
    assert!(delay <= 30, "fired after {delay} min: {reason}");
    assert!(
        reason.contains("decided by this flow's regular arrivals"),
        "{reason}"
    );
}

/// A mailbox polled every five minutes, give or take a minute: its minutes are four fifths
/// empty, with the fetched mail in one. The burst model reads that as rare clumps and would
/// allow an hour of silence; the flow's own gaps say it never misses three fetches. Four
/// weeks page nothing, nor does a day at a third of the usual mail; a stop pages within
/// half an hour, decided by the regular arrivals.
#[test]
fn a_polled_flow_that_stops_is_paged_by_its_regular_arrivals() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("email");
    let mut rng = StdRng::seed_from_u64(29);
    let mut poll = poller(150.0);
    let quiet_day = START + 4 * 10080 + 1440;
    let stop = quiet_day + 1440 + 11 * 60 + 7;
    no_page_until(&mut monitor, &k, stop, &mut rng, |m, rng| {
        let level = if (quiet_day..quiet_day + 1440).contains(&m) {
            0.33
        } else {
            1.0
        };
        poll(m, level, rng)
    });
    assert_regular_page_within_half_an_hour(&mut monitor, k, stop, &mut rng);
}

/// The same poller skips its fetches from 10:30 to 10:55 every day (the mail server's
/// maintenance window): a silence of five periods it has every day at that hour is its own,
/// and no rule pages it, while a stop in the afternoon still pages by the regular arrivals.
#[test]
fn a_pollers_daily_pause_does_not_page_it() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    let k = key("email");
    let mut rng = StdRng::seed_from_u64(37);
    let mut poll = poller(150.0);
    let paused = |m: i64| (630..655).contains(&(m - START).rem_euclid(1440));
    let stop = START + 4 * 10080 + 2 * 1440 + 14 * 60 + 7;
    no_page_until(&mut monitor, &k, stop, &mut rng, |m, rng| {
        let mail = poll(m, 1.0, rng);
        if paused(m) {
            0
        } else {
            mail
        }
    });
    assert_regular_page_within_half_an_hour(&mut monitor, k, stop, &mut rng);
}

/// Twenty tenants, three weeks of history; then a holiday takes 70 % off 18 of them at once
/// while the canaries pass: one grouped warning, no per-tenant ones. A single tenant's drop
/// on another day stays a warning of its own.
#[test]
fn a_drop_across_most_tenants_is_one_grouped_warning_and_a_single_one_stays_per_tenant() {
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    monitor.observe_canaries(intake_monitor::CanaryHealth::healthy());
    let keys: Vec<FlowKey> = (0..20)
        .map(|t| FlowKey {
            tenant: format!("t{t:02}"),
            source: format!("t{t:02}-src"),
            channel: "email".into(),
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(29);
    let shape = weekday_shape(120.0);
    let holiday = START + 3 * 10080 + 1440;
    let before = feed(
        &mut monitor,
        &keys,
        START,
        holiday,
        &mut rng,
        |_, m, rng| poisson(rng, shape(m) / 60.0),
    );
    assert!(firing(&before, "inbound_drop").is_empty(), "{before:#?}");
    let day = feed(
        &mut monitor,
        &keys,
        holiday,
        holiday + 1440,
        &mut rng,
        |i, m, rng| {
            let f = if i < 18 { 0.3 } else { 1.0 };
            poisson(rng, shape(m) * f / 60.0)
        },
    );
    let drops = firing(&day, "inbound_drop");
    assert_eq!(drops.len(), 1, "{drops:#?}");
    assert_eq!(drops[0].labels.tenant, "", "grouped: no tenant");
    assert!(
        drops[0].reason.starts_with("inbound down"),
        "{}",
        drops[0].reason
    );
    assert!(
        drops[0].reason.contains("of 20 tenants"),
        "{}",
        drops[0].reason
    );
    assert!(
        drops[0].reason.contains("canaries healthy"),
        "{}",
        drops[0].reason
    );
    // The next day one tenant loses 80 % from 10:00: its own warning.
    let next = holiday + 1440;
    let single = feed(
        &mut monitor,
        &keys,
        next,
        next + 1440,
        &mut rng,
        |i, m, rng| {
            let local = (m - START).rem_euclid(1440);
            let f = if i == 3 && local >= 600 { 0.2 } else { 1.0 };
            poisson(rng, shape(m) * f / 60.0)
        },
    );
    let drops = firing(&single, "inbound_drop");
    assert!(!drops.is_empty(), "the single drop warned");
    assert!(drops.iter().all(|d| d.labels.tenant == "t03"), "{drops:#?}");
}

/// A calendar names the holiday: nothing warns or pages on it, while a real stop on the
/// same kind of day still pages.
#[test]
fn a_planned_quiet_day_needs_no_silence() {
    use intake_core::config::QuietCalendar;
    use intake_monitor::QuietDays;
    let k = key("email");
    let holiday = START + 3 * 10080 + 1440;
    let date = |m: i64| at(m).to_rfc3339()[..10].to_string();
    let calendar = QuietCalendar {
        name: "public-holidays".into(),
        tenants: vec!["maelys".into()],
        utc_offset: None,
        dates: vec![date(holiday), date(holiday + 1440)],
    };
    let mut monitor = Monitor::new(RuleBook::default(), MonitorSettings::default());
    monitor.set_quiet_days(QuietDays::new(&[calendar]));
    let mut rng = StdRng::seed_from_u64(31);
    let shape = weekday_shape(120.0);
    feed(
        &mut monitor,
        std::slice::from_ref(&k),
        START,
        holiday,
        &mut rng,
        |_, m, rng| poisson(rng, shape(m) / 60.0),
    );
    // A quiet holiday: a tenth of the traffic all day.
    let day = feed(
        &mut monitor,
        std::slice::from_ref(&k),
        holiday,
        holiday + 1440,
        &mut rng,
        |_, m, rng| poisson(rng, shape(m) * 0.1 / 60.0),
    );
    assert!(day.is_empty(), "{day:#?}");
    // The second quiet day the flow stops at 11:00 after a quiet morning: still paged.
    let next = holiday + 1440;
    feed(
        &mut monitor,
        std::slice::from_ref(&k),
        next,
        next + 660,
        &mut rng,
        |_, m, rng| poisson(rng, shape(m) * 0.3 / 60.0),
    );
    let stop = feed(
        &mut monitor,
        &[k],
        next + 660,
        next + 1200,
        &mut rng,
        |_, _, _| 0,
    );
    let fired = firing(&stop, "inbound_stopped");
    let first = fired.first().expect("a stop on a quiet day still pages");
    assert!(
        first
            .reason
            .contains("planned quiet day (calendar `public-holidays`)"),
        "{}",
        first.reason
    );
}
