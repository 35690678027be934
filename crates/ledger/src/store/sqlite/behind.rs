//! What the ledger's write-behind ([`crate::ledger`]'s journal) needs of the store: task ids
//! reserved ahead, journaled rows written in one idempotent transaction, and a way to see that
//! another process committed (so the ledger's cache of trust records is dropped).

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
    /// journal line names (the head when it was written, which covers its records).
    /// Idempotent (a journal may be replayed twice).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`]; nothing is written then.
    pub fn put_behind(
        &self,
        begins: &[(&TaskRecord, &LogHead)],
        owner: &str,
        ends: &[(&TaskEnd, &LogHead)],
    ) -> Result<(), StoreError> {
        tasks::put_behind(&self.conn(), begins, owner, ends)
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
