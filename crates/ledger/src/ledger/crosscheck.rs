//! The audit log compared with the state store, both ways: what the log says about each task
//! and action ([`LogFacts`], gathered in the one pass that verifies the chain) against what the
//! store holds ([`StoreWitness`]). The store's rows were committed after their records were
//! written, so a row without its record, a record without its row, or a row vouching for a log
//! head the log no longer holds means one of the two was cut, edited or rolled back.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::AuditRecord;
use crate::store::{StoreWitness, TaskWitness};

/// The first place where the audit log and the state store disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A task's row says it began or ended, and the log lacks the record that says so.
    #[error(
        "task {task} is `{status}` in the state store, but the audit log (ending at record {records}) has no {record} record for it{cut}; restore the log from a backup and find out who cut it"
    )]
    MissingRecord {
        /// The task.
        task: u64,
        /// Its status in the store.
        status: String,
        /// The record kind that should be there (`task-ended`, `task-started`, …).
        record: &'static str,
        /// How many records the log holds.
        records: u64,
        /// How the row shows the log was cut, if it does (empty otherwise).
        cut: String,
    },
    /// A task's end record says something else than its row.
    #[error(
        "task {task} is `{status}` in the state store, but its {record} record {seq} says {says}: the log or the store was edited; restore both from a backup"
    )]
    EndDiffers {
        /// The task.
        task: u64,
        /// Its status in the store.
        status: String,
        /// The record's kind.
        record: String,
        /// The record's seq.
        seq: u64,
        /// What the record says instead.
        says: String,
    },
    /// A task's row was committed when the log reached a record the log no longer holds.
    #[error(
        "task {task}'s row in the state store was committed when the audit log reached record {seq} (hash {hash}), but {found}: records were cut from the log, or it was rolled back or rewritten; restore it from a backup"
    )]
    HeadLost {
        /// The task.
        task: u64,
        /// The record the row vouches for.
        seq: u64,
        /// Its hash as the row has it.
        hash: String,
        /// What the log holds instead.
        found: String,
    },
    /// A task's row and its `task-started` record name different callers: the task tree was
    /// edited.
    #[error(
        "task {task} was called by {stored} according to the state store, but its task-started record {seq} says {logged}: the task tree was edited; restore the log and the store from a backup"
    )]
    ParentDiffers {
        /// The task.
        task: u64,
        /// The `task-started` record's seq.
        seq: u64,
        /// The caller as the store has it (`no task` when none).
        stored: String,
        /// The caller as the log has it.
        logged: String,
    },
    /// The log records a task the store does not hold.
    #[error(
        "record {seq} ({kind}) of the audit log is about task {task}, but the state store has no task {task}: its row was deleted, or the store was replaced by an older copy; restore the store from a backup"
    )]
    TaskNotInStore {
        /// The task.
        task: u64,
        /// The first record about it.
        seq: u64,
        /// That record's kind.
        kind: String,
    },
    /// The log records tasks but there is no state store at all.
    #[error(
        "record {seq} ({kind}) of the audit log is about task {task}, but the data directory has no state store (state.db): it was deleted; restore it from a backup"
    )]
    NoStore {
        /// The task.
        task: u64,
        /// The first record about it.
        seq: u64,
        /// That record's kind.
        kind: String,
    },
    /// An action's row has no `action-pending` record, or one for another action.
    #[error(
        "action {action} (task {task}) is `{status}` in the state store, but the audit log {why}: the log was cut or the store was edited; an action that was never audited must not be approved"
    )]
    ActionNotInLog {
        /// The action.
        action: u64,
        /// Its task.
        task: u64,
        /// Its status in the store.
        status: String,
        /// What is missing or different.
        why: String,
    },
    /// The log records an action the store does not hold.
    #[error(
        "record {seq} ({kind}) of the audit log is about action {action}, but the state store has no action {action}: its row was deleted, or the store was replaced by an older copy"
    )]
    ActionNotInStore {
        /// The action.
        action: u64,
        /// The first record about it.
        seq: u64,
        /// That record's kind.
        kind: String,
    },
}

