//! Write-behind of the run path's task rows. A task's start and end are made durable by one
//! `write` to this process's journal (`journal/<owner>.journal`), not by a SQLite commit: the
//! kernel holds the line once the call returns, so a killed process loses nothing it
//! acknowledged ([`Durability::Process`](crate::store::Durability), as before). A writer thread
//! puts the journaled rows into the state store in batches (one transaction for as many rows as
//! came meanwhile) and empties the journal once they are there.
//!
//! What keeps the ledger's promises:
//! - Order: a task's `begin` line is written before its first audit record and its `end` line
//!   after its last, as the rows were committed before; the writer writes rows in journal order.
//! - Ids: tasks get ids from a block this ledger reserved in the store (`task_ids`), so no other
//!   process takes them while their rows are still in the journal; a ledger closing gives back
//!   what it did not use.
//! - Reads see every write: [`super::flushed`] waits for the writer before any read of the
//!   store through the ledger, and the trust records the run path reads are kept here
//!   ([`Behind::cached_trust`]), dropped when another process commits to the store.
//! - A process that stopped (killed, crashed, or a writer that could not write) leaves its
//!   journal; the next ledger to open the directory writes it into the store ([`replay`])
//!   before it interrupts that process's running tasks. `warden audit verify` beside a live
//!   host counts a task whose begin is in a journal as present ([`journaled`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::LedgerError;

mod line;
mod replay;
mod trust;
use crate::store::{BegunRow, EndedRow, LogHead, SqliteStore, StoreError};
pub(super) use line::Line;
use line::{Entry, LineIn, Numbered};
pub(super) use replay::{Unwritten, journaled, newest_head, overlay, replay, unwritten};
use trust::{FOREIGN_CHECK, TrustCache};

/// The journals' folder in the data directory.
pub(super) const JOURNAL_DIR: &str = "journal";

/// A journal this big is emptied once the writer caught up with it (emptying it at every batch
/// would make each append allocate its pages anew; lines the store holds are harmless, as
/// writing them again changes nothing).
const TRUNCATE_AT: u64 = 1 << 20;

/// A journal this big is set aside (and a new one begun) once the writer caught up with it.
const ROTATE_AT: u64 = 4 << 20;

/// How long the writer lets rows gather after the first one came, unless someone waits (a
/// read through the ledger does not: it wakes the writer at once). Under load a longer gather
/// is fewer, bigger transactions: with 8 tasks at once on 2 cores, 0.5 ms gave ~6,100 runs/s
/// with the ledger, 2 ms ~7,600, 5 ms ~8,500, 10 ms no more (`WARDEN_BENCH_ONLY=ledger`).
/// Another process reading `state.db` itself sees a row that much later; the journal holds it.
const GATHER: Duration = Duration::from_millis(5);

/// How many times a stopping writer tries a failing write before it leaves the rows in the
/// journal for the next start.
const STOP_ATTEMPTS: u32 = 20;

/// The journal, the writer's queue and how far it got.
#[derive(Default)]
struct State {
    file: Option<File>,
    size: u64,
    queue: Vec<Entry>,
    /// The batch the writer is putting into the store (taken from `queue`).
    inflight: Arc<Vec<Entry>>,
    written: u64,
    applied: u64,
    /// The set-aside journal holds entries up to this one; deleted once they are applied.
    old: Option<u64>,
    failure: Option<String>,
    stop: bool,
    /// The writer waits for work (so a new line must wake it).
    idle: bool,
    /// Someone waits for the writer (so it must not linger to gather a bigger batch).
    urgent: bool,
}

/// Task ids reserved in the store, handed out in order.
#[derive(Default)]
struct Ids {
    next: u64,
    hi: u64,
    blocks: u32,
}

