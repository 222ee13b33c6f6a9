//! A full disk, and getting out of it without a restart.
//!
//! In WAL mode a commit appends its pages to the WAL, and a checkpoint copies them into the
//! database file before the WAL can start over. On a full disk both need space: the commit to
//! grow the WAL, the checkpoint to grow the database by the pages that are new. Left alone,
//! every batch keeps appending what it can to the WAL, so that whatever space comes back
//! (an operator deletes a file) is taken by the next batches' frames before a checkpoint can
//! use it, and the store stays full for good.
//!
//! So once a commit has failed with `SQLITE_FULL`, the writer stops writing. Every batch is
//! refused at once (503 for ingest, so senders retry), and before a batch, at most once per
//! [`Reclaim::wait`], the writer tries a `TRUNCATE` checkpoint instead: it copies the WAL into
//! the database and empties the WAL file, giving its space back. Once that succeeds, writes
//! resume. The waits between tries double from [`FIRST_WAIT`] to [`LAST_WAIT`]: a try copies
//! pages before it fails, and on a disk that stays full it should not do so ten times a
//! second.
//!
//! The pacing reads the monotonic clock: it decides when to try again, never what is stored.

use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

/// The first wait after a failed commit or a failed try.
pub(super) const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between two tries on a disk that stays full.
pub(super) const LAST_WAIT: Duration = Duration::from_secs(1);

/// Whether SQLite failed for want of disk space.
pub(super) fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

/// The writer's state after a commit failed on a full disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reclaim {
    /// When the next `TRUNCATE` checkpoint may be tried.
    pub(super) next_try: Instant,
    /// The wait before that try; doubled by each failed try.
    pub(super) wait: Duration,
    /// Batches refused since the disk was found full (for the log line once it is over).
    pub(super) refused: u64,
    /// When the disk was found full.
    pub(super) since: Instant,
}

impl Reclaim {
    /// The state right after a commit failed at `now`: the first try after [`FIRST_WAIT`].
    pub(super) fn new(now: Instant) -> Self {
        Reclaim {
            next_try: now + FIRST_WAIT,
            wait: FIRST_WAIT,
            refused: 0,
            since: now,
        }
    }

    /// Whether a try is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        now >= self.next_try
    }

    /// A try at `now` failed: the next one after twice the wait, at most [`LAST_WAIT`].
    pub(super) fn failed(&mut self, now: Instant) {
        self.wait = next_wait(self.wait);
        self.next_try = now + self.wait;
    }
}

/// The wait after `wait`, when a try failed again.
pub(super) fn next_wait(wait: Duration) -> Duration {
    (wait * 2).clamp(FIRST_WAIT, LAST_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_are_spaced_out_while_the_disk_stays_full() {
        // (wait before, wait after a failed try)
        let ms = Duration::from_millis;
        let cases = [
            (ms(0), FIRST_WAIT),
            (ms(100), ms(200)),
            (ms(200), ms(400)),
            (ms(400), ms(800)),
            (ms(800), LAST_WAIT),
            (LAST_WAIT, LAST_WAIT),
        ];
        for (before, after) in cases {
            assert_eq!(next_wait(before), after, "{before:?}");
        }
    }

    #[test]
    fn a_try_is_due_only_once_its_wait_has_passed() {
        let t0 = Instant::now();
        let mut r = Reclaim::new(t0);
        assert!(!r.due(t0));
        assert!(r.due(t0 + FIRST_WAIT));
        r.failed(t0 + FIRST_WAIT);
        assert_eq!(r.wait, FIRST_WAIT * 2);
        assert!(!r.due(t0 + FIRST_WAIT * 2));
        assert!(r.due(t0 + FIRST_WAIT * 3));
    }

    #[test]
    fn only_sqlites_full_error_counts_as_a_full_disk() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(is_disk_full(&full));
        assert!(!is_disk_full(&busy));
        assert!(!is_disk_full(&rusqlite::Error::QueryReturnedNoRows));
    }
}
