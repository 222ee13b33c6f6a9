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
use intake_monitor::synthetic::{self, SyntheticSpec};
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
    #[arg(long, default_value_t = 100)]
    pub tenants: usize,
    /// `--synthetic`: weeks of traffic.
    #[arg(long, default_value_t = 8)]
    pub weeks: u32,
    /// `--synthetic`: the random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `--synthetic`: minute-scale burstiness, the shape of gamma-Poisson minute counts (1 to
    /// 4 is realistic; smaller is burstier), with a quarter of the flows batched and a
    /// quarter polled. Without it events arrive one by one.
    #[arg(long)]
    pub burst_shape: Option<f64>,
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
        let spec = SyntheticSpec {
            tenants: args.tenants.max(1),
            weeks: args.weeks.max(1),
            seed: args.seed,
            burst_shape: args.burst_shape.filter(|k| k.is_finite() && *k > 0.0),
            ..SyntheticSpec::default()
        };
        eprintln!(
            "generating {} tenants × {} channels × {} weeks (seed {}, {}) and replaying them…",
            spec.tenants,
            spec.channels,
            spec.weeks,
            spec.seed,
            spec.burst_shape
                .map_or("events one by one".to_string(), |k| format!(
                    "bursts of minute-scale shape {k}"
                ))
        );
        let report = synthetic::run(&spec, &rules, &settings);
        print!("{report}");
        return Ok(ExitCode::SUCCESS);
    }

    let (Some(counts), Some(out)) = (&args.counts, &args.out) else {
        anyhow::bail!("give --counts FILE and --out FILE, or --synthetic");
    };
    let input = File::open(counts).with_context(|| format!("cannot open {}", counts.display()))?;
    let rows = backtest::read_counts(BufReader::new(input))
        .map_err(|e| anyhow::anyhow!("{}: {e}", counts.display()))?;
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