/// The write-behind of one ledger (see the module docs).
pub(super) struct Behind {
    store: Arc<SqliteStore>,
    owner: String,
    dir: PathBuf,
    state: Mutex<State>,
    work: Condvar,
    caught_up: Condvar,
    ids: Mutex<Ids>,
    trust: Mutex<TrustCache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every field is consistent between statements.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Behind {
    /// Start the writer of `owner`'s journal in `dir` (the data directory) for `store`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Journal`] when the writer thread cannot be started.
    pub(super) fn start(
        store: Arc<SqliteStore>,
        owner: &str,
        dir: &Path,
    ) -> Result<(Arc<Behind>, std::thread::JoinHandle<()>), LedgerError> {
        let behind = Arc::new(Behind {
            store,
            owner: owner.to_owned(),
            dir: dir.join(JOURNAL_DIR),
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            caught_up: Condvar::new(),
            ids: Mutex::new(Ids::default()),
            trust: Mutex::new(TrustCache {
                records: HashMap::new(),
                version: None,
                checked: Instant::now() - FOREIGN_CHECK * 2,
            }),
        });
        let writer = Arc::clone(&behind);
        let handle = std::thread::Builder::new()
            .name("warden-ledger-writer".into())
            .spawn(move || writer.write_rows())
            .map_err(|source| LedgerError::Journal {
                path: behind.path(),
                source,
            })?;
        Ok((behind, handle))
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.journal", self.owner))
    }

    /// The next task id (a new block reserved in the store when this one is used up).
    pub(super) fn next_id(&self) -> Result<u64, StoreError> {
        let mut ids = lock(&self.ids);
        if ids.next == 0 || ids.next > ids.hi {
            let n = 8u64 << ids.blocks.min(7);
            let first = self.store.reserve_task_ids(n)?;
            ids.next = first;
            ids.hi = first + n - 1;
            ids.blocks += 1;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Write `lines` to the journal with one `write`, each vouching for the log's `head`, and
    /// queue them for the store. Nothing is queued if the write fails (a partial line is cut
    /// off again).
    pub(super) fn journal(&self, lines: &[Line<'_>], head: &LogHead) -> Result<(), LedgerError> {
        let entries = lines
            .iter()
            .map(|l| l.entry(head))
            .collect::<Result<Vec<Entry>, _>>()?;
        let mut buf = Vec::with_capacity(1024 * lines.len());
        let mut state = lock(&self.state);
        // Numbered in the order they are written: the store keeps how many it holds.
        for (n, entry) in (state.written + 1..).zip(&entries) {
            serde_json::to_writer(&mut buf, &entry.out(n))
                .map_err(|e| StoreError::Corrupt(format!("a journal line: {e}")))?;
            buf.push(b'\n');
        }
        let journal_err = |e: std::io::Error, path: &Path| LedgerError::Journal {
            path: path.to_path_buf(),
            source: e,
        };
        if state.file.is_none() {
            let file = open_journal(&self.path()).map_err(|e| journal_err(e, &self.path()))?;
            state.size = file.metadata().map_or(0, |m| m.len());
            state.file = Some(file);
        }
        let size = state.size;
        let file = state.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(&buf) {
            // A torn line would spoil the lines after it.
            let _ = file.set_len(size);
            return Err(journal_err(e, &self.path()));
        }
        state.size += buf.len() as u64;
        state.written += entries.len() as u64;
        state.queue.extend(entries);
        if state.idle {
            // Waking a thread is a system call: only when it sleeps.
            state.idle = false;
            self.work.notify_one();
        }
        Ok(())
    }

    /// The lines of task `id` not yet in the store, in order: its beginning (if that is still
    /// to be written) and its last end; `None` when the store holds every line of it.
    pub(super) fn pending(&self, id: u64) -> Option<(Option<BegunRow>, Option<EndedRow>)> {
        let state = lock(&self.state);
        let (mut begin, mut end) = (None, None);
        for entry in state.inflight.iter().chain(&state.queue) {
            match entry {
                Entry::Begin(t, _) if t.id == id => begin = Some(t),
                Entry::End(e, _) if e.id == id => end = Some(e),
                _ => {}
            }
        }
        (begin.is_some() || end.is_some()).then(|| (begin.cloned(), end.cloned()))
    }

    /// Wait until every row journaled so far is in the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Behind`] when the writer cannot write them (they stay in the journal).
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let target = state.written;
        while state.applied < target {
            if let Some(why) = &state.failure {
                return Err(StoreError::Behind(why.clone()));
            }
            if !state.urgent || state.idle {
                state.urgent = true;
                state.idle = false;
                self.work.notify_one();
            }
            state = self
                .caught_up
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        Ok(())
    }

    /// Stop the writer once it has written everything queued, and give back the task ids not
    /// used. The writer thread ends after this; join it.
    pub(super) fn stop(&self) {
        lock(&self.state).stop = true;
        self.work.notify_all();
    }

    /// Give back the reserved ids not handed out (after the writer stopped).
    pub(super) fn release_ids(&self) {
        let ids = lock(&self.ids);
        if ids.hi > 0
            && let Err(e) = self.store.release_task_ids(ids.next - 1, ids.hi)
        {
            tracing::warn!(target: "warden::ledger", error = %e, "could not give back unused task ids (they stay a gap)");
        }
    }

    /// The writer thread: rows into the store, a batch at a time, until stopped.
    fn write_rows(&self) {
        let _gone = WriterGone(self);
        let mut attempts = 0;
        loop {
            let mut state = lock(&self.state);
            while state.queue.is_empty() && !state.stop {
                state.idle = true;
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            state.idle = false;
            if !state.urgent && !state.stop {
                // Let more rows come: one transaction (and one wake-up) for all of them.
                state = self
                    .work
                    .wait_timeout(state, GATHER)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            state.urgent = false;
            if state.queue.is_empty() {
                self.close_journal(&mut state);
                return;
            }
            let batch = Arc::new(std::mem::take(&mut state.queue));
            state.inflight = Arc::clone(&batch);
            let upto = state.written;
            let stopping = state.stop;
            drop(state);
            let put = self.put(&batch, upto);
            let mut state = lock(&self.state);
            // Readers see the batch (`pending`) until the store holds it, or, failed, back in
            // the queue in the same step.
            state.inflight = Arc::default();
            match put {
                Ok(()) => {
                    attempts = 0;
                    state.applied = upto;
                    state.failure = None;
                    self.tidy_journal(&mut state);
                    self.caught_up.notify_all();
                    drop(state);
                    self.check_foreign(&mut lock(&self.trust));
                }
                Err(e) => {
                    attempts += 1;
                    tracing::error!(target: "warden::ledger", error = %e, attempts, "could not write journaled task rows to the state store; retrying");
                    state.failure = Some(e.to_string());
                    self.caught_up.notify_all();
                    // Put back in front, in order (left there, and in the journal, when the
                    // writer gives up: the next start writes them).
                    let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| shared.to_vec());
                    let later = std::mem::take(&mut state.queue);
                    state.queue = batch;
                    state.queue.extend(later);
                    if stopping && attempts >= STOP_ATTEMPTS {
                        return;
                    }
                    drop(state);
                    std::thread::sleep(Duration::from_millis(10 << attempts.min(6)));
                }
            }
        }
    }

    fn put(&self, batch: &[Entry], upto: u64) -> Result<(), StoreError> {
        #[cfg(test)]
        if batch
            .iter()
            .any(|e| matches!(e, Entry::Begin(t, _) if t.agent == tests::PANIC_AGENT))
        {
            panic!("the writer's test panic");
        }
        let (begins, ends) = split(batch.iter());
        self.store
            .put_behind(&begins, &self.owner, &ends, Some(upto))
    }

    /// After a batch: delete a set-aside journal the store now holds; empty the journal when
    /// the store holds all of it and it passed [`TRUNCATE_AT`], or set it aside when it grew
    /// big while the writer was behind.
    fn tidy_journal(&self, state: &mut State) {
        if state.old.is_some_and(|last| state.applied >= last) {
            let _ = std::fs::remove_file(old_path(&self.path()));
            state.old = None;
        }
        if state.applied == state.written && state.size > TRUNCATE_AT {
            if let Some(file) = &state.file
                && file.set_len(0).is_ok()
            {
                state.size = 0;
            }
        } else if state.size > ROTATE_AT
            && state.old.is_none()
            && std::fs::rename(self.path(), old_path(&self.path())).is_ok()
        {
            state.old = Some(state.written);
            state.file = None;
            state.size = 0;
        }
    }

    /// The writer is done and the store holds everything: no journal is left.
    fn close_journal(&self, state: &mut State) {
        if state.applied == state.written {
            state.file = None;
            let _ = std::fs::remove_file(self.path());
            let _ = std::fs::remove_file(old_path(&self.path()));
            if state.written > 0
                && let Err(e) = self.store.forget_journal(&self.owner)
            {
                tracing::warn!(target: "warden::ledger", error = %e, "could not forget a deleted journal's mark");
            }
        }
    }
}

/// Told when the writer thread ends, however (a panic too): whoever waits for it, or comes to
/// wait later, gets an error instead of waiting for ever; the rows stay in the journal.
struct WriterGone<'a>(&'a Behind);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if state.applied < state.written || std::thread::panicking() {
            state.failure = Some(
                "the ledger's writer thread stopped; the rows it had not written stay in the journal for the next start".into(),
            );
        }
        self.0.caught_up.notify_all();
    }
}

/// The beginnings and the ends of `batch`, in order, each with its head.
type Split<'a> = (
    Vec<(&'a BegunRow, &'a LogHead)>,
    Vec<(&'a EndedRow, &'a LogHead)>,
);

fn split<'a>(batch: impl Iterator<Item = &'a Entry>) -> Split<'a> {
    let mut begins = Vec::new();
    let mut ends = Vec::new();
    for entry in batch {
        match entry {
            Entry::Begin(t, h) => begins.push((t, h)),
            Entry::End(e, h) => ends.push((e, h)),
        }
    }
    (begins, ends)
}

fn open_journal(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn old_path(path: &Path) -> PathBuf {
    path.with_extension("journal.old")
}

#[cfg(test)]
mod tests;
