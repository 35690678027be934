//! The host's data directory and everything durable in it: the state store ([`crate::store`]),
//! the audit log ([`crate::audit`]), the host's own signing key and the per-task staging areas.
//!
//! ```text
//! <data_dir>/
//!   host.key, host.pub   the host's key: signs audit checkpoints (created on first use, 0600)
//!   state.db             tasks, trust records, pending actions, checkpoints (SQLite, WAL)
//!   audit.log            the hash-chained audit log; audit.anchor its newest checkpoint
//!   audit.torn-<offset>  the bytes of a last line a kill cut short, kept when a writer cut them
//!   staging/<task>/      a task's staged writes until applied or discarded
//!   owners/<id>.lock     one per open ledger (host or CLI process), locked while it lives
//!   journal/<id>.journal task rows an open ledger wrote behind (`behind.rs`): the run path's
//!                        starts and ends, until its writer thread has put them in state.db
//! ```
//!
//! The run path's task rows are durable through the journal, not through a SQLite commit on
//! the path: a line per start and per end, written before (start) or after (end) the task's
//! audit records, and put into the store by a writer thread in batches (`behind.rs`). Every
//! read or write of the store through [`Ledger::store`] first waits for that writer, so a
//! caller always sees the tasks that returned; a journal left by a process that stopped is
//! written into the store by the next ledger to open the directory, before recovery.
//!
//! Opening a ledger recovers from a host that stopped mid-task: its journal's rows are written
//! into the store, then tasks left `running` by a process
//! that no longer holds its owner lock become `interrupted`, their staging is discarded, and both
//! are audited. Tasks of a host still running (a `warden task list` beside a `warden batch`) are
//! left alone. Every record goes to the
//! audit log before the state it describes is committed, and a failure to write the log is an
//! error the caller must not go past (irreversible actions fail closed on it).
//!
//! The store vouches for the log: each task commit keeps the log's head in the task's row
//! ([`crate::store::LogHead`]). Opening a ledger refuses a log that no longer reaches the head
//! the store vouches for, and after a host that stopped without its closing checkpoint (killed,
//! crashed) it signs one at once, with an `audit-recovered` record saying so, so the records
//! written since the last checkpoint are unvouched only until the next start (`recovery.rs`).
//! `warden audit verify` compares the whole log with the store, read-only (`verify.rs`,
//! `crosscheck.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::approval::action_hash;
use crate::audit::{AuditError, AuditEvent, AuditLog, Checkpoint};
use crate::identity::{IdentityError, SecretKey};
use crate::policy::keys::PublicKey;
use crate::store::{
    ActionRecord, Durability, LogHead, LogHeadSource, SqliteStore, StateStore, StoreError,
    StoredCheckpoint, now_ms,
};

mod anchor;
mod approve;
mod behind;
mod commit;
mod crosscheck;
mod defer;
mod flushed;
mod now;
pub use now::TasksNow;
mod queue;
mod recovery;
mod verify;

pub use approve::ApproveError;
pub use commit::CommitStats;
pub use crosscheck::Mismatch;
pub use verify::{AuditCheckError, DirReport, verify_dir};

/// Why the ledger could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The data directory could not be created or read.
    #[error(
        "cannot use the data directory {path}: {source}; set --data-dir or host.data_dir to a writable folder"
    )]
    Dir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The host key could not be read or created.
    #[error("the host key: {0}")]
    Key(#[from] IdentityError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be written or read.
    #[error("the audit log: {0}")]
    Audit(#[from] AuditError),
    /// The audit log ends before, or differs at, the record the state store vouches for.
    #[error(
        "the audit log {found}, but the state store's last commits vouch for it up to record {seq} (hash {hash}): records were cut from the log, or it was rolled back or rewritten; run `warden audit verify` and restore the log before starting the host"
    )]
    LogBehindStore {
        /// The record the store vouches for.
        seq: u64,
        /// Its hash as the store has it.
        hash: String,
        /// What the log holds instead (`ends at record 40`, `holds another record 52`).
        found: String,
    },
    /// The batch that carried this task's writes failed for this reason (the same error is
    /// given to every task in it).
    #[error(transparent)]
    Shared(Arc<LedgerError>),
    /// A checkpoint signed on the run path could not be synced to disk or anchored.
    #[error(
        "the audit log's last checkpoint could not be synced and anchored: {0}; check the data directory's disk, then run `warden audit verify`"
    )]
    Anchor(String),
    /// This process's journal of task rows could not be written or read.
    #[error(
        "the ledger's journal {path}: {source}; check the data directory's disk space and permissions"
    )]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A journal left by a stopped host holds a line that is no journal entry.
    #[error(
        "the ledger's journal {path}, line {line}, is not a journal entry ({why}): it was edited or damaged; move it aside to start the host (the task rows in it are then missing from the state store, and `warden audit verify` names them)"
    )]
    JournalCorrupt {
        /// The journal file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The group commit carrying this task's writes panicked before it could say what it
    /// wrote.
    #[error(
        "the ledger's commit of this task's writes stopped with a panic, so they may be missing; stop the host and run `warden audit verify`"
    )]
    CommitPanicked,
}

