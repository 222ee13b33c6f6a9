//! A real full disk: the real binary with its store on a small tmpfs that fills up under load.
//! While the disk is full, ingest answers 503 with `Retry-After` and `/readyz` 503, and what
//! was acknowledged is still delivered (from the store's reserve) even if nobody frees
//! anything; once space comes back, new events are accepted without a restart even though the
//! load never stopped.
//!
//! On PostgreSQL the database's tables live in a tablespace on the tmpfs: inserts are refused
//! while updates still fit, and `/readyz` must say the node cannot take new events.
//!
//! The tests mount a tmpfs, so they need root (as CI and the project's machines run); they
//! fail, saying so, where they cannot mount.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_testkit::{
    kustomer, with_canaries, CaptureHandler, NotifierCapture, Reply, DESTINATION_SECRET,
};

use crate::cluster::{admin_sql_best_effort, pg_admin_url, pg_connect, write_node_config, TestDb};
use crate::crash::{
    free_port, post_signed, spawn_intake, wait_all_delivered, wait_healthy, write_config,
};
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

    /// A file that takes every byte left, written until the disk refuses more.
    fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.0.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 16, 1 << 12, 1 << 9] {
            while file.write_all(&vec![1u8; chunk]).is_ok() {}
        }
        path
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
        let resp = post_signed(&http, &base, body, Duration::from_secs(10)).await;
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

/// `intake_store_disk_full` on `/metrics`.
async fn disk_full_gauge(http: &reqwest::Client, base: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("intake_store_disk_full "))
        .and_then(|v| v.trim().parse().ok())
}

/// intake on a 96 MiB tmpfs, delivering to `handler`, evaluating every second, with the
/// watchdog pinging `switch` (`/ping`) and a webhook notifier posting to it (`/hook`); with
/// `canaries`, a canary every second with a deadline of 3 s.
struct Rig {
    _dir: tempfile::TempDir,
    disk: Tmpfs,
    log: PathBuf,
    base: String,
    http: reqwest::Client,
    child: tokio::process::Child,
}

impl Rig {
    async fn start(handler: &CaptureHandler, switch: &NotifierCapture, canaries: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let disk = Tmpfs::mount(&dir.path().join("disk"), 96);
        let port = free_port();
        let config = write_config(&disk.0, port, &handler.url());
        let mut text = std::fs::read_to_string(&config).unwrap();
        if canaries {
            text = with_canaries(&text, "1s", "3s");
        }
        text.push_str(&format!(
            "\n[monitor]\ninterval = \"1s\"\nwatchdog_url = \"{}\"\n\n\
             [[notifiers]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            switch.url("/ping"),
            switch.url("/hook")
        ));
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("intake.log");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut child = spawn_intake(&config, &log).await;
        wait_healthy(&http, &base, &mut child).await;
        Rig {
            _dir: dir,
            disk,
            log,
            base,
            http,
            child,
        }
    }

