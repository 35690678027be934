//! Group commit of the run path's writes: a task's start (its row, then its `task-started`
//! record) and its end (its records, then its row and trust record) go through one committer.
//!
//! Leader and followers: a caller queues its job; if no commit is under way it leads at once
//! (a sequential caller never waits for company), taking every queued job as one batch: the
//! batch's new task rows as journal lines with one `write` (their ids from the ledger's
//! reserved block), then all its records chained and appended with one `write`, then its ended
//! rows as journal lines with one more (`behind.rs` puts the journaled rows into the store).
//! Callers that queue meanwhile wait; when the batch is written the leader wakes them, and one
//! whose job is still queued leads the next batch. Every caller returns only once its own
//! writes are where its single commit would have put them, in the same order, so the
//! guarantees of [`Ledger`] hold per task: a row begun is journaled before its first record,
//! every record of an end is in the log before the line that ends the row, and each line
//! vouches for a log head that covers its task's records so far. With
//! [`Durability::Process`](crate::store::Durability) nothing is acknowledged before the kernel
//! holds it, so a killed process loses no acknowledged task and no record.
//!
//! A deferred tree (`defer.rs`) is one job: its rows' lines, its records and its ended rows'
//! lines go with the batch's others, in that order, so the same guarantees hold for its tasks.
//!
//! Async callers ([`Ledger::begin_task_async`], [`Ledger::end_task_async`]) follow the same
//! rules but wait without blocking their thread: on a runtime with a few worker threads a
//! follower that blocked would stop the tasks that could have joined the next batch, so the
//! batches would stay at one job each. A follower that is dropped while its job is still queued
//! takes the job back (nothing of it is written).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use super::defer::Ending;
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
    /// A deferred tree ([`Ledger::defer_task`]): its rows begun, its records in order, its rows
    /// ended, as a batch of `Begin`s and `End`s would write them.
    Tree { items: Vec<Item> },
}

/// One write of a deferred tree, in the order it came.
pub(super) enum Item {
    /// A task's row (its id reserved) and first record.
    Begin(TaskRecord, AuditEvent),
    /// A record about one of its tasks.
    Record(AuditEvent),
    /// A task's closing records and ended row.
    End(Vec<AuditEvent>, TaskEnd),
}

/// What a written job hands back to its caller: the new task's id and its row as stored, or
/// the end as written (so neither is cloned to be kept).
pub(super) enum Written {
    /// A task's start: its id, and its row (with that id).
    Begun(TaskRecord),
    /// A task's end.
    Ended(TaskEnd),
    /// A deferred tree that was written before its root ended.
    Flushed,
}

/// What a job came to.
type Done = Result<Written, Arc<LedgerError>>;

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
    /// Async followers to wake when a batch is written, by ticket.
    wakers: HashMap<u64, Waker>,
    /// Tickets whose async caller went away while its batch was being written.
    abandoned: HashSet<u64>,
    next: u64,
    stats: CommitStats,
    /// Sync callers waiting on `written` (waking none is a system call saved per batch).
    sleepers: usize,
    /// Tasks begun through the committer (their start queued or written) and not yet ended:
    /// those not queued now are running and will bring an end soon.
    open: u64,
    /// How many jobs the last batch carried: more than one means tasks come together.
    last_batch: usize,
}

impl Queue {
    /// Queue `job` under a new ticket.
    fn push(&mut self, job: Job) -> u64 {
        let ticket = self.next;
        self.next += 1;
        match job {
            Job::Begin { .. } => self.open += 1,
            Job::End { .. } => self.open = self.open.saturating_sub(1),
            // Counted as its tasks were deferred and ended.
            Job::Tree { .. } => {}
        }
        self.waiting.push((ticket, job));
        ticket
    }

    /// Tasks running now (begun or deferred, no job queued): each will queue its end before
    /// long.
    fn running(&self) -> u64 {
        let begins = self
            .waiting
            .iter()
            .filter(|(_, job)| matches!(job, Job::Begin { .. }))
            .count() as u64;
        self.open.saturating_sub(begins)
    }
}

/// How many times an async caller about to lead a small batch lets the other tasks of its
/// thread run first, while tasks are running that will queue their ends, or when the last batch
/// carried more than one job (tasks whose starts are deferred are not counted as running until
/// they begin, and under load they come together): the batch it then writes is bigger, and one
/// journal write and one append serve more tasks. A lone caller (nothing else running, the
/// last batch its own) never waits. With 32 deferred trivial tasks at once a batch carries ~30
/// jobs; counting running tasks alone gave ~2.
const YIELDS_BEFORE_LEADING: u8 = 2;

