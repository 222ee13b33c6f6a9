//! The real `intake` binary as a child process, for the benchmarks that measure it: where the
//! binary is, a free port, `intake serve` started and stopped, and an environment from which
//! no `INTAKE_…` variable can override what the benchmark configured.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::process::{Child, Command};

/// The intake binary to run: `given` (`--intake`), or `intake` beside the running binary.
pub fn intake_binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("intake"),
    };
    ensure!(
        path.is_file(),
        "no intake binary at {}; build it (cargo build --release -p intake) or pass --intake PATH",
        path.display()
    );
    Ok(path)
}

/// A port free now, for intake to listen on a moment later.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Removes intake's environment variables (but the log level) from a child's environment, so
/// none can override the benchmark's configuration or command line; the log level defaults to
/// `warn`.
pub fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let is_intake = key.to_str().is_some_and(|k| k.starts_with("INTAKE_"));
        if is_intake && key != "INTAKE_LOG" {
            command.env_remove(key);
        }
    }
    if std::env::var_os("INTAKE_LOG").is_none() {
        command.env("INTAKE_LOG", "warn");
    }
}

/// `intake serve` as a child process, killed if dropped.
pub struct IntakeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl IntakeProcess {
    /// Starts `bin serve --config config` listening on `port`, its output in `log`, and waits
    /// until `/readyz` answers 200 (store writable, workers running).
    pub async fn start(bin: &Path, config: &Path, log: &Path, port: u16) -> Result<Self> {
        let log_file = std::fs::File::create(log).context("creating intake.log")?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("opening intake.log")?)
            .stderr(log_file)
            .kill_on_drop(true);
        clean_env(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut intake = IntakeProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        intake.wait_ready(log).await?;
        Ok(intake)
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "intake serve exited before it was ready ({status}); see {}",
                    log.display()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "intake serve was not ready within 30 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, up to 20 s to exit, then SIGKILL.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("warning: intake serve still running 20 s after SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}
