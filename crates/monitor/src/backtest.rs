//! `intake backtest`: per-minute counts in (CSV), alert transitions out (JSON lines), through
//! the same [`Monitor`] the server runs, on a simulated clock.
//!
//! The CSV has the header `minute,tenant,source,channel,count`, `minute` being the RFC 3339
//! start of a minute. Minutes a series has no row for count as zero from the series' first row
//! on: a silent source is zero, not missing. Every problem is reported with its line number.
//!
//! A file may hold every minute of every flow: 100 tenants with two channels over eight weeks
//! are 16 million rows. [`read_counts`] therefore keeps each flow's names once and each row
//! in 24 bytes, and reads line by line into one buffer.

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

/// Per-minute counts, as [`read_counts`] returns them: every flow once, and the rows sorted by
/// minute, each naming its flow by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    flows: Vec<FlowKey>,
    rows: Vec<Row>,
}

/// One row of a counts file: the minute's start in milliseconds, the flow's index in
/// [`Counts::flows`], the count and the line it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    minute: i64,
    flow: u32,
    count: u32,
    line: u64,
}

impl Counts {
    /// The rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The flows, in the order of their first row in the file.
    pub fn flows(&self) -> &[FlowKey] {
        &self.flows
    }

    /// The rows in minute order: the minute, the flow and the count.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, &FlowKey, u32)> + '_ {
        self.rows
            .iter()
            .map(|r| (Timestamp(r.minute), &self.flows[r.flow as usize], r.count))
    }

    /// The first and the last minute with a row.
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        Some((
            Timestamp(self.rows.first()?.minute),
            Timestamp(self.rows.last()?.minute),
        ))
    }
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A line of the counts file is wrong.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line number.
        line: u64,
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
        line: u64,
        /// The IO error.
        source: std::io::Error,
    },
    /// The alerts could not be written.
    #[error("cannot write the alerts: {0}")]
    Write(#[source] std::io::Error),
}

