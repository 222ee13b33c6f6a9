//! `intake backtest`: per-minute counts in (CSV), alert transitions out (JSON lines), through
//! the same [`Monitor`] the server runs, on a simulated clock.
//!
//! The CSV has the header `minute,tenant,source,channel,count`, `minute` being the RFC 3339
//! start of a minute. Minutes a series has no row for count as zero from the series' first row
//! on: a silent source is zero, not missing. Every problem is reported with its line number.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::time::Duration;

use intake_core::Timestamp;
use serde::Serialize;

use crate::alert::{AlertState, Transition};
use crate::calendar::QuietDays;
use crate::monitor::{FlowKey, Monitor, MonitorSettings};
use crate::params::RuleBook;

/// The header a counts file starts with.
pub const CSV_HEADER: &str = "minute,tenant,source,channel,count";

/// One row of a counts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// Start of the minute.
    pub minute: Timestamp,
    /// The flow.
    pub key: FlowKey,
    /// Events accepted in that minute.
    pub count: u32,
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A line of the counts file is wrong.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The counts file has no header.
    #[error("the counts file is empty; expected the header `{CSV_HEADER}`")]
    Empty,
    /// The counts could not be read.
    #[error("line {line}: cannot read the counts: {source}")]
    Read {
        /// 1-based line number.
        line: usize,
        /// The IO error.
        source: std::io::Error,
    },
    /// The alerts could not be written.
    #[error("cannot write the alerts: {0}")]
    Write(#[source] std::io::Error),
}

fn csv_err(line: usize, message: impl Into<String>) -> BacktestError {
    BacktestError::Csv {
        line,
        message: message.into(),
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Reads a counts file, sorted by minute. Rows for the same minute and flow are an error
/// (a file built by summing would otherwise be silently double counted).
pub fn read_counts<R: BufRead>(reader: R) -> Result<Vec<CountRow>, BacktestError> {
    let mut lines = reader.lines().enumerate();
    let header = loop {
        match lines.next() {
            None => return Err(BacktestError::Empty),
            Some((i, l)) => {
                let l = l.map_err(|source| BacktestError::Read {
                    line: i + 1,
                    source,
                })?;
                if !l.trim().is_empty() {
                    break (i + 1, l);
                }
            }
        }
    };
    let fields: Vec<&str> = header
        .1
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(unquote)
        .collect();
    if fields.join(",") != CSV_HEADER {
        return Err(csv_err(
            header.0,
            format!(
                "expected the header `{CSV_HEADER}`, found `{}`",
                header.1.trim()
            ),
        ));
    }
    let mut rows = Vec::new();
    let mut seen: HashMap<(Timestamp, FlowKey), usize> = HashMap::new();
    for (i, l) in lines {
        let line = i + 1;
        let l = l.map_err(|source| BacktestError::Read { line, source })?;
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split(',').map(unquote).collect();
        if f.len() != 5 {
            return Err(csv_err(
                line,
                format!("expected 5 fields ({CSV_HEADER}), found {}", f.len()),
            ));
        }
        let minute = Timestamp::parse_rfc3339(f[0]).map_err(|e| csv_err(line, e.to_string()))?;
        if minute.as_millis().rem_euclid(60_000) != 0 {
            return Err(csv_err(
                line,
                format!(
                    "`{}` is not the start of a minute (seconds must be 00)",
                    f[0]
                ),
            ));
        }
        for (name, v) in [("tenant", f[1]), ("source", f[2]), ("channel", f[3])] {
            if v.is_empty() {
                return Err(csv_err(line, format!("{name} is empty")));
            }
        }
        let count: u32 = f[4].parse().map_err(|_| {
            csv_err(
                line,
                format!(
                    "count `{}` is not a whole number between 0 and 4294967295",
                    f[4]
                ),
            )
        })?;
        let key = FlowKey {
            tenant: f[1].to_string(),
            source: f[2].to_string(),
            channel: f[3].to_string(),
        };
        if let Some(first) = seen.insert((minute, key.clone()), line) {
            return Err(csv_err(
                line,
                format!(
                    "a second row for {} {}/{}/{} (the first is on line {first})",
                    f[0], key.tenant, key.source, key.channel
                ),
            ));
        }
        rows.push(CountRow { minute, key, count });
    }
    rows.sort_by_key(|r| r.minute);
    Ok(rows)
}

/// How a backtest runs.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// The monitor interval (`[monitor] interval`): the simulated clock's step.
    pub interval: Duration,
    /// The rules, with the configuration's overrides.
    pub rules: RuleBook,
    /// Baseline settings.
    pub settings: MonitorSettings,
    /// Planned quiet days (`[[monitor.calendars]]`).
    pub quiet_days: QuietDays,
}

impl Default for BacktestOptions {
    fn default() -> Self {
        BacktestOptions {
            interval: Duration::from_secs(60),
            rules: RuleBook::default(),
            settings: MonitorSettings::default(),
            quiet_days: QuietDays::default(),
        }
    }
}

/// One line of the alerts file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord<'a> {
    /// Rule id.
    pub rule: &'a str,
    /// Tenant.
    pub tenant: &'a str,
    /// Source.
    pub source: &'a str,
    /// Channel.
    pub channel: &'a str,
    /// `pending`, `firing` or `resolved`.
    pub state: AlertState,
    /// When (simulated time).
    pub at: Timestamp,
    /// The rule's value.
    pub value: f64,
    /// The numbers behind it.
    pub reason: &'a str,
    /// Severity.
    pub severity: intake_core::config::Severity,
}

