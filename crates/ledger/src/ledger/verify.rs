//! `warden audit verify`, read-only: the log's chain and signed checkpoints, its anchor file and
//! the checkpoint kept in the state store, then the log compared with the store both ways
//! (`crosscheck.rs`). Nothing is appended, recovered or signed: the store is opened read-only,
//! the log is only read, and no owner lock is taken.
//!
//! The store is read first, in one transaction, and the log's length noted after: every row in
//! that snapshot was committed after its records were written, so they are in the part of the
//! log that is read, even while a host keeps appending.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::crosscheck::{self, LogFacts, Mismatch, Now};
use super::{LedgerError, owner_alive};
use crate::audit::{
    Checkpoint, LOG_FILE, VerifyError, complete_length, read_anchor, verify_records,
};
use crate::identity::IdentityError;
use crate::policy::keys::PublicKey;
use crate::store::{SqliteStore, StateStore, StoreWitness};

/// Why `warden audit verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditCheckError {
    /// The log itself is damaged.
    #[error(transparent)]
    Log(#[from] VerifyError),
    /// The checkpoint kept in the state store is not in the log: the log was rolled back or cut.
    #[error(
        "the state store holds a checkpoint at record {size} (head {head}) that the log does not contain: the log was truncated or rolled back"
    )]
    RolledBack {
        /// Records the checkpoint covers.
        size: u64,
        /// Its head hash.
        head: String,
    },
    /// The checkpoint kept in the state store is not signed by the host key.
    #[error(
        "the checkpoint the state store holds (record {size}) is not signed by the host key: the store was edited; restore it from a backup"
    )]
    StoredCheckpointForged {
        /// Records it claims to cover.
        size: u64,
    },
    /// The log and the state store disagree.
    #[error("the audit log and the state store disagree: {0}")]
    Mismatch(#[from] Mismatch),
    /// Something could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What `warden audit verify` found in a data directory that checks out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DirReport {
    /// Records in the log, checkpoints included.
    pub records: u64,
    /// Checkpoint records, every one signed by the host key.
    pub checkpoints: u64,
    /// The hash of the last record.
    pub head: String,
    /// How many records the newest checkpoint covers, if there is one.
    pub last_checkpoint: Option<u64>,
    /// Tasks in the state store, each compared with its records.
    pub tasks: u64,
    /// Actions in the state store, each compared with its records.
    pub actions: u64,
    /// The furthest record a task row vouches for (the log's head at that commit).
    pub store_vouches_to: Option<u64>,
    /// Tasks left `running` by a host that is gone: the next open marks them interrupted.
    pub awaiting_recovery: Vec<u64>,
    /// Tasks a live host is running.
    pub running: Vec<u64>,
    /// Bytes after the log's last whole line, not checked: a write in progress, or one cut
    /// short by a kill (never an acknowledged record); the next writer to open the log saves
    /// them aside as `audit.torn-<offset>`, cuts them and records `audit-torn-tail-discarded`.
    #[serde(default)]
    pub torn_tail: Option<u64>,
}

impl DirReport {
    /// Records after the newest checkpoint: chained, and vouched for by the store up to
    /// [`DirReport::store_vouches_to`], but signed by no one yet.
    pub fn unsigned(&self) -> u64 {
        let signed = self.last_checkpoint.map_or(0, |size| size + 1);
        self.records.saturating_sub(signed)
    }
}

/// The data directory as it is now, for live owners and rows committed after the snapshot
/// (asked only about a record whose row the snapshot lacks, so a fresh look costs nothing
/// otherwise).
struct Live<'a> {
    dir: &'a Path,
}

impl Live<'_> {
    fn store(&self) -> Option<SqliteStore> {
        SqliteStore::open_read_only(self.dir).ok()
    }
}

