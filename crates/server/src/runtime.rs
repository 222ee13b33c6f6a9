//! Wiring only: opens the store, builds the shared state, binds the listener, starts the
//! duties, and shuts everything down in the order that loses nothing, within
//! `server.shutdown_timeout` (then the connections still open are cut).
//!
//! **Rule of this room:** it may import every other module and nothing imports it; it holds
//! no request handling and no duty logic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use intake_core::canary::CanaryKey;
use intake_core::config::{Config, ConfigError, ConfigProblem};
use intake_core::signature::SigningKey;
use intake_core::SharedClock;
use intake_store::{OpenOptions, Store};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::duties::{self, delivery, Handles};
use crate::error::ServerError;
use crate::hard_stop::CuttableListener;
use crate::metrics::{ATTEMPT_DURATION, DELIVERY_LATENCY};
use crate::state::{
    AppState, DeliveryLogs, DeliveryMetrics, DestinationRuntime, DoorLogs, DrillFaults, DutyLogs,
    QueueView, SourceMetrics, SourceRuntime,
};
use crate::{api, conn, demo_handler, health, ingest, metrics as meters, web};

/// Opens the store a `storage.url` names, as the node `cluster.node_id` (or a new random id).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let node_id = config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(intake_store::generate_node_id);
    let store = intake_store::open(
        &config.storage.url,
        OpenOptions {
            max_batch: config.storage.max_batch,
            pool_size: config.storage.pool_size,
            node_id,
        },
    )
    .await?;
    Ok(store)
}

/// A server ready to start.
pub struct Server {
    config: Config,
    clock: SharedClock,
    store: Option<Arc<dyn Store>>,
}

impl Server {
    /// A server for this configuration, reading time from `clock`.
    pub fn new(config: Config, clock: SharedClock) -> Self {
        Server {
            config,
            clock,
            store: None,
        }
    }

