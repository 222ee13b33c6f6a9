//! `intake demo --fast` through the real binary, as CI and a newcomer run it: every act of the
//! story happens, in order, with what each act shows; and a demo that cannot start says why
//! and exits non-zero.

use std::time::Duration;

use tokio::process::Command;

/// A liveness bound for one run (it takes well under a minute on an idle machine), not a
/// performance assertion.
const BOUND: Duration = Duration::from_secs(300);

/// Runs `intake demo args…` with no `INTAKE_…` variable of the outer environment; its exit
/// code, stdout and stderr.
async fn demo(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.arg("demo")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INTAKE_") {
            cmd.env_remove(k);
        }
    }
    let out = tokio::time::timeout(BOUND, cmd.output())
        .await
        .expect("intake demo did not exit")
        .expect("the intake binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_act_of_the_story_happens_in_order() {
    let (code, out, err) = demo(&["--fast"]).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    // Each act's closing line, in order.
    let mut from = 0;
    for n in 1..=6 {
        let needle = format!("✓ act {n} happened: ");
        let at = out[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no {needle:?} after the previous act in:\n{out}"));
        from += at + needle.len();
    }
    // What each act shows.
    for needle in [
        "Dashboard  http://127.0.0.1:",
        "(log in with the token dev-admin-token)",
        "Fire drill drl_",
        "deliveries are held in demo-kustomer's queue",
        "webhooks never reached intake",
        "On-call was notified through `demo-notifications`",
        "declared by rule:",
        "The tenant's status page received, without anyone writing it:",
        "It is the drill's incident (drl_",
        "[DRILL] This is a fire drill (drl_",
        "The fault healed at",
        "missing:",
        "The backfill brought",
        "In the window: received",
        "The audit adds up",
        "the tenant's status page has received 2 notices",
        "The postmortem draft",
        "all 6 acts happened in",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    // Nothing was recovered that was not lost, and something was.
    let line = out
        .lines()
        .find(|l| l.contains("In the window: received"))
        .unwrap();
    assert!(!line.contains("recovered 0 by backfill"), "{line}");
    eprintln!("{out}");
}

#[tokio::test]
async fn a_demo_that_cannot_listen_says_so_and_fails() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, out, err) = demo(&["--fast", "--port", &port]).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!(
            "cannot start intake on 127.0.0.1:{port} (choose another with --port)"
        )),
        "{err}"
    );
    assert!(!out.contains("happened"), "{out}");
}

#[tokio::test]
async fn ctrl_c_stops_the_demo_and_removes_its_store() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.arg("demo")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INTAKE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("the intake binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The live pace: the story has barely begun when Ctrl-C comes.
    let store = tokio::time::timeout(BOUND, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Store      sqlite://") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("no Store line");
    })
    .await
    .expect("the demo printed where its store is");
    let db = std::path::PathBuf::from(&store);
    assert!(db.parent().unwrap().is_dir(), "{store}");
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .expect("the demo stopped")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted (Ctrl-C): intake stopped and its temporary store was removed"),
        "{err}"
    );
    assert!(!db.parent().unwrap().exists(), "{store} is still there");
}
