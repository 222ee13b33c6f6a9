//! Keeping the WAL small under constant load: the checkpoint thread. (The writer's part, a
//! checkpoint between two batches when this thread asks for it, is `Writer::rewind_if_asked`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// Past this many WAL frames (64 MiB of 4 KiB pages) the WAL is rewound.
const WAL_REWIND_FRAMES: i64 = 16 * 1024;

pub(super) fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>, rewind: Arc<AtomicBool>) {
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
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(100));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = std::time::Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => {
                if frames > WAL_REWIND_FRAMES {
                    rewind.store(true, Ordering::Relaxed);
                }
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
