//! Keeping the WAL small under constant load: the checkpoint thread. (The writer's part, a
//! checkpoint between two batches when this thread asks for it, is `Writer::rewind_if_asked`.)

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use intake_core::log_limit::{LogLimiter, LogVerdict, LOG_SUMMARY_INTERVAL};
use intake_core::Timestamp;
use rusqlite::Connection;

use super::full::free_bytes;

/// Past this many WAL frames (64 MiB of 4 KiB pages) the WAL is rewound.
const WAL_REWIND_FRAMES: i64 = 16 * 1024;
/// The fewest frames past which the WAL is rewound however short of room the disk is: a
/// rewind pauses the writer for the end of a checkpoint.
const WAL_REWIND_MIN_FRAMES: i64 = 256;

pub(super) fn checkpoint_loop(
    conn: Connection,
    db_file: File,
    stop: Arc<AtomicBool>,
    rewind: Arc<AtomicBool>,
) {
    // Checkpoints run here rather than inside the writer's commits (wal_autocheckpoint = 0),
    // so that copying the WAL back into the database does not stall acknowledgements. A
    // passive checkpoint never waits; under constant load, though, it never finds the WAL
    // fully copied at the moment the writer begins a transaction, which is when SQLite would
    // start the WAL over, so the WAL would grow for as long as the load lasts. Once it is
    // large, this thread asks the writer to finish the copy itself between two batches (see
    // `Writer::rewind_if_asked`): this thread has already copied nearly everything, so the
    // writer pauses for little more than one fsync, and its next transaction starts the WAL
    // over. The file keeps its size (journal_size_limit), so commits then overwrite allocated
    // blocks instead of growing the file, which costs the file system far more.
    //
    // SQLite syncs the database file only when a checkpoint reaches the end of the WAL, which
    // under constant load is the writer's rewind alone: that fsync then wrote every page this
    // thread had copied since the last one, 30-46 ms with the writer stopped, every few
    // seconds (the ack latency's p99 at 1,000 events/s). So after each checkpoint that copied
    // something this thread starts writing the database file's dirty pages out
    // (`start_writeback`): the writer's fsync finds little left to write. Starting a write
    // neither waits nor syncs anything, so it changes nothing of what is durable when.
    //
    // On a disk short of room the WAL is rewound sooner (`rewind_due`): a WAL that grew to
    // 64 MiB on a disk with less than that free would fill it by itself, with frames that are
    // mostly older versions of the same pages.
    let page_size = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .unwrap_or(4096)
        .max(512);
    let mut failures = LogLimiter::new(LOG_SUMMARY_INTERVAL);
    let mut copied_before = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(100));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = std::time::Instant::now();
        let checkpoint = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match checkpoint {
            Ok((frames, copied)) => {
                let free_frames = free_bytes(&db_file).map(|b| to_frames(b, page_size));
                if rewind_due(frames, free_frames) {
                    rewind.store(true, Ordering::Relaxed);
                }
                if copied_since(copied_before, copied) {
                    start_writeback(&db_file);
                }
                copied_before = copied;
                if started.elapsed() > Duration::from_millis(500) {
                    tracing::info!(
                        frames,
                        ms = started.elapsed().as_millis() as u64,
                        "slow WAL checkpoint"
                    );
                }
            }
            // A full disk fails every checkpoint until space comes back: one line, then a
            // summary per interval, so that the log does not take what space is left.
            Err(e) => match failures.hit(Timestamp::from_system_time(SystemTime::now())) {
                LogVerdict::Log => tracing::warn!(error = %e, "WAL checkpoint failed"),
                LogVerdict::Quiet => {}
                LogVerdict::Summary(s) => {
                    let reason = format!("last error: {e}");
                    tracing::warn!("{}", s.describe("failed", "WAL checkpoints", &reason))
                }
            },
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Starts writing the file's dirty pages to disk without waiting for them (Linux's
/// `sync_file_range` with `SYNC_FILE_RANGE_WRITE` over the whole file). Elsewhere, nothing:
/// the writer's fsync writes them, as it always did.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor belongs to `file`, which outlives the call; the call reads no
    // memory of ours.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File) {}

/// Whether the WAL, holding `frames`, should start over: past [`WAL_REWIND_FRAMES`], or
/// sooner when a quarter of the file system's free space (`free_frames`, in pages) is less,
/// but not before [`WAL_REWIND_MIN_FRAMES`].
fn rewind_due(frames: i64, free_frames: Option<i64>) -> bool {
    let limit = free_frames.map_or(WAL_REWIND_FRAMES, |free| {
        (free / 4).clamp(WAL_REWIND_MIN_FRAMES, WAL_REWIND_FRAMES)
    });
    frames > limit
}

fn to_frames(bytes: u64, page_size: i64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX) / page_size
}

/// Whether a checkpoint copied frames the last one had not: the WAL's copied count grew, or
/// the WAL started over (its count fell) and something was copied since.
fn copied_since(before: i64, now: i64) -> bool {
    now > before || (now < before && now > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_is_rewound_sooner_on_a_disk_short_of_room() {
        const MIB: i64 = 256; // frames of 4 KiB
                              // (frames in the WAL, free space in frames, rewind)
        let cases = [
            // Plenty of room, or unknown: at 64 MiB, as always.
            (16 * 1024, None, false),
            (16 * 1024 + 1, None, true),
            (16 * 1024, Some(100_000 * MIB), false),
            (16 * 1024 + 1, Some(100_000 * MIB), true),
            // 40 MiB free: past 10 MiB.
            (10 * MIB, Some(40 * MIB), false),
            (10 * MIB + 1, Some(40 * MIB), true),
            // Nearly full: past 1 MiB, never sooner.
            (MIB, Some(0), false),
            (MIB + 1, Some(0), true),
            (MIB + 1, Some(2 * MIB), true),
        ];
        for (frames, free, rewind) in cases {
            assert_eq!(
                rewind_due(frames, free),
                rewind,
                "{frames} frames, {free:?} free"
            );
        }
    }

    #[test]
    fn the_database_file_is_flushed_only_after_a_checkpoint_that_copied_something() {
        // (copied by the checkpoint before, copied now, flush)
        let cases = [
            (0, 0, false),
            (0, 120, true),
            (120, 120, false),
            (120, 300, true),
            // The WAL started over: its frames are counted from zero again.
            (300, 40, true),
            (300, 0, false),
            // -1: the database is not in WAL mode; nothing was copied.
            (-1, -1, false),
        ];
        for (before, now, flush) in cases {
            assert_eq!(copied_since(before, now), flush, "{before} -> {now}");
        }
    }
}
