//! `intake`: the binary. Parses the command line, loads configuration (embedded defaults, then
//! the file, then `INTAKE_…` environment variables), and runs the server or a command.
//! Errors become messages that say what to do next, and non-zero exit codes.

mod api;
mod audit;
mod backtest;
mod config_load;
mod demo;
mod drill;
mod incident;
mod recover;
mod silence;
mod status;
mod token;

// glibc's allocator showed up at ~10% of ingest CPU (many small, short-lived allocations per
// request across threads); mimalloc handles that pattern with less contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use intake_core::config::{mask, Config, ConfigError};
use intake_core::SystemClock;
use intake_server::Server;

#[derive(Parser)]
#[command(
    name = "intake",
    version,
    about = "An inbound webhook gateway that cannot drop work silently."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive, store, queue and deliver webhooks.
    Serve {
        /// The configuration file. Without one, ./intake.toml is used if it exists, else the
        /// embedded demo configuration.
        #[arg(long, short, env = "INTAKE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print every problem found.
    CheckConfig {
        /// The configuration file (default: ./intake.toml).
        #[arg(long, short, env = "INTAKE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Replay per-minute counts through the flow detectors on a simulated clock and write
    /// every alert transition as JSON lines (or, with --synthetic, measure the detectors on
    /// generated traffic with injected outages).
    Backtest(backtest::BacktestArgs),
    /// Summarize a running server: alerts, inbound flows and queues.
    Status {
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// Mute some alerts' notifications for a bounded time, list silences, or end one.
    #[command(subcommand)]
    Silence(silence::SilenceCommand),
    /// Recover lost work: backfill from the system of record, replay, requeue; list, show
    /// or cancel recovery jobs.
    #[command(subcommand)]
    Recover(recover::RecoverCommand),
    /// Run a fire drill on a running server: inject a named fault for a bounded time, check
    /// that the expected alert fired and was notified, heal, and report pass or fail with
    /// the time to detect and to notify (exit 0 only on pass); or list, show, cancel drills.
    #[command(subcommand)]
    Drill(drill::DrillCommand),
    /// Watch the whole story in five minutes: intake on a temporary store with a fake Kustomer
    /// and a handler, live traffic, an injected outage, the alert, the incident and the
    /// tenant's notice, the recovery, the audit and the postmortem, narrated act by act (exit
    /// 0 only when every act happened). `--fast` runs it on a simulated clock in under a minute.
    Demo(demo::DemoArgs),
    /// Check that a source's window adds up: received = accepted + rejected + duplicates,
    /// accepted = delivered + pending + dead per destination, and (when the source has API
    /// credentials) nothing its system of record has was missed. Exits 1 when it does not.
    Audit(audit::AuditArgs),
    /// Create, list or revoke API tokens (stored hashed, shown once).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Declare an incident (notifies the affected tenants and on-call at once), update it,
    /// resolve it, list, show, or draft its postmortem.
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// Copy an embedded installation (SQLite) into PostgreSQL: events, deliveries, attempts,
    /// rejections and counters. Stop `intake serve` first; point it at the new URL after.
    MigrateStore {
        /// The SQLite store, e.g. sqlite://./intake-data/intake.db
        #[arg(long)]
        from: String,
        /// The PostgreSQL database, e.g. postgres://intake@db.internal:5432/intake
        #[arg(long)]
        to: String,
        /// Continue a copy that stopped: accept a destination that already holds rows (rows
        /// already copied are skipped).
        #[arg(long)]
        resume: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Status { api } => status::run(api),
        Command::Silence(cmd) => silence::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Incident(cmd) => incident::run(cmd),
        Command::Recover(cmd) => recover::run(cmd),
        Command::Drill(cmd) => drill::run(cmd),
        Command::Audit(args) => audit::run(args),
        Command::Demo(args) => {
            // The story is told on stdout; the server's own logs only when asked (INTAKE_LOG).
            init_logging("off");
            demo::run(args)
        }
        Command::Backtest(args) => backtest::run(args),
        Command::MigrateStore { from, to, resume } => migrate_store(&from, &to, resume),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = path.unwrap_or_else(|| PathBuf::from("intake.toml"));
    if !path.exists() {
        anyhow::bail!(
            "{} does not exist; pass --config PATH (see docs/configuration.md for the format)",
            path.display()
        );
    }
    let config = match config_load::extract(Some(&path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    // Every problem at once: the model's checks and what this build supports.
    let mut problems = config
        .validate()
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    problems.extend(Server::check(&config));
    if !problems.is_empty() {
        let err = config_load::blame_environment(ConfigError { problems });
        eprintln!("{}: {err}", path.display());
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{}: OK ({} tenants, {} sources, {} destinations, {} notifiers, storage {})",
        path.display(),
        config.tenants.len(),
        config.sources.len(),
        config.destinations.len(),
        config.notifiers.len(),
        mask("storage.url", &config.storage.url)
    );
    for note in smtp_notes(&config)
        .into_iter()
        .chain(contact_notes(&config))
    {
        println!("  {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What check-config states about e-mail notifiers that do not use the defaults: plain text to
/// a local relay (`tls = "none"`), or an extra CA (`ca_file`).
fn smtp_notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    for (i, n) in config.notifiers.iter().enumerate() {
        let key = format!("notifiers[{i}]");
        if n.smtp_plain_text() {
            let url = n.smtp_url.as_deref().unwrap_or("");
            notes.push(format!(
                "{key} (`{}`): e-mail WITHOUT TLS (tls = \"none\"), in plain text to the relay on loopback {}",
                n.id,
                mask(&format!("{key}.smtp_url"), url)
            ));
        }
        if let Some(ca) = &n.ca_file {
            notes.push(format!(
                "{key} (`{}`): the SMTP server's certificate is verified against the public roots and {ca}",
                n.id
            ));
        }
    }
    notes
}

/// What check-config states about tenants' contacts: which e-mail notifier sends their
/// incident notices, or that e-mail contacts cannot be reached (their notices would fail and
/// raise `notifier_failing`).
fn contact_notes(config: &Config) -> Vec<String> {
    let emails = config
        .tenants
        .iter()
        .flat_map(|t| &t.contacts)
        .filter(|c| matches!(c, intake_core::config::Contact::Email { .. }))
        .count();
    if emails == 0 {
        return Vec::new();
    }
    match config.incidents.mailer(&config.notifiers) {
        Some(m) => vec![format!(
            "{emails} e-mail contact(s) get incident notices through notifier `{}`'s SMTP server",
            m.id
        )],
        None => vec![format!(
            "WARNING: {emails} e-mail contact(s) cannot be reached: add an `email` notifier and name it in [incidents] email_via (or keep exactly one); until then their incident notices fail and notifier_failing fires"
        )],
    }
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    init_logging("info");
    let path = path.or_else(|| {
        let default = PathBuf::from("intake.toml");
        default.exists().then_some(default)
    });
    let config = match &path {
        Some(p) => {
            config_load::load(Some(p)).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => config_load::load(None).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let server = Server::new(config.clone(), Arc::new(SystemClock))
            .start()
            .await?;
        print_banner(&config, path.is_none(), &server.url());
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        server.wait().await?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    });
    // The server has stopped (within server.shutdown_timeout, connections still open cut):
    // what is left on the runtime is tasks of cut connections, which acknowledged nothing.
    // They are dropped rather than waited for, so the process exits now.
    runtime.shutdown_timeout(RUNTIME_EXIT);
    result
}

/// How long leftover tasks get to end when the process exits after a shutdown.
const RUNTIME_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

fn migrate_store(from: &str, to: &str, resume: bool) -> anyhow::Result<ExitCode> {
    use intake_store::postgres::{PostgresOptions, PostgresStore};
    use intake_store::sqlite::{SqliteOptions, SqliteStore};
    use intake_store::transfer::{self, Progress};
    use intake_store::Store;

    // Both URLs are shown the way `storage.url` is: never with a password.
    let shown_from = mask("storage.url", from).into_owned();
    let shown_to = mask("storage.url", to).into_owned();
    if !from.starts_with("sqlite://") {
        anyhow::bail!("--from `{shown_from}` must be a sqlite:// URL (the embedded store to copy)");
    }
    if !PostgresStore::accepts(to) {
        anyhow::bail!("--to `{shown_to}` must be a postgres:// URL (the database to copy into)");
    }
    let path = SqliteStore::path_from_url(from)?;
    if !path.exists() {
        anyhow::bail!("{} does not exist; check --from", path.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Opening takes the file's lock, so a running `intake serve` makes this fail (stop it
        // first): a copy of a store that is still being written would miss the last writes.
        let source = SqliteStore::open(&path, SqliteOptions::default())
            .with_context(|| format!("cannot open {shown_from} (stop `intake serve` first)"))?;
        let destination = PostgresStore::open(
            to,
            PostgresOptions {
                pool_size: 2,
                node_id: "migrate-store".into(),
                ..PostgresOptions::default()
            },
        )
        .await
        .with_context(|| format!("cannot open {shown_to}"))?;
        let started = std::time::Instant::now();
        let result = transfer::copy(&source, &destination, resume, |p| match p {
            Progress::Events { done, total } => {
                let pct = if total > 0 { done * 100 / total } else { 100 };
                eprintln!(
                    "events: {done}/{total} ({pct}%) copied with their deliveries and attempts"
                );
            }
            Progress::Rejections { done } => eprintln!("rejections: {done} copied"),
            Progress::Counters { done } => eprintln!("counters: {done} rows copied"),
        })
        .await;
        let _ = source.close().await;
        let _ = destination.close().await;
        let counts = result.with_context(|| {
            if resume {
                "the copy failed; run the same command again to continue".to_string()
            } else {
                "the copy failed; run it again with --resume to continue".to_string()
            }
        })?;
        println!(
            "copied {counts} in {:.1}s; the counts of both stores agree.\n\
             Next: set storage.url = \"{}\" and start intake serve.",
            started.elapsed().as_secs_f64(),
            shown_to
        );
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// JSON logs on stderr, filtered by `INTAKE_LOG` (a tracing filter), else at `default`.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The start-up summary on stdout. Values are shown through [`mask`]: the storage URL
/// without its password. Only the embedded demo set-up prints a secret and a token, and only
/// its own, which are constants of the source code (a token set by `INTAKE_ADMIN_TOKEN` is
/// not printed).
fn print_banner(config: &Config, embedded: bool, url: &str) {
    println!(
        "intake is listening on {url}  (storage: {})",
        mask("storage.url", &config.storage.url)
    );
    for s in &config.sources {
        println!(
            "  source {:<24} POST {url}/ingest/{}  ({}, tenant {})",
            s.id, s.id, s.kind, s.tenant
        );
    }
    println!("  dashboard {url}/  (log in with admin.token or a tenant's api_token)");
    if !embedded {
        return;
    }
    let body = r#"{"id":"evt-hello-1","name":"kustomer.message.create","data":{"type":"message","id":"msg-hello-1","attributes":{"channel":"email","createdAt":"2026-11-28T10:00:00.000Z"}}}"#;
    let secret = config
        .sources
        .first()
        .and_then(|s| s.secrets.first())
        .map(String::as_str)
        .unwrap_or("");
    let signature = intake_connectors::kustomer::sign(secret, body.as_bytes());
    println!(
        "\nNo configuration file was given, so this is the embedded demo set-up: tenant `demo`,\n\
         Kustomer source `demo-kustomer` (secret `{secret}`) delivering to the built-in demo handler.\n\
         Send it a signed webhook:\n\n  \
         curl -s -X POST {url}/ingest/demo-kustomer \\\n    \
         -H 'Content-Type: application/json' \\\n    \
         -H 'X-Kustomer-Webhook-Signature: {signature}' \\\n    \
         --data '{body}'\n\n\
         Watch it in the dashboard:       {url}/  (log in with the token {token})\n\
         See what the handler received:   curl -s {url}/demo/handler\n\
         See the event and its delivery:  curl -s -H 'Authorization: Bearer {token}' {url}/api/v1/events\n\
         Metrics:                          curl -s {url}/metrics\n\n\
         Prove that alerting works, with a fire drill (about 2 minutes):\n  \
         intake drill queue-stall --source demo-kustomer --url {url} --token {token}\n\
         The notifications it sends:       curl -s {url}/demo/notifications\n\n\
         For your own set-up, write an intake.toml (docs/configuration.md) and run `intake serve --config intake.toml`.",
        token = demo_token(config)
    );
}

/// The admin token the demo banner may print: the embedded set-up's own, which is in the
/// source code; one set through the environment is a real secret and is not printed.
fn demo_token(config: &Config) -> String {
    Config::embedded_default()
        .admin
        .token
        .filter(|demo| config.admin.token.as_ref() == Some(demo))
        .unwrap_or_else(|| "$INTAKE_ADMIN_TOKEN".into())
}
