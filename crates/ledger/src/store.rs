//! Durable state: tasks and their traces, trust records, pending irreversible actions and audit
//! checkpoints, behind the [`StateStore`] trait so that a shared PostgreSQL backend can stand in
//! for the embedded one when several hosts serve one queue.
//!
//! [`SqliteStore`] keeps everything in `state.db` under the host's data directory, in WAL mode with
//! `synchronous = NORMAL`: a committed transaction is in the operating system's hands before the
//! call returns, so killing the host (even with SIGKILL) loses nothing it reported as done. Only a
//! power loss can drop the last few commits; `synchronous = FULL` ([`Durability::Full`]) closes
//! that too, at the price of an fsync per commit.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error(
        "cannot open the state database {path}: {source}; check that the data directory exists and is writable, and that no other program holds the file"
    )]
    Open {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error(
        "the state database failed: {0}; the host refuses to go on rather than lose a record (check disk space and permissions)"
    )]
    Sql(#[from] rusqlite::Error),
    /// A stored JSON column did not parse (the database was edited by hand).
    #[error("a stored record is corrupt: {0}; restore the state database from a backup")]
    Corrupt(String),
    /// No such record.
    #[error("{0}")]
    NotFound(String),
}

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a crash or kill of the host process (WAL, `synchronous = NORMAL`).
    #[default]
    Process,
    /// Survives a power loss as well (`synchronous = FULL`, an fsync per commit).
    Full,
}

/// A task as stored: who ran what, with which grant, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task id (allocated by the store, unique for the data directory).
    pub id: u64,
    /// The agent's name.
    pub agent: String,
    /// The agent's trust identity (publisher key + name).
    pub agent_id: String,
    /// sha256 of the component.
    pub module_hash: String,
    /// The user the agent acted for (`-` when none).
    pub user: String,
    /// The agent's trust level when the task started.
    pub level: u8,
    /// The effective grant the task ran with (JSON).
    pub grant: serde_json::Value,
    /// `running`, `completed`, `agent-error`, `killed` or `interrupted` (the host stopped first).
    pub status: String,
    /// The run's outcome (JSON), once it ended.
    pub outcome: Option<serde_json::Value>,
    /// The run's trace (JSON), once it ended.
    pub trace: Option<serde_json::Value>,
    /// What happened to the task's staged writes: `none`, `applied`, `proposed`, `discarded`.
    pub staging: String,
    /// Where the staging area lives while proposed.
    pub staging_path: Option<String>,
    /// Unix time in milliseconds when it started.
    pub started_ms: u64,
    /// Unix time in milliseconds when it ended.
    pub ended_ms: Option<u64>,
}

/// An agent's standing on the trust ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// Publisher key + name (`ed25519:…/name`, or `unsigned/name`).
    pub agent_id: String,
    /// The module hash the level was earned by.
    pub module_hash: String,
    /// 1, 2 or 3.
    pub level: u8,
    /// Clean successes in a row at this level.
    pub streak: u32,
    /// Demoted and waiting for a reviewer: no promotion until reinstated.
    pub held: bool,
    /// The level before the last demotion (what reinstatement restores).
    pub level_before: u8,
    /// The task that caused the last demotion.
    pub demoted_by_task: Option<u64>,
    /// Why it was demoted.
    pub demoted_reason: Option<String>,
    /// Who reviewed the demotion (by `warden trust review`), if anyone yet.
    pub reviewed_by: Option<String>,
    /// Unix ms of the last change.
    pub updated_ms: u64,
}

impl TrustRecord {
    /// A fresh record: level 1, nothing earned.
    pub fn new(agent_id: &str, module_hash: &str) -> Self {
        TrustRecord {
            agent_id: agent_id.to_owned(),
            module_hash: module_hash.to_owned(),
            level: 1,
            streak: 0,
            held: false,
            level_before: 1,
            demoted_by_task: None,
            demoted_reason: None,
            reviewed_by: None,
            updated_ms: now_ms(),
        }
    }
}

/// An irreversible action waiting for a person's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The action id.
    pub id: u64,
    /// The task that asked for it.
    pub task: u64,
    /// The agent that asked.
    pub agent: String,
    /// The user it acted for.
    pub user: String,
    /// The tool.
    pub tool: String,
    /// The exact input the tool will get.
    pub params: String,
    /// sha256 over the action's canonical form; approvals are bound to it.
    pub hash: String,
    /// `pending`, `performed`, `failed` or `expired`.
    pub status: String,
    /// Unix ms when it was requested.
    pub created_ms: u64,
    /// Unix ms after which it can no longer be approved.
    pub expires_ms: u64,
    /// Who approved it.
    pub approver: Option<String>,
    /// The tool's output or error once performed.
    pub result: Option<String>,
}

/// A signed audit checkpoint, kept here as well as beside the log so that a rolled-back log
/// is caught even if its anchor file was rolled back with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    /// Records covered.
    pub size: u64,
    /// Hash of the last covered record.
    pub head: String,
    /// The host key that signed it.
    pub key: String,
    /// The signature.
    pub signature: String,
}