impl<'a> From<&'a Transition> for AlertRecord<'a> {
    fn from(t: &'a Transition) -> Self {
        AlertRecord {
            rule: &t.rule,
            tenant: &t.labels.tenant,
            source: &t.labels.source,
            channel: &t.labels.channel,
            state: t.state,
            at: t.at,
            value: t.value,
            reason: &t.reason,
            severity: t.severity,
        }
    }
}

/// What a backtest did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BacktestSummary {
    /// Rows read.
    pub rows: usize,
    /// Flows.
    pub series: usize,
    /// Evaluations.
    pub ticks: usize,
    /// Transitions written.
    pub transitions: usize,
    /// Alerts that fired, by rule.
    pub fired: BTreeMap<String, usize>,
}

/// Replays `rows` (sorted by minute, as [`read_counts`] returns them) through a monitor on a
/// simulated clock and hands every transition to `sink`. The clock starts one interval after
/// the first minute and stops one minute after the last.
pub fn replay_with<E>(
    rows: &[CountRow],
    opts: &BacktestOptions,
    mut sink: impl FnMut(&Transition) -> Result<(), E>,
) -> Result<BacktestSummary, E> {
    let mut summary = BacktestSummary {
        rows: rows.len(),
        ..Default::default()
    };
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(summary);
    };
    let mut monitor = Monitor::new(opts.rules.clone(), opts.settings.clone());
    monitor.set_quiet_days(opts.quiet_days.clone());
    let step = opts.interval.max(Duration::from_secs(1));
    let end = last.minute.plus(Duration::from_secs(60));
    let mut now = first.minute.plus(step);
    let mut next = 0usize;
    loop {
        let now_capped = if now > end { end } else { now };
        while next < rows.len() && rows[next].minute.plus(Duration::from_secs(60)) <= now_capped {
            let r = &rows[next];
            monitor.record_flow(&r.key, r.minute, r.count);
            next += 1;
        }
        for t in monitor.evaluate(now_capped) {
            if t.state == AlertState::Firing {
                *summary.fired.entry(t.rule.clone()).or_default() += 1;
            }
            summary.transitions += 1;
            sink(&t)?;
        }
        summary.ticks += 1;
        if now_capped >= end {
            break;
        }
        now = now.plus(step);
    }
    summary.series = monitor.series_count().0;
    Ok(summary)
}

/// [`replay_with`] writing one JSON object per transition and line to `out`.
pub fn replay<W: Write>(
    rows: &[CountRow],
    opts: &BacktestOptions,
    mut out: W,
) -> Result<BacktestSummary, BacktestError> {
    let summary = replay_with(rows, opts, |t| {
        serde_json::to_writer(&mut out, &AlertRecord::from(t))
            .map_err(|e| BacktestError::Write(e.into()))?;
        out.write_all(b"\n").map_err(BacktestError::Write)
    })?;
    out.flush().map_err(BacktestError::Write)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match read_counts(text.as_bytes()) {
            Ok(rows) => panic!("accepted: {rows:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_rows_sorted_with_quotes_and_blank_lines() {
        let rows = read_counts(
            "minute,tenant,source,channel,count\n\
             2026-11-28T10:01:00Z,maelys,maelys-kustomer,chat,3\n\
             \n\
             \"2026-11-28T10:00:00Z\",maelys,maelys-kustomer,email,\"7\"\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key.channel, "email");
        assert_eq!(rows[0].count, 7);
        assert_eq!(rows[1].minute.to_rfc3339(), "2026-11-28T10:01:00.000Z");
    }

    #[test]
    fn csv_errors_name_the_line_and_the_fix() {
        assert!(err("").contains("empty"));
        assert!(err("minute,tenant,count\n").starts_with("line 1: expected the header"));
        let h = "minute,tenant,source,channel,count\n";
        let e = err(&format!("{h}2026-11-28T10:00:00Z,t,s,chat\n"));
        assert!(e.starts_with("line 2: expected 5 fields"), "{e}");
        let e = err(&format!("{h}\n2026-11-28 10:00,t,s,chat,1\n"));
        assert!(e.starts_with("line 3:") && e.contains("RFC 3339"), "{e}");
        let e = err(&format!("{h}2026-11-28T10:00:30Z,t,s,chat,1\n"));
        assert!(e.contains("start of a minute"), "{e}");
        let e = err(&format!("{h}2026-11-28T10:00:00Z,t,s,chat,-1\n"));
        assert!(e.contains("count `-1`"), "{e}");
        let e = err(&format!("{h}2026-11-28T10:00:00Z,t,,chat,1\n"));
        assert!(e.contains("source is empty"), "{e}");
        let e = err(&format!(
            "{h}2026-11-28T10:00:00Z,t,s,chat,1\n2026-11-28T10:00:00Z,t,s,chat,2\n"
        ));
        assert!(e.starts_with("line 3:") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn replay_of_nothing_is_empty() {
        let mut out = Vec::new();
        let s = replay(&[], &BacktestOptions::default(), &mut out).unwrap();
        assert_eq!(s.ticks, 0);
        assert!(out.is_empty());
    }
}