/// The durable side of a host.
pub struct Ledger {
    dir: PathBuf,
    store: flushed::Flushed,
    behind: Arc<behind::Behind>,
    writer: Option<std::thread::JoinHandle<()>>,
    audit: Arc<AuditLog>,
    key: SecretKey,
    checkpoint_every: u64,
    pending: Mutex<u64>,
    owner: String,
    owner_lock: Option<std::fs::File>,
    committer: commit::Committer,
    anchorer: anchor::Anchorer,
    /// Actions this ledger was asked to hold since it opened ([`Ledger::actions_held`]).
    held: std::sync::atomic::AtomicU64,
    /// Task starts not yet written (`defer.rs`).
    deferred: defer::Deferred,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("dir", &self.dir).finish()
    }
}

impl Ledger {
    /// Open (creating if needed) the data directory `dir`, signing a checkpoint every
    /// `checkpoint_every` audit records. Recovers from a process that stopped without closing
    /// (see the module docs): interrupts its tasks, and signs what it left unsigned, writing an
    /// `audit-recovered` record; a clean directory gets no record.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the directory, key, store or audit log cannot be used;
    /// [`LedgerError::LogBehindStore`] (before anything is written) when the log no longer
    /// reaches the head the store's newest rows vouch for.
    pub fn open(dir: &Path, checkpoint_every: u64) -> Result<Ledger, LedgerError> {
        let dir_err = |source| LedgerError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(dir_err)?;
        create_private_dir(&dir.join("staging")).map_err(dir_err)?;
        let owners = dir.join("owners");
        create_private_dir(&owners).map_err(dir_err)?;
        sweep_owners(&owners);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let owner = format!("{}-{nanos}", std::process::id());
        let owner_lock = std::fs::File::create(owners.join(format!("{owner}.lock")))
            .and_then(|f| f.lock().map(|()| f))
            .map_err(dir_err)?;
        let key_path = dir.join("host.key");
        let key = if key_path.exists() {
            SecretKey::read(&key_path)?
        } else {
            let key = SecretKey::generate()?;
            key.write(&dir.join("host"))?;
            key
        };
        // Before the log is opened for writing (which cuts a torn last line) and before anything
        // is appended or signed: the log must still hold what the store's last commits vouch
        // for, or recovery would sign a log cut after a crash.
        let store = SqliteStore::open(dir, Durability::Process)?;
        let log = dir.join(crate::audit::LOG_FILE);
        recovery::check_log_reaches(store.recent_log_head()?, &log)?;
        recovery::check_log_reaches(behind::newest_head(dir)?, &log)?;
        let audit = Arc::new(AuditLog::open(dir, key.signing_key().clone(), u64::MAX)?);
        let store = Arc::new(store.vouching_for(Arc::clone(&audit) as Arc<dyn LogHeadSource>));
        // The rows stopped hosts left in their journals, before their tasks are interrupted.
        create_private_dir(&dir.join(behind::JOURNAL_DIR)).map_err(dir_err)?;
        behind::replay(dir, &owners, &store)?;
        let (behind, writer) = behind::Behind::start(Arc::clone(&store), &owner, dir)?;
        let ledger = Ledger {
            dir: dir.to_path_buf(),
            store: flushed::Flushed {
                inner: store,
                behind: Arc::clone(&behind),
            },
            behind,
            writer: Some(writer),
            audit,
            key,
            checkpoint_every: checkpoint_every.max(1),
            pending: Mutex::new(0),
            owner,
            owner_lock: Some(owner_lock),
            committer: commit::Committer::default(),
            anchorer: anchor::Anchorer::default(),
            held: std::sync::atomic::AtomicU64::new(0),
            deferred: defer::Deferred::default(),
        };
        recovery::recover(&ledger, &owners)?;
        Ok(ledger)
    }

    /// This process's owner id, recorded with every task it begins.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state store.
    pub fn store(&self) -> &dyn StateStore {
        &self.store
    }

    /// The host's public key (verifies audit checkpoints).
    pub fn host_key(&self) -> PublicKey {
        self.key.public()
    }

    /// Where task `task` stages its writes.
    pub fn staging_root(&self, task: u64) -> PathBuf {
        self.dir.join("staging").join(task.to_string())
    }

    /// Append one audit record, signing a checkpoint when one is due.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Audit`] when the log cannot be written: the caller must not go on.
    pub fn record(&self, event: AuditEvent) -> Result<u64, LedgerError> {
        // A record names only a task whose start is written.
        self.write_tree_of(event.task)?;
        let seq = self.append_unsigned(event)?;
        self.checkpoint_if_due()?;
        Ok(seq)
    }

    /// Append one audit record and count it towards the next checkpoint, without signing one:
    /// for records written inside a store transaction, where a checkpoint (which writes the
    /// store too) must wait until the commit.
    fn append_unsigned(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let seq = self.audit.append(event)?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(seq)
    }

