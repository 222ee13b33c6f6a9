//! `intake demo [--fast] [--port P] [--keep]`: the product's story, told by the product itself.
//!
//! It starts intake in this process on a temporary embedded store, with a fake Kustomer org
//! (`intake-fake-sors`: signed webhooks and its REST API), the built-in demo handler and
//! notification receiver, and the demo tenant's status page; streams the fake's webhooks; then
//! plays the story act by act ([`narrate::ACTS`]), narrated in the terminal, each act checked
//! through the admin API before the next begins. It exits 0 only when every act happened.
//!
//! | Module | Its one job | May import |
//! |---|---|---|
//! | `pace` | How time passes: a simulated clock the demo moves (`--fast`), or the real one; the one wait every act uses. | nothing |
//! | `narrate` | What the terminal says: acts, lines, timings. Pure formatting. | nothing |
//! | `admin` | The server's admin API through `crate::api`'s table, asynchronously; the demo receivers. | `crate::api` |
//! | `traffic` | The fake Kustomer's webhooks, sent as the clock reaches them, except inside lost windows. | nothing |
//! | `setup` | The stage: store, fakes, configuration, server, traffic. | `admin`, `pace`, `traffic` |
//! | `acts` | The story: each act's doing, its check and its narration. | `narrate`, `setup`, `crate::api`, `crate::audit`, `crate::recover` |
//!
//! This module is the door: it parses the flags, sets the stage, plays, and turns the outcome
//! into an exit code; nothing imports it but `main`.

mod acts;
mod admin;
mod narrate;
mod pace;
mod setup;
mod traffic;

use std::process::ExitCode;

use anyhow::Context;
use intake_core::{Clock, SystemClock};

use narrate::Narrator;
use pace::Pace;
use setup::Stage;

/// `intake demo …`
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Run on a simulated clock, in well under a minute (for CI), instead of the real clock
    /// (about five minutes, for a person to follow in the dashboard).
    #[arg(long)]
    fast: bool,
    /// The port intake listens on, on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Keep intake running after the last act, until Ctrl-C, to look around the dashboard.
    #[arg(long)]
    keep: bool,
}

/// Runs `intake demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let pace = if args.fast {
            Pace::fast(SystemClock.now())
        } else {
            Pace::Live
        };
        let mut interrupt = Interrupt::listen()?;
        let stage = Stage::set(pace, args.port).await?;
        introduce(&stage);
        let mut narrator = Narrator::new(stage.pace.now());
        // Ctrl-C stops the story, but not before intake has stopped and its temporary store
        // has been removed.
        let played = tokio::select! {
            played = acts::play(&stage, &mut narrator) => played,
            () = interrupt.recv() => Err(anyhow::anyhow!(
                "interrupted (Ctrl-C): intake stopped and its temporary store was removed"
            )),
        };
        if played.is_ok() {
            println!(
                "\n== Every act happened\n{}",
                narrate::summary(narrator.timings(), narrator.wall())
            );
        }
        if args.keep {
            println!(
                "intake keeps running at {}/ (token {}); Ctrl-C stops it.",
                stage.url,
                setup::TOKEN
            );
            interrupt.recv().await;
        }
        stage.stop().await?;
        played
    });
    // Tasks of connections the shutdown cut acknowledged nothing; they are dropped.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}

/// Ctrl-C, listened for from the moment it is made: one pressed while the stage is being set
/// ends the demo like one pressed later, with intake stopped and its store removed.
struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn listen() -> anyhow::Result<Interrupt> {
        Ok(Interrupt {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot listen for Ctrl-C")?,
        })
    }

    /// Completes when Ctrl-C is pressed.
    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Where to look while it plays.
fn introduce(stage: &Stage) {
    println!(
        "intake demo: the story of an outage, told by intake itself.\n\
         \n\
         Pace       {pace}\n\
         Dashboard  {url}/   (log in with the token {token})\n\
         Store      {store}   (removed at the end)\n\
         Handler    curl -s {url}/demo/handler          what the demo handler received\n\
         On-call    curl -s {url}/demo/notifications    what on-call was sent\n\
         \n\
         intake runs in this process on a temporary store, with a fake Kustomer org (its signed\n\
         webhooks and its REST API) and a handler. Open the dashboard and follow the story.",
        pace = stage.pace.describe(),
        url = stage.url,
        token = setup::TOKEN,
        store = stage.store_url(),
    );
}
