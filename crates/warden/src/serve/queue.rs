//! The server's task queue in memory, and its fair order (host config `[server]`): at most
//! `max_queued` tasks held (queued or running), all users together, and `per_user_queued` of one
//! user, so a flood cannot take every place — past either a submission is refused (`429`,
//! `Retry-After`) before anything is stored. Of the held tasks at most `workers` run at once,
//! and at most `per_user` of one user's; the next task to start is taken round-robin between
//! the users who have one waiting, so one user's flood waits behind everyone else's turn.
//!
//! The durable side is the ledger's (`queued` rows, `work.rs`): this holds what a runner needs
//! (the job), each task's end watch (which carries its ended row to the waiters), and the signal
//! that cancels it. A synchronous caller's task may skip the waiting line ([`Queue::start_now`])
//! when a worker is free for its user and no one who could start is waiting: it is counted as
//! running from then on, under the same bounds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use warden_policy::ServerSettings;

use super::ApiError;
use crate::store::TaskRecord;

/// How many ended rows [`Queue::finish`] keeps for waiters not yet come.
const HANDED: usize = 256;

/// What [`Queue::watch`] found of a task.
#[derive(Debug)]
pub(crate) enum Held {
    /// It is queued or running here: its end watch, and its user.
    Tracked(watch::Receiver<Ended>, String),
    /// It ended here, just now: its row.
    Ended(Arc<TaskRecord>),
    /// This server does not hold it (ended a while ago, or never here).
    Unknown,
}

/// What a task's end watch carries: its row as it ended, once it has (`None` before).
pub(crate) type Ended = Option<Arc<TaskRecord>>;

/// The held tasks (jobs of type `J`) and their bounds.
#[derive(Debug)]
pub(crate) struct Queue<J> {
    bounds: ServerSettings,
    lanes: Mutex<Lanes<J>>,
}

#[derive(Debug)]
struct Lanes<J> {
    users: HashMap<String, Lane>,
    /// Users with a task waiting, in the order they get their next turn.
    turn: VecDeque<String>,
    tasks: HashMap<u64, Tracked<J>>,
    /// Ended rows of synchronous callers' tasks, for their waiters (oldest first).
    handed: VecDeque<Arc<TaskRecord>>,
    held: usize,
    running: usize,
    /// No task starts any more (a shutdown): queued ones stay queued in the store.
    closed: bool,
}

impl<J> Default for Lanes<J> {
    fn default() -> Self {
        Lanes {
            users: HashMap::new(),
            turn: VecDeque::new(),
            tasks: HashMap::new(),
            handed: VecDeque::new(),
            held: 0,
            running: 0,
            closed: false,
        }
    }
}

/// One user's tasks: waiting (oldest first) and running; `held` counts both and the places
/// admitted and not yet pushed.
#[derive(Debug, Default)]
struct Lane {
    waiting: VecDeque<u64>,
    running: usize,
    held: usize,
}

#[derive(Debug)]
struct Tracked<J> {
    user: String,
    /// The job while it waits; taken when it starts.
    job: Option<J>,
    /// Who asked to cancel it (set once).
    cancel: watch::Sender<Option<String>>,
    /// Set to the ended row (when its runner read it) and dropped when the task ends: its
    /// watchers wake.
    done: watch::Sender<Ended>,
}

/// A place admitted for one task of a user, given back if dropped before
/// [`Queue::push`] took it (the task could not be stored).
#[derive(Debug)]
pub(crate) struct Place<J> {
    queue: Arc<Queue<J>>,
    user: String,
    taken: bool,
}

/// A worker taken at once for a task of a user that skipped the waiting line
/// ([`Queue::start_now`]), before its row exists; [`Slot::began`] tracks it under its id. Dropped
/// before that (the run could not begin), its worker and place come back; after, the task ends
/// with [`Queue::finish`].
#[derive(Debug)]
pub(crate) struct Slot<J> {
    queue: Arc<Queue<J>>,
    user: String,
    id: std::sync::OnceLock<u64>,
}

/// A task to start now: its id, its job, and the signal that cancels it (the canceller's name).
#[derive(Debug)]
pub(crate) struct Start<J> {
    pub id: u64,
    pub job: J,
    pub cancel: watch::Receiver<Option<String>>,
}

/// What [`Queue::cancel`] found.
#[derive(Debug)]
pub(crate) enum Cancelled<J> {
    /// It was waiting: taken out of the queue, never to start; its job, to close its row.
    Waiting(J),
    /// It is running: told to stop (its runner closes its row).
    Running,
    /// This server does not hold it (ended, or never here).
    Unknown,
}

