//! The store as it grows: what a delivery worker and the monitor pay on a store of a given
//! size (`scripts/bench-growth.sh` runs it on stores `scripts/prefill-store.py` filled).
//!
//! ```text
//! intake-store-growth --db DIR/intake.db [--claims 200] [--batch 64] [--stats 5]
//! ```
//!
//! It opens the store as `intake serve` does and times, one after the other, `--stats` reads
//! of the queue gauges (`Store::queue_stats`, what the monitor and `/metrics` read) and
//! `--claims` claims of `--batch` due deliveries (`Store::claim_due`, what a delivery worker
//! does): every latency and the process's CPU time per call, as one JSON object. Claimed
//! deliveries stay in flight; the next open makes them due again, so it can be run again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use intake_core::Timestamp;
use intake_store::OpenOptions;

#[derive(Parser)]
#[command(about = "Time queue-gauge reads and claims of due deliveries on a SQLite store")]
struct Cli {
    /// The SQLite database file.
    #[arg(long)]
    db: PathBuf,
    /// Claims to time.
    #[arg(long, default_value_t = 200)]
    claims: usize,
    /// Deliveries per claim.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Queue-gauge reads to time.
    #[arg(long, default_value_t = 5)]
    stats: usize,
    /// The destination to claim for.
    #[arg(long, default_value = "handler")]
    destination: String,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("a tokio runtime")?;
    rt.block_on(probe(
        &cli.db,
        cli.claims,
        cli.batch,
        cli.stats,
        &cli.destination,
    ))
}

fn url(db: &std::path::Path) -> String {
    format!("sqlite://{}", db.display())
}

fn options() -> OpenOptions {
    OpenOptions {
        max_batch: 512,
        pool_size: 2,
        node_id: "growth".into(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/self/stat has no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .context("/proc/self/stat is short")?
            .parse::<f64>()
            .context("/proc/self/stat holds a non-number")
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Latencies in milliseconds: count, median, p99 and max, and every value.
fn summary(name: &str, mut ms: Vec<f64>, cpu: f64) -> String {
    let all = ms
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(",");
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "\"{name}\":{{\"n\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"cpu_ms_per_call\":{:.3},\"all_ms\":[{all}]}}",
        ms.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        cpu * 1e3 / ms.len().max(1) as f64
    )
}

async fn probe(
    db: &std::path::Path,
    claims: usize,
    batch: usize,
    stats: usize,
    destination: &str,
) -> Result<()> {
    if !db.exists() {
        bail!(
            "{} does not exist: make it with scripts/prefill-store.py",
            db.display()
        );
    }
    let store = intake_store::open(&url(db), options()).await?;
    let mut gauges = Vec::new();
    let cpu = cpu_seconds()?;
    for _ in 0..stats {
        let t = Instant::now();
        store.queue_stats().await?;
        gauges.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let gauges_cpu = cpu_seconds()? - cpu;
    let mut claimed = Vec::new();
    let mut deliveries = 0usize;
    let cpu = cpu_seconds()?;
    for _ in 0..claims {
        let t = Instant::now();
        let got = store
            .claim_due(
                destination,
                Timestamp(now_ms()),
                Duration::from_secs(3600),
                batch,
            )
            .await?;
        claimed.push(t.elapsed().as_secs_f64() * 1e3);
        deliveries += got.len();
        if got.is_empty() {
            break;
        }
    }
    let claims_cpu = cpu_seconds()? - cpu;
    store.close().await?;
    println!(
        "{{\"deliveries_claimed\":{deliveries},{},{}}}",
        summary("queue_stats", gauges, gauges_cpu),
        summary("claim", claimed, claims_cpu)
    );
    Ok(())
}
