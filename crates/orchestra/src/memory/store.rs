//! The store: `memory.db` (SQLite, WAL) in the host's data directory. Every change is a new
//! version of a `namespace`/`key` — a write, a revert (a copy of an older version), a forget (a
//! tombstone) or a pin (a copy a reviewer made permanent) — so nothing is overwritten and
//! `history` shows it all.
//!
//! Visibility: a version belongs to the user it was written for (`owner`, the token's subject;
//! `-` for a task without a user) unless it is `general`. A reader sees the newest version it
//! may see, and only if that version is live: not a tombstone, and pinned or not yet expired. A
//! forget is general, so it hides every older version from everyone. The operator's reads, which
//! ignore visibility, are in `history.rs`.
//!
//! Bounded: a key of at most [`MAX_KEY`] bytes, [`MAX_TAGS`] tags of [`MAX_TAG`] bytes, a text of
//! [`MAX_TEXT`] bytes (no control characters in keys or tags); a list returns at most
//! [`MAX_LIST`] entries, a history at most [`MAX_HISTORY`] versions.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;
use warden_policy::agents::{NAMESPACE_RULE, check_namespace};
pub use warden_sandbox::capabilities::memory::{MAX_KEY, MAX_LIST, MAX_TAG, MAX_TAGS, MAX_TEXT};

use super::filter::Filter;
use super::{MemoryError, Version};

/// Most versions one `history` returns.
pub const MAX_HISTORY: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    change TEXT NOT NULL, text TEXT NOT NULL, tags TEXT NOT NULL,
    owner TEXT NOT NULL, general INTEGER NOT NULL,
    written_ms INTEGER NOT NULL, expires_ms INTEGER, pinned INTEGER NOT NULL,
    agent TEXT NOT NULL, task INTEGER,
    PRIMARY KEY (namespace, key, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_writer ON entries (namespace, agent, written_ms);
";

pub(super) const COLUMNS: &str = "namespace, key, version, change, text, tags, owner, general, written_ms, expires_ms, pinned, agent, task";

/// What made a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// An agent's write.
    Write,
    /// `warden memory revert`: a copy of an older version.
    Revert,
    /// `warden memory forget`: a tombstone.
    Forget,
    /// `warden memory pin`: a copy a reviewer made permanent.
    Pin,
}

impl Change {
    /// Its name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Write => "write",
            Change::Revert => "revert",
            Change::Forget => "forget",
            Change::Pin => "pin",
        }
    }

    fn parse(s: &str) -> Option<Change> {
        [Change::Write, Change::Revert, Change::Forget, Change::Pin]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A new version, as [`Memory::write`] takes it.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its key.
    pub key: &'a str,
    /// What made it.
    pub change: Change,
    /// Its text.
    pub text: &'a str,
    /// Its tags.
    pub tags: &'a [String],
    /// The user it was written for (`-` without one).
    pub owner: &'a str,
    /// Readable in every user's tasks.
    pub general: bool,
    /// When (ms since the Unix epoch).
    pub written_ms: u64,
    /// When it expires (`None`: pinned, or a tombstone).
    pub expires_ms: Option<u64>,
    /// Made permanent by a reviewer.
    pub pinned: bool,
    /// Who: the agent, `reviewer <name>` or `operator`.
    pub agent: &'a str,
    /// The task that wrote it.
    pub task: Option<u64>,
}

