//! The state store as the ledger hands it out ([`super::Ledger::store`]): every call first
//! waits for the rows the ledger wrote behind its journal ([`super::behind`]), so whoever reads
//! or writes through the ledger sees every task the run path began or ended. Trust records come
//! from the ledger's cache when it has them (the run path reads one per task), and a trust
//! record written here goes to the cache too.

use std::sync::Arc;

use super::behind::Behind;
use crate::store::{
    ActionRecord, LogHead, QueueStore, QueuedEnd, QueuedTask, SqliteStore, StateStore, StoreError,
    StoreWitness, StoredCheckpoint, TaskEnd, TaskRecord, TrustRecord,
};

/// [`SqliteStore`] behind the ledger's journal (see the module docs).
pub(super) struct Flushed {
    pub(super) inner: Arc<SqliteStore>,
    pub(super) behind: Arc<Behind>,
}

impl Flushed {
    fn sync(&self) -> Result<&SqliteStore, StoreError> {
        self.behind.flush()?;
        Ok(&self.inner)
    }
}

// A queued task's row is written to the store at once, never behind the journal (its end is:
// an update of the row `start_queued_task` made `running`), and its id is chosen above every
// reservation: queueing and starting one need not wait for the writer, whose urgent wake-up
// (one transaction per call) would cost every request of the server's API a round trip to it.
impl QueueStore for Flushed {
    fn enqueue_task(&self, task: &TaskRecord, work: &str) -> Result<u64, StoreError> {
        self.inner.enqueue_task(task, work)
    }
    fn queued_tasks(&self, limit: usize) -> Result<Vec<QueuedTask>, StoreError> {
        self.sync()?.queued_tasks(limit)
    }
    fn start_queued_task(&self, task: &TaskRecord, owner: &str) -> Result<(), StoreError> {
        self.inner.start_queued_task(task, owner)
    }
    fn end_queued_task(
        &self,
        end: &QueuedEnd,
        audit: &dyn Fn() -> Result<(), String>,
    ) -> Result<bool, StoreError> {
        self.sync()?.end_queued_task(end, audit)
    }
    fn queue_resume(&self, task: u64, user: &str, work: &str) -> Result<bool, StoreError> {
        self.sync()?.queue_resume(task, user, work)
    }
    fn take_resume(&self, task: u64) -> Result<bool, StoreError> {
        self.sync()?.take_resume(task)
    }
}

impl StateStore for Flushed {
    fn begin_task(&self, task: &TaskRecord, owner: &str) -> Result<u64, StoreError> {
        self.sync()?.begin_task(task, owner)
    }
    fn end_task(&self, end: &TaskEnd) -> Result<(), StoreError> {
        self.sync()?.end_task(end)?;
        if let Some(trust) = &end.trust {
            self.behind.cache_trust(trust, false);
        }
        Ok(())
    }
    fn begin_tasks(&self, tasks: &[&TaskRecord], owner: &str) -> Result<Vec<u64>, StoreError> {
        self.sync()?.begin_tasks(tasks, owner)
    }
    fn end_tasks(&self, ends: &[TaskEnd]) -> Result<(), StoreError> {
        self.sync()?.end_tasks(ends)?;
        for trust in ends.iter().filter_map(|e| e.trust.as_ref()) {
            self.behind.cache_trust(trust, false);
        }
        Ok(())
    }
    fn set_staging(&self, id: u64, staging: &str) -> Result<(), StoreError> {
        self.sync()?.set_staging(id, staging)
    }
    /// Without waiting for the writer: the store's row with the task's lines still in the
    /// journal laid over it, as the writer will write them (a server's status polls then cost
    /// no transaction each).
    fn task(&self, id: u64) -> Result<TaskRecord, StoreError> {
        let Some((begin, end)) = self.behind.pending(id) else {
            return self.inner.task(id);
        };
        let mut row = match begin {
            Some(begin) => begin.record()?,
            None => self.inner.task(id)?,
        };
        // An end is written over a running row only (`SqliteStore::put_behind`).
        if let Some(end) = end.filter(|_| row.status == "running") {
            end.apply(&mut row)?;
        }
        Ok(row)
    }
    fn tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        self.sync()?.tasks(limit)
    }
    fn children(&self, id: u64, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        self.sync()?.children(id, limit)
    }
    fn recover(
        &self,
        alive: &dyn Fn(&str) -> bool,
        audit: &dyn Fn(u64) -> Result<(), String>,
    ) -> Result<Vec<u64>, StoreError> {
        self.sync()?.recover(alive, audit)
    }
    fn trust(&self, agent_id: &str) -> Result<Option<TrustRecord>, StoreError> {
        if let Some(record) = self.behind.cached_trust(agent_id) {
            return Ok(Some(record));
        }
        let record = self.sync()?.trust(agent_id)?;
        if let Some(record) = &record {
            self.behind.cache_trust(record, true);
        }
        Ok(record)
    }
    fn trust_all(&self) -> Result<Vec<TrustRecord>, StoreError> {
        self.sync()?.trust_all()
    }
    fn put_trust(&self, record: &TrustRecord) -> Result<(), StoreError> {
        self.sync()?.put_trust(record)?;
        self.behind.cache_trust(record, false);
        Ok(())
    }
    fn put_cascade(&self, task: u64, state: &str) -> Result<(), StoreError> {
        self.sync()?.put_cascade(task, state)
    }
    fn cascade(&self, task: u64) -> Result<Option<String>, StoreError> {
        self.sync()?.cascade(task)
    }
    fn calibration(&self, agent: &str) -> Result<[(u64, u64); 10], StoreError> {
        self.sync()?.calibration(agent)
    }
    fn add_calibration(&self, agent: &str, bin: u8, verified: bool) -> Result<(), StoreError> {
        self.sync()?.add_calibration(agent, bin, verified)
    }
    fn add_action(
        &self,
        action: &ActionRecord,
        hash: &dyn Fn(&ActionRecord) -> String,
        audit: &dyn Fn(&ActionRecord) -> Result<(), String>,
    ) -> Result<ActionRecord, StoreError> {
        self.sync()?.add_action(action, hash, audit)
    }
    fn action(&self, id: u64) -> Result<ActionRecord, StoreError> {
        self.sync()?.action(id)
    }
    fn actions(&self, limit: usize) -> Result<Vec<ActionRecord>, StoreError> {
        self.sync()?.actions(limit)
    }
    fn task_actions(
        &self,
        task: u64,
        status: &str,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.sync()?.task_actions(task, status, owner, limit)
    }
    fn tree_actions(
        &self,
        root: u64,
        status: &str,
        unexpired_at: Option<u64>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        // Without waiting for the writer: an action is stored at once, and only after the
        // writer put every row journaled before it into the store (`add_action` waits), so the
        // holding task's row and every row up to its tree's root are there already; rows
        // still in the journal belong to tasks that held nothing since, and their parents
        // never change.
        self.inner
            .tree_actions(root, status, unexpired_at, owner, limit)
    }
    fn settle_action(
        &self,
        id: u64,
        from: &str,
        to: &str,
        approver: &str,
        result: &str,
    ) -> Result<bool, StoreError> {
        self.sync()?.settle_action(id, from, to, approver, result)
    }
    // Checkpoints name the log, not the rows: no need to wait for the writer (a checkpoint is
    // signed on the run path every so many records).
    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(checkpoint)
    }
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.latest_checkpoint()
    }
    fn recent_log_head(&self) -> Result<Option<LogHead>, StoreError> {
        self.sync()?.recent_log_head()
    }
    fn witness(&self) -> Result<StoreWitness, StoreError> {
        self.sync()?.witness()
    }
}