/// Which records are about a task's life, and so need its row.
const LIFECYCLE: [&str; 6] = [
    "task-queued",
    "task-started",
    "task-ended",
    "task-killed",
    "task-failed-to-start",
    "task-interrupted",
];

/// What the log says about one task.
#[derive(Debug, Default)]
struct TaskFacts {
    /// The first lifecycle record (seq, kind).
    first: Option<(u64, String)>,
    started: bool,
    /// The `task-started` record's seq and the caller it names (agent calls only).
    parent: Option<(u64, Option<u64>)>,
    /// The last end record: (seq, kind, status it states, trace hash it binds).
    end: Option<(u64, String, String, Option<String>)>,
    /// A `staging-applied` or `staging-apply-approved` record.
    applied: bool,
}

/// What the log says about one action.
#[derive(Debug, Default)]
struct ActionFacts {
    first: Option<(u64, String)>,
    /// The last `action-pending` record: (seq, hash).
    pending: Option<(u64, String)>,
    approved: bool,
    /// The last `action-performed` / `action-failed` record's status.
    settled: Option<String>,
}

/// What the log says about tasks, actions and the records the store vouches for, gathered one
/// record at a time ([`LogFacts::see`]) while the chain is verified.
#[derive(Debug, Default)]
pub(super) struct LogFacts {
    tasks: BTreeMap<u64, TaskFacts>,
    actions: BTreeMap<u64, ActionFacts>,
    /// The seqs some row (or the store's checkpoint) vouches for, and the hash found there.
    wanted: BTreeMap<u64, Option<String>>,
}

impl LogFacts {
    /// Facts to gather for `witness`: it names the records whose hash is wanted.
    pub(super) fn for_witness(witness: &StoreWitness) -> Self {
        let wanted = witness
            .tasks
            .iter()
            .filter_map(|t| t.log_head.as_ref().map(|h| h.seq))
            .chain(witness.checkpoint.as_ref().map(|c| c.size))
            .map(|seq| (seq, None))
            .collect();
        LogFacts {
            wanted,
            ..LogFacts::default()
        }
    }

    /// Take in one verified record.
    pub(super) fn see(&mut self, r: &AuditRecord) {
        if let Some(slot) = self.wanted.get_mut(&r.seq) {
            *slot = Some(r.hash.clone());
        }
        let text = |key: &str| {
            r.detail
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        if let Some(task) = r.task {
            let facts = self.tasks.entry(task).or_default();
            if LIFECYCLE.contains(&r.kind.as_str()) && facts.first.is_none() {
                facts.first = Some((r.seq, r.kind.clone()));
            }
            let end = |status: &str| Some((r.seq, r.kind.clone(), status.to_owned(), None));
            match r.kind.as_str() {
                "task-started" => {
                    facts.started = true;
                    let parent = r.detail.get("parent").and_then(serde_json::Value::as_u64);
                    facts.parent = Some((r.seq, parent));
                }
                "task-ended" => {
                    let status = text("status").unwrap_or_default();
                    facts.end = Some((r.seq, r.kind.clone(), status, text("trace_sha256")));
                }
                "task-failed-to-start" => facts.end = end("failed-to-start"),
                "task-interrupted" => facts.end = end("interrupted"),
                "staging-applied" | "staging-apply-approved" => facts.applied = true,
                _ => {}
            }
        }
        if let Some(action) = r.kind.strip_prefix("action-")
            && let Some(id) = r.detail.get("action").and_then(serde_json::Value::as_u64)
        {
            let facts = self.actions.entry(id).or_default();
            facts.first.get_or_insert((r.seq, r.kind.clone()));
            match action {
                "pending" => facts.pending = Some((r.seq, text("hash").unwrap_or_default())),
                "approved" => facts.approved = true,
                "performed" | "failed" => facts.settled = Some(action.to_owned()),
                _ => {}
            }
        }
    }

    /// The hash of record `seq` if the store asked for it and the log holds it.
    pub(super) fn hash_at(&self, seq: u64) -> Option<&str> {
        self.wanted.get(&seq).and_then(|h| h.as_deref())
    }
}

/// What the world says now, beyond the snapshot: whether a host process still runs, and
/// whether a row committed after the snapshot was taken exists.
pub(super) trait Now {
    /// Whether the host process `owner` still holds its lock.
    fn alive(&self, owner: &str) -> bool;
    /// Whether task `id` exists in the store now.
    fn task_exists(&self, id: u64) -> bool;
    /// Whether action `id` exists in the store now.
    fn action_exists(&self, id: u64) -> bool;
}

/// What the comparison found that is not a mismatch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Findings {
    /// Tasks left `running` by a host process that is gone (interrupted at the next open).
    pub awaiting_recovery: Vec<u64>,
    /// Tasks a live host is running.
    pub running: Vec<u64>,
    /// The furthest record a task row vouches for.
    pub vouched_to: Option<u64>,
}