fn csv_err(line: u64, message: impl Into<String>) -> BacktestError {
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

/// The next line into `buf` (without its line ending), with its 1-based number; `None` at
/// the end of the file.
fn next_line<R: BufRead>(
    reader: &mut R,
    buf: &mut String,
    line: &mut u64,
) -> Result<Option<u64>, BacktestError> {
    buf.clear();
    *line += 1;
    let n = reader
        .read_line(buf)
        .map_err(|source| BacktestError::Read {
            line: *line,
            source,
        })?;
    if n == 0 {
        return Ok(None);
    }
    let end = buf.trim_end_matches(['\n', '\r']).len();
    buf.truncate(end);
    Ok(Some(*line))
}

/// Reads a counts file, sorted by minute. Rows for the same minute and flow are an error
/// (a file built by summing would otherwise be silently double counted).
pub fn read_counts<R: BufRead>(mut reader: R) -> Result<Counts, BacktestError> {
    let (mut buf, mut line) = (String::new(), 0u64);
    let header = loop {
        match next_line(&mut reader, &mut buf, &mut line)? {
            None => return Err(BacktestError::Empty),
            Some(n) if !buf.trim().is_empty() => break n,
            Some(_) => {}
        }
    };
    let fields: Vec<&str> = buf
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(unquote)
        .collect();
    if fields.join(",") != CSV_HEADER {
        return Err(csv_err(
            header,
            format!("expected the header `{CSV_HEADER}`, found `{}`", buf.trim()),
        ));
    }
    let mut counts = Counts::default();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut name = String::new();
    while let Some(n) = next_line(&mut reader, &mut buf, &mut line)? {
        if buf.trim().is_empty() {
            continue;
        }
        let row = parse_row(&buf, n, &mut name, &mut index, &mut counts.flows)?;
        counts.rows.push(row);
    }
    counts
        .rows
        .sort_unstable_by_key(|r| (r.minute, r.flow, r.line));
    if let Some((first, second)) = first_duplicate(&counts.rows) {
        let flow = &counts.flows[second.flow as usize];
        return Err(csv_err(
            second.line,
            format!(
                "a second row for {} {}/{}/{} (the first is on line {})",
                Timestamp(second.minute),
                flow.tenant,
                flow.source,
                flow.channel,
                first.line
            ),
        ));
    }
    Ok(counts)
}

/// One line of the file as a row; its flow is looked up in `index` by its names joined in
/// `name` (so a known flow costs no allocation) and added to `flows` when it is new.
fn parse_row(
    text: &str,
    line: u64,
    name: &mut String,
    index: &mut HashMap<String, u32>,
    flows: &mut Vec<FlowKey>,
) -> Result<Row, BacktestError> {
    let mut f = [""; 5];
    let mut parts = text.split(',');
    for (i, slot) in f.iter_mut().enumerate() {
        *slot = parts
            .next()
            .map(unquote)
            .ok_or_else(|| csv_err(line, format!("expected 5 fields ({CSV_HEADER}), found {i}")))?;
    }
    if parts.next().is_some() {
        let found = 6 + parts.count();
        return Err(csv_err(
            line,
            format!("expected 5 fields ({CSV_HEADER}), found {found}"),
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
    for (what, v) in [("tenant", f[1]), ("source", f[2]), ("channel", f[3])] {
        if v.is_empty() {
            return Err(csv_err(line, format!("{what} is empty")));
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
    name.clear();
    for part in &f[1..4] {
        name.push_str(part);
        name.push('\0');
    }
    let flow = match index.get(name.as_str()) {
        Some(&i) => i,
        None => {
            let i = u32::try_from(flows.len())
                .map_err(|_| csv_err(line, "more than 4294967295 flows"))?;
            flows.push(FlowKey {
                tenant: f[1].to_string(),
                source: f[2].to_string(),
                channel: f[3].to_string(),
            });
            index.insert(name.clone(), i);
            i
        }
    };
    Ok(Row {
        minute: minute.as_millis(),
        flow,
        count,
        line,
    })
}

/// Of the rows (sorted by minute, flow and line) that repeat a minute and flow, the one read
/// first in the file after its first row, with that first row.
fn first_duplicate(rows: &[Row]) -> Option<(Row, Row)> {
    let mut found: Option<(Row, Row)> = None;
    let mut group = *rows.first()?;
    for &r in &rows[1..] {
        if (r.minute, r.flow) != (group.minute, group.flow) {
            group = r;
            continue;
        }
        if found.is_none_or(|(_, second)| r.line < second.line) {
            found = Some((group, r));
        }
    }
    found
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

/// Replays `counts` through a monitor on a simulated clock and hands every transition to
/// `sink`. The clock starts one interval after the first minute and stops one minute after
/// the last.
pub fn replay_with<E>(
    counts: &Counts,
    opts: &BacktestOptions,
    mut sink: impl FnMut(&Transition) -> Result<(), E>,
) -> Result<BacktestSummary, E> {
    let mut summary = BacktestSummary {
        rows: counts.len(),
        ..Default::default()
    };
    let Some((first, last)) = counts.span() else {
        return Ok(summary);
    };
    let mut monitor = Monitor::new(opts.rules.clone(), opts.settings.clone());
    monitor.set_quiet_days(opts.quiet_days.clone());
    let step = opts.interval.max(Duration::from_secs(1));
    let end = last.plus(Duration::from_secs(60));
    let mut now = first.plus(step);
    let mut rows = counts.iter().peekable();
    loop {
        let now_capped = if now > end { end } else { now };
        while let Some((minute, key, count)) =
            rows.next_if(|(minute, _, _)| minute.plus(Duration::from_secs(60)) <= now_capped)
        {
            monitor.record_flow(key, minute, count);
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
    counts: &Counts,
    opts: &BacktestOptions,
    mut out: W,
) -> Result<BacktestSummary, BacktestError> {
    let summary = replay_with(counts, opts, |t| {
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
            Ok(counts) => panic!("accepted: {counts:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_rows_sorted_with_quotes_and_blank_lines() {
        let counts = read_counts(
            "minute,tenant,source,channel,count\r\n\
             2026-11-28T10:01:00Z,maelys,maelys-kustomer,chat,3\r\n\
             \n\
             \"2026-11-28T10:00:00Z\",maelys,maelys-kustomer,email,\"7\"\n\
             2026-11-28T10:00:00Z,maelys,maelys-kustomer,chat,0"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(counts.len(), 3);
        // Each flow is kept once, in the order of its first row.
        let channels: Vec<&str> = counts.flows().iter().map(|k| k.channel.as_str()).collect();
        assert_eq!(channels, ["chat", "email"]);
        let rows: Vec<(String, &str, u32)> = counts
            .iter()
            .map(|(m, k, n)| (m.to_rfc3339(), k.channel.as_str(), n))
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-11-28T10:00:00.000Z".to_string(), "chat", 0),
                ("2026-11-28T10:00:00.000Z".to_string(), "email", 7),
                ("2026-11-28T10:01:00.000Z".to_string(), "chat", 3),
            ]
        );
    }

    /// However the file is ordered, a repeated minute and flow is reported at the line that
    /// repeats it first in the file, naming the line it repeats.
    #[test]
    fn a_repeated_row_is_named_by_the_first_line_that_repeats_one() {
        let h = "minute,tenant,source,channel,count";
        let (a, b) = (
            "2026-11-28T10:05:00Z,t,s,chat",
            "2026-11-28T10:00:00Z,t,s,email",
        );
        // (the rows after the header, the line reported, the line it repeats)
        let table = [
            (vec![a, b, a], 4, 2),
            (vec![b, a, a, b], 4, 3),
            (vec![a, a, b, b], 3, 2),
            (vec![a, a, a], 3, 2),
        ];
        for (rows, line, first) in table {
            let text: Vec<String> = std::iter::once(h.to_string())
                .chain(rows.iter().enumerate().map(|(i, r)| format!("{r},{i}")))
                .collect();
            let e = err(&text.join("\n"));
            assert!(
                e.starts_with(&format!("line {line}: a second row for"))
                    && e.ends_with(&format!("(the first is on line {first})")),
                "{rows:?}: {e}"
            );
        }
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
        let s = replay(&Counts::default(), &BacktestOptions::default(), &mut out).unwrap();
        assert_eq!(s.ticks, 0);
        assert!(out.is_empty());
    }
}
