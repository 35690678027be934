//! Task starts written late: a task whose grant reaches nothing outside the host but the files
//! it reads and the agents it calls may keep its start (its row and `task-started` record) in
//! memory, its id reserved ([`Ledger::defer_task`]). So may the tasks it calls, and what they
//! leave: a callee's completed end, the caller's `agent-call` record
//! ([`Ledger::record_deferred`]). A task deferred with no deferred caller is the root of a
//! *deferred tree*; the tree is written as one group commit (its rows begun, its records in the
//! order they came, its rows ended: one audit append) when its root ends, or sooner when
//! something needs it written: a record naming one of its tasks ([`Ledger::record`],
//! [`Ledger::hold_action`]), a callee that cannot be deferred, a callee that did not complete
//! (its demotion must not wait), or a runner asking ([`Ledger::write_deferred`]: before it
//! applies staged files, once a task has run for a while, when a run is dropped). A tree once
//! written is written no more as a tree: its tasks' later writes go straight to the ledger.
//!
//! What this keeps of "a kill loses no acknowledged task and no record": a tree is written
//! before anything of it can be seen outside the process (a record, a row, a result, an applied
//! file), so a process killed meanwhile loses only tasks that nobody was told of and that
//! changed nothing — as if it had been killed just before they began. Trees still deferred when
//! the ledger closes are written then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::commit::{Item, Job};
use super::{Ledger, LedgerError};
use crate::audit::AuditEvent;
use crate::store::{StateStore, TaskEnd, TaskRecord, TrustRecord};

/// How a task's end is written ([`Ledger::end_deferred`]).
pub(super) enum Ending {
    /// Its start was written: the end goes as any end.
    Written(Vec<AuditEvent>, TaskEnd),
    /// A callee that completed in a deferred tree: its end waits in the tree (here, as kept).
    Waits(TaskEnd),
    /// The job that writes its tree with it (the tree's root, or a callee that did not
    /// complete).
    Tree(Job),
}

/// The deferred trees, and how many tasks they hold (read without the lock).
#[derive(Default)]
pub(super) struct Deferred {
    trees: Mutex<Trees>,
    count: AtomicUsize,
}

/// Each deferred task's root (`root_of` while it runs, `ended_in` once its end waits in the
/// tree), each root's items in the order they came, and the agents whose ends wait in a tree
/// (by trust identity: the trees' roots).
#[derive(Default)]
struct Trees {
    root_of: HashMap<u64, u64>,
    ended_in: HashMap<u64, u64>,
    items: HashMap<u64, Vec<Item>>,
    ends_of: HashMap<String, Vec<u64>>,
}

impl Trees {
    /// Take the tree of `root`: its items, and its tasks out of every index.
    fn take(&mut self, root: u64) -> Vec<Item> {
        let items = self.items.remove(&root).unwrap_or_default();
        for item in &items {
            if let Item::Begin(task, _) = item {
                self.root_of.remove(&task.id);
                self.ended_in.remove(&task.id);
            }
        }
        self.ends_of.retain(|_, roots| {
            roots.retain(|r| *r != root);
            !roots.is_empty()
        });
        items
    }
}

impl Deferred {
    fn lock(&self) -> MutexGuard<'_, Trees> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recount(&self, trees: &Trees) {
        self.count.store(
            trees.root_of.len() + trees.ended_in.len(),
            Ordering::Release,
        );
    }

    /// Take the whole tree task `id` belongs to, if it is deferred.
    fn take_tree(&self, id: u64) -> Option<Vec<Item>> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut trees = self.lock();
        let root = trees
            .root_of
            .get(&id)
            .or_else(|| trees.ended_in.get(&id))
            .copied()?;
        let items = trees.take(root);
        self.recount(&trees);
        Some(items)
    }

    /// Add `item` to task `id`'s tree if it is deferred; give it back otherwise.
    fn add(&self, id: u64, item: Item) -> Option<Item> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Some(item);
        }
        let mut trees = self.lock();
        let Some(root) = trees
            .root_of
            .get(&id)
            .or_else(|| trees.ended_in.get(&id))
            .copied()
        else {
            return Some(item);
        };
        trees.items.entry(root).or_default().push(item);
        None
    }

    /// Every tree (the ledger is closing).
    fn take_all(&self) -> Vec<Vec<Item>> {
        let mut trees = self.lock();
        trees.root_of.clear();
        trees.ended_in.clear();
        trees.ends_of.clear();
        self.recount(&trees);
        let mut all: Vec<(u64, Vec<Item>)> = trees.items.drain().collect();
        all.sort_by_key(|(root, _)| *root);
        all.into_iter().map(|(_, items)| items).collect()
    }
}

impl Ledger {
    /// Begin a task without writing it yet (see the module docs): its id is reserved and
    /// returned in its row; its row and `started` (given the id as its task) are written with
    /// its tree. A task whose caller is deferred joins its caller's tree.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when no id can be reserved: the task must not start.
    pub fn defer_task(
        &self,
        mut task: TaskRecord,
        mut started: AuditEvent,
    ) -> Result<TaskRecord, LedgerError> {
        let id = self.behind.next_id()?;
        task.id = id;
        started.task = Some(id);
        let row = task.clone();
        {
            let mut trees = self.deferred.lock();
            let root = task
                .parent
                .and_then(|p| trees.root_of.get(&p).copied())
                .unwrap_or(id);
            trees.root_of.insert(id, root);
            trees
                .items
                .entry(root)
                .or_default()
                .push(Item::Begin(task, started));
            self.deferred.recount(&trees);
        }
        self.committer.opened();
        Ok(row)
    }

