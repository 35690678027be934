//! Opening a data directory after a host stopped: the log must still reach the head the store's
//! last commits vouch for; tasks left `running` by a process that is gone become `interrupted`,
//! each audited inside the store's transaction; and a log left without its closing checkpoint
//! (a kill or crash) is signed at once, with an `audit-recovered` record saying why, so what
//! was written since the last checkpoint is unvouched only until the next start.

use std::path::Path;

use serde_json::json;

use super::{Ledger, LedgerError, owner_alive};
use crate::audit::{AuditEvent, find_record, read_tail};
use crate::store::{LogHead, StateStore};

/// Refuse a log that ends before, or differs at, `head` (the furthest one the store or a
/// journal vouches for): signing a recovery checkpoint over it would launder a log cut after
/// a crash.
///
/// # Errors
///
/// [`LedgerError::LogBehindStore`], or the log's read error.
pub(super) fn check_log_reaches(head: Option<LogHead>, log: &Path) -> Result<(), LedgerError> {
    let Some(head) = head.filter(|h| h.seq > 0) else {
        return Ok(());
    };
    if !log.exists() {
        return Err(LedgerError::LogBehindStore {
            seq: head.seq,
            hash: head.hash,
            found: "is missing".into(),
        });
    }
    let found = match find_record(log, head.seq)? {
        Some(record) if head.matches(&record.hash) => return Ok(()),
        Some(_) => format!("holds another record {}", head.seq),
        None => {
            let last = read_tail(log, 1)?.first().map_or(0, |r| r.seq);
            format!("ends at record {last}")
        }
    };
    Err(LedgerError::LogBehindStore {
        seq: head.seq,
        hash: head.hash,
        found,
    })
}

/// Interrupt the tasks of processes that are gone, and sign the log if the last process to
/// write it could not.
///
/// # Errors
///
/// When the store or the log cannot be written.
pub(super) fn recover(ledger: &Ledger, owners: &Path) -> Result<(), LedgerError> {
    let unsigned = ledger.audit.opened_unsigned();
    let covered = ledger.audit.anchored();
    let (head_at_open, _) = ledger.audit.head();
    let alive = |owner: &str| owner == ledger.owner || owner_alive(owners, owner);
    let audit = |task: u64| {
        let staging = ledger.staging_root(task);
        let discarded = staging.exists() && std::fs::remove_dir_all(&staging).is_ok();
        ledger
            .append_unsigned(
                AuditEvent::new("task-interrupted")
                    .task(task)
                    .detail(json!({ "staging_discarded": discarded })),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let interrupted = ledger.store.recover(&alive, &audit)?;
    for task in &interrupted {
        tracing::warn!(target: "warden::ledger", task, "task interrupted by a host stop");
    }
    // Another live process may be writing the log right now; its own closing checkpoint will
    // sign its records.
    if (unsigned || !interrupted.is_empty()) && !other_owner_alive(owners, &ledger.owner) {
        ledger.record(AuditEvent::new("audit-recovered").detail(json!({
            "why": "the last process to write the log stopped without its closing checkpoint",
            "last_checkpoint_covers": covered,
            "log_head_at_open": head_at_open,
            "interrupted": interrupted,
        })))?;
        ledger.checkpoint()?;
        tracing::warn!(
            target: "warden::ledger",
            from = covered + 1,
            to = head_at_open,
            "signed the audit records a stopped host left unsigned"
        );
    } else {
        ledger.checkpoint_if_due()?;
    }
    Ok(())
}

/// Whether a process other than `me` holds a ledger on this data directory.
fn other_owner_alive(owners: &Path, me: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(owners) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.strip_suffix(".lock")
            .is_some_and(|owner| owner != me && owner_alive(owners, owner))
    })
}
