//! The server's task queue in memory, and its fair order (host config `[server]`): at most
//! `max_queued` tasks held (queued or running), all users together, and `per_user_queued` of one
//! user, so a flood cannot take every place — past either a submission is refused (`429`,
//! `Retry-After`) before anything is stored. Of the held tasks at most `workers` run at once,
//! and at most `per_user` of one user's; the next task to start is taken round-robin between
//! the users who have one waiting, so one user's flood waits behind everyone else's turn.
//!
//! The durable side is the ledger's (`queued` rows, `work.rs`): this holds what a runner needs
//! (the job), each task's end watch, and the signal that cancels it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use warden_policy::ServerSettings;

use super::ApiError;

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
    /// Dropped when the task ends: its watchers wake.
    done: watch::Sender<()>,
}

/// A place admitted for one task of a user, given back if dropped before
/// [`Queue::push`] took it (the task could not be stored).
#[derive(Debug)]
pub(crate) struct Place<J> {
    queue: Arc<Queue<J>>,
    user: String,
    taken: bool,
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

    /// The running task `id` ended: its place comes back, its watchers wake.
    pub(crate) fn finish(&self, id: u64) {
        let mut l = self.lanes();
        if let Some(t) = l.tasks.remove(&id) {
            l.running = l.running.saturating_sub(1);
            l.release(&t.user, true);
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

    /// A watch that changes (closes) when task `id` ends, if this server holds it.
    pub(crate) fn watch(&self, id: u64) -> Option<watch::Receiver<()>> {
        self.lanes().tasks.get(&id).map(|t| t.done.subscribe())
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
                done: watch::channel(()).0,
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