    /// Sign a checkpoint if `checkpoint_every` records were written since the last one.
    fn checkpoint_if_due(&self) -> Result<(), LedgerError> {
        let due = *self.pending.lock().unwrap_or_else(|p| p.into_inner()) >= self.checkpoint_every;
        if due {
            // Signed and appended here; synced and anchored off this path (`anchor.rs`).
            let c = self.audit.append_checkpoint()?;
            *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = 0;
            self.store.put_checkpoint(&StoredCheckpoint {
                size: c.size,
                head: c.head.clone(),
                key: c.key.clone(),
                signature: c.signature.clone(),
            })?;
            self.anchorer
                .hand(&self.audit, c)
                .map_err(LedgerError::Anchor)?;
        }
        Ok(())
    }

    /// Sign a checkpoint now (also kept in the state store).
    ///
    /// # Errors
    ///
    /// When the log or the store cannot be written.
    pub fn checkpoint(&self) -> Result<Checkpoint, LedgerError> {
        // After any checkpoint still being anchored, so this one's anchor is the last word.
        self.anchorer.settle();
        let c = self.audit.checkpoint()?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        self.store.put_checkpoint(&StoredCheckpoint {
            size: c.size,
            head: c.head.clone(),
            key: c.key.clone(),
            signature: c.signature.clone(),
        })?;
        Ok(c)
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> &Path {
        self.audit.path()
    }

    /// How many actions this ledger has been asked to hold since it opened, counted as each
    /// [`Ledger::hold_action`] begins (a refused one too). Every action is held by the process
    /// that runs its task, so a task tree that began after this read `n` and ran wholly in this
    /// process holds no action if it still reads `n` once the tree ended: its pending actions
    /// need no read of the store.
    pub fn actions_held(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hold an irreversible tool call as a pending action and audit it. If the audit record
    /// cannot be written nothing is stored and the error returned: fail closed.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the action cannot be stored or audited.
    pub fn hold_action(
        &self,
        task: u64,
        agent: &str,
        user: &str,
        tool: &str,
        params: &str,
        ttl: std::time::Duration,
    ) -> Result<ActionRecord, LedgerError> {
        // Counted before anything is stored: a reader that sees the old count after the task
        // ended knows no action of it can be in the store.
        self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.write_deferred(task)?;
        let created_ms = now_ms();
        // The record is written inside the store's transaction, before the commit: an action
        // whose record cannot be written is never stored, so it can never be approved.
        let audit = |action: &ActionRecord| {
            self.append_unsigned(
                AuditEvent::new("action-pending")
                    .task(task)
                    .agent(agent)
                    .user(user)
                    .detail(json!({
                        "action": action.id,
                        "tool": tool,
                        "hash": action.hash,
                        "expires_ms": action.expires_ms,
                    })),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let action = self.store.add_action(
            &ActionRecord {
                id: 0,
                task,
                agent: agent.to_owned(),
                user: user.to_owned(),
                tool: tool.to_owned(),
                params: params.to_owned(),
                hash: String::new(),
                status: "pending".into(),
                created_ms,
                expires_ms: created_ms.saturating_add(ttl.as_millis() as u64),
                approver: None,
                result: None,
            },
            &action_hash,
            &audit,
        )?;
        self.checkpoint_if_due()?;
        Ok(action)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.write_all_deferred();
        // Every journaled row into the store (or left in the journal for the next start).
        self.behind.stop();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.behind.release_ids();
        // Close with a checkpoint so that cutting records off the end is detectable.
        let idle = *self.pending.lock().unwrap_or_else(|p| p.into_inner()) == 0;
        if !idle && let Err(e) = self.checkpoint() {
            tracing::error!(target: "warden::ledger", error = %e, "could not sign the closing audit checkpoint");
        }
        if self.owner_lock.take().is_some() {
            let _ =
                std::fs::remove_file(self.dir.join("owners").join(format!("{}.lock", self.owner)));
        }
    }
}

/// Whether the process `owner` still holds its lock (an unknown owner is gone). Probes with a
/// shared lock, released at once, so a reader (`warden audit verify`) disturbs no one.
fn owner_alive(owners: &Path, owner: &str) -> bool {
    if owner.is_empty() || owner.contains(['/', '.']) {
        return false;
    }
    match std::fs::File::open(owners.join(format!("{owner}.lock"))) {
        Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

impl LogHeadSource for AuditLog {
    fn log_head(&self) -> LogHead {
        let (seq, hash) = self.head();
        LogHead { seq, hash }
    }
}

/// Remove the lock files of processes that are gone.
fn sweep_owners(owners: &Path) {
    let Ok(entries) = std::fs::read_dir(owners) else {
        return;
    };
    for entry in entries.flatten() {
        if let Ok(f) = std::fs::File::open(entry.path())
            && f.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod commit_tests;
#[cfg(test)]
mod defer_tests;
#[cfg(all(test, unix))]
mod kill_tests;
#[cfg(test)]
mod tests;