/// Compare the store's `witness` with the `facts` of a log of `records` records (`store` false
/// when there is no state store at all). Tasks first, then actions, each in id order.
///
/// # Errors
///
/// The first [`Mismatch`].
pub(super) fn compare(
    witness: &StoreWitness,
    facts: &LogFacts,
    records: u64,
    store: bool,
    now: &dyn Now,
) -> Result<Findings, Mismatch> {
    let mut found = Findings {
        vouched_to: witness
            .tasks
            .iter()
            .filter_map(|t| t.log_head.as_ref().map(|h| h.seq))
            .max(),
        ..Findings::default()
    };
    let rows: BTreeMap<u64, &TaskWitness> = witness.tasks.iter().map(|t| (t.id, t)).collect();
    let ids: BTreeSet<u64> = rows.keys().chain(facts.tasks.keys()).copied().collect();
    let none = TaskFacts::default();
    for id in ids {
        let f = facts.tasks.get(&id).unwrap_or(&none);
        match rows.get(&id) {
            Some(row) => check_task(row, f, facts, records, &mut found, now)?,
            None => {
                if let Some((seq, kind)) = f.first.clone() {
                    if !store {
                        return Err(Mismatch::NoStore {
                            task: id,
                            seq,
                            kind,
                        });
                    }
                    if !now.task_exists(id) {
                        return Err(Mismatch::TaskNotInStore {
                            task: id,
                            seq,
                            kind,
                        });
                    }
                }
            }
        }
    }
    check_actions(witness, facts, now)?;
    Ok(found)
}

