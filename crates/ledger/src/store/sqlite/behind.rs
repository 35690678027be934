//! What the ledger's write-behind ([`crate::ledger`]'s journal) needs of the store: task ids
//! reserved ahead, journaled rows written in one idempotent transaction, and a way to see that
//! another process committed (so the ledger's cache of trust records is dropped).

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{LogHead, SqliteStore, StoreError, TaskEnd, TaskRecord, TrustRecord, tasks};

/// A task's row as it began (`running`, `none` staged), as the ledger's journal and
/// [`SqliteStore::put_behind`] take it: its grant already JSON text, serialized once for the
/// journal line and the store's row alike. Its journal form has [`TaskRecord`]'s field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BegunRow {
    /// The task id (reserved by the ledger).
    pub id: u64,
    /// The agent's name.
    pub agent: String,
    /// The agent's trust identity.
    pub agent_id: String,
    /// sha256 of the component.
    pub module_hash: String,
    /// The user the agent acted for (`-` when none).
    pub user: String,
    /// The agent's trust level when the task started.
    pub level: u8,
    /// The effective grant (JSON text).
    pub grant: Box<RawValue>,
    /// Unix time in milliseconds when it started.
    pub started_ms: u64,
    /// The task whose agent called this one.
    #[serde(default)]
    pub parent: Option<u64>,
}

impl BegunRow {
    /// `task`'s beginning, its grant serialized.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the grant cannot be serialized.
    pub fn of(task: &TaskRecord) -> Result<BegunRow, StoreError> {
        Ok(BegunRow {
            id: task.id,
            agent: task.agent.clone(),
            agent_id: task.agent_id.clone(),
            module_hash: task.module_hash.clone(),
            user: task.user.clone(),
            level: task.level,
            grant: raw(&task.grant)?,
            started_ms: task.started_ms,
            parent: task.parent,
        })
    }
}

impl BegunRow {
    /// The task's row as it began.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if its grant is not JSON.
    pub fn record(&self) -> Result<TaskRecord, StoreError> {
        Ok(TaskRecord {
            id: self.id,
            agent: self.agent.clone(),
            agent_id: self.agent_id.clone(),
            module_hash: self.module_hash.clone(),
            user: self.user.clone(),
            level: self.level,
            grant: parsed(&self.grant)?,
            status: "running".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: self.started_ms,
            ended_ms: None,
            parent: self.parent,
        })
    }
}

/// A task's end as [`SqliteStore::put_behind`] takes it: [`TaskEnd`] with its outcome and
/// trace already JSON text (the trace's hash is the hash of this text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndedRow {
    /// The task.
    pub id: u64,
    /// Final status.
    pub status: String,
    /// Outcome (JSON text).
    pub outcome: Box<RawValue>,
    /// Trace (JSON text).
    pub trace: Box<RawValue>,
    /// Staging disposition.
    pub staging: String,
    /// Staging path when proposed.
    pub staging_path: Option<String>,
    /// When it ended (ms since the epoch).
    pub ended_ms: u64,
    /// The agent's trust record after this task.
    pub trust: Option<TrustRecord>,
}

impl EndedRow {
    /// `end`, its outcome and trace serialized.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if they cannot be serialized.
    pub fn of(end: &TaskEnd) -> Result<EndedRow, StoreError> {
        Ok(EndedRow {
            id: end.id,
            status: end.status.clone(),
            outcome: raw(&end.outcome)?,
            trace: raw(&end.trace)?,
            staging: end.staging.clone(),
            staging_path: end.staging_path.clone(),
            ended_ms: end.ended_ms,
            trust: end.trust.clone(),
        })
    }
}

impl EndedRow {
    /// Write this end over `row` (the task's row, running), as the store will.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if its outcome or trace is not JSON.
    pub fn apply(&self, row: &mut TaskRecord) -> Result<(), StoreError> {
        row.status.clone_from(&self.status);
        row.outcome = Some(parsed(&self.outcome)?);
        row.trace = Some(parsed(&self.trace)?);
        row.staging.clone_from(&self.staging);
        row.staging_path.clone_from(&self.staging_path);
        row.ended_ms = Some(self.ended_ms);
        Ok(())
    }
}

