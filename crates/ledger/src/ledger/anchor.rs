//! Anchoring the checkpoints the run path signs, off the run path: syncing the log to disk and
//! rewriting `audit.anchor` take milliseconds (two `fsync`s), so a checkpoint falling due in a
//! group commit is signed and appended there, and its anchoring handed to one background
//! thread. The thread anchors the newest checkpoint handed to it (an older one still waiting
//! is skipped: the newer one vouches for more); the log is synced before the anchor is written,
//! as [`AuditLog::checkpoint`] does, so an anchor never vouches for records not on disk. A
//! failure is kept and returned by the next [`Anchorer::hand`], so the run path fails closed.
//! Dropping the anchorer anchors what is still waiting and stops the thread.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::audit::{AuditLog, Checkpoint};

#[derive(Default)]
struct Slot {
    next: Option<Checkpoint>,
    busy: bool,
    failed: Option<String>,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The background anchoring of one ledger's checkpoints (see the module docs).
#[derive(Default)]
pub(super) struct Anchorer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Anchorer {
    /// Hand `checkpoint` (already appended to `audit`) to the thread, starting it if needed.
    ///
    /// # Errors
    ///
    /// Why an earlier checkpoint could not be anchored (reported once).
    pub(super) fn hand(&self, audit: &Arc<AuditLog>, checkpoint: Checkpoint) -> Result<(), String> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_none() {
            let shared = Arc::clone(&self.shared);
            let audit = Arc::clone(audit);
            let spawned = std::thread::Builder::new()
                .name("warden-anchor".into())
                .spawn(move || anchor_loop(&shared, &audit))
                .map_err(|e| format!("cannot start the anchoring thread: {e}"))?;
            *thread = Some(spawned);
        }
        drop(thread);
        let mut slot = self.shared.lock();
        if let Some(failed) = slot.failed.take() {
            return Err(failed);
        }
        slot.next = Some(checkpoint);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Wait until every checkpoint handed so far is anchored (or failed).
    pub(super) fn settle(&self) {
        let mut slot = self.shared.lock();
        while slot.next.is_some() || slot.busy {
            slot = self
                .shared
                .changed
                .wait(slot)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Anchorer {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.get_mut().ok().and_then(Option::take) {
            let _ = thread.join();
        }
    }
}

fn anchor_loop(shared: &Shared, audit: &AuditLog) {
    let mut slot = shared.lock();
    loop {
        if let Some(checkpoint) = slot.next.take() {
            slot.busy = true;
            drop(slot);
            let anchored = audit.anchor(&checkpoint);
            slot = shared.lock();
            slot.busy = false;
            if let Err(e) = anchored {
                tracing::error!(target: "warden::ledger", error = %e, "could not anchor an audit checkpoint");
                slot.failed = Some(e.to_string());
            }
            shared.changed.notify_all();
            continue;
        }
        if slot.closing {
            return;
        }
        slot = shared.changed.wait(slot).unwrap_or_else(|p| p.into_inner());
    }
}
