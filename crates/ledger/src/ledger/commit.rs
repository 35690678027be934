//! Group commit of the run path's writes: a task's start (its row, then its `task-started`
//! record) and its end (its records, then its row and trust record) go through one committer.
//!
//! Leader and followers: a caller queues its job; if no commit is under way it leads at once
//! (a sequential caller never waits for company), taking every queued job as one batch: the
//! batch's new task rows in one transaction, then all its records chained and appended with
//! one `write`, then its ended rows in one transaction. Callers that queue meanwhile wait; when
//! the batch is written the leader wakes them, and one whose job is still queued leads the
//! next batch. Every caller returns only once its own writes are where its single commit would
//! have put them, in the same order, so the guarantees of [`Ledger`] hold per task: a row
//! begun is committed before its first record, every record of an end is in the log before
//! the row that says so, and each ended row vouches for a log head that covers its records.
//! With [`Durability::Process`](crate::store::Durability) nothing is acknowledged before the
//! kernel holds it, so a killed process loses no acknowledged task and no record.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Ledger, LedgerError};
use crate::audit::AuditEvent;
use crate::store::{TaskEnd, TaskRecord};

/// One caller's writes.
pub(super) enum Job {
    /// A task's row, then its first record (given the row's id).
    Begin {
        task: TaskRecord,
        started: AuditEvent,
    },
    /// A task's closing records, then its row and trust record.
    End {
        records: Vec<AuditEvent>,
        end: TaskEnd,
    },
}

/// What a job came to: the new task's id for a start.
type Done = Result<Option<u64>, Arc<LedgerError>>;

/// The queue of jobs and the one commit under way, if any.
#[derive(Default)]
pub(super) struct Committer {
    queue: Mutex<Queue>,
    written: Condvar,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Job)>,
    leading: bool,
    finished: HashMap<u64, Done>,
    next: u64,
    stats: CommitStats,
}

/// How many group commits a ledger has made and how many jobs (task starts and ends) they
/// carried: `jobs / batches` is the mean batch size, 1 when callers come one at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches written.
    pub batches: u64,
    /// Jobs they carried.
    pub jobs: u64,
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between statements; a panicking leader is handled by `Lead`.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `job` and return once it is written, leading the batch if no one else is.
    fn submit(&self, ledger: &Ledger, job: Job) -> Result<Option<u64>, LedgerError> {
        let mut queue = self.lock();
        let ticket = queue.next;
        queue.next += 1;
        queue.waiting.push((ticket, job));
        loop {
            if let Some(done) = queue.finished.remove(&ticket) {
                return done.map_err(|e| Arc::try_unwrap(e).unwrap_or_else(LedgerError::Shared));
            }
            if queue.leading {
                queue = self.written.wait(queue).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            queue.leading = true;
            let batch = std::mem::take(&mut queue.waiting);
            drop(queue);
            let mut lead = Lead {
                committer: self,
                tickets: batch.iter().map(|(t, _)| *t).collect(),
                results: Vec::new(),
            };
            lead.results = ledger.commit_batch(batch);
            drop(lead);
            queue = self.lock();
        }
    }
}

/// The leader's duty, done even if the batch panics: publish every job's result (a panic
/// fails the jobs it left unfinished), step down and wake the waiters.
struct Lead<'a> {
    committer: &'a Committer,
    tickets: Vec<u64>,
    results: Vec<(u64, Done)>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut queue = self.committer.lock();
        let panicked = Arc::new(LedgerError::CommitPanicked);
        let results = std::mem::take(&mut self.results);
        for ticket in &self.tickets {
            queue.finished.insert(*ticket, Err(Arc::clone(&panicked)));
        }
        queue.finished.extend(results);
        queue.stats.batches += 1;
        queue.stats.jobs += self.tickets.len() as u64;
        queue.leading = false;
        self.committer.written.notify_all();
    }
}

impl Ledger {
    /// How many group commits this ledger has made, and how many jobs they carried.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.lock().stats
    }

    /// Open a task: commit its row (`running`, begun by this process) and then append its
    /// first record, `started`, given the row's id as its task. Concurrent callers are batched
    /// (see the module docs); a lone caller commits at once. Returns the task's id.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the row or the record cannot be written: the task must not start.
    pub fn begin_task(&self, task: TaskRecord, started: AuditEvent) -> Result<u64, LedgerError> {
        let id = self.committer.submit(self, Job::Begin { task, started })?;
        id.ok_or(LedgerError::CommitPanicked)
    }

    /// Close a task: append `records` (its last one the `task-ended` record), then commit
    /// `end` (the row and the agent's trust record) vouching for a log head that covers them.
    /// Concurrent callers are batched (see the module docs); a lone caller commits at once.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when a record or the row cannot be written.
    pub fn end_task(&self, records: Vec<AuditEvent>, end: TaskEnd) -> Result<(), LedgerError> {
        self.committer.submit(self, Job::End { records, end })?;
        Ok(())
    }

    /// Write one batch, in the order the module docs give, and say what became of each job.
    fn commit_batch(&self, batch: Vec<(u64, Job)>) -> Vec<(u64, Done)> {
        let mut out = Vec::with_capacity(batch.len());
        let begins: Vec<&TaskRecord> = batch
            .iter()
            .filter_map(|(_, job)| match job {
                Job::Begin { task, .. } => Some(task),
                Job::End { .. } => None,
            })
            .collect();
        let begun = match begins.is_empty() {
            true => Ok(Vec::new()),
            false => self
                .store
                .begin_tasks(&begins, &self.owner)
                .map_err(|e| Arc::new(LedgerError::from(e))),
        };
        let mut ids = begun.as_ref().map_or(Vec::new(), Clone::clone).into_iter();
        let mut records = Vec::with_capacity(batch.len());
        let mut ends = Vec::new();
        // The jobs still going, with the id of each started task (`None` for an end).
        let mut going: Vec<(u64, Option<u64>)> = Vec::with_capacity(batch.len());
        for (ticket, job) in batch {
            match job {
                Job::Begin { mut started, .. } => match (&begun, ids.next()) {
                    (Ok(_), Some(id)) => {
                        started.task = Some(id);
                        records.push(started);
                        going.push((ticket, Some(id)));
                    }
                    (Err(e), _) => out.push((ticket, Err(Arc::clone(e)))),
                    (Ok(_), None) => out.push((ticket, Err(Arc::new(LedgerError::CommitPanicked)))),
                },
                Job::End { records: r, end } => {
                    records.extend(r);
                    ends.push(end);
                    going.push((ticket, None));
                }
            }
        }
        let fail_all =
            |out: &mut Vec<(u64, Done)>, going: &[(u64, Option<u64>)], e: LedgerError| {
                let e = Arc::new(e);
                out.extend(going.iter().map(|(t, _)| (*t, Err(Arc::clone(&e)))));
            };
        if let Err(e) = self.audit.append_all(&records) {
            fail_all(&mut out, &going, e.into());
            return out;
        }
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) += records.len() as u64;
        let ended = match ends.is_empty() {
            true => Ok(()),
            false => self
                .store
                .end_tasks(&ends)
                .map_err(|e| Arc::new(LedgerError::from(e))),
        };
        // Signed outside the transactions above, as `record` does: a checkpoint writes the
        // store too.
        if let Err(e) = self.checkpoint_if_due() {
            fail_all(&mut out, &going, e);
            return out;
        }
        for (ticket, id) in going {
            out.push(match id {
                Some(id) => (ticket, Ok(Some(id))),
                None => (ticket, ended.clone().map(|()| None)),
            });
        }
        out
    }
}
