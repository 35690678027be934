//! The ledger's side of the durable queue ([`crate::store::QueuedTask`]): a submitted task
//! stored `queued` and then audited (`task-queued`), and a queued task ended before it ran
//! (cancelled, refused) with its `task-ended` record written inside the store's transaction,
//! so a queued task never ends unaudited.

use serde_json::json;

use super::{Ledger, LedgerError};
use crate::audit::AuditEvent;
use crate::store::{QueuedEnd, TaskRecord};

impl Ledger {
    /// Store `task` as queued with `work` (what the server needs to run it later), then record
    /// `task-queued`; returns its id. The row is committed before its record is written, as a
    /// running task's is: a kill in between leaves a queued row without a record, which
    /// `warden audit verify` accepts, never a record without its row.
    ///
    /// # Errors
    ///
    /// When the store or the log cannot be written.
    pub fn enqueue(&self, task: &TaskRecord, work: &str) -> Result<u64, LedgerError> {
        let id = self.store.enqueue_task(task, work)?;
        self.record(
            AuditEvent::new("task-queued")
                .task(id)
                .agent(&task.agent)
                .user(&task.user)
                .detail(json!({"grant": task.grant})),
        )?;
        Ok(id)
    }

    /// End the queued task `end.id` without running it: its `task-ended` record (with
    /// `end.status` and `detail`, say who cancelled) is written in the store's transaction.
    /// Returns false, recording nothing, when it is not queued (it started or ended already).
    ///
    /// # Errors
    ///
    /// When the store or the log cannot be written (then nothing changed).
    pub fn end_queued(
        &self,
        end: &QueuedEnd,
        agent: &str,
        user: &str,
        detail: serde_json::Value,
    ) -> Result<bool, LedgerError> {
        let mut detail = detail;
        detail["status"] = json!(end.status);
        let audit = || {
            self.append_unsigned(
                AuditEvent::new("task-ended")
                    .task(end.id)
                    .agent(agent)
                    .user(user)
                    .detail(detail.clone()),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let ended = self.store.end_queued_task(end, &audit)?;
        if ended {
            self.checkpoint_if_due()?;
        }
        Ok(ended)
    }
}
