//! Checkpointing the write-ahead log off the run path. SQLite's automatic checkpoint runs
//! inside whichever commit pushes the WAL past its threshold, so now and then one task's commit
//! copies thousands of pages into the database file (measured: the ledger bench's slowest run,
//! ~12 ms against a p50 of ~60 µs). A read-write [`super::SqliteStore`] turns that off for its
//! own connection and keeps a thread with a connection of its own that runs a `PASSIVE`
//! checkpoint (it never blocks a writer, and copies what no reader still needs) whenever the
//! WAL file has grown past [`WAL_LIMIT`], looking every [`PERIOD`]. The thread stops when the
//! store is dropped. Other processes sharing the database keep SQLite's automatic checkpoint.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How large the WAL may grow before the thread checkpoints it.
pub(super) const WAL_LIMIT: u64 = 4 * 1024 * 1024;
/// How often the thread looks.
const PERIOD: Duration = Duration::from_millis(100);

/// The checkpointing thread of one store; stops it when dropped.
pub(super) struct WalCheckpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    /// Start checkpointing the WAL of the database at `db` (opened by the caller in WAL mode).
    /// `None` when the thread or its connection cannot be made: SQLite's automatic checkpoint
    /// then stays on (the caller leaves it on).
    pub(super) fn start(db: &Path) -> Option<WalCheckpointer> {
        let conn = Connection::open(db).ok()?;
        conn.busy_timeout(Duration::from_secs(1)).ok()?;
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("warden-wal-checkpoint".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(PERIOD) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Stopped, or the store is gone.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_LIMIT) {
                        // A failure (busy, I/O) is retried next time; the WAL only grows meanwhile.
                        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    }
                }
            })
            .ok()?;
        Some(WalCheckpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