    /// Write the deferred tree task `id` belongs to now; nothing to do when it is not deferred.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the tree cannot be written: its tasks must not go on.
    pub fn write_deferred(&self, id: u64) -> Result<(), LedgerError> {
        match self.deferred.take_tree(id) {
            Some(items) => self.committer.submit(self, Job::Tree { items }).map(drop),
            None => Ok(()),
        }
    }

    /// [`Ledger::write_deferred`] for an async caller (it waits for a batch under way without
    /// blocking its thread).
    ///
    /// # Errors
    ///
    /// As [`Ledger::write_deferred`].
    pub async fn write_deferred_async(&self, id: u64) -> Result<(), LedgerError> {
        match self.deferred.take_tree(id) {
            Some(items) => self
                .committer
                .submit_async(self, Job::Tree { items })
                .await
                .map(drop),
            None => Ok(()),
        }
    }

    /// `agent_id`'s trust record, as the next task of that agent must read it: after writing
    /// the deferred trees in which an end of that agent waits (the trust record such an end
    /// brings is the newest), if there are any.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when that tree cannot be written or the store cannot be read.
    pub fn trust(&self, agent_id: &str) -> Result<Option<TrustRecord>, LedgerError> {
        if self.deferred.count.load(Ordering::Acquire) != 0 {
            let waiting = self.deferred.lock().ends_of.get(agent_id).cloned();
            for root in waiting.unwrap_or_default() {
                self.write_deferred(root)?;
            }
        }
        Ok(self.store.trust(agent_id)?)
    }

    /// Whether task `id` runs with its start deferred (not once its end waits in its tree).
    pub fn is_deferred(&self, id: u64) -> bool {
        self.deferred_root(id).is_some()
    }

    /// The root of the deferred tree task `id` runs in (itself, or the caller at the top of its
    /// chain), `None` when its start is not deferred (any more).
    pub fn deferred_root(&self, id: u64) -> Option<u64> {
        if self.deferred.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.deferred.lock().root_of.get(&id).copied()
    }

    /// Append `event`, a record about what a task did, with the task's deferred tree if it is
    /// deferred (it is written with the tree, in its order); as [`Ledger::record`] otherwise.
    /// For records that change nothing outside the host (an agent call's outcome).
    ///
    /// # Errors
    ///
    /// As [`Ledger::record`].
    pub fn record_deferred(&self, event: AuditEvent) -> Result<(), LedgerError> {
        let Some(task) = event.task else {
            return self.record(event).map(drop);
        };
        match self.deferred.add(task, Item::Record(event)) {
            None => Ok(()),
            Some(Item::Record(event)) => self.record(event).map(drop),
            Some(_) => Err(LedgerError::CommitPanicked),
        }
    }

    /// The deferred tree of `task` written, if it has one (before a write that names it: a
    /// record about it, a callee's row naming it as caller).
    pub(super) fn write_tree_of(&self, task: Option<u64>) -> Result<(), LedgerError> {
        match task {
            Some(t) => self.write_deferred(t),
            None => Ok(()),
        }
    }

    /// The end of task `end.id`, given its deferral (see [`Ending`]).
    pub(super) fn end_deferred(&self, records: Vec<AuditEvent>, end: TaskEnd) -> Ending {
        if self.deferred.count.load(Ordering::Acquire) == 0 {
            return Ending::Written(records, end);
        }
        let id = end.id;
        let mut trees = self.deferred.lock();
        let Some(root) = trees.root_of.get(&id).copied() else {
            return Ending::Written(records, end);
        };
        if root != id && end.status == "completed" {
            let kept = end.clone();
            // It runs no more (`is_deferred` is false), but a record naming it still writes
            // its tree first.
            trees.root_of.remove(&id);
            trees.ended_in.insert(id, root);
            // Its agent's next task reads the trust record this end brings (`Ledger::trust`).
            if let Some(trust) = &end.trust {
                let roots = trees.ends_of.entry(trust.agent_id.clone()).or_default();
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
            self.deferred.recount(&trees);
            trees
                .items
                .entry(root)
                .or_default()
                .push(Item::End(records, end));
            drop(trees);
            self.committer.closed();
            return Ending::Waits(kept);
        }
        // Its tree (its root's, or its own as the root) written with it, taken under the same
        // lock.
        let mut items = trees.take(root);
        self.deferred.recount(&trees);
        drop(trees);
        items.push(Item::End(records, end));
        self.committer.closed();
        Ending::Tree(Job::Tree { items })
    }

    /// Write every tree still deferred (the ledger is closing: those tasks are running).
    pub(super) fn write_all_deferred(&self) {
        for items in self.deferred.take_all() {
            if let Err(e) = self.committer.submit(self, Job::Tree { items }) {
                tracing::error!(target: "warden::ledger", error = %e, "could not write a deferred task tree");
            }
        }
    }
}