fn parsed(text: &RawValue) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text.get())
        .map_err(|e| StoreError::Corrupt(format!("a task's JSON column: {e}")))
}

fn raw(value: &serde_json::Value) -> Result<Box<RawValue>, StoreError> {
    serde_json::value::to_raw_value(value)
        .map_err(|e| StoreError::Corrupt(format!("a task's JSON column: {e}")))
}

impl SqliteStore {
    /// Reserve `n` task ids for rows a ledger writes behind its journal; the first of them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`] when the reservation cannot be committed.
    pub fn reserve_task_ids(&self, n: u64) -> Result<u64, StoreError> {
        tasks::reserve_ids(&self.conn(), n.max(1))
    }

    /// Give back the reserved ids above `used` of a reservation that ended at `hi` (a ledger
    /// closing), unless another ledger has reserved ids since.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`].
    pub fn release_task_ids(&self, used: u64, hi: u64) -> Result<(), StoreError> {
        tasks::release_ids(&self.conn(), used, hi)
    }

    /// Write rows a ledger kept behind its journal, in one transaction: `begins` (their ids
    /// reserved, `running`, begun by `owner`), then `ends`, each vouching for the log head its
    /// journal line names (the head when it was written, which covers its records), and with
    /// `mark` how many of the journal's lines the store now holds. Writing a line again changes
    /// nothing (a journal may be replayed twice).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`]; nothing is written then.
    pub fn put_behind(
        &self,
        begins: &[(&BegunRow, &LogHead)],
        owner: &str,
        ends: &[(&EndedRow, &LogHead)],
        mark: Option<u64>,
    ) -> Result<(), StoreError> {
        tasks::put_behind(&self.conn(), begins, owner, ends, mark)
    }

    /// How many lines of each ledger's journal the store holds (see
    /// [`StoreWitness::journal_marks`](crate::store::StoreWitness::journal_marks)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`].
    pub fn journal_marks(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        marks_in(&self.conn())
    }

    /// Forget `owner`'s journal (deleted: the store holds all of it).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`].
    pub fn forget_journal(&self, owner: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM journal_marks WHERE owner = ?1")?
            .execute([owner])?;
        Ok(())
    }

    /// SQLite's `data_version`: changes when another connection (another process) commits,
    /// never for this one's own commits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`].
    pub fn data_version(&self) -> Result<i64, StoreError> {
        version_of(&self.conn())
    }

    /// [`SqliteStore::data_version`] if the connection is free now; `None` while another thread
    /// of this process uses it (the write-behind's writer in a batch, another read or write),
    /// without waiting for it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`].
    pub fn data_version_now(&self) -> Option<Result<i64, StoreError>> {
        match self.conn.try_lock() {
            Ok(conn) => Some(version_of(&conn)),
            // As `conn`: a poisoned lock is safe to take over.
            Err(std::sync::TryLockError::Poisoned(p)) => Some(version_of(&p.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Hold the connection, as a writer in a long batch would (for tests of what must not wait
    /// for it).
    #[cfg(test)]
    pub(crate) fn hold_connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn()
    }
}

/// `PRAGMA data_version` on `conn`.
fn version_of(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}

/// [`SqliteStore::journal_marks`] on `conn` (none in a database older than the table).
pub(super) fn marks_in(conn: &Connection) -> Result<BTreeMap<String, u64>, StoreError> {
    let exists: bool = conn
        .prepare_cached(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'journal_marks'",
        )?
        .query_row([], |r| r.get(0))?;
    if !exists {
        return Ok(BTreeMap::new());
    }
    let mut stmt = conn.prepare_cached("SELECT owner, n FROM journal_marks")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
