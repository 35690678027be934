//! What the ledger's write-behind ([`crate::ledger`]'s journal) needs of the store: task ids
//! reserved ahead, journaled rows written in one idempotent transaction, and a way to see that
//! another process committed (so the ledger's cache of trust records is dropped).

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::{LogHead, SqliteStore, StoreError, TaskEnd, TaskRecord, tasks};

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
        begins: &[(&TaskRecord, &LogHead)],
        owner: &str,
        ends: &[(&TaskEnd, &LogHead)],
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
        Ok(self
            .conn()
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
    }
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