/// What a task's end changes, committed in one transaction.
#[derive(Debug, Clone)]
pub struct TaskEnd {
    /// The task.
    pub id: u64,
    /// Final status.
    pub status: String,
    /// Outcome JSON.
    pub outcome: serde_json::Value,
    /// Trace JSON.
    pub trace: serde_json::Value,
    /// Staging disposition.
    pub staging: String,
    /// Staging path when proposed.
    pub staging_path: Option<String>,
    /// The agent's trust record after this task.
    pub trust: TrustRecord,
}

/// The host's durable state. Every method is one transaction.
pub trait StateStore: Send + Sync {
    /// Record a task as started by the host process `owner`; returns its id.
    fn begin_task(&self, task: &TaskRecord, owner: &str) -> Result<u64, StoreError>;
    /// Record a task's end together with its agent's new trust record.
    fn end_task(&self, end: &TaskEnd) -> Result<(), StoreError>;
    /// Change what happened to a task's staging area.
    fn set_staging(&self, id: u64, staging: &str) -> Result<(), StoreError>;
    /// One task.
    fn task(&self, id: u64) -> Result<TaskRecord, StoreError>;
    /// The newest tasks, newest first.
    fn tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    /// Mark tasks left `running` by a host process that is gone as `interrupted`; returns their
    /// ids. `alive(owner)` says whether the process that began a task still runs.
    fn recover(&self, alive: &dyn Fn(&str) -> bool) -> Result<Vec<u64>, StoreError>;
    /// An agent's trust record.
    fn trust(&self, agent_id: &str) -> Result<Option<TrustRecord>, StoreError>;
    /// Every trust record.
    fn trust_all(&self) -> Result<Vec<TrustRecord>, StoreError>;
    /// Replace an agent's trust record.
    fn put_trust(&self, record: &TrustRecord) -> Result<(), StoreError>;
    /// Record a pending action; returns it with its id and `hash(action)` filled in (the
    /// record's own `id` and `hash` are ignored). One transaction.
    fn add_action(
        &self,
        action: &ActionRecord,
        hash: &dyn Fn(&ActionRecord) -> String,
    ) -> Result<ActionRecord, StoreError>;
    /// One action.
    fn action(&self, id: u64) -> Result<ActionRecord, StoreError>;
    /// Every action, newest first.
    fn actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError>;
    /// Move an action from status `from` to `to`, recording its approver and result. Returns
    /// false (and changes nothing) if it was not in `from`: e.g. an approval already used.
    fn settle_action(
        &self,
        id: u64,
        from: &str,
        to: &str,
        approver: &str,
        result: &str,
    ) -> Result<bool, StoreError>;
    /// Keep an audit checkpoint.
    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;
    /// The newest audit checkpoint.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
}

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL, agent_id TEXT NOT NULL, module_hash TEXT NOT NULL,
    user TEXT NOT NULL, level INTEGER NOT NULL, grant_json TEXT NOT NULL,
    status TEXT NOT NULL, outcome TEXT, trace TEXT,
    staging TEXT NOT NULL, staging_path TEXT,
    started_ms INTEGER NOT NULL, ended_ms INTEGER,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS trust (
    agent_id TEXT PRIMARY KEY, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task INTEGER NOT NULL, agent TEXT NOT NULL, user TEXT NOT NULL, tool TEXT NOT NULL,
    params TEXT NOT NULL, hash TEXT NOT NULL, status TEXT NOT NULL,
    created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    approver TEXT, result TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, head TEXT NOT NULL, key TEXT NOT NULL, signature TEXT NOT NULL
);
";

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
        conn.execute_batch(&format!(
            "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA wal_autocheckpoint = 8192; PRAGMA foreign_keys = ON; {SCHEMA}"
        ))
        .map_err(open_err)?;
        // Databases made before tasks recorded their owner process get the column.
        if conn.prepare("SELECT owner FROM tasks LIMIT 0").is_err() {
            conn.execute_batch("ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
                .map_err(open_err)?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is safe to take over.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn json_col(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

const TASK_COLUMNS: &str = "id, agent, agent_id, module_hash, user, level, grant_json, status, outcome, trace, staging, staging_path, started_ms, ended_ms";

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

fn put_trust_in(conn: &Connection, record: &TrustRecord) -> Result<(), StoreError> {
    let text = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO trust (agent_id, record) VALUES (?1, ?2)
         ON CONFLICT(agent_id) DO UPDATE SET record = excluded.record",
    )?
    .execute(params![record.agent_id, text])?;
    Ok(())
}

impl StateStore for SqliteStore {
    fn begin_task(&self, t: &TaskRecord, owner: &str) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO tasks (agent, agent_id, module_hash, user, level, grant_json, status, staging, started_ms, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 'none', ?7, ?8)",
        )?
        .execute(params![
            t.agent,
            t.agent_id,
            t.module_hash,
            t.user,
            t.level,
            t.grant.to_string(),
            t.started_ms,
            owner
        ])?;
        Ok(conn.last_insert_rowid() as u64)
    }

    fn end_task(&self, end: &TaskEnd) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "UPDATE tasks SET status = ?2, outcome = ?3, trace = ?4, staging = ?5, staging_path = ?6, ended_ms = ?7 WHERE id = ?1",
        )?
        .execute(params![
            end.id,
            end.status,
            end.outcome.to_string(),
            end.trace.to_string(),
            end.staging,
            end.staging_path,
            now_ms()
        ])?;
        put_trust_in(&tx, &end.trust)?;
        tx.commit()?;
        Ok(())
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
        let mut stmt = conn.prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], task_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(RawTask::parse))
            .collect()
    }

    fn recover(&self, alive: &dyn Fn(&str) -> bool) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let running: Vec<(u64, String)> = {
            let mut stmt = tx.prepare("SELECT id, owner FROM tasks WHERE status = 'running'")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut ids = Vec::new();
        for (id, owner) in running {
            if alive(&owner) {
                continue;
            }
            tx.execute(
                "UPDATE tasks SET status = 'interrupted', staging = CASE staging WHEN 'none' THEN 'none' ELSE 'discarded' END, ended_ms = ?2 WHERE id = ?1",
                params![id, now_ms()],
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
        put_trust_in(&self.conn(), record)
    }

    fn add_action(
        &self,
        a: &ActionRecord,
        hash: &dyn Fn(&ActionRecord) -> String,
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
        let mut stmt = conn.prepare(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], action_row)?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
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
                |r| {
                    Ok(StoredCheckpoint {
                        size: r.get(0)?,
                        head: r.get(1)?,
                        key: r.get(2)?,
                        signature: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(agent: &str) -> TaskRecord {
        TaskRecord {
            id: 0,
            agent: agent.into(),
            agent_id: format!("unsigned/{agent}"),
            module_hash: "ab".into(),
            user: "alice".into(),
            level: 1,
            grant: serde_json::json!({"fs": {"write": ["docs/**"]}}),
            status: "running".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: now_ms(),
            ended_ms: None,
        }
    }

    #[test]
    fn tasks_trust_and_recovery_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let a = store.begin_task(&task("hello"), "gone").unwrap();
        let b = store.begin_task(&task("scribe"), "gone").unwrap();
        let c = store.begin_task(&task("fetch"), "live").unwrap();
        assert!(b > a);
        let mut trust = TrustRecord::new("unsigned/hello", "ab");
        trust.streak = 1;
        store
            .end_task(&TaskEnd {
                id: a,
                status: "completed".into(),
                outcome: serde_json::json!({"status": "completed"}),
                trace: serde_json::json!([]),
                staging: "proposed".into(),
                staging_path: Some("/x".into()),
                trust: trust.clone(),
            })
            .unwrap();
        drop(store);

        let store = SqliteStore::open(dir.path(), Durability::Full).unwrap();
        assert_eq!(store.recover(&|owner| owner == "live").unwrap(), vec![b]);
        assert_eq!(
            store.task(c).unwrap().status,
            "running",
            "a live host's task is left alone"
        );
        let done = store.task(a).unwrap();
        assert_eq!(
            (done.status.as_str(), done.staging.as_str()),
            ("completed", "proposed")
        );
        assert_eq!(done.grant["fs"]["write"][0], "docs/**");
        assert_eq!(store.task(b).unwrap().status, "interrupted");
        assert_eq!(store.trust("unsigned/hello").unwrap(), Some(trust));
        assert_eq!(store.tasks(10).unwrap().len(), 3);
        assert!(matches!(store.task(99), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn an_action_settles_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let record = ActionRecord {
            id: 0,
            task: 1,
            agent: "deployer".into(),
            user: "alice".into(),
            tool: "deploy".into(),
            params: "{\"env\":\"prod\"}".into(),
            hash: "h".into(),
            status: "pending".into(),
            created_ms: 1,
            expires_ms: 2,
            approver: None,
            result: None,
        };
        let action = store
            .add_action(&record, &|a| format!("hash-of-{}", a.id))
            .unwrap();
        let id = action.id;
        assert_eq!(action.hash, format!("hash-of-{id}"));
        assert_eq!(store.action(id).unwrap().hash, action.hash);
        assert!(
            store
                .settle_action(id, "pending", "performing", "bob", "")
                .unwrap()
        );
        assert!(
            !store
                .settle_action(id, "pending", "performing", "eve", "")
                .unwrap()
        );
        assert!(
            store
                .settle_action(id, "performing", "performed", "bob", "ok")
                .unwrap()
        );
        let a = store.action(id).unwrap();
        assert_eq!(
            (a.status.as_str(), a.approver.as_deref()),
            ("performed", Some("bob"))
        );
    }

    #[test]
    fn checkpoints_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        assert_eq!(store.latest_checkpoint().unwrap(), None);
        for size in [4, 12, 8] {
            store
                .put_checkpoint(&StoredCheckpoint {
                    size,
                    head: format!("h{size}"),
                    key: "k".into(),
                    signature: "s".into(),
                })
                .unwrap();
        }
        assert_eq!(store.latest_checkpoint().unwrap().unwrap().size, 12);
    }
}
