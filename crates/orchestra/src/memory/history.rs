//! The operator's reads of the memory, whoever the entries belong to: the newest version of an
//! entry, one version, its history, the newest version of every key. Bounded like every read
//! (at most [`MAX_HISTORY`] versions).

use rusqlite::{OptionalExtension, params};

use super::store::{COLUMNS, MAX_HISTORY, Memory, version_of};
use super::{MemoryError, Version};

impl Memory {
    /// The newest version of `namespace`/`key`, whoever it belongs to (for the operator).
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn newest(&self, namespace: &str, key: &str) -> Result<Option<Version>, MemoryError> {
        Ok(self.history(namespace, key, 1)?.into_iter().next())
    }

    /// Version `version` of `namespace`/`key`.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn version(
        &self,
        namespace: &str,
        key: &str,
        version: u32,
    ) -> Result<Option<Version>, MemoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM entries WHERE namespace = ?1 AND key = ?2 AND version = ?3"
        ))?;
        Ok(stmt
            .query_row(params![namespace, key, version], version_of)
            .optional()?)
    }

    /// The versions of `namespace`/`key`, newest first, at most `limit` (capped at
    /// [`MAX_HISTORY`]).
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn history(
        &self,
        namespace: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<Version>, MemoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM entries WHERE namespace = ?1 AND key = ?2 ORDER BY version DESC LIMIT {}",
            limit.min(MAX_HISTORY)
        ))?;
        let rows = stmt.query_map(params![namespace, key], version_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest version of every key (of `namespace`, when given), whoever it belongs to,
    /// by namespace then key, at most `limit` (capped at [`MAX_HISTORY`]).
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn keys(&self, namespace: Option<&str>, limit: usize) -> Result<Vec<Version>, MemoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM entries e
             WHERE (?1 IS NULL OR e.namespace = ?1)
               AND e.version = (SELECT MAX(f.version) FROM entries f
                                WHERE f.namespace = e.namespace AND f.key = e.key)
             ORDER BY e.namespace, e.key LIMIT {}",
            limit.min(MAX_HISTORY)
        ))?;
        let rows = stmt.query_map(params![namespace], version_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