impl<J> Queue<J> {
    /// An empty queue with `bounds`.
    pub(crate) fn new(bounds: ServerSettings) -> Self {
        Queue {
            bounds,
            lanes: Mutex::new(Lanes::default()),
        }
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes<J>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many tasks wait and how many run.
    pub(crate) fn depth(&self) -> (usize, usize) {
        let l = self.lanes();
        (l.held.saturating_sub(l.running), l.running)
    }

    /// A place for one more task of `user`, or `429 queue-full` / `429 user-busy`.
    pub(crate) fn admit(self: &Arc<Self>, user: &str) -> Result<Place<J>, ApiError> {
        let mut l = self.lanes();
        if l.held >= self.bounds.max_queued {
            return Err(ApiError::busy(
                "queue-full",
                format!(
                    "the server holds {} tasks, its bound ([server] max_queued); try again after Retry-After",
                    self.bounds.max_queued
                ),
            ));
        }
        let lane = l.users.entry(user.to_owned()).or_default();
        if lane.held >= self.bounds.per_user_queued {
            let mine = lane.held;
            return Err(ApiError::busy(
                "user-busy",
                format!(
                    "this user holds {mine} tasks queued or running, the bound per user ([server] per_user_queued); wait for one to end, then try again"
                ),
            ));
        }
        lane.held += 1;
        l.held += 1;
        Ok(Place {
            queue: self.clone(),
            user: user.to_owned(),
            taken: false,
        })
    }

    /// Queue the stored task `id` in `place`.
    pub(crate) fn push(&self, mut place: Place<J>, id: u64, job: J) {
        place.taken = true;
        let mut l = self.lanes();
        l.wait(&place.user, id, job);
    }

    /// Queue task `id` in `place` unless this queue holds it already (a second resume of one
    /// escalated cascade); false, the place given back, when it does.
    pub(crate) fn push_unheld(&self, mut place: Place<J>, id: u64, job: J) -> bool {
        let mut l = self.lanes();
        if l.tasks.contains_key(&id) {
            // Unlocked before the place is given back (its drop takes the lock).
            drop(l);
            drop(place);
            return false;
        }
        place.taken = true;
        l.wait(&place.user, id, job);
        true
    }

    /// Whether this queue holds task `id`: `Some(true)` waiting, `Some(false)` running.
    pub(crate) fn holds(&self, id: u64) -> Option<bool> {
        self.lanes().tasks.get(&id).map(|t| t.job.is_some())
    }

    /// Queue the stored task `id` of `user` found at start (a restart): held whatever the
    /// bounds, as it was acknowledged before.
    pub(crate) fn resume(&self, user: &str, id: u64, job: J) {
        let mut l = self.lanes();
        l.users.entry(user.to_owned()).or_default().held += 1;
        l.held += 1;
        l.wait(user, id, job);
    }

    /// The next task to start, if a worker is free and a user with one waiting is under their
    /// running cap: users take turns, oldest task first within a user.
    pub(crate) fn next(&self) -> Option<Start<J>> {
        let mut guard = self.lanes();
        let l = &mut *guard;
        if l.closed || l.running >= self.bounds.workers {
            return None;
        }
        for _ in 0..l.turn.len() {
            let user = l.turn.pop_front()?;
            let Some(lane) = l.users.get_mut(&user) else {
                continue;
            };
            if lane.running >= self.bounds.per_user {
                l.turn.push_back(user);
                continue;
            }
            let Some(id) = lane.waiting.pop_front() else {
                continue;
            };
            lane.running += 1;
            if !lane.waiting.is_empty() {
                l.turn.push_back(user);
            }
            l.running += 1;
            let tracked = l.tasks.get_mut(&id)?;
            let job = tracked.job.take()?;
            return Some(Start {
                id,
                job,
                cancel: tracked.cancel.subscribe(),
            });
        }
        None
    }

    /// Start a task of `place`'s user at once, without a turn in the waiting line, if that is
    /// fair: the queue is open, a worker is free, the user is under their running cap with
    /// nothing of theirs waiting, and no waiting user could start now. Otherwise the place comes
    /// back to be queued.
    pub(crate) fn start_now(self: &Arc<Self>, mut place: Place<J>) -> Result<Slot<J>, Place<J>> {
        let mut guard = self.lanes();
        let l = &mut *guard;
        if l.closed || l.running >= self.bounds.workers {
            drop(guard);
            return Err(place);
        }
        let per_user = self.bounds.per_user;
        let startable = |u: &String| l.users.get(u).is_some_and(|lane| lane.running < per_user);
        if l.turn.iter().any(startable) {
            drop(guard);
            return Err(place);
        }
        let Some(lane) = l.users.get_mut(&place.user) else {
            drop(guard);
            return Err(place);
        };
        if lane.running >= per_user || !lane.waiting.is_empty() {
            drop(guard);
            return Err(place);
        }
        lane.running += 1;
        l.running += 1;
        place.taken = true;
        Ok(Slot {
            queue: self.clone(),
            user: std::mem::take(&mut place.user),
            id: std::sync::OnceLock::new(),
        })
    }

    /// The running task `id` ended (its row `ended`, if read): its place comes back, its
    /// watchers wake with the row. With `handed` and no one watching yet, the row is kept for
    /// the waiter about to come (a synchronous caller's, [`Queue::start_now`]), at most
    /// [`HANDED`] of them, oldest dropped first.
    pub(crate) fn finish(&self, id: u64, ended: Ended, handed: bool) {
        let mut l = self.lanes();
        if let Some(t) = l.tasks.remove(&id) {
            l.running = l.running.saturating_sub(1);
            l.release(&t.user, true);
            if let Some(row) = &ended
                && handed
                && t.done.receiver_count() == 0
            {
                if l.handed.len() >= HANDED {
                    l.handed.pop_front();
                }
                l.handed.push_back(row.clone());
            }
            drop(l);
            if ended.is_some() {
                t.done.send_replace(ended);
            }
        }
    }

    /// Stop task `id` for `by`: a waiting one is taken out (its watchers wake once its row is
    /// closed and [`Queue::forget`] is called); a running one is signalled.
    pub(crate) fn cancel(&self, id: u64, by: &str) -> Cancelled<J> {
        let mut guard = self.lanes();
        let l = &mut *guard;
        let Some(t) = l.tasks.get_mut(&id) else {
            return Cancelled::Unknown;
        };
        match t.job.take() {
            Some(job) => {
                if let Some(lane) = l.users.get_mut(&t.user) {
                    lane.waiting.retain(|w| *w != id);
                }
                Cancelled::Waiting(job)
            }
            None => {
                t.cancel.send_if_modified(|who| {
                    who.get_or_insert_with(|| by.to_owned());
                    true
                });
                Cancelled::Running
            }
        }
    }

    /// The cancelled waiting task `id` is closed: its place comes back, its watchers wake.
    pub(crate) fn forget(&self, id: u64) {
        let mut l = self.lanes();
        if let Some(t) = l.tasks.remove(&id) {
            l.release(&t.user, false);
        }
    }

    /// What this server holds of task `id`: a watch that changes (to the ended row, then
    /// closes) when it ends and whose task it is; or its ended row, not yet handed to a waiter
    /// (taken now: a later wait reads the store); or nothing.
    pub(crate) fn watch(&self, id: u64) -> Held {
        let mut l = self.lanes();
        if let Some(t) = l.tasks.get(&id) {
            return Held::Tracked(t.done.subscribe(), t.user.clone());
        }
        match l.handed.iter().position(|r| r.id == id) {
            Some(at) => l.handed.remove(at).map_or(Held::Unknown, Held::Ended),
            None => Held::Unknown,
        }
    }

    /// Whether anyone watches task `id`'s end (so its ended row is worth reading for them).
    pub(crate) fn watched(&self, id: u64) -> bool {
        self.lanes()
            .tasks
            .get(&id)
            .is_some_and(|t| t.done.receiver_count() > 0)
    }

    /// Start no more tasks (a shutdown); the waiting ones stay queued in the store.
    pub(crate) fn close(&self) {
        self.lanes().closed = true;
    }
}

impl<J> Lanes<J> {
    fn wait(&mut self, user: &str, id: u64, job: J) {
        let lane = self.users.entry(user.to_owned()).or_default();
        lane.waiting.push_back(id);
        if lane.waiting.len() == 1 && !self.turn.iter().any(|u| u == user) {
            self.turn.push_back(user.to_owned());
        }
        self.tasks.insert(
            id,
            Tracked {
                user: user.to_owned(),
                job: Some(job),
                cancel: watch::channel(None).0,
                done: watch::channel(None).0,
            },
        );
    }