    /// Uses an already open store instead of opening `storage.url`.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Checks what the configuration needs from this build (connectors for every source kind,
    /// usable secrets), beyond what [`Config::validate`] checks.
    pub fn check(config: &Config) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = config
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                intake_connectors::for_source(s)
                    .err()
                    .map(|e| ConfigProblem {
                        path: format!("sources[{i}].kind"),
                        message: e.to_string(),
                    })
            })
            .collect();
        // Notifiers are built the way the monitor duty builds them, so a notifier that could
        // not send (a bad SMTP URL, a missing key) stops the start instead of failing later.
        let ctx = intake_notify::NotifyContext::new(Arc::new(intake_core::SystemClock));
        for (i, n) in config.notifiers.iter().enumerate() {
            if let Err(e) = intake_notify::build(n, &ctx) {
                problems.push(ConfigProblem {
                    path: format!("notifiers[{i}]"),
                    message: e.message,
                });
            }
        }
        if let Some(url) = &config.monitor.watchdog_url {
            if let Err(e) = intake_notify::WatchdogPing::new(
                "watchdog",
                url,
                intake_notify::PingMethod::Get,
                &ctx,
            ) {
                problems.push(ConfigProblem {
                    path: "monitor.watchdog_url".into(),
                    message: e.message,
                });
            }
        }
        if let Err(e) = intake_notify::LinkBuilder::new(config.server.public_url.as_deref()) {
            problems.push(ConfigProblem {
                path: "server.public_url".into(),
                message: e.to_string(),
            });
        }
        if let Err(e) = intake_monitor::RuleBook::new(&config.rules) {
            problems.push(ConfigProblem {
                path: format!("rules[{}].threshold", e.index),
                message: format!("{} ({})", e.message, e.rule),
            });
        }
        problems
    }

    /// Opens the store, binds the listener and starts serving and delivering.
    pub async fn start(self) -> Result<RunningServer, ServerError> {
        let problems = Server::check(&self.config);
        if !problems.is_empty() {
            return Err(ConfigError { problems }.into());
        }
        let config = Arc::new(self.config);
        let store = match self.store {
            Some(s) => s,
            None => open_store(&config).await?,
        };
        let keys = Keys {
            canary: duties::canary::key(&*store).await?,
            web: web::session_key(&*store).await?,
        };
        let state = Arc::new(build_state(
            config.clone(),
            self.clock.clone(),
            store.clone(),
            keys,
        )?);
        // The stored fire-drill faults apply from the first request: a node that restarts in
        // the middle of a drill keeps applying it (until its expiry, never after).
        if let Err(e) = duties::drill::faults::load(&*store, &state.faults, self.clock.now()).await
        {
            tracing::warn!(error = %e, "cannot read the fire drill faults yet; retrying in the background");
        }
        let listener = tokio::net::TcpListener::bind(&config.server.listen)
            .await
            .map_err(|source| ServerError::Listen {
                address: config.server.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let http_stop = CancellationToken::new();
        // The first heartbeat is recorded before any lease is taken under this node's id, so
        // that no other node's lease reaper takes this node's first claims for a dead node's.
        let address = addr.to_string();
        let first = duties::node_info(&*store, &address, state.started_at, self.clock.now());
        if let Err(e) = store.heartbeat(first).await {
            tracing::warn!(error = %e, "cannot record this node's first heartbeat");
        }
        let duties_stop = CancellationToken::new();
        let duty_logs = Arc::new(DutyLogs::new());
        let mut duties = duties::start(
            handles(&state, front_door(&config, addr), duty_logs.clone()),
            address,
            state.started_at,
            duties_stop.clone(),
        );
        duties.push(tokio::spawn(duties::summarise_logs(
            state.logs.clone(),
            duty_logs.clone(),
            state.destinations.values().cloned().collect(),
            self.clock.clone(),
            duties_stop.clone(),
        )));
        let dispatchers = delivery::start_all(
            state.destinations.values(),
            store.clone(),
            self.clock.clone(),
            state.faults.clone(),
            config.server.shutdown_timeout.0,
            shutdown.child_token(),
        );

        let app = router(state.clone());
        let http_stop2 = http_stop.clone();
        let cut = CancellationToken::new();
        let listener = CuttableListener::new(listener, cut.clone());
        let limits = conn::Limits::of(&config.server);
        let task = tokio::spawn(conn::serve(listener, app, limits, http_stop2));
        let http = HttpDoor {
            stop: http_stop,
            cut,
            task,
        };

        let task = tokio::spawn(run_until_shutdown(
            state.clone(),
            shutdown.clone(),
            http,
            dispatchers,
            (duties_stop, duties),
        ));
        tracing::info!(%addr, "intake is serving");
        Ok(RunningServer {
            addr,
            store,
            shutdown,
            task,
        })
    }
}

/// The keys made once per cluster and kept in the store.
struct Keys {
    /// Marks canaries.
    canary: CanaryKey,
    /// Signs dashboard sessions.
    web: [u8; 32],
}

/// The shared state: every destination with its signing key, wake-up and metric handles, and
/// every source with its connector and the wakers of its destinations.
fn build_state(
    config: Arc<Config>,
    clock: SharedClock,
    store: Arc<dyn Store>,
    keys: Keys,
) -> Result<AppState, ServerError> {
    // The recorder must exist before metric handles are registered.
    meters::handle();
    let mut destinations = HashMap::new();
    for d in &config.destinations {
        let key = SigningKey::from_secret(&d.secret).map_err(|source| ServerError::Secret {
            destination: d.id.clone(),
            source,
        })?;
        let metrics = config
            .sources
            .iter()
            .filter(|s| s.destinations.contains(&d.id))
            .map(|s| (s.id.clone(), DeliveryMetrics::new(&s.tenant, &s.id, &d.id)))
            .collect();
        destinations.insert(
            d.id.clone(),
            Arc::new(DestinationRuntime {
                config: d.clone(),
                key,
                wake: Arc::new(Notify::new()),
                running: AtomicBool::new(false),
                metrics,
                latency: metrics::histogram!(DELIVERY_LATENCY, "destination" => d.id.clone()),
                attempt_duration: metrics::histogram!(ATTEMPT_DURATION, "destination" => d.id.clone()),
                logs: DeliveryLogs::new(),
            }),
        );
    }
    let mut sources = HashMap::new();
    for s in &config.sources {
        let connector = intake_connectors::for_source(s)?;
        let wakers = s
            .destinations
            .iter()
            .filter_map(|d| destinations.get(d).map(|d| d.wake.clone()))
            .collect();
        sources.insert(
            s.id.clone(),
            SourceRuntime {
                config: s.clone(),
                connector,
                wakers,
                metrics: SourceMetrics::new(&s.tenant, &s.id),
            },
        );
    }
    let body_budget = Arc::new(tokio::sync::Semaphore::new(
        usize::try_from(config.server.body_budget.0)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    Ok(AppState {
        demo: demo_handler::inbox(&config),
        config,
        started_at: clock.now(),
        queue: QueueView::of_store(store.clone(), clock.clone()),
        clock,
        store,
        sources,
        destinations,
        rejection_slots: Arc::new(tokio::sync::Semaphore::new(1024)),
        logs: Arc::new(DoorLogs::new()),
        body_budget,
        recoveries: Arc::new(Notify::new()),
        notices: Arc::new(Notify::new()),
        canary_key: keys.canary,
        web_key: keys.web,
        faults: Arc::new(DrillFaults::new()),
        drills: Arc::new(Notify::new()),
    })
}

/// Where canaries enter: `server.public_url` when set (through the load balancer), else this
/// node's own address (an unspecified bind address, `0.0.0.0`, is reached on loopback).
fn front_door(config: &Config, addr: SocketAddr) -> String {
    if let Some(url) = &config.server.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// The handles the duties are started with.
fn handles(state: &AppState, front_door: String, logs: Arc<DutyLogs>) -> Handles {
    Handles {
        config: state.config.clone(),
        clock: state.clock.clone(),
        store: state.store.clone(),
        queue: state.queue.clone(),
        wakers: Arc::new(
            state
                .destinations
                .iter()
                .map(|(id, d)| (id.clone(), d.wake.clone()))
                .collect(),
        ),
        recoveries: state.recoveries.clone(),
        notices: state.notices.clone(),
        backfilled: Arc::new(
            state
                .config
                .sources
                .iter()
                .map(|s| (s.id.clone(), meters::backfill_counters(&s.tenant, &s.id)))
                .collect(),
        ),
        canary_key: state.canary_key.clone(),
        front_door,
        faults: state.faults.clone(),
        drills: state.drills.clone(),
        logs,
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(ingest::routes())
        .merge(health::routes())
        .merge(meters::routes())
        .merge(api::routes(state.clone()))
        .merge(demo_handler::routes(&state))
        .merge(web::routes(state.clone()))
        .with_state(state)
}

/// How long the HTTP server has, after its connections were cut, to notice it. Cut
/// connections end at their next poll, so this is only a guard against a task that never
/// yields; past it the server task is aborted.
const AFTER_CUT: Duration = Duration::from_secs(2);

/// The HTTP server's task and the two ways to stop it.
struct HttpDoor {
    /// Stops accepting, lets requests in progress finish (graceful).
    stop: CancellationToken,
    /// Cuts every connection still open (the hard deadline).
    cut: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpDoor {
    /// Stops accepting and waits for requests in progress up to `deadline`; then cuts the
    /// connections still open (a client holding half a request would otherwise hold the stop
    /// for ever). A cut request was never answered, so never acknowledged: its sender retries.
    async fn close(mut self, deadline: Duration) {
        self.stop.cancel();
        let result = match tokio::time::timeout(deadline, &mut self.task).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    shutdown_timeout = %humantime::format_duration(deadline),
                    "requests still in progress after server.shutdown_timeout; cutting their connections (none of them was acknowledged)"
                );
                self.cut.cancel();
                match tokio::time::timeout(AFTER_CUT, &mut self.task).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::error!("the HTTP server did not stop after its connections were cut; aborting it");
                        self.task.abort();
                        return;
                    }
                }
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server stopped with an error"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
    }
}

async fn run_until_shutdown(
    state: Arc<AppState>,
    shutdown: CancellationToken,
    http: HttpDoor,
    dispatchers: Vec<JoinHandle<()>>,
    (duties_stop, duties): (CancellationToken, Vec<JoinHandle<()>>),
) -> Result<(), ServerError> {
    shutdown.cancelled().await;
    tracing::info!("shutting down: no new requests; finishing requests in progress");
    // 1. Stop accepting; requests already inside (ingests waiting for their commit) finish,
    //    up to server.shutdown_timeout, after which their connections are cut. The
    //    dispatchers, cancelled with us, drain their attempts meanwhile (same bound).
    http.close(state.config.server.shutdown_timeout.0).await;
    // 2. Dispatchers were cancelled with us: they wait for attempts in flight (bounded by
    //    server.shutdown_timeout) and give back the leases of the ones that did not finish.
    for d in dispatchers {
        let _ = d.await;
    }
    for d in state.destinations.values() {
        d.running.store(false, Ordering::Relaxed);
    }
    // 3. Singleton duties stop and give their leases back, so another node takes them at once
    //    instead of after the lease; this node leaves the cluster view.
    duties_stop.cancel();
    for d in duties {
        let _ = d.await;
    }
    if let Err(e) = state.store.leave().await {
        tracing::warn!(error = %e, "could not remove this node from the cluster view");
    }
    // 4. The store commits what is queued and closes.
    state.store.close().await?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// A started server.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// Its store.
    pub store: Arc<dyn Store>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// `http://{addr}`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token that starts a graceful shutdown when cancelled (e.g. on SIGTERM).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after a shutdown was requested).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await.map_err(ServerError::Task)?
    }

    /// Shuts down gracefully and waits for it.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        self.wait().await
    }
}
