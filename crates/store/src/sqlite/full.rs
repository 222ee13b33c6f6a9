//! A full disk, and getting out of it without a restart.
//!
//! In WAL mode a commit appends its pages to the WAL, and a checkpoint copies them into the
//! database file before the WAL can start over. On a full disk both need space: the commit to
//! grow the WAL, the checkpoint to grow the database by the pages that are new. Left alone,
//! every batch keeps appending what it can to the WAL, so that whatever space comes back
//! (an operator deletes a file) is taken by the next batches' frames before a checkpoint can
//! use it, and the store stays full for good.
//!
//! So the writer goes through three states ([`Disk`]):
//!
//! * **Normal.** At open, [`RESERVE_BYTES`] are set aside in a file beside the database
//!   (`<db>-reserve`, a [`Reserve`]).
//! * **Full**, once a write fails with `SQLITE_FULL`. The reserve is given back at once, and
//!   the writer stops writing: every batch is refused (503 for ingest, so senders retry), and
//!   before a batch, at most once per [`Reclaim::wait`], it tries a `TRUNCATE` checkpoint,
//!   which copies the WAL into the database and empties the WAL file. The waits double from
//!   [`FIRST_WAIT`] to [`LAST_WAIT`]: a try copies pages before it fails, and on a disk that
//!   stays full it should not do so ten times a second.
//! * **Draining**, once that checkpoint succeeded: what was accepted is still delivered (claims,
//!   attempts, alerts and notifications are written, in the reserve's room), while new work
//!   (ingest, rejections, replays, and the readiness probe's write) is refused before it joins
//!   a batch. Once the file system has twice the reserve free again ([`room_again`]), the
//!   reserve is set aside again and everything is accepted.
//!
//! A disk that stays full therefore still delivers every event it acknowledged, as long as
//! the reserve holds the delivery side's writes; one that fills again while draining goes back
//! to **Full**.
//!
//! The pacing reads the monotonic clock: it decides when to try again, never what is stored.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

/// The first wait after a failed commit or a failed try.
pub(super) const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between two tries on a disk that stays full.
pub(super) const LAST_WAIT: Duration = Duration::from_secs(1);
/// The space set aside at open and given back when the disk is full: room for the delivery
/// side's writes and one checkpoint.
pub(super) const RESERVE_BYTES: u64 = 16 << 20;
/// How often a draining writer looks at the file system's free space.
pub(super) const ROOM_CHECK: Duration = Duration::from_secs(1);

/// Where the writer stands with the disk (see the module docs).
#[derive(Debug)]
pub(super) enum Disk {
    Normal,
    Full(Reclaim),
    Draining {
        /// When the disk was found full.
        since: Instant,
        /// When the free space is looked at next.
        next_check: Instant,
    },
}

/// Whether a draining writer may accept new work again: the file system has room for the
/// reserve and as much again. Where the free space cannot be read, new work is tried: a disk
/// still full fails the next commit, and the writer is full again.
pub(super) fn room_again(free: Option<u64>) -> bool {
    free.is_none_or(|f| f >= 2 * RESERVE_BYTES)
}

/// The file of [`RESERVE_BYTES`] set aside beside the database.
pub(super) struct Reserve {
    path: PathBuf,
    held: bool,
}

impl Reserve {
    /// The reserve at `path`, set aside now if it is not already (a failure is logged: the
    /// store then has no reserve until the disk has room for one).
    pub(super) fn new(path: PathBuf) -> Reserve {
        let mut reserve = Reserve { path, held: false };
        reserve.take();
        reserve
    }

    /// Sets the reserve aside (again); whether it is held now.
    pub(super) fn take(&mut self) -> bool {
        if self.held {
            return true;
        }
        match allocate(&self.path, RESERVE_BYTES) {
            Ok(()) => self.held = true,
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::warn!(path = %self.path.display(), error = %e, "cannot set aside the disk reserve");
            }
        }
        self.held
    }

    /// Gives the reserve back to the file system; whether there was one.
    pub(super) fn release(&mut self) -> bool {
        let had = self.held;
        self.held = false;
        match std::fs::remove_file(&self.path) {
            Ok(()) => had,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the disk reserve");
                false
            }
        }
    }
}

