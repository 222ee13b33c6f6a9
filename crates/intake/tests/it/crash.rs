//! The real binary, killed with SIGKILL at random moments under load, restarted on the same
//! data directory: every event that was answered 200 must reach the handler at least once.
//! And SIGTERM: a graceful stop that finishes what is in flight and exits 0, and that cuts the
//! connections still open at `server.shutdown_timeout` (a client holding half a request).

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_testkit::{
    config_toml, kustomer, CaptureHandler, Reply, DESTINATION_SECRET, SOURCE_SECRET,
};
use rand::Rng;
use tokio::process::{Child, Command};

use crate::PATIENCE;

pub(crate) fn free_port() -> u16 {
    // Bind, read the port, release it; the child binds it a moment later.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub(crate) fn write_config(dir: &Path, port: u16, handler_url: &str) -> std::path::PathBuf {
    let text = config_toml(dir, handler_url, "timeout = \"2s\"").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let path = dir.join("intake.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) async fn spawn_intake(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("INTAKE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub(crate) async fn wait_healthy(http: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("intake exited before it was ready: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "intake did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `body` to the Kustomer source `maelys-kustomer` at `base`, signed, as the real binary's
/// tests send their load.
pub(crate) async fn post_signed(
    http: &reqwest::Client,
    base: &str,
    body: String,
    timeout: Duration,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/ingest/maelys-kustomer"))
        .header(
            "x-kustomer-webhook-signature",
            kustomer::sign(SOURCE_SECRET, &body),
        )
        .header("content-type", "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await
}

/// Sends unique signed webhooks until `stop`, recording the ids answered 200.
async fn sender(
    http: reqwest::Client,
    base: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<String>>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body =
            kustomer::message_create(&format!("w{worker}-{n}-{}", rand::random::<u32>()), "email");
        let resp = post_signed(&http, &base, body, Duration::from_secs(5)).await;
        match resp {
            Ok(r) if r.status() == 200 => {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if let Some(id) = v["id"].as_str() {
                        acked.lock().unwrap().insert(id.to_string());
                    }
                }
            }
            // Connection refused or reset while the server is down: not acknowledged, so the
            // sender would retry; nothing is owed.
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &handler.url());
    let log = dir.path().join("intake.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(HashSet::new()));

    for round in 0..4 {
        let mut child = spawn_intake(&config, &log).await;
        wait_healthy(&http, &base, &mut child).await;
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..8)
            .map(|w| {
                tokio::spawn(sender(
                    http.clone(),
                    base.clone(),
                    round * 100 + w,
                    stop.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        let run_for = rand::rng().random_range(150..600);
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        child.start_kill().unwrap(); // SIGKILL: no chance to flush anything
        child.wait().await.unwrap();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
    }

    let acked: HashSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the load should have been acknowledged many times, got {}",
        acked.len()
    );

    // A last start delivers whatever the killed processes left queued or in flight.
    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    let missing = loop {
        let delivered: HashSet<String> = handler.received().into_iter().map(|c| c.id).collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !delivered.contains(*id)).collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let received = handler.received();
    eprintln!(
        "acknowledged {}, deliveries received {} (duplicates after crashes are allowed), missing {missing}",
        acked.len(),
        received.len()
    );
    assert_eq!(
        missing, 0,
        "every acknowledged event must be delivered at least once"
    );
    assert!(received.iter().all(|c| c.signature_valid));
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    handler.set_default(Reply::Slow(Duration::from_millis(300)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &handler.url());
    let log = dir.path().join("intake.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    let acked = ingest_acked(&http, &base, "term", 20).await;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("intake did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "a graceful stop exits 0, got {status}");

    // Whatever the stop did not finish was released, and is delivered after a restart.
    handler.set_default(Reply::Status(200));
    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    wait_all_delivered(&handler, &acked).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_a_half_sent_request_at_the_deadline_and_loses_nothing_acknowledged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // Deliveries are still in flight at the stop: their leases must come back.
    handler.set_default(Reply::Slow(Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // config_toml sets server.shutdown_timeout = "2s".
    let shutdown_timeout = Duration::from_secs(2);
    let config = write_config(dir.path(), port, &handler.url());
    let log = dir.path().join("intake.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    let acked = ingest_acked(&http, &base, "half", 10).await;

    // A client that sends its headers and half its body, then stalls; and one that stops in
    // the middle of its headers.
    let mut half_body = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    half_body
        .write_all(
            b"POST /ingest/maelys-kustomer HTTP/1.1\r\nhost: intake\r\n\
              content-type: application/json\r\ncontent-length: 1000\r\n\r\n",
        )
        .await
        .unwrap();
    half_body.write_all(&[b' '; 500]).await.unwrap();
    let mut half_head = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    half_head
        .write_all(b"POST /ingest/maelys-kustomer HTTP/1.1\r\nhost: in")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = child.id().unwrap().to_string();
    let stopping = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    // A hang guard, not a performance bound: without a hard deadline the stop never ends.
    let status = tokio::time::timeout(shutdown_timeout + Duration::from_secs(10), child.wait())
        .await
        .expect("intake did not exit after server.shutdown_timeout with a half-sent request")
        .unwrap();
    eprintln!(
        "exited {status} {:.2}s after SIGTERM (shutdown_timeout {}s)",
        stopping.elapsed().as_secs_f64(),
        shutdown_timeout.as_secs()
    );
    assert!(
        status.success(),
        "a stop at the deadline exits 0, got {status}"
    );
    // The stalled clients' connections were closed under them, with no answer.
    let mut buf = Vec::new();
    let read = half_body.read_to_end(&mut buf).await;
    assert!(
        read.is_err() || buf.is_empty(),
        "the cut request was never answered: {:?}",
        String::from_utf8_lossy(&buf)
    );

    // Every acknowledged event is delivered after a restart.
    handler.set_default(Reply::Status(200));
    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    wait_all_delivered(&handler, &acked).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// Sends `n` signed Kustomer messages (ids `{prefix}-{i}`), each answered 200; their event ids.
async fn ingest_acked(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    n: usize,
) -> HashSet<String> {
    let mut acked = HashSet::new();
    for i in 0..n {
        let body = kustomer::message_create(&format!("{prefix}-{i}"), "chat");
        let r = http
            .post(format!("{base}/ingest/maelys-kustomer"))
            .header(
                "x-kustomer-webhook-signature",
                kustomer::sign(SOURCE_SECRET, &body),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        acked.insert(v["id"].as_str().unwrap().to_string());
    }
    acked
}

/// Waits (within `PATIENCE`) until the handler has received every acknowledged event.
pub(crate) async fn wait_all_delivered(handler: &CaptureHandler, acked: &HashSet<String>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let delivered: HashSet<String> = handler.received().into_iter().map(|c| c.id).collect();
        if acked.iter().all(|id| delivered.contains(id)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every acknowledged event was delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
