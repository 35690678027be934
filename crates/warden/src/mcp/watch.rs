//! Noticing agents added to or removed from the agents folder, once per server: one watcher
//! ([`AgentsWatch`], held by the server's state) wakes on the kernel's inotify events for the
//! folders the agents are listed from ([`events`]), lists the names again a few milliseconds
//! after an event (no agent loaded: a directory listing), and publishes the names on a
//! `tokio::sync::watch` channel when they changed. A poll every [`super::WATCH_EVERY`] backs it
//! up: for folders inotify cannot watch or does not hear (a network or FUSE mount reports only
//! the changes made through this kernel), a folder created or replaced after the watch began,
//! and an event lost to a full queue. Every MCP session and every 2026-07-28 `subscriptions/listen`
//! stream subscribes ([`announce_changes`]) and announces each change to its client.
//!
//! The watcher runs only while someone listens: the first subscriber starts it, and it stops
//! once the last one is gone (so a server nobody listens to lists nothing).

mod events;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

/// The names of the agents served, sorted; `None` until a listing could be read.
pub(crate) type Names = Option<Vec<String>>;

/// How long the watcher waits after an event before listing, so that a burst (a component
/// copied in, then its policy) is one listing and, when the names changed, one announcement.
const SETTLE: Duration = Duration::from_millis(10);

/// Lists the agents' names now (blocking: a directory listing); `Err` when the folder cannot
/// be read.
pub(crate) type ListNames = dyn Fn() -> Result<Vec<String>, String> + Send + Sync;

/// One server's watcher of its agents folders (see the module's docs).
pub(crate) struct AgentsWatch {
    folders: Vec<PathBuf>,
    list: Arc<ListNames>,
    poll_every: Duration,
    /// The running watcher's channel; `None` while nobody listens.
    running: Mutex<Option<Arc<watch::Sender<Names>>>>,
}

impl std::fmt::Debug for AgentsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentsWatch")
            .field("folders", &self.folders)
            .field("poll_every", &self.poll_every)
            .finish_non_exhaustive()
    }
}

impl AgentsWatch {
    /// A watcher of `folders` (where the names `list` gives come from), polling every
    /// [`super::WATCH_EVERY`] besides. Nothing runs until [`AgentsWatch::subscribe`].
    pub(crate) fn new(folders: Vec<PathBuf>, list: Arc<ListNames>) -> Self {
        Self::polling_every(folders, list, super::WATCH_EVERY)
    }

    /// As [`AgentsWatch::new`], with another poll interval.
    pub(crate) fn polling_every(
        folders: Vec<PathBuf>,
        list: Arc<ListNames>,
        poll_every: Duration,
    ) -> Self {
        AgentsWatch {
            folders,
            list,
            poll_every,
            running: Mutex::new(None),
        }
    }

    /// The names as they are now, then each change: starts the watcher if nobody listened.
    pub(crate) async fn subscribe(self: &Arc<Self>) -> watch::Receiver<Names> {
        let mut running = self.running.lock().await;
        if let Some(sender) = running.as_ref() {
            return sender.subscribe();
        }
        // Watched, then listed, before the first subscriber returns: a change made after it
        // subscribed is a change to it, and an event the watcher hears.
        let events = events::FolderEvents::new(&self.folders);
        let (sender, receiver) = watch::channel(self.list_now().await);
        let sender = Arc::new(sender);
        *running = Some(sender.clone());
        tokio::spawn(self.clone().run(events, sender));
        receiver
    }

    /// The names, listed off the async workers; `None` when the folder cannot be read.
    async fn list_now(&self) -> Names {
        let list = self.list.clone();
        tokio::task::spawn_blocking(move || list()).await.ok()?.ok()
    }

    /// Wake on events and polls, publish the names when they changed; stop when the last
    /// subscriber is gone.
    async fn run(
        self: Arc<Self>,
        mut events: events::FolderEvents,
        names: Arc<watch::Sender<Names>>,
    ) {
        let mut poll = tokio::time::interval(self.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                () = names.closed() => {
                    let mut running = self.running.lock().await;
                    // A subscriber may have come between the wake and the lock: it holds
                    // the lock to subscribe, so the count read here is final.
                    if names.receiver_count() == 0 {
                        *running = None;
                        return;
                    }
                    continue;
                }
                () = events.changed() => {
                    tokio::time::sleep(SETTLE).await;
                    events.drain();
                }
                _ = poll.tick() => events.rewatch(),
            }
            // An unreadable folder is no change: the next listing that reads decides.
            let Some(listed) = self.list_now().await else {
                continue;
            };
            names.send_if_modified(|known| {
                let changed = known.as_ref() != Some(&listed);
                if changed {
                    *known = Some(listed);
                }
                changed
            });
        }
    }
}

/// Announce each change of `changes` with `announce` until `alive` says the client is gone (it
/// is asked at each change and every [`super::WATCH_EVERY`]), `announce` fails, or the watcher
/// stops. Only a change of the names is announced: a replaced component keeps its name.
pub(super) async fn announce_changes<A, F>(
    mut changes: watch::Receiver<Names>,
    alive: impl Fn() -> bool,
    announce: A,
) where
    A: Fn() -> F,
    F: Future<Output = bool>,
{
    let mut known = changes.borrow_and_update().clone();
    let mut check = tokio::time::interval(super::WATCH_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() || !alive() {
                    return;
                }
                let names = changes.borrow_and_update().clone();
                if names.is_some() && names != known {
                    known = names;
                    if !announce().await {
                        return;
                    }
                }
            }
            _ = check.tick() => {
                if !alive() {
                    return;
                }
            }
        }
    }
}