fn check_task(
    row: &TaskWitness,
    f: &TaskFacts,
    facts: &LogFacts,
    records: u64,
    found: &mut Findings,
    now: &dyn Now,
) -> Result<(), Mismatch> {
    let id = row.id;
    let vouched = row.log_head.as_ref().filter(|h| h.seq > 0);
    let vouched_to = found.vouched_to;
    let missing = |record: &'static str| Mismatch::MissingRecord {
        task: id,
        status: row.status.clone(),
        record,
        records,
        cut: match vouched {
            Some(h) if h.seq > records => format!(
                "; its row was committed when the log had reached record {}, so the log was cut after record {records} (the store's task commits vouch for it up to record {})",
                h.seq,
                vouched_to.unwrap_or(h.seq),
            ),
            _ => String::new(),
        },
    };
    let (end_record, started_needed) = match row.status.as_str() {
        "running" => {
            // In flight, or left by a host that is gone: any record of it may be there or not.
            if now.alive(&row.owner) {
                found.running.push(id);
            } else {
                found.awaiting_recovery.push(id);
            }
            (None, false)
        }
        // Acknowledged and not started: its `task-queued` record may be there or not.
        "queued" => (None, false),
        // Recovery may interrupt a task that was killed before its start record was written.
        "interrupted" => (Some("task-interrupted"), false),
        // A queued task may be cancelled or refused before it starts.
        "cancelled" | "refused" => (Some("task-ended"), false),
        "failed-to-start" => (Some("task-failed-to-start"), true),
        _ => (Some("task-ended"), true),
    };
    if started_needed && !f.started {
        return Err(missing("task-started"));
    }
    if let Some((seq, logged)) = f.parent
        && logged != row.parent
    {
        let caller =
            |p: Option<u64>| p.map_or_else(|| "no task".to_string(), |p| format!("task {p}"));
        return Err(Mismatch::ParentDiffers {
            task: id,
            seq,
            stored: caller(row.parent),
            logged: caller(logged),
        });
    }
    if let Some(expected) = end_record {
        let Some((seq, kind, status, trace)) = &f.end else {
            return Err(missing(expected));
        };
        let differs = |says: String| Mismatch::EndDiffers {
            task: id,
            status: row.status.clone(),
            record: kind.clone(),
            seq: *seq,
            says,
        };
        if kind != expected || status != &row.status {
            return Err(differs(format!("`{status}`")));
        }
        if let (Some(logged), Some(stored)) = (trace, &row.trace_sha256)
            && logged != stored
        {
            return Err(differs(format!(
                "its trace hashes to {logged}, but the stored trace hashes to {stored}"
            )));
        }
    }
    if row.staging == "applied" && !f.applied {
        return Err(missing("staging-applied"));
    }
    if let Some(h) = vouched {
        let lost = |found: String| Mismatch::HeadLost {
            task: id,
            seq: h.seq,
            hash: h.hash.clone(),
            found,
        };
        match facts.hash_at(h.seq) {
            _ if h.seq > records => {
                return Err(lost(format!("the log ends at record {records}")));
            }
            Some(hash) if h.matches(hash) => {}
            _ => return Err(lost(format!("the log's record {} is another", h.seq))),
        }
    }
    Ok(())
}

fn check_actions(witness: &StoreWitness, facts: &LogFacts, now: &dyn Now) -> Result<(), Mismatch> {
    let rows: BTreeMap<u64, _> = witness.actions.iter().map(|a| (a.id, a)).collect();
    let ids: BTreeSet<u64> = rows.keys().chain(facts.actions.keys()).copied().collect();
    let none = ActionFacts::default();
    for id in ids {
        let f = facts.actions.get(&id).unwrap_or(&none);
        let Some(row) = rows.get(&id) else {
            if let Some((seq, kind)) = f.first.clone()
                && !now.action_exists(id)
            {
                return Err(Mismatch::ActionNotInStore {
                    action: id,
                    seq,
                    kind,
                });
            }
            continue;
        };
        let not_in_log = |why: String| Mismatch::ActionNotInLog {
            action: id,
            task: row.task,
            status: row.status.clone(),
            why,
        };
        match &f.pending {
            // Hosts before this one stored an action whose record could not be written as
            // `failed`, with no record at all; it can never be approved.
            None if row.status == "failed" && f.first.is_none() => continue,
            None => return Err(not_in_log("has no action-pending record for it".into())),
            Some((seq, hash)) if hash != &row.hash => {
                return Err(not_in_log(format!(
                    "records it (record {seq}) with hash {hash}, not the stored {}",
                    row.hash
                )));
            }
            Some(_) => {}
        }
        let settled = f.settled.as_deref();
        let fine = match row.status.as_str() {
            // An approval recorded just before a crash leaves it pending; it is still one-shot.
            "pending" => settled.is_none(),
            // Performed (or failed), and stopped before the store said which.
            "performing" => f.approved,
            status @ ("performed" | "failed") => f.approved && settled == Some(status),
            _ => false,
        };
        if !fine {
            let says = match (f.approved, settled) {
                (false, _) => "has no action-approved record for it".to_string(),
                (true, None) => "does not record how it ended".to_string(),
                (true, Some(s)) => format!("records it {s}"),
            };
            return Err(not_in_log(says));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "crosscheck_tests.rs"]
mod tests;
