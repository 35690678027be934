//! The ledger's side of the durable queue ([`crate::store::QueuedTask`]): a submitted task
//! stored `queued` and then audited (`task-queued`), and a queued task ended before it ran
//! (cancelled, refused) with its `task-ended` record written inside the store's transaction,
//! so a queued task never ends unaudited.

use serde_json::json;

use super::{Ledger, LedgerError};
use crate::audit::AuditEvent;
use crate::store::{QueueStore, QueuedEnd, TaskRecord};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::verify_dir;
    use crate::store::{StoreError, now_ms};

    fn submitted(user: &str) -> TaskRecord {
        TaskRecord {
            id: 0,
            agent: "hello".into(),
            agent_id: "unsigned/hello".into(),
            module_hash: "h".into(),
            user: user.into(),
            level: 0,
            grant: json!({"roles": ["dev"]}),
            status: "queued".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: 0,
            ended_ms: None,
            parent: None,
        }
    }

    #[test]
    fn a_queued_task_survives_a_host_stop_keeps_its_id_and_starts_once() {
        let dir = tempfile::tempdir().unwrap();
        let host = Ledger::open(dir.path(), 1024).unwrap();
        let a = host
            .enqueue(&submitted("alice"), "{\"agent\":\"hello\"}")
            .unwrap();
        let b = host.enqueue(&submitted("bob"), "{}").unwrap();
        assert_eq!(host.store().task(a).unwrap().status, "queued");
        drop(host);
        // The next start's recovery interrupts running tasks, never queued ones.
        let host = Ledger::open(dir.path(), 1024).unwrap();
        let queued = host.store().queued_tasks(10).unwrap();
        assert_eq!(
            queued
                .iter()
                .map(|q| (q.id, q.user.as_str()))
                .collect::<Vec<_>>(),
            vec![(a, "alice"), (b, "bob")]
        );
        assert_eq!(queued[0].work, "{\"agent\":\"hello\"}");
        let running = TaskRecord {
            id: a,
            status: "running".into(),
            level: 1,
            started_ms: now_ms(),
            ..submitted("alice")
        };
        host.store()
            .start_queued_task(&running, host.owner())
            .unwrap();
        let row = host.store().task(a).unwrap();
        assert_eq!((row.id, row.status.as_str(), row.level), (a, "running", 1));
        // Its deny twin: a task started (or ended) already is not started again.
        assert!(matches!(
            host.store().start_queued_task(&running, host.owner()),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(host.store().queued_tasks(10).unwrap().len(), 1);
        // Ended before it ran: audited, and only once.
        let end = QueuedEnd {
            id: b,
            status: "cancelled".into(),
            outcome: json!({"status": "cancelled", "by": "bob"}),
        };
        assert!(
            host.end_queued(&end, "hello", "bob", json!({"by": "bob"}))
                .unwrap()
        );
        assert!(
            !host
                .end_queued(&end, "hello", "bob", json!({"by": "bob"}))
                .unwrap()
        );
        let a_end = QueuedEnd {
            id: a,
            ..end.clone()
        };
        assert!(
            !host
                .end_queued(&a_end, "hello", "alice", json!({}))
                .unwrap(),
            "a running task is not ended as queued"
        );
        assert_eq!(host.store().task(b).unwrap().status, "cancelled");
        assert!(host.store().queued_tasks(10).unwrap().is_empty());
        drop(host);
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(log.matches("\"task-queued\"").count(), 2);
        assert_eq!(log.matches("\"task-ended\"").count(), 1);
        // Reopened: a's run was interrupted by the stop; the log and the store agree.
        let host = Ledger::open(dir.path(), 1024).unwrap();
        assert_eq!(host.store().task(a).unwrap().status, "interrupted");
        drop(host);
        verify_dir(dir.path(), None).unwrap();
    }
}
