//! The embedded backend: [`SqliteStore`] keeps everything in `state.db` (WAL); `sqlite/view.rs`
//! opens it read-only for `warden audit verify`, which must change nothing it checks.
//!
//! A `LIMIT` is written into a statement's text, never bound as a parameter: SQLite (3.50 here)
//! plans with a bound limit's value, so binding one makes the cached statement recompile at
//! every run (measured: 11% of an MCP call's CPU went to recompiling one such query).

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::policy::keys::from_hex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    ActionRecord, Durability, LogHead, LogHeadSource, StateStore, StoreError, StoreWitness,
    StoredCheckpoint, TaskEnd, TaskRecord, TrustRecord, now_ms,
};

mod actions;
mod behind;
pub use behind::{BegunRow, EndedRow};
mod cascade;
mod queue;
mod schema;
mod tasks;
mod view;
mod walcheck;

use schema::has_column;

/// How many of the newest task rows [`StateStore::recent_log_head`] looks at: enough to span
/// the tasks a host runs at once, few enough to cost nothing at open.
const RECENT_ROWS: u32 = 256;

/// The embedded SQLite store. Defaults: no [`LogHeadSource`] (task rows record no audit head
/// until [`SqliteStore::vouching_for`] installs one), read-write.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    head: Option<Arc<dyn LogHeadSource>>,
    /// Checkpoints the WAL off the run path (read-write stores only).
    _walcheck: Option<walcheck::WalCheckpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Open (creating if needed) `dir/state.db`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when the file cannot be opened or its schema created.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let path = dir.join("state.db");
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        // A new store gets 4 KiB pages (an existing one keeps its own): the rows come from the
        // writer behind the run path in batches of tens, and with 1 KiB pages each row spilled
        // onto pages of its own — measured under load (`WARDEN_BENCH_LEDGER_PROFILE_LOAD`), the
        // writer's CPU per task ~12 → ~8 µs and the WAL checkpointer's ~4.5 → ~2 µs. The
        // automatic checkpoint (other processes') stays at ~8 MiB of WAL.
        conn.execute_batch(&format!(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA wal_autocheckpoint = 2048; PRAGMA foreign_keys = ON;"
        ))
        .map_err(open_err)?;
        schema::create_or_migrate(&conn).map_err(open_err)?;
        // The WAL is checkpointed by a thread of our own, not inside a task's commit.
        let walcheck = walcheck::WalCheckpointer::start(&path);
        if walcheck.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
                .map_err(open_err)?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            head: None,
            _walcheck: walcheck,
        })
    }

    /// Records the audit log's head from `source` in every task row this store commits, so the
    /// store vouches for the log up to there.
    pub fn vouching_for(mut self, source: Arc<dyn LogHeadSource>) -> Self {
        self.head = Some(source);
        self
    }

    /// The head to record with a commit: its seq and the first 8 bytes of its hash as an
    /// integer ([`LogHead::KEPT_DIGITS`]), or NULLs without a source.
    fn head_now(&self) -> (Option<u64>, Option<i64>) {
        match &self.head {
            Some(source) => kept(&source.log_head()),
            None => (None, None),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is safe to take over.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `head` as a row keeps it: its seq and the first 8 bytes of its hash as an integer.
fn kept(head: &LogHead) -> (Option<u64>, Option<i64>) {
    let prefix = head.hash.get(..LogHead::KEPT_DIGITS).and_then(from_hex);
    let hash = prefix
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes);
    (Some(head.seq), hash)
}

fn json_col(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

const TASK_COLUMNS: &str = "id, agent, agent_id, module_hash, user, level, grant_json, status, outcome, trace, staging, staging_path, started_ms, ended_ms, parent";

fn task_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawTask> {
    Ok(RawTask {
        id: row.get(0)?,
        agent: row.get(1)?,
        agent_id: row.get(2)?,
        module_hash: row.get(3)?,
        user: row.get(4)?,
        level: row.get(5)?,
        grant: row.get(6)?,
        status: row.get(7)?,
        outcome: row.get(8)?,
        trace: row.get(9)?,
        staging: row.get(10)?,
        staging_path: row.get(11)?,
        started_ms: row.get(12)?,
        ended_ms: row.get(13)?,
        parent: row.get(14)?,
    })
}

struct RawTask {
    id: u64,
    agent: String,
    agent_id: String,
    module_hash: String,
    user: String,
    level: u8,
    grant: String,
    status: String,
    outcome: Option<String>,
    trace: Option<String>,
    staging: String,
    staging_path: Option<String>,
    started_ms: u64,
    ended_ms: Option<u64>,
    parent: Option<u64>,
}

impl RawTask {
    fn parse(self) -> Result<TaskRecord, StoreError> {
        Ok(TaskRecord {
            id: self.id,
            agent: self.agent,
            agent_id: self.agent_id,
            module_hash: self.module_hash,
            user: self.user,
            level: self.level,
            grant: json_col(Some(self.grant))?.unwrap_or_default(),
            status: self.status,
            outcome: json_col(self.outcome)?,
            trace: json_col(self.trace)?,
            staging: self.staging,
            staging_path: self.staging_path,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            parent: self.parent,
        })
    }
}

const ACTION_COLUMNS: &str =
    "id, task, agent, user, tool, params, hash, status, created_ms, expires_ms, approver, result";

fn action_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRecord> {
    Ok(ActionRecord {
        id: row.get(0)?,
        task: row.get(1)?,
        agent: row.get(2)?,
        user: row.get(3)?,
        tool: row.get(4)?,
        params: row.get(5)?,
        hash: row.get(6)?,
        status: row.get(7)?,
        created_ms: row.get(8)?,
        expires_ms: row.get(9)?,
        approver: row.get(10)?,
        result: row.get(11)?,
    })
}

/// The tasks still `running` and their owners, the rows a ledger's open looks at to recover:
/// read through the `tasks_running` index (`schema.rs`), which holds only those rows.
pub(super) const RUNNING_ROWS: &str = "SELECT id, owner FROM tasks WHERE status = 'running'";

impl StateStore for SqliteStore {
    fn begin_task(&self, t: &TaskRecord, owner: &str) -> Result<u64, StoreError> {
        let ids = self.begin_tasks(&[t], owner)?;
        Ok(ids[0])
    }

    fn begin_tasks(&self, tasks: &[&TaskRecord], owner: &str) -> Result<Vec<u64>, StoreError> {
        let conn = self.conn();
        let head = self.head_now();
        tasks::begin(&conn, tasks, owner, head)
    }

    fn end_task(&self, end: &TaskEnd) -> Result<(), StoreError> {
        self.end_tasks(std::slice::from_ref(end))
    }

    fn end_tasks(&self, ends: &[TaskEnd]) -> Result<(), StoreError> {
        let conn = self.conn();
        // The task-ended records were written before this commit, so the head read now
        // covers them.
        let head = self.head_now();
        tasks::end(&conn, ends, head)
    }

    fn set_staging(&self, id: u64, staging: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE tasks SET staging = ?2 WHERE id = ?1",
            params![id, staging],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("there is no task {id}")));
        }
        Ok(())
    }

    fn task(&self, id: u64) -> Result<TaskRecord, StoreError> {
        let conn = self.conn();
        let raw = conn
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
                [id],
                task_row,
            )
            .optional()?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "there is no task {id}; `warden task list` shows the tasks"
                ))
            })?;
        raw.parse()
    }

    fn tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks ORDER BY id DESC LIMIT {limit}"
        ))?;
        let rows = stmt.query_map([], task_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(RawTask::parse))
            .collect()
    }

    fn children(&self, id: u64, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE parent = ?1 ORDER BY id LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(params![id], task_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(RawTask::parse))
            .collect()
    }

    fn recover(
        &self,
        alive: &dyn Fn(&str) -> bool,
        audit: &dyn Fn(u64) -> Result<(), String>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let running: Vec<(u64, String)> = {
            let mut stmt = tx.prepare(RUNNING_ROWS)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut ids = Vec::new();
        for (id, owner) in running {
            if alive(&owner) {
                continue;
            }
            audit(id).map_err(|why| StoreError::Audit {
                what: format!("task {id} interrupted"),
                why,
            })?;
            let (seq, hash) = self.head_now();
            tx.execute(
                "UPDATE tasks SET status = 'interrupted', staging = CASE staging WHEN 'none' THEN 'none' ELSE 'discarded' END, ended_ms = ?2, audit_seq = ?3, audit_head = ?4 WHERE id = ?1",
                params![id, now_ms(), seq, hash],
            )?;
            ids.push(id);
        }
        tx.commit()?;
        Ok(ids)
    }

    fn trust(&self, agent_id: &str) -> Result<Option<TrustRecord>, StoreError> {
        let text: Option<String> = self
            .conn()
            .prepare_cached("SELECT record FROM trust WHERE agent_id = ?1")?
            .query_row([agent_id], |r| r.get(0))
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    fn trust_all(&self) -> Result<Vec<TrustRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT record FROM trust ORDER BY agent_id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| {
            let text = r?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
    }

    fn put_trust(&self, record: &TrustRecord) -> Result<(), StoreError> {
        tasks::put_trust_in(&self.conn(), record)
    }

    fn put_cascade(&self, task: u64, state: &str) -> Result<(), StoreError> {
        cascade::put(&self.conn(), task, state)
    }

    fn cascade(&self, task: u64) -> Result<Option<String>, StoreError> {
        cascade::get(&self.conn(), task)
    }

    fn calibration(&self, agent: &str) -> Result<[(u64, u64); 10], StoreError> {
        cascade::history(&self.conn(), agent)
    }

    fn add_calibration(&self, agent: &str, bin: u8, verified: bool) -> Result<(), StoreError> {
        cascade::add(&self.conn(), agent, bin, verified)
    }

    fn add_action(
        &self,
        a: &ActionRecord,
        hash: &dyn Fn(&ActionRecord) -> String,
        audit: &dyn Fn(&ActionRecord) -> Result<(), String>,
    ) -> Result<ActionRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO actions (task, agent, user, tool, params, hash, status, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, '', 'pending', ?6, ?7)",
            params![a.task, a.agent, a.user, a.tool, a.params, a.created_ms, a.expires_ms],
        )?;
        let mut stored = a.clone();
        stored.id = tx.last_insert_rowid() as u64;
        stored.status = "pending".into();
        stored.hash = hash(&stored);
        tx.execute(
            "UPDATE actions SET hash = ?2 WHERE id = ?1",
            params![stored.id, stored.hash],
        )?;
        audit(&stored).map_err(|why| StoreError::Audit {
            what: format!("action {}", stored.id),
            why,
        })?;
        tx.commit()?;
        Ok(stored)
    }

    fn action(&self, id: u64) -> Result<ActionRecord, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {ACTION_COLUMNS} FROM actions WHERE id = ?1"),
                [id],
                action_row,
            )
            .optional()?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "there is no action {id}; `warden approve --list` shows pending actions"
                ))
            })
    }

    fn actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions ORDER BY id DESC LIMIT {limit}"
        ))?;
        let rows = stmt.query_map([], action_row)?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    fn task_actions(
        &self,
        task: u64,
        status: &str,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&task_actions_sql(limit))?;
        let rows = stmt.query_map(params![task, status, owner], action_row)?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    fn tree_actions(
        &self,
        root: u64,
        status: &str,
        unexpired_at: Option<u64>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        actions::in_tree(&self.conn(), root, status, unexpired_at, owner, limit)
    }

    fn settle_action(
        &self,
        id: u64,
        from: &str,
        to: &str,
        approver: &str,
        result: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE actions SET status = ?3, approver = ?4, result = ?5 WHERE id = ?1 AND status = ?2",
            params![id, from, to, approver, result],
        )?;
        Ok(n == 1)
    }

    fn put_checkpoint(&self, c: &StoredCheckpoint) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO checkpoints (size, head, key, signature) VALUES (?1, ?2, ?3, ?4)",
            params![c.size, c.head, c.key, c.signature],
        )?;
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT size, head, key, signature FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                checkpoint_row,
            )
            .optional()?)
    }

    fn recent_log_head(&self) -> Result<Option<LogHead>, StoreError> {
        self.read_recent_log_head()
    }

    fn witness(&self) -> Result<StoreWitness, StoreError> {
        self.read_witness_now()
    }
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: r.get(0)?,
        head: r.get(1)?,
        key: r.get(2)?,
        signature: r.get(3)?,
    })
}

/// `task_actions`' query: `?1` the task, `?2` the status, `?3` the owner or NULL.
fn task_actions_sql(limit: usize) -> String {
    format!(
        "SELECT {ACTION_COLUMNS} FROM actions WHERE task = ?1 AND status = ?2 \
         AND (?3 IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND user = ?3)) \
         ORDER BY id LIMIT {limit}"
    )
}
