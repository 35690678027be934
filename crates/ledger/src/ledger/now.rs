//! Reads of task rows as they stand now across every process on the data directory: the
//! store's rows, after this ledger's own writer caught up, with the rows other hosts (a live
//! `warden serve` beside a `warden task show`) still hold in their journals laid over them, as
//! their writers will write them. Their writers write behind (`behind.rs`): a task another host
//! ended a moment ago is in its journal before it is in the store, and without this a reader in
//! another process saw it `running` until that writer's next batch.

use std::collections::{HashMap, HashSet};

use super::Ledger;
use super::behind::{Unwritten, unwritten};
use crate::store::{StoreError, TaskRecord};

/// Task rows as they stand now across the data directory's hosts (see the module's docs): the
/// journals as they were when it was made ([`Ledger::tasks_now`]), the store at each read.
pub struct TasksNow<'a> {
    ledger: &'a Ledger,
    lines: HashMap<u64, Unwritten>,
}

impl std::fmt::Debug for TasksNow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TasksNow")
            .field("journaled", &self.lines.len())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Read task rows as they stand now, whichever host on this data directory ran them: every
    /// journal's lines the store does not hold yet are read now (once, for all the reads made
    /// through what this returns).
    ///
    /// # Errors
    ///
    /// A store error, or a damaged journal line (as [`StoreError::Corrupt`]).
    pub fn tasks_now(&self) -> Result<TasksNow<'_>, StoreError> {
        // The marks before the journals, the journals before the rows (see `unwritten`).
        let marks = self.store.inner.journal_marks()?;
        let lines = unwritten(&self.dir, &marks).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TasksNow {
            ledger: self,
            lines,
        })
    }
}

impl TasksNow<'_> {
    /// Task `id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for a task no store row and no journal holds; any other store
    /// error.
    pub fn task(&self, id: u64) -> Result<TaskRecord, StoreError> {
        let (begin, end) = self
            .lines
            .get(&id)
            .map_or((None, None), |(b, e)| (b.as_ref(), e.as_ref()));
        let mut row = match (self.ledger.store().task(id), begin) {
            (Ok(row), _) => row,
            (Err(StoreError::NotFound(_)), Some(begin)) => begin.record()?,
            (Err(e), _) => return Err(e),
        };
        // An end is written over a running row only, as the writers write it.
        if let Some(end) = end.filter(|_| row.status == "running") {
            end.apply(&mut row)?;
        }
        Ok(row)
    }

    /// The newest tasks, newest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// Any store error.
    pub fn tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let mut rows = self.ledger.store().tasks(limit)?;
        let stored: HashSet<u64> = rows.iter().map(|r| r.id).collect();
        for (id, (begin, _)) in &self.lines {
            if let Some(begin) = begin.as_ref().filter(|_| !stored.contains(id)) {
                rows.push(begin.record()?);
            }
        }
        self.ended(&mut rows)?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.id));
        rows.truncate(limit);
        Ok(rows)
    }

    /// Lay the journaled ends over `rows` still running.
    fn ended(&self, rows: &mut [TaskRecord]) -> Result<(), StoreError> {
        for row in rows {
            if let Some((_, Some(end))) = self.lines.get(&row.id)
                && row.status == "running"
            {
                end.apply(row)?;
            }
        }
        Ok(())
    }

    /// The tasks task `id`'s agent called, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// Any store error.
    pub fn children(&self, id: u64, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let mut rows = self.ledger.store().children(id, limit)?;
        let stored: HashSet<u64> = rows.iter().map(|r| r.id).collect();
        for (child, (begin, _)) in &self.lines {
            if let Some(begin) = begin.as_ref().filter(|b| b.parent == Some(id))
                && !stored.contains(child)
            {
                rows.push(begin.record()?);
            }
        }
        self.ended(&mut rows)?;
        rows.sort_by_key(|r| r.id);
        rows.truncate(limit);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Ledger;
    use super::super::kill_tests::running_row;
    use crate::audit::AuditEvent;
    use crate::store::{SqliteStore, StateStore, StoreError, TaskEnd, now_ms};

    fn begin(ledger: &Ledger, parent: Option<u64>) -> u64 {
        let mut row = running_row("a", json!({}));
        row.parent = parent;
        ledger
            .begin_task(row, AuditEvent::new("task-started").agent("a"))
            .unwrap()
    }

    fn end(ledger: &Ledger, id: u64) {
        let trace = json!({"events": [], "dropped": 0});
        let sha = crate::policy::keys::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(
            trace.to_string().as_bytes(),
        ));
        let record = AuditEvent::new("task-ended")
            .task(id)
            .agent("a")
            .detail(json!({"status": "completed", "trace_sha256": sha}));
        let end = TaskEnd {
            id,
            status: "completed".into(),
            outcome: json!({"status": "completed"}),
            trace,
            staging: "none".into(),
            staging_path: None,
            ended_ms: now_ms(),
            trust: None,
        };
        ledger.end_task(vec![record], end).unwrap();
    }

    /// Another host's tasks still in its journal (its writer cannot write: another connection
    /// holds the store's write lock) are read as they will stand — ended, or running, under
    /// their caller — and, once written, as the store holds them.
    #[test]
    fn another_hosts_tasks_are_read_as_its_journal_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let host = Ledger::open(dir.path(), 64).unwrap();
        let reader = Ledger::open(dir.path(), 64).unwrap();
        let root = begin(&host, None);
        host.store().tasks(10).unwrap();
        let blocker = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let done = begin(&host, Some(root));
        end(&host, done);
        let running = begin(&host, Some(root));
        end(&host, root);
        let store = SqliteStore::open_read_only(dir.path()).unwrap();
        assert!(matches!(store.task(done), Err(StoreError::NotFound(_))));
        assert_eq!(store.task(root).unwrap().status, "running");

        assert_eq!(
            reader.tasks_now().unwrap().task(done).unwrap().status,
            "completed"
        );
        assert_eq!(
            reader.tasks_now().unwrap().task(root).unwrap().status,
            "completed"
        );
        assert_eq!(
            reader.tasks_now().unwrap().task(running).unwrap().status,
            "running"
        );
        let children = reader.tasks_now().unwrap().children(root, 10).unwrap();
        let seen: Vec<(u64, &str)> = children.iter().map(|c| (c.id, c.status.as_str())).collect();
        assert_eq!(seen, [(done, "completed"), (running, "running")]);
        assert_eq!(
            reader.tasks_now().unwrap().children(root, 1).unwrap().len(),
            1
        );
        let listed = reader.tasks_now().unwrap().tasks(2).unwrap();
        let seen: Vec<(u64, &str)> = listed.iter().map(|t| (t.id, t.status.as_str())).collect();
        assert_eq!(seen, [(running, "running"), (done, "completed")]);
        assert!(matches!(
            reader.tasks_now().unwrap().task(running + 100),
            Err(StoreError::NotFound(_))
        ));

        blocker.execute_batch("COMMIT").unwrap();
        host.store().tasks(10).unwrap();
        for id in [root, done, running] {
            assert_eq!(
                reader.tasks_now().unwrap().task(id).unwrap(),
                host.store().task(id).unwrap()
            );
        }
        assert_eq!(
            reader.tasks_now().unwrap().children(root, 10).unwrap(),
            children
        );
    }
}