/// How many group commits a ledger has made and how many jobs (task starts and ends, or whole
/// deferred trees) they carried: `jobs / batches` is the mean batch size, 1 when callers come
/// one at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches written.
    pub batches: u64,
    /// Jobs they carried.
    pub jobs: u64,
}

impl Committer {
    /// Count a task begun without a job (its start deferred) as running.
    pub(super) fn opened(&self) {
        self.lock().open += 1;
    }

    /// Count a deferred task's end (its job, if any, is a tree's).
    pub(super) fn closed(&self) {
        let mut queue = self.lock();
        queue.open = queue.open.saturating_sub(1);
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between statements; a panicking leader is handled by `Lead`.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `job` and return once it is written, leading the batch if no one else is.
    pub(super) fn submit(&self, ledger: &Ledger, job: Job) -> Result<Written, LedgerError> {
        let mut queue = self.lock();
        let ticket = queue.push(job);
        loop {
            if let Some(done) = queue.finished.remove(&ticket) {
                return done.map_err(|e| Arc::try_unwrap(e).unwrap_or_else(LedgerError::Shared));
            }
            if queue.leading {
                queue.sleepers += 1;
                queue = self.written.wait(queue).unwrap_or_else(|p| p.into_inner());
                queue.sleepers -= 1;
                continue;
            }
            queue = self.lead(ledger, queue);
        }
    }

    /// Write every queued job as one batch on this thread (no one else leading), then take
    /// the queue's lock again.
    fn lead<'q>(
        &'q self,
        ledger: &Ledger,
        mut queue: MutexGuard<'q, Queue>,
    ) -> MutexGuard<'q, Queue> {
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
        self.lock()
    }
}

impl Committer {
    /// [`Committer::submit`] for an async caller: it leads on its own thread as a sync caller
    /// does, but waits for another leader without blocking the thread.
    pub(super) async fn submit_async(
        &self,
        ledger: &Ledger,
        job: Job,
    ) -> Result<Written, LedgerError> {
        let ticket = self.lock().push(job);
        let mut follower = Follower {
            committer: self,
            ledger,
            ticket,
            done: false,
        };
        let mut yields = 0;
        let done = loop {
            let step = std::future::poll_fn(|cx| {
                let mut queue = self.lock();
                loop {
                    if let Some(done) = queue.finished.remove(&ticket) {
                        queue.wakers.remove(&ticket);
                        return Poll::Ready(Some(done));
                    }
                    if queue.leading {
                        queue.wakers.insert(ticket, cx.waker().clone());
                        return Poll::Pending;
                    }
                    if yields < YIELDS_BEFORE_LEADING
                        && (queue.running() as usize > queue.waiting.len() || queue.last_batch > 1)
                    {
                        return Poll::Ready(None);
                    }
                    queue = self.lead(ledger, queue);
                }
            })
            .await;
            match step {
                Some(done) => break done,
                None => {
                    // Let the running tasks of this thread queue their ends first (behind them
                    // in the run queue, not straight back as a task that woke itself would be).
                    yields += 1;
                    tokio::task::yield_now().await;
                }
            }
        };
        follower.done = true;
        done.map_err(|e| Arc::try_unwrap(e).unwrap_or_else(LedgerError::Shared))
    }
}

/// An async caller's claim on its ticket, for when it is dropped before its result came. A
/// task start not yet taken by a batch is taken back (the task never began). A task end is
/// never dropped: it is what happened, so it is written all the same — at once, on this
/// thread, if no batch is under way — and its result is left for no one.
struct Follower<'a> {
    committer: &'a Committer,
    ledger: &'a Ledger,
    ticket: u64,
    done: bool,
}

