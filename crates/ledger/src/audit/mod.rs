//! The audit log: an append-only, hash-chained JSON-lines file (`audit.log`) in which every
//! record commits to the one before it, with checkpoints signed by the host key. The newest
//! checkpoint is also kept outside the log (`audit.anchor`), so cutting records off the end or
//! putting back an older copy is detected, not just editing, deleting or reordering records.
//!
//! One record per line, fields always in this order:
//!
//! ```text
//! {"seq":1,"time_ms":…,"kind":"…","task":…,"agent":…,"user":…,"detail":…,"prev":"<hex>","hash":"<hex>"}
//! ```
//!
//! `hash` is the SHA-256 of `"warden-audit-v1\n" + prev + "\n" + body`, where `body` is the
//! record serialised without `hash`. The writer produces each line as `body` with its closing
//! `}` replaced by `,"hash":"…"}`, so verification hashes the exact bytes of the line minus
//! that suffix and never re-serialises: the result does not depend on how a JSON library
//! orders keys or formats numbers. `prev` of record 1 is 64 zeros; `seq` counts from 1.
//!
//! A checkpoint is a record of kind `checkpoint` whose detail is a [`Checkpoint`]: the host
//! key's signature over `"warden-audit-checkpoint-v1\n{size}\n{head}"`, where `size` and `head`
//! are the seq and hash of the record right before it.

//!
//! The parts, one file each: `writer.rs` appends and signs ([`AuditLog`]), `verify.rs` checks a
//! whole log ([`verify()`], [`verify_records`]) or finds one record ([`find_record`]), `tail.rs`
//! reads its end ([`read_tail`], [`follow`]), `page.rs` reads from a place in it
//! ([`read_after`], [`LogCursor`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::keys::from_hex;

mod page;
mod stat;
mod tail;
mod torn;
mod verify;
mod writer;

pub use page::{LogCursor, MAX_LINE, read_after};
pub use tail::{find_record, follow, read_tail};
pub use torn::{TORN_TAIL_KIND, complete_length};
pub use verify::{VerifyError, VerifyReport, verify, verify_records};
pub use writer::AuditLog;

#[cfg(test)]
mod tests;

/// The log's file name inside its directory.
pub const LOG_FILE: &str = "audit.log";
/// The anchor's file name: the newest checkpoint, kept beside the log.
pub const ANCHOR_FILE: &str = "audit.anchor";
/// The kind of a checkpoint record. Reserved: [`AuditLog::append`] refuses it.
pub const CHECKPOINT_KIND: &str = "checkpoint";

const RECORD_DOMAIN: &[u8] = b"warden-audit-v1\n";
const CHECKPOINT_DOMAIN: &str = "warden-audit-checkpoint-v1";
/// The `prev` of record 1.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// What ends every line before its newline: `,"hash":"` + 64 hex digits + `"}`.
const HASH_PREFIX: &[u8] = b",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + 2;
/// Most records' line fits, so `append` does not reallocate.
const LINE_CAPACITY: usize = 1024;
/// How far `open` and `read_tail` read back from the end at a time.
const TAIL_CHUNK: u64 = 16 * 1024;

/// Why the audit log could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error(
        "cannot {action} {path}: {source}; check that the directory exists, is writable and the disk is not full"
    )]
    Io {
        /// What was being done (`open`, `write`, `sync`, `read`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The log's last record is incomplete or unreadable; it is never silently cut off.
    #[error(
        "the last record of {path} is damaged ({why}); run `warden audit verify` to find the damage and restore the log before starting the host"
    )]
    Damaged {
        /// The log.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The log has fewer records than its anchor vouches for.
    #[error(
        "{path} has {records} records but its anchor vouches for {anchored}: the log was truncated or rolled back; run `warden audit verify` and restore the log before starting the host"
    )]
    BehindAnchor {
        /// The log.
        path: PathBuf,
        /// Records in the log.
        records: u64,
        /// Records the anchor's checkpoint covers.
        anchored: u64,
    },
    /// An earlier write failed, so the log may end in a partial record; no more are written.
    #[error(
        "an earlier write to {path} failed and it may end in a partial record; stop the host, run `warden audit verify`, then restart"
    )]
    Broken {
        /// The log.
        path: PathBuf,
    },
    /// The log file was removed or replaced while open; nothing more is written to it.
    #[error(
        "{path} was removed or replaced while the host had it open, so records no longer reach it; stop the host, restore the log, run `warden audit verify`, then restart"
    )]
    Detached {
        /// The log.
        path: PathBuf,
    },
    /// The event used the kind reserved for signed checkpoints.
    #[error(
        "the record kind \"checkpoint\" is reserved for signed checkpoints; record this event under another kind"
    )]
    ReservedKind,
    /// The anchor file is not a checkpoint.
    #[error(
        "{path} is not a valid audit anchor ({why}); run `warden audit verify` and restore it from a backup"
    )]
    Anchor {
        /// The anchor file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A record read for `tail` or `follow` is not valid.
    #[error(
        "a record in {path} cannot be read ({why}); run `warden audit verify` to find the damage"
    )]
    Record {
        /// The log.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AuditError {
    move |source| AuditError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// One event to record. Defaults: no task, agent or user, and a `null` detail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// What happened (`agent-loaded`, `action-approved`, …).
    pub kind: String,
    /// The task it belongs to.
    pub task: Option<u64>,
    /// The agent concerned.
    pub agent: Option<String>,
    /// The user on whose behalf it happened.
    pub user: Option<String>,
    /// Anything else worth keeping.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An event of `kind` with nothing else set.
    pub fn new(kind: impl Into<String>) -> Self {
        AuditEvent {
            kind: kind.into(),
            task: None,
            agent: None,
            user: None,
            detail: serde_json::Value::Null,
        }
    }

    /// Set the task.
    pub fn task(mut self, task: u64) -> Self {
        self.task = Some(task);
        self
    }

    /// Set the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Set the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Set the detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// One line of the log, parsed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When it was written (Unix milliseconds).
    pub time_ms: u64,
    /// What happened.
    pub kind: String,
    /// The task it belongs to.
    pub task: Option<u64>,
    /// The agent concerned.
    pub agent: Option<String>,
    /// The user concerned.
    pub user: Option<String>,
    /// Anything else.
    pub detail: serde_json::Value,
    /// Hash of the record before (64 zeros for record 1).
    pub prev: String,
    /// This record's hash (see the module docs).
    pub hash: String,
}

