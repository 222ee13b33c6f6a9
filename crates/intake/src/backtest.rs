//! `intake backtest`: replays per-minute counts through the same flow detectors the server
//! runs, on a simulated clock, and writes every alert transition as one JSON object per line;
//! or, with `--synthetic`, generates seasonal traffic with injected outages and reports
//! detection delays and false alerts per 100 tenant-weeks.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use intake_monitor::backtest::{self, BacktestOptions};
use intake_monitor::synthetic::{self, HourLevel, SyntheticSpec, Traffic};
use intake_monitor::{MonitorSettings, QuietDays, RuleBook};

use crate::config_load;

/// `intake backtest` arguments.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Per-minute counts: CSV with header `minute,tenant,source,channel,count` (minute in
    /// RFC 3339).
    #[arg(
        long,
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    pub counts: Option<PathBuf>,
    /// Where to write the alert transitions (JSON lines).
    #[arg(long, required_unless_present = "synthetic")]
    pub out: Option<PathBuf>,
    /// A configuration file whose `[monitor]` interval and `[[rules]]` overrides apply.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Generate seasonal traffic with injected incidents instead of reading counts.
    #[arg(long)]
    pub synthetic: bool,
    /// `--synthetic`: tenants (one source each, two channels).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub tenants: u32,
    /// `--synthetic`: weeks of traffic (the detectors learn over the first two).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub weeks: u32,
    /// `--synthetic`: the random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `--synthetic`: minute-scale burstiness, the shape of gamma-Poisson minute counts (1 to
    /// 4 is realistic; smaller is burstier), with a quarter of the flows batched and a
    /// quarter polled. Without it events arrive one by one.
    #[arg(long, value_parser = positive_shape)]
    pub burst_shape: Option<f64>,
    /// `--synthetic`: how each hour's level is drawn: afresh every clock hour
    /// (`independent`), or carried from hour to hour with spells of a few hours
    /// (`persistent`).
    #[arg(long, value_enum, default_value_t = HourLevelArg::Independent)]
    pub hour_level: HourLevelArg,
    /// `--synthetic`: write the generated traffic to this file as per-minute counts (the
    /// `--counts` format) instead of replaying it, so that it can be replayed with
    /// `--counts`, edited or read by other tools.
    #[arg(long, value_name = "FILE", requires = "synthetic")]
    pub counts_out: Option<PathBuf>,
}

/// How `--synthetic` draws each hour's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HourLevelArg {
    /// Drawn afresh every clock hour.
    Independent,
    /// Carried from hour to hour (busy and quiet spells of a few hours).
    Persistent,
}

impl From<HourLevelArg> for HourLevel {
    fn from(h: HourLevelArg) -> Self {
        match h {
            HourLevelArg::Independent => HourLevel::Independent,
            HourLevelArg::Persistent => HourLevel::Persistent,
        }
    }
}

/// `--burst-shape`: a positive, finite number.
fn positive_shape(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(k) if k.is_finite() && k > 0.0 => Ok(k),
        _ => Err(format!(
            "`{s}` is not a positive number (the shape of gamma-Poisson minute counts: 1 to 4 \
             is realistic, smaller is burstier)"
        )),
    }
}

/// Runs the backtest.
pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let (interval, rules, quiet_days) = match &args.config {
        Some(path) => {
            let config = config_load::extract(Some(path))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let rules = RuleBook::new(&config.rules).map_err(|e| {
                anyhow::anyhow!(
                    "{}: rules[{}] ({}): {}",
                    path.display(),
                    e.index,
                    e.rule,
                    e.message
                )
            })?;
            (
                config.monitor.interval.0,
                rules,
                QuietDays::new(&config.monitor.calendars),
            )
        }
        None => (
            std::time::Duration::from_secs(60),
            RuleBook::default(),
            QuietDays::default(),
        ),
    };
    let settings = MonitorSettings::default();

    if args.synthetic {
        return synthetic_run(&args, &rules, &settings);
    }
    let (Some(counts), Some(out)) = (&args.counts, &args.out) else {
        anyhow::bail!("give --counts FILE and --out FILE, or --synthetic");
    };
    let input = File::open(counts).with_context(|| format!("cannot open {}", counts.display()))?;
    let rows = backtest::read_counts(BufReader::new(input))
        .map_err(|e| anyhow::anyhow!("{}: {e}", counts.display()))?;
    eprintln!(
        "{} rows of {} flows read from {}; replaying them…",
        rows.len(),
        rows.flows().len(),
        counts.display()
    );
    let output = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let opts = BacktestOptions {
        interval,
        rules,
        settings,
        quiet_days,
    };
    let summary = backtest::replay(&rows, &opts, BufWriter::new(output))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "{} rows, {} series, {} evaluations: {} alert transitions written to {}",
        summary.rows,
        summary.series,
        summary.ticks,
        summary.transitions,
        out.display()
    );
    for (rule, n) in &summary.fired {
        eprintln!("  {rule}: fired {n} times");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--synthetic`: generates the traffic, and replays it with a report of detection delays and
/// false alerts, or writes it to `--counts-out`.
fn synthetic_run(
    args: &BacktestArgs,
    rules: &RuleBook,
    settings: &MonitorSettings,
) -> anyhow::Result<ExitCode> {
    let spec = SyntheticSpec {
        tenants: args.tenants as usize,
        weeks: args.weeks,
        seed: args.seed,
        burst_shape: args.burst_shape,
        hour_level: args.hour_level.into(),
        ..SyntheticSpec::default()
    };
    let what = format!(
        "{} tenants × {} channels × {} weeks (seed {}, {}, {} hour levels)",
        spec.tenants,
        spec.channels,
        spec.weeks,
        spec.seed,
        spec.burst_shape
            .map_or("events one by one".to_string(), |k| format!(
                "bursts of minute-scale shape {k}"
            )),
        match args.hour_level {
            HourLevelArg::Independent => "independent",
            HourLevelArg::Persistent => "persistent",
        },
    );
    if let Some(path) = &args.counts_out {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let rows = Traffic::new(&spec)
            .write_counts(BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "wrote {rows} rows of {what} to {}; replay them with `intake backtest --counts {} \
             --out alerts.jsonl`",
            path.display(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("generating {what} and replaying them…");
    let report = synthetic::run(&spec, rules, settings);
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