impl Drop for Follower<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut queue = self.committer.lock();
        queue.wakers.remove(&self.ticket);
        let queued = queue.waiting.iter().position(|(t, _)| *t == self.ticket);
        match queued {
            Some(at) if matches!(queue.waiting[at].1, Job::Begin { .. }) => {
                queue.waiting.remove(at);
                queue.open = queue.open.saturating_sub(1);
            }
            Some(_) => {
                queue.abandoned.insert(self.ticket);
                if !queue.leading {
                    queue = self.committer.lead(self.ledger, queue);
                }
            }
            None => {
                if queue.finished.remove(&self.ticket).is_none() {
                    queue.abandoned.insert(self.ticket);
                }
            }
        }
        // A follower that was to lead the next batch must not leave the others waiting.
        if !queue.leading && !queue.waiting.is_empty() {
            wake_all(&mut queue);
            if queue.sleepers > 0 {
                self.committer.written.notify_all();
            }
        }
    }
}

/// Wake every async follower (each looks for its result, or leads).
fn wake_all(queue: &mut Queue) {
    for (_, waker) in queue.wakers.drain() {
        waker.wake();
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
        for ticket in &self.tickets {
            if queue.abandoned.remove(ticket) {
                queue.finished.remove(ticket);
            }
        }
        queue.stats.batches += 1;
        queue.stats.jobs += self.tickets.len() as u64;
        queue.last_batch = self.tickets.len();
        queue.leading = false;
        wake_all(&mut queue);
        if queue.sleepers > 0 {
            self.committer.written.notify_all();
        }
    }
}

impl Ledger {
    /// How many group commits this ledger has made, and how many jobs they carried.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.lock().stats
    }

    /// Open a task: journal its row (`running`, begun by this process, its id reserved) and
    /// then append its first record, `started`, given the row's id as its task. Concurrent callers are batched
    /// (see the module docs); a lone caller commits at once. Returns the task's id.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the row or the record cannot be written: the task must not start.
    pub fn begin_task(&self, task: TaskRecord, started: AuditEvent) -> Result<u64, LedgerError> {
        // A callee's row names its caller: a caller whose start is deferred is written first.
        self.write_tree_of(task.parent)?;
        match self.committer.submit(self, Job::Begin { task, started })? {
            Written::Begun(row) => Ok(row.id),
            Written::Ended(_) | Written::Flushed => Err(LedgerError::CommitPanicked),
        }
    }

    /// [`Ledger::begin_task`] for an async caller: waits for a batch under way without
    /// blocking its thread (it still writes on it when it leads). Returns the task's row as
    /// stored, its id set.
    ///
    /// # Errors
    ///
    /// As [`Ledger::begin_task`].
    pub async fn begin_task_async(
        &self,
        task: TaskRecord,
        started: AuditEvent,
    ) -> Result<TaskRecord, LedgerError> {
        // As `begin_task`, without blocking the thread.
        if let Some(parent) = task.parent {
            self.write_deferred_async(parent).await?;
        }
        match self
            .committer
            .submit_async(self, Job::Begin { task, started })
            .await?
        {
            Written::Begun(row) => Ok(row),
            Written::Ended(_) | Written::Flushed => Err(LedgerError::CommitPanicked),
        }
    }

    /// [`Ledger::end_task`] for an async caller: waits for a batch under way without blocking
    /// its thread (it still writes on it when it leads). Returns `end` as written.
    ///
    /// # Errors
    ///
    /// As [`Ledger::end_task`].
    pub async fn end_task_async(
        &self,
        records: Vec<AuditEvent>,
        end: TaskEnd,
    ) -> Result<TaskEnd, LedgerError> {
        let job = match self.end_deferred(records, end) {
            Ending::Written(records, end) => Job::End { records, end },
            Ending::Tree(job) => job,
            Ending::Waits(end) => return Ok(end),
        };
        match self.committer.submit_async(self, job).await? {
            Written::Ended(end) => Ok(end),
            Written::Begun(_) | Written::Flushed => Err(LedgerError::CommitPanicked),
        }
    }

    /// Close a task: append `records` (its last one the `task-ended` record), then journal
    /// `end` (the row and the agent's trust record) vouching for a log head that covers them.
    /// A task whose start was deferred is begun in the same batch. Concurrent callers are
    /// batched (see the module docs); a lone caller commits at once.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when a record or the row cannot be written.
    pub fn end_task(&self, records: Vec<AuditEvent>, end: TaskEnd) -> Result<(), LedgerError> {
        let job = match self.end_deferred(records, end) {
            Ending::Written(records, end) => Job::End { records, end },
            Ending::Tree(job) => job,
            Ending::Waits(_) => return Ok(()),
        };
        self.committer.submit(self, job)?;
        Ok(())
    }
}

mod batch;

#[cfg(test)]
mod tests;