/// What is hashed: a record without its hash, fields in the order of [`AuditRecord`].
#[derive(Serialize)]
struct RecordBody<'a> {
    seq: u64,
    time_ms: u64,
    kind: &'a str,
    task: Option<u64>,
    agent: Option<&'a str>,
    user: Option<&'a str>,
    detail: &'a serde_json::Value,
    prev: &'a str,
}

/// A signed statement by the host that the log's first `size` records end in `head`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// How many records it covers (the seq of the last one).
    pub size: u64,
    /// The hash of record `size`.
    pub head: String,
    /// The signer's ed25519 verifying key, hex.
    pub key: String,
    /// The ed25519 signature over `"warden-audit-checkpoint-v1\n{size}\n{head}"`, hex.
    pub signature: String,
}

fn checkpoint_message(size: u64, head: &str) -> String {
    format!("{CHECKPOINT_DOMAIN}\n{size}\n{head}")
}

/// Why a checkpoint's signature is not the trusted key's.
enum SignatureFault {
    ForeignKey(String),
    Bad(&'static str),
}

impl Checkpoint {
    fn sign(key: &SigningKey, size: u64, head: &str) -> Checkpoint {
        let signature = key.sign(checkpoint_message(size, head).as_bytes());
        Checkpoint {
            size,
            head: head.to_string(),
            key: hex(&key.verifying_key().to_bytes()),
            signature: hex(&signature.to_bytes()),
        }
    }

    /// Whether this checkpoint is signed by `trusted` and its signature verifies.
    pub fn signed_by(&self, trusted: &VerifyingKey) -> bool {
        self.check_signature(trusted).is_ok()
    }

    fn check_signature(&self, trusted: &VerifyingKey) -> Result<(), SignatureFault> {
        if from_hex(&self.key).as_deref() != Some(trusted.as_bytes().as_slice()) {
            return Err(SignatureFault::ForeignKey(self.key.clone()));
        }
        let bytes: [u8; 64] = from_hex(&self.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureFault::Bad("it is not 64 bytes of hex"))?;
        trusted
            .verify_strict(
                checkpoint_message(self.size, &self.head).as_bytes(),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| SignatureFault::Bad("it does not verify under the host key"))
    }
}

/// The hash of a written line (without its newline) chained to `prev`, or `None` if the line
/// does not end with a hash field.
fn line_hash(prev: &[u8], line: &[u8]) -> Option<String> {
    let body_end = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let suffix = &line[body_end..];
    let digits = &suffix[HASH_PREFIX.len()..HASH_PREFIX.len() + 64];
    if !suffix.starts_with(HASH_PREFIX)
        || !suffix.ends_with(b"\"}")
        || !digits.iter().all(u8::is_ascii_hexdigit)
    {
        return None;
    }
    Some(hex(&record_hash(prev, &line[..body_end], b"}")))
}

/// SHA-256 of the domain, `prev`, and the body given as its bytes followed by `close`.
fn record_hash(prev: &[u8], body: &[u8], close: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(RECORD_DOMAIN);
    hasher.update(prev);
    hasher.update(b"\n");
    hasher.update(body);
    hasher.update(close);
    hasher.finalize().into()
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out.into_iter().map(char::from).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the anchor beside the log in `dir`: `None` if there is none yet.
///
/// # Errors
///
/// [`AuditError::Anchor`] when it exists but is not a checkpoint; [`AuditError::Io`] when it
/// cannot be read.
pub fn read_anchor(dir: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let path = dir.join(ANCHOR_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| AuditError::Anchor {
            path,
            why: e.to_string(),
        })
}
