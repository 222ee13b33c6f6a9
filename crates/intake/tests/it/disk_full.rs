//! A real full disk: the real binary with its store on a small tmpfs that fills up under load.
//! While the disk is full, ingest answers 503 with `Retry-After` and `/readyz` 503; once a
//! little space comes back, writes resume without a restart even though the load never
//! stopped; every event answered 200 is delivered.
//!
//! The test mounts a tmpfs, so it needs root (as CI and the project's machines run); it fails,
//! saying so, where it cannot mount.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_testkit::{
    kustomer, CaptureHandler, NotifierCapture, DESTINATION_SECRET, SOURCE_SECRET,
};

use crate::crash::{free_port, spawn_intake, wait_all_delivered, wait_healthy, write_config};
use crate::PATIENCE;

/// A tmpfs mounted for the test's lifetime (lazily unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs to fill a real disk and needs root (or \
             CAP_SYS_ADMIN): mount said {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(at.to_path_buf())
    }

    /// Free bytes, as `df` reports them.
    fn free(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }

    fn ballast(&self, name: &str, bytes: u64) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, vec![1u8; bytes as usize]).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// What the senders saw.
#[derive(Default)]
struct Seen {
    acked: Mutex<HashSet<String>>,
    refused: AtomicU64,
    refused_with_retry_after: AtomicU64,
}

/// Sends unique signed webhooks until `stop`, recording what was answered.
async fn sender(
    http: reqwest::Client,
    base: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = kustomer::message_create(&format!("full-{worker}-{n}"), "email");
        let resp = http
            .post(format!("{base}/ingest/maelys-kustomer"))
            .header(
                "x-kustomer-webhook-signature",
                kustomer::sign(SOURCE_SECRET, &body),
            )
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(resp) = resp else {
            // Not answered (the test is failing and intake was stopped): nothing is owed.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        match resp.status().as_u16() {
            200 => {
                let v: serde_json::Value = resp.json().await.unwrap();
                let id = v["id"].as_str().unwrap().to_string();
                seen.acked.lock().unwrap().insert(id);
            }
            503 => {
                seen.refused.fetch_add(1, Ordering::Relaxed);
                if resp.headers().contains_key("retry-after") {
                    seen.refused_with_retry_after
                        .fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => panic!("unexpected answer {other}: {:?}", resp.text().await),
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

async fn ready_status(http: &reqwest::Client, base: &str) -> u16 {
    http.get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls `cond` every 50 ms until it holds, failing with `what` after `patience`.
async fn wait_for<F, Fut>(patience: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_with_503_and_writes_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), 64);
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let port = free_port();
    let config = write_config(&disk.0, port, &handler.url());
    // The watchdog's heartbeat, every second: it must stop while the store cannot write, so
    // that the dead-man's switch alarms even though no notification can be queued.
    let switch = NotifierCapture::start().await.unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[monitor]\ninterval = \"1s\"\nwatchdog_url = \"{}\"\n",
        switch.url("/ping")
    ));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("intake.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;

    // All the space but 24 MiB is taken, in two files: a small one that will be given back
    // while the load goes on, and the rest.
    let headroom = 24 << 20;
    let small = disk.ballast("ballast-small", 4 << 20);
    let big = disk.ballast("ballast-big", disk.free() - headroom);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let senders: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(sender(
                http.clone(),
                base.clone(),
                w,
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();

    wait_for(PATIENCE * 3, "the disk never filled", || async {
        seen.refused.load(Ordering::Relaxed) > 0
    })
    .await;
    wait_for(
        PATIENCE,
        "/readyz did not answer 503 on a full disk",
        || async { ready_status(&http, &base).await == 503 },
    )
    .await;
    let acked_while_full = seen.acked.lock().unwrap().len();
    // The heartbeat stops: the monitor's duty lease cannot be renewed, so the duty stops
    // before the lease (`cluster.duty_lease`, 10 s) runs out. Stopped: no ping for 3 s.
    assert!(!switch.all().is_empty(), "the watchdog never pinged");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let pings_while_full = loop {
        let before = switch.all().len();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = switch.all().len();
        if after == before {
            break after;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watchdog kept pinging while the store could not write"
        );
    };
    let wal = disk.0.join("intake.db-wal");
    let wal_when_full = file_size(&wal);
    eprintln!("{acked_while_full} accepted before the disk filled; WAL {wal_when_full} bytes");
    // A WAL left to grow to its usual 64 MiB before starting over would have taken most of
    // the headroom by itself, with older versions of the same pages (1,004 and 1,750 events
    // fitted before it started over sooner; 13,000 since): on a disk short of room it starts
    // over sooner.
    assert!(
        acked_while_full > 5000,
        "only {acked_while_full} events fitted in 24 MiB"
    );

    // 4 MiB come back while the senders keep sending: the writer must use them to empty the
    // WAL rather than append more of it, and accept again.
    std::fs::remove_file(&small).unwrap();
    wait_for(
        PATIENCE,
        "writes did not resume after space came back",
        || async { seen.acked.lock().unwrap().len() > acked_while_full },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    // The rest of the space, for the deliveries' own writes; everything accepted arrives.
    std::fs::remove_file(&big).unwrap();
    wait_for(PATIENCE, "/readyz did not answer 200 again", || async {
        ready_status(&http, &base).await == 200
    })
    .await;
    let acked: HashSet<String> = seen.acked.lock().unwrap().clone();
    wait_all_delivered(&handler, &acked).await;
    wait_for(PATIENCE, "the watchdog did not ping again", || async {
        switch.all().len() > pings_while_full
    })
    .await;
    let refused = seen.refused.load(Ordering::Relaxed);
    eprintln!(
        "acknowledged {} ({acked_while_full} before the disk filled), refused {refused}",
        acked.len()
    );
    assert_eq!(
        seen.refused_with_retry_after.load(Ordering::Relaxed),
        refused,
        "every 503 carries Retry-After"
    );
    // The operator's log says what happened, and that the WAL gave its space back first.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the disk is full: refusing every write"),
        "{text}"
    );
    assert!(
        text.contains("the disk has room again: the WAL was copied into the database and emptied"),
        "{text}"
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
