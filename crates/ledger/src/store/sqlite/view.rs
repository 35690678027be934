//! The store as `warden audit verify` reads it: opened read-only (as an immutable file when no
//! process has it open, so no side file appears), and the witness the log is compared with.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{RECENT_ROWS, SqliteStore, checkpoint_row, has_column};
use crate::policy::keys::to_hex;
use crate::store::{ActionWitness, LogHead, StateStore, StoreError, StoreWitness, TaskWitness};

impl SqliteStore {
    /// Opens `dir/state.db` read-only, for `warden audit verify`: no schema change, no pragma
    /// that writes, every statement refused if it would write (`query_only`). A database in use
    /// (in WAL mode, with its `-wal` file beside it) is read with its WAL, which is never
    /// changed; SQLite may rebuild the `-shm` index, which holds no data. A database no one has
    /// open (no `-wal` file) is read as an immutable file, so not even those side files are
    /// created: sound for one query at once, not for a connection kept while others may write.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when the file is missing or cannot be opened.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let immutable = !dir.join("state.db-wal").exists();
        Self::open_for_reading(&dir.join("state.db"), immutable)
    }

    /// Reads the [`StoreWitness`] of `dir/state.db` without writing anything, not even the side
    /// files SQLite keeps beside a database in use. When no process has the database open (no
    /// `-wal` file beside it) the file is read as immutable; if a writer appeared meanwhile (the
    /// `-wal` file did, or the database file changed) it is read again through an ordinary
    /// read-only connection, which reads the WAL too.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when the file is missing or cannot be opened; [`StoreError::Sql`]
    /// when it cannot be read.
    pub fn read_witness(dir: &Path) -> Result<StoreWitness, StoreError> {
        let path = dir.join("state.db");
        let wal = dir.join("state.db-wal");
        let stamp = || {
            std::fs::metadata(&path)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        if !wal.exists() {
            let before = stamp();
            let witness = Self::open_for_reading(&path, true)?.witness()?;
            if !wal.exists() && stamp() == before {
                return Ok(witness);
            }
        }
        Self::open_for_reading(&path, false)?.witness()
    }

    /// A read-only connection to `path`; `immutable`: SQLite takes no lock and creates no side
    /// file (only sound while no one writes the file, which the caller checks).
    fn open_for_reading(path: &Path, immutable: bool) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            if !path.exists() {
                // Without this, an immutable open of a missing file reports something vaguer.
                return Self::open_for_reading(path, false);
            }
            Connection::open_with_flags(
                format!("file:{}?immutable=1", uri_path(path)),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(open_err)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            head: None,
            _walcheck: None,
        })
    }

    /// [`StateStore::recent_log_head`].
    pub(super) fn read_recent_log_head(&self) -> Result<Option<LogHead>, StoreError> {
        let conn = self.conn();
        let row: Option<(u64, String)> = conn
            .query_row(
                &format!(
                    "SELECT audit_seq, audit_head FROM (SELECT audit_seq, audit_head FROM tasks ORDER BY id DESC LIMIT {RECENT_ROWS})
                     WHERE audit_seq IS NOT NULL AND audit_head IS NOT NULL ORDER BY audit_seq DESC LIMIT 1"
                ),
                [],
                |r| Ok((r.get(0)?, head_hex(r.get_ref(1)?)?)),
            )
            .optional()?;
        drop(conn);
        let checkpoint = self.latest_checkpoint()?.map(|c| (c.size, c.head));
        Ok([row, checkpoint]
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
            .map(|(seq, hash)| LogHead { seq, hash }))
    }

    /// [`StateStore::witness`].
    pub(super) fn read_witness_now(&self) -> Result<StoreWitness, StoreError> {
        let mut conn = self.conn();
        // One read transaction: tasks, actions and checkpoint as of a single commit.
        let tx = conn.transaction()?;
        let (seq, head) = if has_column(&tx, "audit_seq") {
            ("audit_seq", "audit_head")
        } else {
            ("NULL", "NULL")
        };
        let owner = if has_column(&tx, "owner") {
            "owner"
        } else {
            "''"
        };
        let parent = if has_column(&tx, "parent") {
            "parent"
        } else {
            "NULL"
        };
        let mut tasks = Vec::new();
        {
            let mut stmt = tx.prepare(&format!(
                "SELECT id, status, {owner}, staging, trace, {seq}, {head}, {parent} FROM tasks ORDER BY id"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let trace_sha256 = r
                    .get_ref(4)?
                    .as_str_or_null()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?
                    .map(|t| to_hex(&Sha256::digest(t.as_bytes())));
                let log_head = match (r.get::<_, Option<u64>>(5)?, r.get_ref(6)?) {
                    (Some(seq), hash) if hash != ValueRef::Null => Some(LogHead {
                        seq,
                        hash: head_hex(hash)?,
                    }),
                    _ => None,
                };
                tasks.push(TaskWitness {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    owner: r.get(2)?,
                    staging: r.get(3)?,
                    trace_sha256,
                    log_head,
                    parent: r.get(7)?,
                });
            }
        }
        let actions = {
            let mut stmt = tx.prepare("SELECT id, task, hash, status FROM actions ORDER BY id")?;
            stmt.query_map([], |r| {
                Ok(ActionWitness {
                    id: r.get(0)?,
                    task: r.get(1)?,
                    hash: r.get(2)?,
                    status: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let checkpoint = tx
            .query_row(
                "SELECT size, head, key, signature FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                checkpoint_row,
            )
            .optional()?;
        let journal_marks = super::behind::marks_in(&tx)?;
        tx.commit()?;
        Ok(StoreWitness {
            tasks,
            actions,
            checkpoint,
            journal_marks,
        })
    }
}

/// A stored log head's hash as hex: the leading digits a task row keeps as an integer.
fn head_hex(value: ValueRef<'_>) -> rusqlite::Result<String> {
    Ok(to_hex(&value.as_i64()?.to_be_bytes()))
}

/// `path` as the path part of an SQLite `file:` URI: every byte but unreserved ones and `/`
/// percent-encoded, so `?`, `#` or `%` in a directory name cannot add URI parameters.
fn uri_path(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
