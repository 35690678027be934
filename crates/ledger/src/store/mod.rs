//! Durable state: tasks and their traces, trust records, pending irreversible actions and audit
//! checkpoints, behind the [`StateStore`] trait so that a shared PostgreSQL backend can stand in
//! for the embedded one when several hosts serve one queue.
//!
//! [`SqliteStore`] keeps everything in `state.db` under the host's data directory, in WAL mode with
//! `synchronous = NORMAL`: a committed transaction is in the operating system's hands before the
//! call returns, so killing the host (even with SIGKILL) loses nothing it reported as done. Only a
//! power loss can drop the last few commits; `synchronous = FULL` ([`Durability::Full`]) closes
//! that too, at the price of an fsync per commit.
//!
//! The store also vouches for the audit log: every task row keeps the audit log's head (seq and
//! hash of its last record) as it stood when the row was last committed ([`LogHead`], read from
//! the [`LogHeadSource`] the ledger installs), so records cut off the log's end after a crash
//! are caught by `warden audit verify` even where no signed checkpoint covers them. Putting the
//! head into a row the transaction writes anyway costs next to nothing.
//!
//! Tasks form trees: a task an agent started by calling another agent keeps its caller as its
//! [`TaskRecord::parent`] ([`StateStore::children`] walks down).
//!
//! The parts: this file holds the records and the [`StateStore`] trait; `sqlite.rs` the
//! embedded backend, `sqlite/schema.rs` its tables and their migrations, and `sqlite/view.rs`
//! the read-only view `warden audit verify` uses.

use serde::{Deserialize, Serialize};

mod queued;
mod sqlite;
#[cfg(test)]
mod tests;

pub use queued::{QueueStore, QueuedEnd, QueuedTask};
pub use sqlite::{BegunRow, EndedRow, SqliteStore};

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
    /// Task rows the ledger journaled could not be written to the database yet.
    #[error(
        "the task rows in the ledger's journal could not be written to the state database: {0}; they stay in the journal and the next start writes them (check disk space and permissions)"
    )]
    Behind(String),
    /// The audit record a change needs first could not be written, so nothing was committed.
    #[error("{what} was not recorded because its audit record could not be written: {why}")]
    Audit {
        /// The change (`task 7 interrupted`, `action 3`).
        what: String,
        /// Why the record could not be written.
        why: String,
    },
}

/// Where the audit log stood at a commit: the seq and hash of its last record then.
///
/// A task row keeps only the hash's first [`LogHead::KEPT_DIGITS`] hex digits (an 8-byte
/// integer, so the row written at every task's end hardly grows): the head guards against a log
/// changed without the store changed with it, and finding another record whose hash starts the
/// same takes 2^64 tries; someone able to edit the store can rewrite the head anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// The record's seq (0 for an empty log).
    pub seq: u64,
    /// Its hash (hex), whole or its first [`LogHead::KEPT_DIGITS`] digits.
    pub hash: String,
}

impl LogHead {
    /// How many leading hex digits of the hash a task row keeps.
    pub const KEPT_DIGITS: usize = 16;

    /// Whether a record with hash `hash` (hex, whole) is the one this head names.
    pub fn matches(&self, hash: &str) -> bool {
        self.hash.len() >= Self::KEPT_DIGITS && hash.starts_with(&self.hash)
    }
}

/// Where the store reads the audit log's head from at each task commit (the ledger's log). A
/// store without one records no head.
pub trait LogHeadSource: Send + Sync {
    /// The seq and hash of the last record written so far.
    fn log_head(&self) -> LogHead;
}

/// What the store holds about one task that the audit log should agree with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWitness {
    /// The task id.
    pub id: u64,
    /// Its status (`running`, `completed`, `interrupted`, …).
    pub status: String,
    /// The host process that began it.
    pub owner: String,
    /// What happened to its staged writes.
    pub staging: String,
    /// sha256 (hex) of its stored trace, as the `task-ended` record's `trace_sha256` binds it.
    pub trace_sha256: Option<String>,
    /// The audit log's head when the row was last committed (`None` in rows written before
    /// the store kept it).
    pub log_head: Option<LogHead>,
    /// The task that called it, if an agent did (its `task-started` record names the same).
    pub parent: Option<u64>,
}

/// What the store holds about one pending or settled action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionWitness {
    /// The action id.
    pub id: u64,
    /// The task that asked for it.
    pub task: u64,
    /// Its hash (approvals are bound to it).
    pub hash: String,
    /// `pending`, `performing`, `performed`, `failed` or `expired`.
    pub status: String,
}

/// Everything `warden audit verify` compares with the log, read in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreWitness {
    /// Every task, by id.
    pub tasks: Vec<TaskWitness>,
    /// Every action, by id.
    pub actions: Vec<ActionWitness>,
    /// The newest audit checkpoint kept in the store.
    pub checkpoint: Option<StoredCheckpoint>,
    /// For each ledger (by owner) that writes task rows behind its journal, how many of the
    /// journal's lines these rows hold: the lines after them are not written yet.
    pub journal_marks: std::collections::BTreeMap<String, u64>,
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
    /// The task whose agent called this one (`None` for a task a user started): the tasks of
    /// one user request form a tree.
    #[serde(default)]
    pub parent: Option<u64>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// When it ended (ms since the epoch): the row's `ended_ms`, as the caller stamped it, so
    /// that it can hand on the ended row it knows without reading it back.
    pub ended_ms: u64,
    /// The agent's trust record after this task (`None` for a task of the host's own, such as
    /// a cascade, which moves no agent's trust).
    pub trust: Option<TrustRecord>,
}