    /// Four senders until `stop`.
    fn send(&self, stop: &Arc<AtomicBool>, seen: &Arc<Seen>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..4)
            .map(|w| {
                tokio::spawn(sender(
                    self.http.clone(),
                    self.base.clone(),
                    w,
                    stop.clone(),
                    seen.clone(),
                ))
            })
            .collect()
    }

    /// Waits until ingest was refused and `/readyz` answers 503.
    async fn wait_full(&self, seen: &Seen) {
        wait_for(PATIENCE * 3, "the disk never filled", || async {
            seen.refused.load(Ordering::Relaxed) > 0
        })
        .await;
        wait_for(
            PATIENCE,
            "/readyz did not answer 503 on a full disk",
            || async { ready_status(&self.http, &self.base).await == 503 },
        )
        .await;
    }

    async fn wait_ready(&self) {
        wait_for(PATIENCE, "/readyz did not answer 200 again", || async {
            ready_status(&self.http, &self.base).await == 200
        })
        .await;
    }

    async fn disk_full_gauge(&self) -> Option<f64> {
        disk_full_gauge(&self.http, &self.base).await
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_with_503_and_writes_resume_when_space_returns() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let switch = NotifierCapture::start().await.unwrap();
    let mut rig = Rig::start(&handler, &switch, true).await;
    // All the space but 24 MiB is taken (the store's own 16 MiB reserve is set aside
    // already), in two files: one of 24 MiB that will be given back while the load goes on,
    // and the rest.
    let headroom = 24 << 20;
    let small = rig.disk.ballast("ballast-small", 24 << 20);
    let big = rig.disk.ballast("ballast-big", rig.disk.free() - headroom);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let senders = rig.send(&stop, &seen);
    rig.wait_full(&seen).await;
    let acked_while_full = seen.acked.lock().unwrap().len();
    let wal_when_full = file_size(&rig.disk.0.join("intake.db-wal"));
    eprintln!("{acked_while_full} accepted before the disk filled; WAL {wal_when_full} bytes");
    // A WAL left to grow to its usual 64 MiB before starting over would have taken most of
    // the headroom by itself, with older versions of the same pages (1,004 and 1,750 events
    // fitted before it started over sooner; 13,000 since): on a disk short of room it starts
    // over sooner.
    assert!(
        acked_while_full > 5000,
        "only {acked_while_full} events fitted in 24 MiB"
    );
    // Alerting stays alive on the reserve: the watchdog keeps pinging, and a page goes out.
    let pings = switch.all().len();
    wait_for(PATIENCE, "the watchdog stopped on a full disk", || async {
        switch.all().len() > pings + 2
    })
    .await;

    // On-call is paged while the disk is full: the canaries are refused like any new event,
    // and the alert and its notice are written in the reserve's room.
    wait_for(
        PATIENCE,
        "canary_failed was not notified on a full disk",
        || async {
            switch.accepted().iter().any(|r| {
                let n = r.json();
                r.uri == "/hook"
                    && n["kind"] == "alert"
                    && n["status"] == "firing"
                    && String::from_utf8_lossy(&r.body).contains("refused at ingest")
                    && String::from_utf8_lossy(&r.body).contains("the disk is full")
                    && n["key"]
                        .as_str()
                        .is_some_and(|k| k.starts_with("canary_failed{"))
            })
        },
    )
    .await;

    // 24 MiB come back while the senders keep sending: with the reserve's 16, that is room
    // for the reserve and as much again, and new events are accepted again.
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

    std::fs::remove_file(&big).unwrap();
    rig.wait_ready().await;
    let acked: HashSet<String> = seen.acked.lock().unwrap().clone();
    wait_all_delivered(&handler, &acked).await;
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
    let text = rig.log_text();
    assert!(
        text.contains("the disk is full: refusing every write"),
        "{text}"
    );
    assert!(
        text.contains("the WAL was copied into the database and emptied"),
        "{text}"
    );
    assert!(text.contains("the disk has room again"), "{text}");
    rig.child.start_kill().unwrap();
    rig.child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_stays_full_still_delivers_everything_it_acknowledged() {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    // A slow handler, so that much of what is accepted is still queued when the disk fills.
    handler.set_default(Reply::Slow(Duration::from_millis(500)));
    let switch = NotifierCapture::start().await.unwrap();
    let mut rig = Rig::start(&handler, &switch, false).await;
    let big = rig.disk.ballast("ballast", rig.disk.free() - (24 << 20));

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let senders = rig.send(&stop, &seen);
    rig.wait_full(&seen).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<String> = seen.acked.lock().unwrap().clone();
    let delivered_when_full = handler.received().len();
    eprintln!(
        "{} accepted, {delivered_when_full} delivered when the disk filled",
        acked.len()
    );
    assert!(
        delivered_when_full * 2 < acked.len(),
        "most of what was accepted should still be queued"
    );

    // Nobody frees anything: the store gave its reserve back, and everything it acknowledged
    // is delivered from it while new events stay refused.
    handler.set_default(Reply::Status(200));
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        let delivered: HashSet<String> = handler.received().into_iter().map(|c| c.id).collect();
        if acked.iter().all(|id| delivered.contains(id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} acknowledged events delivered on a full disk",
            acked.iter().filter(|id| delivered.contains(*id)).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready_status(&rig.http, &rig.base).await, 503);
    let refused = seen.refused.load(Ordering::Relaxed);
    let late = Arc::new(Seen::default());
    let stop_late = Arc::new(AtomicBool::new(false));
    let one = tokio::spawn(sender(
        rig.http.clone(),
        rig.base.clone(),
        9,
        stop_late.clone(),
        late.clone(),
    ));
    wait_for(PATIENCE, "a new event was not refused", || async {
        late.refused.load(Ordering::Relaxed) > 0
    })
    .await;
    stop_late.store(true, Ordering::Relaxed);
    one.await.unwrap();
    assert!(
        late.acked.lock().unwrap().is_empty(),
        "accepted on a full disk"
    );
    eprintln!("refused {refused} while filling; everything acknowledged delivered while full");

    assert_eq!(rig.disk_full_gauge().await, Some(1.0));

    // Space comes back: new events are accepted again.
    std::fs::remove_file(&big).unwrap();
    rig.wait_ready().await;
    assert_eq!(rig.disk_full_gauge().await, Some(0.0));
    rig.child.start_kill().unwrap();
    rig.child.wait().await.unwrap();
}

/// A PostgreSQL tablespace in a directory of the test's, dropped at the end (after the
/// database in it, which `TestDb` drops).
struct Tablespace {
    name: String,
}

impl Tablespace {
    /// Creates `at`, gives it to the server's user and makes it a tablespace.
    async fn create(at: &Path) -> Tablespace {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(at)
            .output()
            .expect("cannot run chown");
        assert!(
            out.status.success(),
            "the tablespace directory must belong to PostgreSQL's user: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let name = format!("intake_ts_{:016x}", rand::random::<u64>());
        pg_connect(&pg_admin_url())
            .await
            .batch_execute(&format!(
                "CREATE TABLESPACE {name} LOCATION '{}'",
                at.display()
            ))
            .await
            .unwrap();
        Tablespace { name }
    }
}

impl Drop for Tablespace {
    fn drop(&mut self) {
        admin_sql_best_effort(format!("DROP TABLESPACE IF EXISTS {}", self.name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_on_a_full_disk_is_not_ready_until_an_event_fits_again() {
    use std::os::unix::fs::PermissionsExt;

    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The server runs as its own user, which must reach the tablespace.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Dropped in reverse order: the database, then its tablespace, then the disk.
    let disk = Tmpfs::mount(&dir.path().join("disk"), 64);
    let space = Tablespace::create(&disk.0.join("pg")).await;
    let db = TestDb::create_in(Some(&space.name)).await;
    let port = free_port();
    let config = write_node_config(dir.path(), 1, port, &handler.url(), &db.url);
    let log = dir.path().join("intake.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn_intake(&config, &log).await;
    wait_healthy(&http, &base, &mut child).await;
    assert_eq!(disk_full_gauge(&http, &base).await, Some(0.0));
    let ballast = disk.ballast("ballast", disk.free() - (8 << 20));

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
    wait_for(PATIENCE * 3, "the tables never filled the disk", || async {
        seen.refused.load(Ordering::Relaxed) > 0
    })
    .await;
    // At the edge some inserts still fit (in the room an aborted one left): take the rest of
    // the disk, so that new events stop fitting.
    let rest = disk.fill("rest");
    // The ping still fits in its page; a new event does not: the node is not ready.
    wait_for(
        PATIENCE,
        "/readyz did not answer 503 while PostgreSQL refused new events",
        || async { ready_status(&http, &base).await == 503 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    // The last word before the traffic stops is a refusal.
    let mut tries = 0;
    loop {
        let body = kustomer::message_create(&format!("last-{tries}"), "email");
        let resp = post_signed(&http, &base, body, Duration::from_secs(10))
            .await
            .unwrap();
        match resp.status().as_u16() {
            503 => break,
            200 => {
                let v: serde_json::Value = resp.json().await.unwrap();
                seen.acked
                    .lock()
                    .unwrap()
                    .insert(v["id"].as_str().unwrap().to_string());
            }
            other => panic!("unexpected answer {other}"),
        }
        tries += 1;
        assert!(tries < 200, "new events kept fitting on a full disk");
    }
    assert_eq!(ready_status(&http, &base).await, 503);
    assert_eq!(disk_full_gauge(&http, &base).await, Some(1.0));
    let acked: HashSet<String> = seen.acked.lock().unwrap().clone();
    eprintln!(
        "{} accepted, {} refused when the tablespace filled",
        acked.len(),
        seen.refused.load(Ordering::Relaxed)
    );

    // Space comes back with no traffic at all: the readiness probe notices.
    std::fs::remove_file(&rest).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    wait_for(
        PATIENCE,
        "/readyz did not answer 200 once space came back",
        || async { ready_status(&http, &base).await == 200 },
    )
    .await;
    assert_eq!(disk_full_gauge(&http, &base).await, Some(0.0));
    let body = kustomer::message_create("after-the-free", "email");
    let resp = post_signed(&http, &base, body, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_all_delivered(&handler, &acked).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("PostgreSQL has no room for new events"),
        "{text}"
    );
    assert!(
        text.contains("PostgreSQL stores new events again"),
        "{text}"
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.drop_db().await;
    drop(space);
}
