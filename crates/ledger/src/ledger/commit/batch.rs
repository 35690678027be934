//! One group commit: a batch of jobs written in the order the module docs of `commit.rs` give.

use std::sync::Arc;

use super::{Done, Item, Job, Written};
use crate::ledger::behind::Line;
use crate::ledger::{Ledger, LedgerError};
use crate::store::{LogHeadSource, TaskEnd, TaskRecord};

/// A job still going through the batch.
enum Going {
    /// A start: the row (its id set).
    Begin(Box<TaskRecord>),
    /// An end.
    End,
    /// A deferred tree: the rows it begins, and how many ends it brings (its result is its
    /// last end, or `Flushed` when it brings none).
    Tree(Vec<TaskRecord>, usize),
}

impl Going {
    /// The rows this job begins.
    fn begins(&self) -> &[TaskRecord] {
        match self {
            Going::Begin(row) => std::slice::from_ref(&**row),
            Going::Tree(rows, _) => rows,
            Going::End => &[],
        }
    }
}

impl Ledger {
    /// Write one batch, in the order the module docs give, and say what became of each job.
    pub(super) fn commit_batch(&self, batch: Vec<(u64, Job)>) -> Vec<(u64, Done)> {
        let mut out = Vec::with_capacity(batch.len());
        let mut started = Vec::new();
        let mut records = Vec::with_capacity(batch.len());
        let mut ends = Vec::new();
        let mut going: Vec<(u64, Going)> = Vec::with_capacity(batch.len());
        // Deferred trees' records and ends, after the other jobs' (each tree in its own order).
        let (mut tree_records, mut tree_ends) = (Vec::new(), Vec::new());
        // A row's id: its own when reserved earlier (a deferred start), else the next one.
        let id_for = |task: &TaskRecord| match task.id {
            0 => self.behind.next_id(),
            id => Ok(id),
        };
        for (ticket, job) in batch {
            match job {
                Job::Begin {
                    mut task,
                    started: mut first,
                } => match id_for(&task) {
                    Ok(id) => {
                        first.task = Some(id);
                        started.push(first);
                        task.id = id;
                        going.push((ticket, Going::Begin(Box::new(task))));
                    }
                    Err(e) => out.push((ticket, Err(Arc::new(LedgerError::from(e))))),
                },
                Job::End { records: r, end } => {
                    records.extend(r);
                    ends.push(end);
                    going.push((ticket, Going::End));
                }
                Job::Tree { items } => {
                    // Its records stay in order: each task's first record (after its row's
                    // line) and the records after it, then its ended rows' lines.
                    let (mut rows, mut n) = (Vec::new(), 0);
                    for item in items {
                        match item {
                            Item::Begin(task, first) => {
                                tree_records.push(first);
                                rows.push(task);
                            }
                            Item::Record(r) => tree_records.push(r),
                            Item::End(r, end) => {
                                tree_records.extend(r);
                                tree_ends.push(end);
                                n += 1;
                            }
                        }
                    }
                    going.push((ticket, Going::Tree(rows, n)));
                }
            }
        }
        // The new rows, journaled before their first records; if that fails, those tasks do
        // not start (and nothing of them is written), the ends go on.
        let begins: Vec<Line<'_>> = going
            .iter()
            .flat_map(|(_, job)| job.begins().iter().map(Line::Begin))
            .collect();
        let journaled = match begins.is_empty() {
            true => Ok(()),
            false => self.behind.journal(&begins, &self.audit.log_head()),
        };
        drop(begins);
        if let Err(e) = journaled {
            let e = Arc::new(e);
            going.retain(|(ticket, job)| match job {
                Going::Begin(_) | Going::Tree(..) => {
                    out.push((*ticket, Err(Arc::clone(&e))));
                    false
                }
                Going::End => true,
            });
            started.clear();
            tree_records.clear();
            tree_ends.clear();
        }
        started.append(&mut records);
        started.append(&mut tree_records);
        let records = started;
        ends.append(&mut tree_ends);
        let fail_all = |out: &mut Vec<(u64, Done)>, going: &[(u64, Going)], e: LedgerError| {
            let e = Arc::new(e);
            out.extend(going.iter().map(|(t, _)| (*t, Err(Arc::clone(&e)))));
        };
        if records.is_empty() && ends.is_empty() {
            return out;
        }
        if let Err(e) = self.audit.append_all(&records) {
            fail_all(&mut out, &going, e.into());
            return out;
        }
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) += records.len() as u64;
        drop(records);
        // The ended rows, journaled after their records; their trust records are the ones
        // the next tasks read.
        let ended = write_ends(self, &ends);
        // Signed once the batch's lines and records are written, as `record` does.
        if let Err(e) = self.checkpoint_if_due() {
            fail_all(&mut out, &going, e);
            return out;
        }
        // The plain ends first, then each tree's, as `ends` holds them.
        let mut ends = ends.into_iter();
        let mut trees = Vec::new();
        for (ticket, job) in going {
            match job {
                Going::Begin(row) => out.push((ticket, Ok(Written::Begun(*row)))),
                Going::End => out.push((ticket, ended_result(&ended, ends.next()))),
                Going::Tree(_, n) => trees.push((ticket, n)),
            }
        }
        for (ticket, n) in trees {
            let last = ends.by_ref().take(n).last();
            out.push(match (n, &ended) {
                (0, Ok(())) => (ticket, Ok(Written::Flushed)),
                _ => (ticket, ended_result(&ended, last)),
            });
        }
        out
    }
}

/// What an end's job came to.
fn ended_result(ended: &Result<(), Arc<LedgerError>>, end: Option<TaskEnd>) -> Done {
    match (ended, end) {
        (Ok(()), Some(end)) => Ok(Written::Ended(end)),
        (Err(e), _) => Err(Arc::clone(e)),
        (Ok(()), None) => Err(Arc::new(LedgerError::CommitPanicked)),
    }
}

/// Journal the batch's ended rows (the log's head now covers their records) and keep their
/// trust records for the next tasks.
fn write_ends(ledger: &Ledger, ends: &[TaskEnd]) -> Result<(), Arc<LedgerError>> {
    if ends.is_empty() {
        return Ok(());
    }
    let lines: Vec<Line<'_>> = ends.iter().map(Line::End).collect();
    ledger
        .behind
        .journal(&lines, &ledger.audit.log_head())
        .map_err(Arc::new)?;
    for trust in ends.iter().filter_map(|e| e.trust.as_ref()) {
        ledger.behind.cache_trust(trust, false);
    }
    Ok(())
}
