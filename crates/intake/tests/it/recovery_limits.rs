//! A backfill against a system of record that throttles hard and serves few pages: a fake
//! Kustomer with a tight org budget, one search a minute, and two pages per search, holding
//! more conversations in the window than two pages of 100. Its `429`s slow the job down and
//! never fail it; the search is re-windowed at the page cap; exactly the lost events come back,
//! once each. Time is the server's manual clock, which moves only while the fake has asked the
//! client to wait, so which requests share a rate-limit window never depends on the machine.

use std::time::Duration;

use intake_fake_sors::kustomer::KustomerLimits;

use crate::recovery::{check_backfilled, count, minutes, Backend, Scenario};
use crate::PATIENCE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_rides_out_429_storms_and_rewindows_past_the_page_cap() {
    let limits = KustomerLimits {
        per_minute: 150,
        search_per_minute: 1,
        page_cap: 2,
        ..KustomerLimits::default()
    };
    let s = Scenario::start(Backend::Sqlite, 43, 12, (60, 660), limits).await;
    let expected = s.reproducible();
    // The search lists every conversation updated after the window's start (less its margin)
    // and created before its end (plus its margin): more than two pages of 100.
    let margin = minutes(5);
    let listed = s
        .fake
        .world()
        .conversations
        .iter()
        .filter(|c| {
            c.created_at <= s.lost.1.plus(margin) && c.updated_at() >= s.lost.0.minus(margin)
        })
        .count();
    assert!(listed > 200, "only {listed} conversations in the window");

    let ticker = s.tick_while_throttled();
    let job = s.run(s.backfill(false)).await;
    drop(ticker);
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(job["error"].is_null(), "{job:#}");
    let r = &job["report"];
    assert!(count(&r["sor"]["throttled"]) > 0, "no 429 was seen: {r:#}");
    assert_eq!(count(&r["done"]), expected.len() as u64, "{r:#}");
    assert_eq!(count(&r["already_received"]), 0, "{r:#}");

    // The fake refused requests with 429s, was searched again from page 1 after its cap, and
    // was never asked for a page beyond it (which it refuses with a 400).
    let log = s.fake.log.all();
    assert!(log.iter().any(|l| l.starts_with("429 ")), "{log:#?}");
    let first_pages = log
        .iter()
        .filter(|l| l.starts_with("POST /v1/customers/search?page=1&"))
        .count();
    assert!(first_pages >= 2, "never re-windowed: {log:#?}");
    assert!(
        !log.iter().any(|l| l.starts_with("400 ")),
        "asked past the cap: {log:#?}"
    );

    let got = s
        .handler
        .wait_for(s.sent.delivered.len() + expected.len(), PATIENCE)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.len(), s.sent.delivered.len() + expected.len());
    let backfilled = s.received("backfill");
    assert_eq!(
        backfilled.len(),
        expected.len(),
        "delivered more than once?"
    );
    check_backfilled(&s, &backfilled, &expected);
    s.admin.audit("maelys-kustomer", &["handler"]).await;
}