/// Makes `path` a file of `bytes` whose blocks are allocated (not a sparse file, which would
/// set nothing aside).
fn allocate(path: &std::path::Path, bytes: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    if file.metadata()?.len() >= bytes && allocated(&file)? >= bytes {
        return Ok(());
    }
    allocate_blocks(&file, bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn allocated(file: &File) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.blocks() * 512)
}

#[cfg(not(unix))]
fn allocated(file: &File) -> std::io::Result<u64> {
    Ok(file.metadata()?.len())
}

#[cfg(target_os = "linux")]
fn allocate_blocks(file: &File, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(bytes).map_err(std::io::Error::other)?;
    // SAFETY: the descriptor belongs to `file`, which outlives the call; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate_blocks(file: &File, bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = file;
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// The space left for unprivileged writes on the file system holding `file`.
#[cfg(target_os = "linux")]
pub(super) fn free_bytes(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the descriptor belongs to `file`, which outlives the call, and `stat` is a
    // buffer of the type the call fills.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstatvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion)] // u32 on some 32-bit targets
    let (blocks, size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(blocks.saturating_mul(size))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn free_bytes(_: &File) -> Option<u64> {
    None
}

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
    /// The state right after a commit failed at `now`, on a disk found full at `since`
    /// (earlier when it filled again while draining): the first try at once when a reserve
    /// was just given back, else after [`FIRST_WAIT`].
    pub(super) fn new(now: Instant, since: Instant, released: bool) -> Self {
        Reclaim {
            next_try: if released { now } else { now + FIRST_WAIT },
            wait: FIRST_WAIT,
            refused: 0,
            since,
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
        assert!(
            Reclaim::new(t0, t0, true).due(t0),
            "at once once the reserve is back"
        );
        let mut r = Reclaim::new(t0, t0, false);
        assert!(!r.due(t0));
        assert!(r.due(t0 + FIRST_WAIT));
        r.failed(t0 + FIRST_WAIT);
        assert_eq!(r.wait, FIRST_WAIT * 2);
        assert!(!r.due(t0 + FIRST_WAIT * 2));
        assert!(r.due(t0 + FIRST_WAIT * 3));
    }

    #[test]
    fn new_work_is_accepted_again_once_there_is_room_for_the_reserve_and_as_much_again() {
        let mib = 1 << 20;
        // (free bytes, room again)
        let cases = [
            (None, true),
            (Some(0), false),
            (Some(RESERVE_BYTES), false),
            (Some(2 * RESERVE_BYTES - 1), false),
            (Some(2 * RESERVE_BYTES), true),
            (Some(1024 * mib), true),
        ];
        for (free, room) in cases {
            assert_eq!(room_again(free), room, "{free:?}");
        }
    }

    #[test]
    fn the_reserve_is_set_aside_given_back_and_set_aside_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intake.db-reserve");
        let mut reserve = Reserve::new(path.clone());
        let allocated = |p: &std::path::Path| {
            std::fs::File::open(p)
                .and_then(|f| allocated(&f))
                .unwrap_or(0)
        };
        assert!(
            allocated(&path) >= RESERVE_BYTES,
            "blocks, not a sparse file"
        );
        assert!(reserve.release());
        assert!(!path.exists());
        assert!(!reserve.release(), "nothing left to give back");
        assert!(reserve.take());
        assert!(allocated(&path) >= RESERVE_BYTES);
        // A store opened again keeps the reserve it finds.
        let again = Reserve::new(path.clone());
        assert!(again.held);
    }

    #[test]
    fn the_free_space_of_a_real_file_system_is_read() {
        let file = std::fs::File::open("/").or_else(|_| std::fs::File::open("."));
        let free = file.ok().and_then(|f| free_bytes(&f));
        if cfg!(target_os = "linux") {
            assert!(free.is_some_and(|b| b > 0), "{free:?}");
        }
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
