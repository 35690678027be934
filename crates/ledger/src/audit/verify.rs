//! Verifying a whole log: every line a record, seqs in order, each hash chained and recomputed,
//! every checkpoint signed by the trusted key, the anchor's record still there. Read-only.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::{
    AuditRecord, CHECKPOINT_KIND, Checkpoint, GENESIS, LINE_CAPACITY, SignatureFault, line_hash,
};

/// What [`verify`] found in a log that checks out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records in the log, checkpoints included.
    pub records: u64,
    /// Checkpoint records, every one signed by the trusted key.
    pub checkpoints: u64,
    /// The hash of the last record (64 zeros for an empty log).
    pub head: String,
    /// How many records the newest checkpoint covers (its `size`), if there is one.
    pub last_checkpoint: Option<u64>,
}

/// The first thing wrong with a log, naming the record (line number, and seq when it could be
/// read) and what was done to it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log could not be read.
    #[error("cannot read the audit log {path}: {source}; check the path and its permissions")]
    Io {
        /// The log.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A line is not a record.
    #[error(
        "line {line} of the audit log is not a valid record ({why}): it was edited or damaged; restore the log from a backup and find out who changed it"
    )]
    Unparsable {
        /// 1-based line number.
        line: u64,
        /// What the parser said.
        why: String,
    },
    /// The last line has no newline.
    #[error(
        "line {line}, the last of the audit log, is incomplete (no newline): a process was killed mid-write (the next warden command that writes the log saves the part aside as audit.torn-<offset>, cuts it and records `audit-torn-tail-discarded`) or the log was cut mid-record (restore it from a backup); the lines before it are intact"
    )]
    Torn {
        /// 1-based line number.
        line: u64,
    },
    /// A record is not where its seq says.
    #[error(
        "line {line} holds record {seq} where record {expected} belongs: records were deleted or reordered; restore the log from a backup"
    )]
    OutOfOrder {
        /// 1-based line number.
        line: u64,
        /// The seq found.
        seq: u64,
        /// The seq expected there.
        expected: u64,
    },
    /// A record's `prev` is not the hash of the record before it.
    #[error(
        "record {seq} (line {line}) does not chain to the record before it: that record or this one was replaced or rewritten; restore the log from a backup"
    )]
    Unchained {
        /// 1-based line number.
        line: u64,
        /// The record's seq.
        seq: u64,
    },
    /// A record's contents do not match its hash.
    #[error(
        "record {seq} (line {line}) was edited after it was written: its hash does not match its contents; restore the log from a backup"
    )]
    Edited {
        /// 1-based line number.
        line: u64,
        /// The record's seq.
        seq: u64,
    },
    /// A checkpoint is signed by a key other than the trusted one.
    #[error(
        "checkpoint record {seq} (line {line}) is signed by key {key}, not the host key: it was forged, or verify was given the wrong key"
    )]
    ForeignKey {
        /// 1-based line number.
        line: u64,
        /// The record's seq.
        seq: u64,
        /// The key it names (hex).
        key: String,
    },
    /// A checkpoint's signature does not verify.
    #[error(
        "checkpoint record {seq} (line {line}) has a bad signature ({why}): the checkpoint or the records it covers were forged"
    )]
    BadSignature {
        /// 1-based line number.
        line: u64,
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// A checkpoint does not describe the records before it.
    #[error(
        "checkpoint record {seq} (line {line}) does not match the records it covers ({why}): records before it were rewritten; restore the log from a backup"
    )]
    CheckpointMismatch {
        /// 1-based line number.
        line: u64,
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        why: String,
    },
    /// The anchor itself is not signed by the trusted key.
    #[error(
        "the audit anchor is not valid ({why}): it was forged or comes from another host; restore it from a backup"
    )]
    BadAnchor {
        /// What is wrong.
        why: String,
    },
    /// The log ends before the record the anchor vouches for.
    #[error(
        "the audit log has {records} records but its anchor vouches for {anchored}: the log was truncated or rolled back; restore it from a backup"
    )]
    Truncated {
        /// Records in the log.
        records: u64,
        /// Records the anchor covers.
        anchored: u64,
    },
    /// The record the anchor vouches for is not the one in the log.
    #[error(
        "record {seq} (line {line}) is not the record the anchor signed: the log was rolled back or rewritten; restore it from a backup"
    )]
    RolledBack {
        /// 1-based line number.
        line: u64,
        /// The record's seq.
        seq: u64,
    },
}

impl VerifyError {
    /// The 1-based line of the first bad record, when the fault is in one line.
    pub fn line(&self) -> Option<u64> {
        match self {
            VerifyError::Unparsable { line, .. }
            | VerifyError::Torn { line }
            | VerifyError::OutOfOrder { line, .. }
            | VerifyError::Unchained { line, .. }
            | VerifyError::Edited { line, .. }
            | VerifyError::ForeignKey { line, .. }
            | VerifyError::BadSignature { line, .. }
            | VerifyError::CheckpointMismatch { line, .. }
            | VerifyError::RolledBack { line, .. } => Some(*line),
            VerifyError::Io { .. }
            | VerifyError::BadAnchor { .. }
            | VerifyError::Truncated { .. } => None,
        }
    }