/// The host's durable state. Every method is one transaction; the durable queue's are
/// [`QueueStore`]'s.
pub trait StateStore: QueueStore + Send + Sync {
    /// Record a task as started by the host process `owner`; returns its id.
    fn begin_task(&self, task: &TaskRecord, owner: &str) -> Result<u64, StoreError>;
    /// Record a task's end together with its agent's new trust record.
    fn end_task(&self, end: &TaskEnd) -> Result<(), StoreError>;
    /// Record several tasks as started by `owner` (a group commit); their ids, in order. The
    /// SQLite store commits them in one transaction, all or none; this default, one by one.
    fn begin_tasks(&self, tasks: &[&TaskRecord], owner: &str) -> Result<Vec<u64>, StoreError> {
        tasks.iter().map(|t| self.begin_task(t, owner)).collect()
    }
    /// Record several tasks' ends, each with its trust record (a group commit). The SQLite
    /// store commits them in one transaction, all or none; this default, one by one.
    fn end_tasks(&self, ends: &[TaskEnd]) -> Result<(), StoreError> {
        ends.iter().try_for_each(|e| self.end_task(e))
    }
    /// Change what happened to a task's staging area.
    fn set_staging(&self, id: u64, staging: &str) -> Result<(), StoreError>;
    /// One task.
    fn task(&self, id: u64) -> Result<TaskRecord, StoreError>;
    /// The newest tasks, newest first.
    fn tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    /// The tasks `id`'s agent called (its children in the task tree), oldest first, at most
    /// `limit`.
    fn children(&self, id: u64, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    /// Mark tasks left `running` by a host process that is gone as `interrupted`; returns their
    /// ids. `alive(owner)` says whether the process that began a task still runs. `audit(id)`
    /// writes each task's audit record inside the transaction, before the commit: if it fails
    /// nothing is committed ([`StoreError::Audit`]), so no task is interrupted unaudited. The
    /// transaction takes the write lock first, so two processes never recover the same task.
    fn recover(
        &self,
        alive: &dyn Fn(&str) -> bool,
        audit: &dyn Fn(u64) -> Result<(), String>,
    ) -> Result<Vec<u64>, StoreError>;
    /// An agent's trust record.
    fn trust(&self, agent_id: &str) -> Result<Option<TrustRecord>, StoreError>;
    /// Every trust record.
    fn trust_all(&self) -> Result<Vec<TrustRecord>, StoreError>;
    /// Replace an agent's trust record.
    fn put_trust(&self, record: &TrustRecord) -> Result<(), StoreError>;
    /// Save a cascade task's position (JSON of `warden_orchestra::cascade::CascadeState`).
    fn put_cascade(&self, task: u64, state: &str) -> Result<(), StoreError>;
    /// A cascade task's saved position.
    fn cascade(&self, task: u64) -> Result<Option<String>, StoreError>;
    /// An agent's calibration history: for each confidence bin (0.0–0.1, …, 0.9–1.0) the
    /// outcomes it stated there and how many of them were verified.
    fn calibration(&self, agent: &str) -> Result<[(u64, u64); 10], StoreError>;
    /// Count one stated confidence of `agent` in `bin` (0..=9) with its verdict.
    fn add_calibration(&self, agent: &str, bin: u8, verified: bool) -> Result<(), StoreError>;
    /// Record a pending action; returns it with its id and `hash(action)` filled in (the
    /// record's own `id` and `hash` are ignored). One transaction, in which `audit(action)`
    /// writes its audit record before the commit: if that fails nothing is stored
    /// ([`StoreError::Audit`]), so no action is ever pending unaudited.
    fn add_action(
        &self,
        action: &ActionRecord,
        hash: &dyn Fn(&ActionRecord) -> String,
        audit: &dyn Fn(&ActionRecord) -> Result<(), String>,
    ) -> Result<ActionRecord, StoreError>;
    /// One action.
    fn action(&self, id: u64) -> Result<ActionRecord, StoreError>;
    /// Every action, newest first.
    fn actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError>;
    /// Task `task`'s actions in `status`, oldest first, at most `limit`; with `owner`, only if
    /// the task is that user's (none otherwise). One indexed read, however many actions others
    /// made since.
    fn task_actions(
        &self,
        task: u64,
        status: &str,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError>;
    /// The actions in `status` of task `root`'s tree (`root` and every task below it through
    /// [`TaskRecord::parent`], at most [`TREE_DEPTH`] levels down and the first [`TREE_TASKS`]
    /// tasks), oldest first, at most `limit`; with `unexpired_at`, only those that expire after
    /// it (Unix ms); with `owner`, only if `root` is that user's (none otherwise). Indexed reads
    /// (the tree by its parents, each task's actions by task and status), however many tasks
    /// and actions the host has besides.
    fn tree_actions(
        &self,
        root: u64,
        status: &str,
        unexpired_at: Option<u64>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError>;
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
    /// The furthest audit log head among the newest task rows and the newest checkpoint: what
    /// the log must still reach when a ledger opens (cheap; `witness` reads every row).
    fn recent_log_head(&self) -> Result<Option<LogHead>, StoreError>;
    /// Every task and action as the audit log should know them, and the newest checkpoint, read
    /// in one transaction (for `warden audit verify`).
    fn witness(&self) -> Result<StoreWitness, StoreError>;
}

/// How many levels of calls below a task [`StateStore::tree_actions`] follows: the deepest
/// tree a host may run (`agents.max_depth` is at most 64).
pub const TREE_DEPTH: u32 = 64;

/// How many tasks of one tree [`StateStore::tree_actions`] looks at, at most (breadth first):
/// far more than a tree runs within its wall time (`agents.tree_wall`), and a bound on the read
/// if a store holds a bigger one.
pub const TREE_TASKS: u32 = 65_536;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
