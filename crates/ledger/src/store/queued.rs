//! Tasks a server acknowledged and has not started yet: a `queued` row in `tasks` (its id is
//! the task's id from its submission on, and stays so once it runs) and, beside it, everything
//! needed to run it later — its work, as the server wrote it ([`QueuedTask::work`]). Starting
//! it turns the row `running` and drops the work; ending it before it starts (cancelled,
//! refused) closes the row the same way. The ledger's recovery never touches a `queued` row: a
//! restarted server resumes it.
//!
//! A person's resume of an escalated cascade waits in the same table: its work beside a row that
//! stays `escalated` ([`QueueStore::queue_resume`]) until the resume starts and takes it back
//! ([`QueueStore::take_resume`]), so a resume acknowledged before a stop is run after the next
//! start instead of being lost.

use serde::{Deserialize, Serialize};

use super::{StoreError, TaskRecord};

/// The durable queue's part of the state store ([`super::StateStore`] requires it). Every
/// method is one transaction.
pub trait QueueStore {
    /// Store a submitted task as `queued` (its row from `task`, whose `id` and `status` are
    /// ignored) with `work`, what the server needs to run it later, in one transaction; returns
    /// its id, which it keeps once it runs.
    fn enqueue_task(&self, task: &TaskRecord, work: &str) -> Result<u64, StoreError>;
    /// The queued tasks with their work, oldest first, at most `limit`.
    fn queued_tasks(&self, limit: usize) -> Result<Vec<QueuedTask>, StoreError>;
    /// Start the queued task `task.id` for the host process `owner`: its row becomes
    /// `running` with `task`'s agent, identity, level, grant and start time, and its work is
    /// dropped. [`StoreError::NotFound`] (and nothing changed) when it is not queued: it was
    /// started or ended already.
    fn start_queued_task(&self, task: &TaskRecord, owner: &str) -> Result<(), StoreError>;
    /// End the queued task `end.id` without running it (cancelled, refused). One transaction,
    /// in which `audit()` writes its audit record before the commit (if that fails nothing
    /// changes, [`StoreError::Audit`]). Returns false, writing nothing, when it is not queued.
    fn end_queued_task(
        &self,
        end: &QueuedEnd,
        audit: &dyn Fn() -> Result<(), String>,
    ) -> Result<bool, StoreError>;
    /// Store a resume of the escalated task `task` for `user` with `work` beside its row, which
    /// stays `escalated`; [`QueueStore::queued_tasks`] lists it while the row is so. Returns
    /// false, storing nothing, when the task is not escalated or a resume of it is stored
    /// already.
    fn queue_resume(&self, task: u64, user: &str, work: &str) -> Result<bool, StoreError>;
    /// Take back the stored resume of task `task` (it starts, or it was cancelled before it
    /// did); false when none is stored. Never touches a `queued` task's work.
    fn take_resume(&self, task: u64) -> Result<bool, StoreError>;
}

/// A task waiting in the durable queue, or a stored resume of an escalated one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedTask {
    /// The task id (its row's).
    pub id: u64,
    /// Whether this is a resume of an escalated task (its row `escalated`), not a task that
    /// never ran (its row `queued`).
    #[serde(default)]
    pub resume: bool,
    /// The user it was submitted for (its row's `user`).
    pub user: String,
    /// What to run, as the server stored it (JSON text the server defines and parses).
    pub work: String,
    /// Unix time in milliseconds when it was queued.
    pub queued_ms: u64,
}

/// How a queued task ended without running.
#[derive(Debug, Clone)]
pub struct QueuedEnd {
    /// The task.
    pub id: u64,
    /// Its final status (`cancelled`, `refused`).
    pub status: String,
    /// Its outcome (JSON), saying why.
    pub outcome: serde_json::Value,
}