    /// The seq of the first bad record, when it could be read.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::OutOfOrder { seq, .. }
            | VerifyError::Unchained { seq, .. }
            | VerifyError::Edited { seq, .. }
            | VerifyError::ForeignKey { seq, .. }
            | VerifyError::BadSignature { seq, .. }
            | VerifyError::CheckpointMismatch { seq, .. }
            | VerifyError::RolledBack { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// Reads the whole log and checks that every line is a record; seqs run 1, 2, 3… with no gap
/// or reordering; each `prev` is the previous record's hash and each hash recomputes; every
/// checkpoint is signed by `trusted_key` and covers exactly the records before it. With an
/// `anchor` (from [`read_anchor`](super::read_anchor)), also that the anchor is signed by
/// `trusted_key` and the log still holds the record it vouches for, so truncation and rollback
/// are caught. Opens the log read-only; writes nothing.
///
/// Records after the last checkpoint (or the anchor) are chained but not signed: someone able
/// to write the log could rewrite those undetected, which is why checkpoints are frequent and
/// why `warden audit verify` also compares the log with the state store
/// ([`crate::ledger::verify_dir`]).
///
/// # Errors
///
/// The first fault found, as a [`VerifyError`] naming the record.
pub fn verify(
    log: &Path,
    trusted_key: &VerifyingKey,
    anchor: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyError> {
    verify_records(log, trusted_key, anchor, None, &mut |_| {})
}

/// [`verify()`], showing each record to `visit` once it has checked out (in order), and reading
/// only the first `upto` bytes of the log when given: the length measured at one moment, so a
/// log another process keeps appending to is checked as it stood then.
///
/// # Errors
///
/// The first fault found, as a [`VerifyError`] naming the record.
pub fn verify_records(
    log: &Path,
    trusted_key: &VerifyingKey,
    anchor: Option<&Checkpoint>,
    upto: Option<u64>,
    visit: &mut dyn FnMut(&AuditRecord),
) -> Result<VerifyReport, VerifyError> {
    if let Some(anchor) = anchor {
        anchor
            .check_signature(trusted_key)
            .map_err(|fault| VerifyError::BadAnchor {
                why: match fault {
                    SignatureFault::ForeignKey(key) => {
                        format!("signed by key {key}, not the host key")
                    }
                    SignatureFault::Bad(why) => format!("its signature {why}"),
                },
            })?;
    }
    let io = |source| VerifyError::Io {
        path: log.to_path_buf(),
        source,
    };
    let file = File::open(log).map_err(io)?.take(upto.unwrap_or(u64::MAX));
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut report = VerifyReport {
        records: 0,
        checkpoints: 0,
        head: GENESIS.to_string(),
        last_checkpoint: None,
    };
    let mut bytes = Vec::with_capacity(LINE_CAPACITY);
    let mut line = 0;
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes).map_err(io)? == 0 {
            break;
        }
        line += 1;
        if bytes.pop() != Some(b'\n') {
            return Err(VerifyError::Torn { line });
        }
        let record: AuditRecord =
            serde_json::from_slice(&bytes).map_err(|e| VerifyError::Unparsable {
                line,
                why: e.to_string(),
            })?;
        let seq = record.seq;
        if seq != report.records + 1 {
            return Err(VerifyError::OutOfOrder {
                line,
                seq,
                expected: report.records + 1,
            });
        }
        if record.prev != report.head {
            return Err(VerifyError::Unchained { line, seq });
        }
        if line_hash(report.head.as_bytes(), &bytes).as_deref() != Some(record.hash.as_str()) {
            return Err(VerifyError::Edited { line, seq });
        }
        if record.kind == CHECKPOINT_KIND {
            let checkpoint = check_checkpoint(&record, line, trusted_key)?;
            report.checkpoints += 1;
            report.last_checkpoint = Some(checkpoint.size);
        }
        if let Some(anchor) = anchor
            && anchor.size == seq
            && anchor.head != record.hash
        {
            return Err(VerifyError::RolledBack { line, seq });
        }
        visit(&record);
        report.records = seq;
        report.head = record.hash;
    }
    match anchor {
        Some(anchor) if anchor.size > report.records => Err(VerifyError::Truncated {
            records: report.records,
            anchored: anchor.size,
        }),
        _ => Ok(report),
    }
}

/// A checkpoint record's signature and coverage: it signs the record right before it.
fn check_checkpoint(
    record: &AuditRecord,
    line: u64,
    trusted_key: &VerifyingKey,
) -> Result<Checkpoint, VerifyError> {
    let seq = record.seq;
    let mismatch = |why: String| VerifyError::CheckpointMismatch { line, seq, why };
    let checkpoint: Checkpoint = serde_json::from_value(record.detail.clone())
        .map_err(|e| mismatch(format!("its detail is not a checkpoint: {e}")))?;
    checkpoint
        .check_signature(trusted_key)
        .map_err(|fault| match fault {
            SignatureFault::ForeignKey(key) => VerifyError::ForeignKey { line, seq, key },
            SignatureFault::Bad(why) => VerifyError::BadSignature { line, seq, why },
        })?;
    if checkpoint.size.checked_add(1) != Some(seq) || checkpoint.head != record.prev {
        return Err(mismatch(format!(
            "it signs record {} with hash {}, but the record before it is {} with hash {}",
            checkpoint.size,
            checkpoint.head,
            seq - 1,
            record.prev
        )));
    }
    Ok(checkpoint)
}