impl Now for Live<'_> {
    fn alive(&self, owner: &str) -> bool {
        owner_alive(&self.dir.join("owners"), owner)
    }
    fn task_exists(&self, id: u64) -> bool {
        // A host writes its task rows behind its journal: a record may be there before its
        // row, never before its journal line.
        let Some(store) = self.store() else {
            return false;
        };
        store.task(id).is_ok()
            || store
                .journal_marks()
                .is_ok_and(|marks| super::behind::journaled(self.dir, id, &marks))
    }
    fn action_exists(&self, id: u64) -> bool {
        self.store().is_some_and(|s| s.action(id).is_ok())
    }
}

/// Verify the data directory `dir`, read-only: the chain, every checkpoint's signature under
/// the host key (`key`, or `dir/host.pub`), the anchor file, the newest checkpoint kept in the
/// state store, and the log against the store both ways (every task the store began or ended
/// has its records, with the same outcome and trace hash; every task record has its row; every
/// row's log head is in the log; every action's row has its records and the reverse).
///
/// # Errors
///
/// [`AuditCheckError`] naming the first bad record or the first disagreement.
pub fn verify_dir(dir: &Path, key: Option<PublicKey>) -> Result<DirReport, AuditCheckError> {
    let key = match key {
        Some(k) => k,
        None => read_public(&dir.join("host.pub"))?,
    };
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes()).map_err(|e| {
        LedgerError::Key(IdentityError::KeyFile {
            path: dir.join("host.pub"),
            why: e.to_string(),
        })
    })?;
    let anchor = read_anchor(dir).map_err(LedgerError::from)?;
    let store = dir.join("state.db").exists();
    let witness = if store {
        // With the rows a host's journal holds still (written behind, `behind.rs`).
        let mut witness = SqliteStore::read_witness(dir).map_err(LedgerError::from)?;
        super::behind::overlay(dir, &mut witness)?;
        witness
    } else {
        StoreWitness::default()
    };
    let log = dir.join(LOG_FILE);
    let upto_len = std::fs::metadata(&log)
        .map_err(|source| VerifyError::Io {
            path: log.clone(),
            source,
        })?
        .len();
    // A last line without its newline is a write in progress or one cut by a kill: never an
    // acknowledged record (the next writer saves it aside and cuts it). The whole lines are
    // checked; the rest is reported.
    let whole = complete_length(&log, upto_len).map_err(LedgerError::from)?;
    let mut facts = LogFacts::for_witness(&witness);
    let report = verify_records(&log, &verifying, anchor.as_ref(), Some(whole), &mut |r| {
        facts.see(r)
    })?;
    if let Some(c) = &witness.checkpoint {
        let signed = Checkpoint {
            size: c.size,
            head: c.head.clone(),
            key: c.key.clone(),
            signature: c.signature.clone(),
        };
        if !signed.signed_by(&verifying) {
            return Err(AuditCheckError::StoredCheckpointForged { size: c.size });
        }
        if facts.hash_at(c.size) != Some(c.head.as_str()) {
            return Err(AuditCheckError::RolledBack {
                size: c.size,
                head: c.head.clone(),
            });
        }
    }
    let live = Live { dir };
    let found = crosscheck::compare(&witness, &facts, report.records, store, &live)?;
    let torn_tail = (upto_len > whole).then_some(upto_len - whole);
    Ok(DirReport {
        records: report.records,
        checkpoints: report.checkpoints,
        head: report.head,
        last_checkpoint: report.last_checkpoint,
        tasks: witness.tasks.len() as u64,
        actions: witness.actions.len() as u64,
        store_vouches_to: found.vouched_to,
        awaiting_recovery: found.awaiting_recovery,
        running: found.running,
        torn_tail,
    })
}

fn read_public(path: &Path) -> Result<PublicKey, LedgerError> {
    let text = crate::bounded::read_to_string(path, crate::bounded::Limit::KEY).map_err(|e| {
        LedgerError::Key(IdentityError::KeyFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    })?;
    PublicKey::parse(text.trim()).map_err(|e| {
        LedgerError::Key(IdentityError::KeyFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    })
}
