//! Keeping the WAL small under constant load: the checkpoint thread. (The writer's part, a
//! checkpoint between two batches when this thread asks for it, is `Writer::rewind_if_asked`.)

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// Past this many WAL frames (64 MiB of 4 KiB pages) the WAL is rewound.
const WAL_REWIND_FRAMES: i64 = 16 * 1024;

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
                if frames > WAL_REWIND_FRAMES {
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
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
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

/// Whether a checkpoint copied frames the last one had not: the WAL's copied count grew, or
/// the WAL started over (its count fell) and something was copied since.
fn copied_since(before: i64, now: i64) -> bool {
    now > before || (now < before && now > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