    fn release(&mut self, user: &str, running: bool) {
        self.held = self.held.saturating_sub(1);
        if let Some(lane) = self.users.get_mut(user) {
            lane.held = lane.held.saturating_sub(1);
            if running {
                lane.running = lane.running.saturating_sub(1);
            }
            if lane.held == 0 {
                self.users.remove(user);
            }
        }
    }
}

impl<J> Slot<J> {
    /// The task began as `id` (its row is stored): tracked as running from now on, so it can
    /// be watched, and cancelled through `cancel`; it ends with [`Queue::finish`].
    pub(crate) fn began(&self, id: u64, cancel: watch::Sender<Option<String>>) {
        let mut l = self.queue.lanes();
        if self.id.set(id).is_ok() {
            l.tasks.insert(
                id,
                Tracked {
                    user: self.user.clone(),
                    job: None,
                    cancel,
                    done: watch::channel(None).0,
                },
            );
        }
    }

    /// The task's id, once it began.
    pub(crate) fn id(&self) -> Option<u64> {
        self.id.get().copied()
    }
}

impl<J> Drop for Slot<J> {
    fn drop(&mut self) {
        if self.id.get().is_none() {
            let mut l = self.queue.lanes();
            l.running = l.running.saturating_sub(1);
            l.release(&self.user, true);
        }
    }
}

impl<J> Drop for Place<J> {
    fn drop(&mut self) {
        if !self.taken {
            self.queue.lanes().release(&self.user, false);
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
