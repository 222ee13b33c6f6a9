//! `intake-noop-server`: the throughput ceiling for intake's ingest endpoint.
//!
//! The product's quality bar says durable ingest must reach at least half of what "a no-op HTTP
//! server built with the same stack" achieves for the same requests. This binary is that server:
//! a tokio multi-thread runtime, axum 0.8, a `POST /ingest/{source_id}` route that extracts the
//! path, the headers and the whole body as `Bytes` under a 1 MiB limit (exactly the work intake's
//! ingest handler has to do before it verifies and stores anything), and answers 200 with the
//! same small JSON acknowledgement intake sends. Whatever it achieves under `intake-loadgen
//! ingest` is the ceiling that intake's own numbers are divided by.
//!
//! It doubles as a trivial delivery handler for benchmarks: any other `POST` is answered 200
//! with an empty body, so intake's delivery workers have somewhere fast to deliver to. With
//! `--delivery-status 500` it is instead a handler that fails fast: every delivery is answered
//! at once with that status, so a benchmark can measure ingest while every attempt fails.
//! `GET /healthz` answers 200 so scripts can wait for the port.
//!
//! ```text
//! intake-noop-server --listen 127.0.0.1:18081
//! ```

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use bytes::Bytes;
use clap::Parser;
use serde::Serialize;

// The same allocator as intake, so that the ceiling is measured with the same stack.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same limit intake puts on an ingest body.
const BODY_LIMIT: usize = 1024 * 1024;

/// A no-op server with intake's HTTP stack, used as the ceiling in ingest benchmarks.
#[derive(Debug, Parser)]
#[command(name = "intake-noop-server", version, about)]
struct Cli {
    /// Address to listen on (loopback only makes sense for benchmarks).
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// Tokio worker threads; defaults to the number of CPUs, as intake does.
    #[arg(long)]
    threads: Option<usize>,
    /// Set TCP_NODELAY on accepted connections (`axum::serve` does not by default).
    #[arg(long)]
    nodelay: bool,
    /// The status any other `POST` (a delivery from intake) is answered with.
    #[arg(long, default_value_t = 200)]
    delivery_status: u16,
}

/// The acknowledgement intake answers an accepted event with.
#[derive(Debug, Serialize)]
struct IngestAck {
    id: &'static str,
    duplicate: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.build().context("building the tokio runtime")?;
    let delivery_status = StatusCode::from_u16(cli.delivery_status).with_context(|| {
        format!(
            "--delivery-status {} is not an HTTP status",
            cli.delivery_status
        )
    })?;
    runtime.block_on(serve(cli.listen, cli.nodelay, delivery_status))
}

async fn serve(listen: SocketAddr, nodelay: bool, delivery_status: StatusCode) -> Result<()> {
    let app = Router::new()
        .route("/ingest/{source_id}", post(ingest))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move |method: Method, body: Bytes| any_post(method, body, delivery_status))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (is something else listening there?)"))?;
    eprintln!("intake-noop-server listening on http://{listen}");
    if nodelay {
        let listener = listener.tap_io(|tcp| {
            // Best effort: a connection without it is only slower.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    } else {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    }
    .context("serving")?;
    Ok(())
}

/// Does what intake's ingest handler does before its real work starts: take the source id, the
/// headers and the whole body, then acknowledge.
async fn ingest(Path(source_id): Path<String>, headers: HeaderMap, body: Bytes) -> Json<IngestAck> {
    // Keep the compiler from discarding the extraction work we are here to measure.
    std::hint::black_box((source_id.len(), headers.len(), body.len()));
    Json(IngestAck {
        id: "evt_x",
        duplicate: false,
    })
}

/// Any other `POST` is a delivery from intake: answer it with the configured status.
async fn any_post(method: Method, body: Bytes, status: StatusCode) -> StatusCode {
    std::hint::black_box(body.len());
    if method == Method::POST {
        status
    } else {
        StatusCode::NOT_FOUND
    }
}

/// Resolves on Ctrl-C or SIGTERM, so benchmark scripts can stop the server cleanly.
async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, never resolve: SIGTERM still works.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