/// The curated memory of one host. Open it once per process and share it.
pub struct Memory {
    conn: Mutex<Connection>,
    path: PathBuf,
    filter: OnceLock<Result<Filter, String>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("path", &self.path).finish()
    }
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks a namespace and key as every entry point must (the CLI's arguments included).
///
/// # Errors
///
/// [`MemoryError::Invalid`] saying what a namespace or key must be.
pub fn check_name(namespace: &str, key: &str) -> Result<(), MemoryError> {
    check_namespace(namespace)
        .map_err(|why| MemoryError::Invalid(format!("{why}: {NAMESPACE_RULE}")))?;
    if key.is_empty() || key.len() > MAX_KEY || has_control(key) {
        return Err(MemoryError::Invalid(format!(
            "a key is 1 to {MAX_KEY} bytes with no control character"
        )));
    }
    Ok(())
}

pub(super) fn check_version(v: &NewVersion<'_>) -> Result<(), MemoryError> {
    check_name(v.namespace, v.key)?;
    if v.text.len() > MAX_TEXT {
        return Err(MemoryError::Invalid(format!(
            "an entry's text is at most {MAX_TEXT} bytes"
        )));
    }
    if v.tags.len() > MAX_TAGS
        || v.tags
            .iter()
            .any(|t| t.is_empty() || t.len() > MAX_TAG || has_control(t))
    {
        return Err(MemoryError::Invalid(format!(
            "at most {MAX_TAGS} tags of 1 to {MAX_TAG} bytes each, with no control character"
        )));
    }
    Ok(())
}

/// Tags as stored: each between tabs, so one SQL `instr` finds a whole tag.
fn tags_column(tags: &[String]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    format!("\t{}\t", tags.join("\t"))
}

pub(super) fn version_of(row: &Row<'_>) -> rusqlite::Result<Version> {
    let change: String = row.get(3)?;
    let tags: String = row.get(5)?;
    let as_u64 = |i: i64| u64::try_from(i).unwrap_or(0);
    Ok(Version {
        namespace: row.get(0)?,
        key: row.get(1)?,
        version: row.get(2)?,
        // A change this build does not know reads as a forget: it hides rather than shows.
        change: Change::parse(&change).unwrap_or(Change::Forget),
        text: row.get(4)?,
        tags: tags
            .split('\t')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        owner: row.get(6)?,
        general: row.get(7)?,
        written_ms: as_u64(row.get(8)?),
        expires_ms: row.get::<_, Option<i64>>(9)?.map(as_u64),
        pinned: row.get(10)?,
        agent: row.get(11)?,
        task: row.get::<_, Option<i64>>(12)?.map(as_u64),
    })
}

pub(super) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Memory {
    /// Open (creating if needed) `dir/memory.db`.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Open`] when the file cannot be opened or its schema created.
    pub fn open(dir: &Path) -> Result<Memory, MemoryError> {
        let path = dir.join("memory.db");
        let open_err = |source| MemoryError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; {SCHEMA}"
        ))
        .map_err(open_err)?;
        Ok(Memory {
            conn: Mutex::new(conn),
            path,
            filter: OnceLock::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The write filter, compiled on first use.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Filter`] when the rules cannot be built: writes must then be refused.
    pub fn filter(&self) -> Result<&Filter, MemoryError> {
        self.filter
            .get_or_init(Filter::new)
            .as_ref()
            .map_err(|e| MemoryError::Filter(e.clone()))
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back what a panicking holder left half done: the lock is safe to take over.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Store a new version; returns its number (one more than the newest, from 1).
    ///
    /// # Errors
    ///
    /// [`MemoryError::Invalid`] for a name, tag or text over its bound; [`MemoryError::Store`].
    pub fn write(&self, v: &NewVersion<'_>) -> Result<u32, MemoryError> {
        check_version(v)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let newest: Option<u32> = tx.query_row(
            "SELECT MAX(version) FROM entries WHERE namespace = ?1 AND key = ?2",
            params![v.namespace, v.key],
            |r| r.get(0),
        )?;
        let version = newest
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| MemoryError::Invalid("this entry has no version left".into()))?;
        tx.execute(
            &format!("INSERT INTO entries ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![
                v.namespace,
                v.key,
                version,
                v.change.as_str(),
                v.text,
                tags_column(v.tags),
                v.owner,
                v.general,
                ms(v.written_ms),
                v.expires_ms.map(ms),
                v.pinned,
                v.agent,
                v.task.map(ms),
            ],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// The newest version of `namespace`/`key` that `user` may see, if it is live at `now_ms`.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn get(
        &self,
        namespace: &str,
        key: &str,
        user: &str,
        now_ms: u64,
    ) -> Result<Option<Version>, MemoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM entries WHERE namespace = ?1 AND key = ?2 AND (owner = ?3 OR general = 1) ORDER BY version DESC LIMIT 1"
        ))?;
        let found = stmt
            .query_row(params![namespace, key, user], version_of)
            .optional()?;
        Ok(found.filter(|v| v.is_live(now_ms)))
    }

    /// The live entries of `namespace` (with `tag`) that `user` may see, each at its newest
    /// visible version, newest first (by key when written together), at most `limit` (capped
    /// at [`MAX_LIST`]).
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn list(
        &self,
        namespace: &str,
        user: &str,
        tag: Option<&str>,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Version>, MemoryError> {
        self.visible(
            namespace,
            user,
            tag,
            now_ms,
            "e.written_ms DESC, e.key",
            limit.min(MAX_LIST),
        )
    }

    fn visible(
        &self,
        namespace: &str,
        user: &str,
        tag: Option<&str>,
        now_ms: u64,
        order: &str,
        limit: usize,
    ) -> Result<Vec<Version>, MemoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM entries e
             WHERE e.namespace = ?1 AND (e.owner = ?2 OR e.general = 1)
               AND e.version = (SELECT MAX(f.version) FROM entries f
                                WHERE f.namespace = e.namespace AND f.key = e.key
                                  AND (f.owner = ?2 OR f.general = 1))
               AND e.change != 'forget' AND (e.pinned = 1 OR e.expires_ms > ?3)
               AND (?4 IS NULL OR instr(e.tags, char(9) || ?4 || char(9)) > 0)
             ORDER BY {order} LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(params![namespace, user, ms(now_ms), tag], version_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Layer 2 of the context stack: the live entries of `namespaces` that `user` may see, by
    /// namespace then key, as `## namespace/key` and the text, whole entries only, at most
    /// `max_bytes`. The same memory gives the same bytes.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn context(
        &self,
        namespaces: &[String],
        user: &str,
        now_ms: u64,
        max_bytes: usize,
    ) -> Result<String, MemoryError> {
        let mut sorted: Vec<&String> = namespaces.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut out = String::new();
        for ns in sorted {
            for v in self.visible(ns, user, None, now_ms, "e.key", MAX_LIST)? {
                let block = format!("## {}/{}\n{}\n\n", v.namespace, v.key, v.text.trim());
                if out.len() + block.len() > max_bytes {
                    return Ok(out);
                }
                out.push_str(&block);
            }
        }
        Ok(out)
    }

    /// The texts of the newest writes of `agent` to `namespace` in tasks other than `task`,
    /// oldest first, at most `limit`: what the filter joins with a new write, so a secret split
    /// across tasks is found too.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Store`].
    pub fn recent_writes(
        &self,
        namespace: &str,
        agent: &str,
        task: u64,
        limit: usize,
    ) -> Result<Vec<String>, MemoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT text FROM entries
             WHERE namespace = ?1 AND agent = ?2 AND change = 'write' AND task IS NOT ?3
             ORDER BY written_ms DESC LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(params![namespace, agent, ms(task)], |r| {
            r.get::<_, String>(0)
        })?;
        let mut texts: Vec<String> = rows.collect::<Result<_, _>>()?;
        texts.reverse();
        Ok(texts)
    }
}

#[cfg(test)]
mod tests;
