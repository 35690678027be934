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

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::keys::from_hex;

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

/// What a record's detail is: given, or (for a checkpoint) the signature of the head as it
/// stands once the file lock is held.
enum Detail<'a> {
    Value(&'a serde_json::Value),
    Checkpoint,
}

/// The log, open for appending. Cheap to share behind an `Arc`: appends from many threads are
/// serialised by one mutex held across hashing and writing, so the chain stays whole.
pub struct AuditLog {
    path: PathBuf,
    dir: PathBuf,
    /// Opened with `O_APPEND`: each write lands at the end, whatever else holds the file.
    file: File,
    key: SigningKey,
    checkpoint_every: u64,
    state: Mutex<Tail>,
    /// The size of the newest anchor written, so a slower checkpoint never overwrites a newer.
    anchored: Mutex<u64>,
}

/// The end of the chain, and the line buffer reused by every append.
struct Tail {
    seq: u64,
    head: String,
    /// The file's length after our last write (or at open): if it differs when we next hold the
    /// file lock, another process appended, and the head is read back from the file.
    end: u64,
    line: Vec<u8>,
    broken: bool,
}

impl AuditLog {
    /// Opens `dir/audit.log` (creating it, mode 0600, if missing) and recovers the seq and hash
    /// of its last record. A checkpoint is written automatically after every record whose seq is
    /// a multiple of `checkpoint_every` (0 or `u64::MAX`: only when [`checkpoint`] is called).
    ///
    /// # Errors
    ///
    /// [`AuditError::Damaged`] when the last line is torn (no newline) or not a valid record,
    /// and [`AuditError::BehindAnchor`] when the log is shorter than `audit.anchor` says: the
    /// log is never silently cut or overwritten; the operator runs `warden audit verify`.
    /// [`AuditError::Io`] when the file cannot be opened or read.
    ///
    /// [`checkpoint`]: AuditLog::checkpoint
    pub fn open(
        dir: &Path,
        key: SigningKey,
        checkpoint_every: u64,
    ) -> Result<AuditLog, AuditError> {
        let path = dir.join(LOG_FILE);
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io_error("open", &path))?;
        let (seq, head) = recover_head(&mut file, &path)?;
        let end = file.metadata().map_err(io_error("check", &path))?.len();
        let anchored = match read_anchor(dir)? {
            Some(anchor) if anchor.size > seq => {
                return Err(AuditError::BehindAnchor {
                    path,
                    records: seq,
                    anchored: anchor.size,
                });
            }
            Some(anchor) => anchor.size,
            None => 0,
        };
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            path,
            file,
            key,
            checkpoint_every,
            state: Mutex::new(Tail {
                seq,
                head,
                end,
                line: Vec::with_capacity(LINE_CAPACITY),
                broken: false,
            }),
            anchored: Mutex::new(anchored),
        })
    }

    /// Appends one record with a single `write(2)` of the whole line and no fsync (a killed
    /// process loses nothing the kernel accepted; [`checkpoint`] makes it durable). Returns
    /// the record's seq.
    ///
    /// # Errors
    ///
    /// When the record (or a checkpoint due after it) cannot be written: the caller must fail
    /// closed. After a failed write the log refuses further appends ([`AuditError::Broken`]).
    /// [`AuditError::ReservedKind`] for an event of kind `checkpoint`.
    ///
    /// [`checkpoint`]: AuditLog::checkpoint
    pub fn append(&self, event: AuditEvent) -> Result<u64, AuditError> {
        if event.kind == CHECKPOINT_KIND {
            return Err(AuditError::ReservedKind);
        }
        let (seq, _) = self.write_locked(
            &mut self.lock(),
            &event.kind,
            event.task,
            event.agent.as_deref(),
            event.user.as_deref(),
            Detail::Value(&event.detail),
        )?;
        if self.checkpoint_every != 0 && seq % self.checkpoint_every == 0 {
            self.checkpoint()?;
        }
        Ok(seq)
    }

    /// Signs the current head, appends it as a checkpoint record, fsyncs the log, then writes
    /// it to `audit.anchor` (temporary file, fsync, rename). The fsync comes before the anchor
    /// so the anchor never vouches for records that are not on disk.
    ///
    /// # Errors
    ///
    /// When the log or the anchor cannot be written or synced.
    pub fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let checkpoint = {
            let mut tail = self.lock();
            let (_, signed) = self.write_locked(
                &mut tail,
                CHECKPOINT_KIND,
                None,
                None,
                None,
                Detail::Checkpoint,
            )?;
            signed.expect("a checkpoint record carries its checkpoint")
        };
        self.file
            .sync_data()
            .map_err(io_error("sync", &self.path))?;
        self.write_anchor(&checkpoint)?;
        Ok(checkpoint)
    }

    /// The seq and hash of the last record (0 and 64 zeros for an empty log).
    pub fn head(&self) -> (u64, String) {
        let tail = self.lock();
        (tail.seq, tail.head.clone())
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Chains one record to the head, writes its line and advances the head. A checkpoint
    /// record signs the head as it stands once the file lock is held, and is returned too.
    fn write_locked(
        &self,
        tail: &mut Tail,
        kind: &str,
        task: Option<u64>,
        agent: Option<&str>,
        user: Option<&str>,
        detail: Detail<'_>,
    ) -> Result<(u64, Option<Checkpoint>), AuditError> {
        if tail.broken {
            return Err(AuditError::Broken {
                path: self.path.clone(),
            });
        }
        if !self.attached(kind == CHECKPOINT_KIND)? {
            tail.broken = true;
            return Err(AuditError::Detached {
                path: self.path.clone(),
            });
        }
        // Several processes may share a data directory (a host and the CLI): the file lock
        // serialises their appends, and a head moved by another process is read back first.
        self.file.lock().map_err(io_error("lock", &self.path))?;
        let written = self.write_with_file_lock(tail, kind, task, agent, user, detail);
        let unlocked = self.file.unlock().map_err(io_error("unlock", &self.path));
        let written = written?;
        unlocked?;
        Ok(written)
    }

    /// [`AuditLog::write_locked`]'s body, run with the file lock held.
    fn write_with_file_lock(
        &self,
        tail: &mut Tail,
        kind: &str,
        task: Option<u64>,
        agent: Option<&str>,
        user: Option<&str>,
        detail: Detail<'_>,
    ) -> Result<(u64, Option<Checkpoint>), AuditError> {
        let len = self
            .file
            .metadata()
            .map_err(io_error("check", &self.path))?
            .len();
        if len != tail.end {
            let mut reader = self
                .file
                .try_clone()
                .map_err(io_error("read", &self.path))?;
            let (seq, head) = recover_head(&mut reader, &self.path)?;
            tail.seq = seq;
            tail.head = head;
            tail.end = len;
        }
        let mut signed = None;
        let owned;
        let detail = match detail {
            Detail::Value(v) => v,
            Detail::Checkpoint => {
                let checkpoint = Checkpoint::sign(&self.key, tail.seq, &tail.head);
                owned = serde_json::to_value(&checkpoint).map_err(|e| AuditError::Io {
                    action: "encode a checkpoint for",
                    path: self.path.clone(),
                    source: e.into(),
                })?;
                signed = Some(checkpoint);
                &owned
            }
        };
        let seq = tail.seq + 1;
        let body = RecordBody {
            seq,
            time_ms: now_ms(),
            kind,
            task,
            agent,
            user,
            detail,
            prev: &tail.head,
        };
        tail.line.clear();
        serde_json::to_writer(&mut tail.line, &body).map_err(|e| AuditError::Io {
            action: "encode a record for",
            path: self.path.clone(),
            source: e.into(),
        })?;
        let digest = record_hash(tail.head.as_bytes(), &tail.line, b"");
        // The body ends in `}`: reopen it for the hash field.
        tail.line.pop();
        tail.line.extend_from_slice(HASH_PREFIX);
        let hex_start = tail.line.len();
        push_hex(&mut tail.line, &digest);
        tail.line.extend_from_slice(b"\"}\n");
        if let Err(source) = (&self.file).write_all(&tail.line) {
            tail.broken = true;
            return Err(AuditError::Io {
                action: "write",
                path: self.path.clone(),
                source,
            });
        }
        tail.seq = seq;
        tail.end += tail.line.len() as u64;
        tail.head.clear();
        tail.head.extend(
            tail.line[hex_start..hex_start + 64]
                .iter()
                .map(|&b| char::from(b)),
        );
        Ok((seq, signed))
    }

    /// Whether the open file is still the log at `path`. Records written to a file that was
    /// removed or replaced would reach no one, so appending must stop. Every append checks the
    /// link count (one `fstat`); a checkpoint also compares the file at `path`.
    fn attached(&self, by_path: bool) -> Result<bool, AuditError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let open = self
                .file
                .metadata()
                .map_err(io_error("check", &self.path))?;
            if open.nlink() == 0 {
                return Ok(false);
            }
            if by_path {
                return Ok(std::fs::metadata(&self.path)
                    .is_ok_and(|m| (m.dev(), m.ino()) == (open.dev(), open.ino())));
            }
        }
        #[cfg(not(unix))]
        let _ = by_path;
        Ok(true)
    }

    fn write_anchor(&self, checkpoint: &Checkpoint) -> Result<(), AuditError> {
        let mut anchored = self.anchored.lock().unwrap_or_else(|p| p.into_inner());
        if checkpoint.size < *anchored {
            return Ok(());
        }
        let path = self.dir.join(ANCHOR_FILE);
        // Another process sharing the directory may anchor too: hold the log's file lock, never
        // lower an anchor it wrote, and use a temporary name of our own.
        self.file.lock().map_err(io_error("lock", &self.path))?;
        let result = self.replace_anchor(checkpoint, &path);
        let unlocked = self.file.unlock().map_err(io_error("unlock", &self.path));
        result?;
        unlocked?;
        *anchored = checkpoint.size;
        Ok(())
    }

    /// Write `checkpoint` to the anchor file at `path` unless it already holds a newer one;
    /// called with the log's file lock held.
    fn replace_anchor(&self, checkpoint: &Checkpoint, path: &Path) -> Result<(), AuditError> {
        if read_anchor(&self.dir)?.is_some_and(|a| a.size >= checkpoint.size) {
            return Ok(());
        }
        let temp = self
            .dir
            .join(format!("{ANCHOR_FILE}.{}.tmp", std::process::id()));
        let mut text = serde_json::to_vec(checkpoint).map_err(|e| AuditError::Io {
            action: "encode",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        text.push(b'\n');
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp).map_err(io_error("create", &temp))?;
        file.write_all(&text).map_err(io_error("write", &temp))?;
        file.sync_all().map_err(io_error("sync", &temp))?;
        std::fs::rename(&temp, path).map_err(io_error("replace", path))?;
        // The rename itself is durable only once the directory is synced.
        #[cfg(unix)]
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync", &self.dir))?;
        Ok(())
    }
}

/// The seq and hash of the log's last record, refusing a torn or invalid last line.
fn recover_head(file: &mut File, path: &Path) -> Result<(u64, String), AuditError> {
    let (_, bytes) = read_back(file, 1).map_err(io_error("read", path))?;
    let damaged = |why: String| AuditError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    if bytes.is_empty() {
        return Ok((0, GENESIS.to_string()));
    }
    if bytes.last() != Some(&b'\n') {
        return Err(damaged(
            "it does not end with a newline: a write was cut short".into(),
        ));
    }
    let line = complete_lines(&bytes, 1).pop().unwrap_or_default();
    let record: AuditRecord =
        serde_json::from_slice(line).map_err(|e| damaged(format!("not a record: {e}")))?;
    match line_hash(record.prev.as_bytes(), line) {
        Some(hash) if hash == record.hash => Ok((record.seq, record.hash)),
        _ => Err(damaged(format!(
            "record {} does not match its hash",
            record.seq
        ))),
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

/// Reads back from the end of `file` until the bytes read hold more than `n` newlines (so the
/// last `n` complete lines are whole) or the whole file is read. Returns where they start.
fn read_back(file: &mut File, n: usize) -> io::Result<(u64, Vec<u8>)> {
    let mut start = file.metadata()?.len();
    let mut bytes = Vec::new();
    let mut newlines = 0;
    while start > 0 && newlines <= n {
        let step = TAIL_CHUNK.min(start);
        start -= step;
        let mut chunk = vec![0; usize::try_from(step).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunk.extend_from_slice(&bytes);
        bytes = chunk;
    }
    if start > 0 {
        // The first line read is cut at its start.
        let first = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.drain(..first);
    }
    Ok((start, bytes))
}

/// The last `n` newline-terminated lines of `bytes`, without their newlines; an unterminated
/// last line (a write in progress or torn) is left out.
fn complete_lines(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines: Vec<&[u8]> = bytes[..end]
        .split(|&b| b == b'\n')
        .rev()
        .skip(1)
        .take(n)
        .collect();
    lines.reverse();
    lines
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
        "line {line}, the last of the audit log, is incomplete (no newline): a write was cut short or the log was cut mid-record; the lines before it are intact, restore the rest from a backup"
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
/// `anchor` (from [`read_anchor`]), also that the anchor is signed by `trusted_key` and the log
/// still holds the record it vouches for, so truncation and rollback are caught.
///
/// Records after the last checkpoint (or the anchor) are chained but not signed: someone able
/// to write the log could rewrite those undetected, which is why checkpoints are frequent.
///
/// # Errors
///
/// The first fault found, as a [`VerifyError`] naming the record.
pub fn verify(
    log: &Path,
    trusted_key: &VerifyingKey,
    anchor: Option<&Checkpoint>,
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
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(log).map_err(io)?);
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

/// The last `n` complete records of the log, oldest first (`warden audit tail`). A last line
/// still being written is left out.
///
/// # Errors
///
/// When the log cannot be read, or one of those records is not valid.
pub fn read_tail(log: &Path, n: usize) -> Result<Vec<AuditRecord>, AuditError> {
    let mut file = File::open(log).map_err(io_error("read", log))?;
    let (_, bytes) = read_back(&mut file, n).map_err(io_error("read", log))?;
    complete_lines(&bytes, n)
        .into_iter()
        .map(|line| parse_record(log, line))
        .collect()
}

fn parse_record(log: &Path, line: &[u8]) -> Result<AuditRecord, AuditError> {
    serde_json::from_slice(line).map_err(|e| AuditError::Record {
        path: log.to_path_buf(),
        why: e.to_string(),
    })
}

/// Calls `on_record` for each complete record appended after byte `from_offset` (the start of
/// a line: 0, or the log's length when following only new records), polling every `poll`,
/// until `on_record` returns `false` (`warden audit tail --follow`).
///
/// # Errors
///
/// When the log cannot be read, a record is not valid, or the log shrinks (it was truncated
/// or replaced while followed).
pub fn follow(
    log: &Path,
    from_offset: u64,
    mut on_record: impl FnMut(&AuditRecord) -> bool,
    poll: Duration,
) -> Result<(), AuditError> {
    let mut file = File::open(log).map_err(io_error("read", log))?;
    let mut offset = from_offset;
    file.seek(SeekFrom::Start(offset))
        .map_err(io_error("read", log))?;
    let mut pending = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let len = file.metadata().map_err(io_error("read", log))?.len();
        if len < offset {
            return Err(AuditError::Record {
                path: log.to_path_buf(),
                why: format!("the log shrank from {offset} to {len} bytes while followed"),
            });
        }
        let read = file.read(&mut chunk).map_err(io_error("read", log))?;
        if read == 0 {
            std::thread::sleep(poll);
            continue;
        }
        offset += read as u64;
        pending.extend_from_slice(&chunk[..read]);
        let mut used = 0;
        while let Some(end) = pending[used..].iter().position(|&b| b == b'\n') {
            let record = parse_record(log, &pending[used..used + end])?;
            used += end + 1;
            if !on_record(&record) {
                return Ok(());
            }
        }
        pending.drain(..used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn host() -> VerifyingKey {
        key(1).verifying_key()
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent::new("task-finished")
            .task(i as u64)
            .agent("hello")
            .user("alice")
            .detail(json!({"n": i, "outcome": "completed"}))
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join(LOG_FILE))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A log of 10 records and a checkpoint (seq 11), anchored at size 10.
    fn clean_log() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        for i in 0..10 {
            log.append(event(i)).unwrap();
        }
        log.checkpoint().unwrap();
        dir
    }

    /// A copy of `dir` (log and anchor) with its lines edited.
    fn tampered(dir: &Path, edit: impl FnOnce(&mut Vec<String>)) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        let mut l = lines(dir);
        edit(&mut l);
        std::fs::write(copy.path().join(LOG_FILE), l.join("\n") + "\n").unwrap();
        std::fs::copy(dir.join(ANCHOR_FILE), copy.path().join(ANCHOR_FILE)).unwrap();
        copy
    }

    fn verify_dir(dir: &Path) -> Result<VerifyReport, VerifyError> {
        let anchor = read_anchor(dir).unwrap();
        verify(&dir.join(LOG_FILE), &host(), anchor.as_ref())
    }

    /// Rewrites lines `from..` as an attacker without the key would: new prev, new hash.
    fn rechain(l: &mut [String], from: usize) {
        for i in from..l.len() {
            let prev: AuditRecord = serde_json::from_str(&l[i - 1]).unwrap();
            let mut record: AuditRecord = serde_json::from_str(&l[i]).unwrap();
            record.prev = prev.hash;
            let text = serde_json::to_string(&record).unwrap();
            let hash = line_hash(record.prev.as_bytes(), text.as_bytes()).unwrap();
            l[i] = format!("{}{hash}\"}}", &text[..text.len() - 66]);
        }
    }

    /// Changes the last digit of a line's hash.
    fn flip_hash(line: &str) -> String {
        let at = line.len() - 3;
        let digit = if &line[at..=at] == "0" { "1" } else { "0" };
        format!("{}{digit}{}", &line[..at], &line[at + 1..])
    }

    #[test]
    fn a_log_written_from_many_threads_verifies_with_and_without_its_anchor() {
        fn shared<T: Send + Sync>() {}
        shared::<AuditLog>();
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path(), key(1), 16).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.append(event(t * 100 + i)).unwrap();
                        if i == 25 {
                            log.checkpoint().unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let last = log.checkpoint().unwrap();
        let (seq, head) = log.head();
        let anchor = read_anchor(dir.path()).unwrap().unwrap();
        assert_eq!(anchor, last);
        assert_eq!(last.size + 1, seq);
        for anchor in [None, Some(&anchor)] {
            let report = verify(log.path(), &host(), anchor).unwrap();
            assert_eq!(report.records, seq);
            assert_eq!(report.head, head);
            assert_eq!(report.last_checkpoint, Some(last.size));
            // 9 on demand, and one after each event whose seq is a multiple of 16.
            assert!(report.checkpoints >= 400 / 16, "{report:?}");
            assert_eq!(report.records, 400 + report.checkpoints);
        }
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = clean_log();
        let (seq, head) = AuditLog::open(dir.path(), key(1), 0).unwrap().head();
        assert_eq!(seq, 11);
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        assert_eq!(log.head(), (seq, head.clone()));
        assert_eq!(log.append(event(99)).unwrap(), 12);
        let record = read_tail(log.path(), 1).unwrap().remove(0);
        assert_eq!((record.seq, record.prev), (12, head));
        log.checkpoint().unwrap();
        assert_eq!(verify_dir(dir.path()).unwrap().records, 13);
    }

    /// Two writers on one data directory (a host and the CLI, say), each with its own handle and
    /// in-memory head, appending and checkpointing in turn and from threads: one valid chain.
    #[test]
    fn two_writers_on_one_log_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(AuditLog::open(dir.path(), key(1), 0).unwrap());
        let b = Arc::new(AuditLog::open(dir.path(), key(1), 0).unwrap());
        for i in 0..20 {
            let log = if i % 3 == 0 { &a } else { &b };
            log.append(event(i)).unwrap();
            if i % 7 == 0 {
                log.checkpoint().unwrap();
            }
        }
        let threads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|log| {
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.append(event(i)).unwrap();
                        if i % 50 == 0 {
                            log.checkpoint().unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        b.checkpoint().unwrap();
        let report = verify_dir(dir.path()).unwrap();
        assert_eq!(report.records - report.checkpoints, 420);
    }

    #[test]
    fn each_tampering_is_detected_at_the_first_bad_record() {
        let dir = clean_log();
        let clean = verify_dir(dir.path()).unwrap();
        assert_eq!((clean.records, clean.checkpoints), (11, 1));
        type Edit = fn(&mut Vec<String>);
        let cases: [(&str, Edit, Option<u64>, &str); 6] = [
            (
                "a detail edited",
                |l| l[2] = l[2].replace("\"n\":2", "\"n\":20"),
                Some(3),
                "record 3 (line 3) was edited",
            ),
            (
                "a hash edited",
                |l| l[0] = flip_hash(&l[0]),
                Some(1),
                "record 1 (line 1) was edited",
            ),
            (
                "a record deleted",
                |l| {
                    l.remove(4);
                },
                Some(5),
                "line 5 holds record 6 where record 5 belongs",
            ),
            (
                "two records swapped",
                |l| l.swap(1, 2),
                Some(2),
                "line 2 holds record 3 where record 2 belongs",
            ),
            (
                "an edit with the chain recomputed",
                |l| {
                    l[3] = l[3].replace("alice", "mallory");
                    rechain(l, 3);
                },
                Some(10),
                "record 10 (line 10) is not the record the anchor signed",
            ),
            (
                "a line that is not a record",
                |l| l[6] = "{\"seq\":7".into(),
                Some(7),
                "line 7 of the audit log is not a valid record",
            ),
        ];
        for (name, edit, line, says) in cases {
            let copy = tampered(dir.path(), edit);
            let e = verify_dir(copy.path()).expect_err(name);
            assert_eq!(e.line(), line, "{name}: {e}");
            assert!(e.to_string().contains(says), "{name}: {e}");
        }
    }

    #[test]
    fn an_edit_with_the_chain_recomputed_is_caught_by_the_checkpoint() {
        let dir = clean_log();
        let copy = tampered(dir.path(), |l| {
            l[3] = l[3].replace("alice", "mallory");
            rechain(l, 3);
        });
        let e = verify(&copy.path().join(LOG_FILE), &host(), None).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::CheckpointMismatch {
                    line: 11,
                    seq: 11,
                    ..
                }
            ),
            "{e}"
        );
        // Re-signing the checkpoint needs a key; any other key is refused.
        let copy = tampered(dir.path(), |l| {
            l[3] = l[3].replace("alice", "mallory");
            rechain(l, 3);
            let mut record: AuditRecord = serde_json::from_str(&l[10]).unwrap();
            let head: AuditRecord = serde_json::from_str(&l[9]).unwrap();
            record.detail =
                serde_json::to_value(Checkpoint::sign(&key(2), 10, &head.hash)).unwrap();
            l[10] = serde_json::to_string(&record).unwrap();
            rechain(l, 10);
        });
        let log = copy.path().join(LOG_FILE);
        let e = verify(&log, &host(), None).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::ForeignKey {
                    line: 11,
                    seq: 11,
                    ..
                }
            ),
            "{e}"
        );
        // The anchor, which was not rewritten, catches it before the checkpoint does.
        let e = verify_dir(copy.path()).unwrap_err();
        assert!(
            matches!(e, VerifyError::RolledBack { line: 10, seq: 10 }),
            "{e}"
        );
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_refused() {
        let dir = clean_log();
        let other = AuditLog::open(dir.path(), key(2), 0).unwrap();
        other.append(event(11)).unwrap();
        other.checkpoint().unwrap();
        let e = verify(other.path(), &host(), None).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::ForeignKey {
                    line: 13,
                    seq: 13,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("not the host key"), "{e}");
        // Its twin: under the key that signed it the last checkpoint is fine, the first is not.
        let e = verify(other.path(), &key(2).verifying_key(), None).unwrap_err();
        assert_eq!(e.seq(), Some(11), "{e}");
        // The anchor it wrote is refused too.
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(matches!(e, VerifyError::BadAnchor { .. }), "{e}");
    }

    #[test]
    fn truncation_is_caught_by_the_anchor_only() {
        let dir = clean_log();
        let copy = tampered(dir.path(), |l| l.truncate(8));
        let log = copy.path().join(LOG_FILE);
        // The chain alone cannot tell a cut log from a short one…
        assert_eq!(verify(&log, &host(), None).unwrap().records, 8);
        // …the anchor can, and so can opening it for writing.
        let e = verify_dir(copy.path()).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Truncated {
                    records: 8,
                    anchored: 10
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("truncated or rolled back"), "{e}");
        let e = AuditLog::open(copy.path(), key(1), 0).err().unwrap();
        assert!(
            matches!(
                e,
                AuditError::BehindAnchor {
                    records: 8,
                    anchored: 10,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_rolled_back_log_is_caught_by_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        for i in 0..5 {
            log.append(event(i)).unwrap();
        }
        log.checkpoint().unwrap();
        let older = std::fs::read(log.path()).unwrap();
        for i in 5..10 {
            log.append(event(i)).unwrap();
        }
        log.checkpoint().unwrap();
        drop(log);
        assert!(verify_dir(dir.path()).is_ok());

        // Put back the older copy: a valid chain, just shorter than the anchor.
        let rolled = tampered(dir.path(), |_| {});
        std::fs::write(rolled.path().join(LOG_FILE), &older).unwrap();
        let e = verify_dir(rolled.path()).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Truncated {
                    records: 6,
                    anchored: 11
                }
            ),
            "{e}"
        );

        // And grow it past the anchor with other records: the anchored record differs.
        let forked = tempfile::tempdir().unwrap();
        std::fs::write(forked.path().join(LOG_FILE), &older).unwrap();
        let fork = AuditLog::open(forked.path(), key(1), 0).unwrap();
        for i in 0..8 {
            fork.append(event(100 + i)).unwrap();
        }
        std::fs::copy(fork.path(), rolled.path().join(LOG_FILE)).unwrap();
        let e = verify_dir(rolled.path()).unwrap_err();
        assert!(
            matches!(e, VerifyError::RolledBack { line: 11, seq: 11 }),
            "{e}"
        );
    }

    #[test]
    fn a_torn_last_line_stops_open_and_verify() {
        let dir = clean_log();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        file.write_all(b"{\"seq\":12,\"time_ms\":1").unwrap();
        let e = AuditLog::open(dir.path(), key(1), 0).err().unwrap();
        assert!(matches!(e, AuditError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("warden audit verify"), "{e}");
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(matches!(e, VerifyError::Torn { line: 12 }), "{e}");
        // Never silently cut: the partial line is still there.
        assert!(
            std::fs::read_to_string(dir.path().join(LOG_FILE))
                .unwrap()
                .ends_with(":1")
        );
        // A complete last line that is not a record is refused the same way.
        file.write_all(b"\n").unwrap();
        let e = AuditLog::open(dir.path(), key(1), 0).err().unwrap();
        assert!(matches!(e, AuditError::Damaged { .. }), "{e}");
        assert!(matches!(
            verify_dir(dir.path()).unwrap_err(),
            VerifyError::Unparsable { line: 12, .. }
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn append_fails_closed_when_the_log_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        // Every write to /dev/full fails with ENOSPC, through the real open and append path.
        std::os::unix::fs::symlink("/dev/full", dir.path().join(LOG_FILE)).unwrap();
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        let e = log.append(event(0)).unwrap_err();
        assert!(
            matches!(
                &e,
                AuditError::Io {
                    action: "write",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(log.head(), (0, GENESIS.to_string()));
        let e = log.append(event(1)).unwrap_err();
        assert!(matches!(e, AuditError::Broken { .. }), "{e}");
        assert!(log.checkpoint().is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_log_removed_or_replaced_while_open_takes_no_more_records() {
        let dir = clean_log();
        let path = dir.path().join(LOG_FILE);
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = log.append(event(0)).unwrap_err();
        assert!(matches!(e, AuditError::Detached { .. }), "{e}");
        assert!(matches!(
            log.append(event(1)).unwrap_err(),
            AuditError::Broken { .. }
        ));

        // Replaced by a rename keeps the old file linked elsewhere: the checkpoint notices.
        let dir = clean_log();
        let path = dir.path().join(LOG_FILE);
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        std::fs::rename(&path, dir.path().join("audit.old")).unwrap();
        std::fs::write(&path, b"").unwrap();
        let e = log.checkpoint().unwrap_err();
        assert!(matches!(e, AuditError::Detached { .. }), "{e}");
        // Its twin: the log left in place takes records and checkpoints.
        let dir = clean_log();
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        log.append(event(0)).unwrap();
        log.checkpoint().unwrap();
    }

    #[test]
    fn the_checkpoint_kind_is_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
        let e = log.append(AuditEvent::new(CHECKPOINT_KIND)).unwrap_err();
        assert!(matches!(e, AuditError::ReservedKind), "{e}");
        assert_eq!(log.append(AuditEvent::new("checkpoints")).unwrap(), 1);
    }

    #[test]
    fn records_are_written_in_the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), key(1), 2).unwrap();
        assert_eq!(read_anchor(dir.path()).unwrap(), None);
        log.append(AuditEvent::new("started")).unwrap();
        log.append(event(1)).unwrap();
        let l = lines(dir.path());
        assert_eq!(l.len(), 3, "a checkpoint follows record 2");
        let first: AuditRecord = serde_json::from_str(&l[0]).unwrap();
        assert_eq!(
            (first.seq, first.prev.as_str(), first.task),
            (1, GENESIS, None)
        );
        assert!(l[0].starts_with("{\"seq\":1,\"time_ms\":"), "{}", l[0]);
        assert!(l[0].contains(",\"kind\":\"started\",\"task\":null,\"agent\":null,\"user\":null,\"detail\":null,\"prev\":\""));
        let body = format!("{}}}", &l[0][..l[0].len() - HASH_SUFFIX_LEN]);
        let hash = Sha256::digest(format!("warden-audit-v1\n{GENESIS}\n{body}"));
        assert_eq!(first.hash, hex(&hash));
        let checkpoint: Checkpoint =
            serde_json::from_value(serde_json::from_str::<AuditRecord>(&l[2]).unwrap().detail)
                .unwrap();
        let second: AuditRecord = serde_json::from_str(&l[1]).unwrap();
        assert_eq!((checkpoint.size, &checkpoint.head), (2, &second.hash));
        assert_eq!(checkpoint.key, hex(host().as_bytes()));
        assert_eq!(read_anchor(dir.path()).unwrap(), Some(checkpoint));
    }

    #[test]
    fn tail_returns_the_last_complete_records_in_order() {
        let dir = clean_log();
        let log = dir.path().join(LOG_FILE);
        let seqs = |n| {
            read_tail(&log, n)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(3), [9, 10, 11]);
        assert_eq!(seqs(100).len(), 11);
        assert!(seqs(0).is_empty());
        // A line still being written is not shown.
        OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"{\"seq\":12")
            .unwrap();
        assert_eq!(seqs(2), [10, 11]);
        // Over many read-back chunks.
        let big = tempfile::tempdir().unwrap();
        let writer = AuditLog::open(big.path(), key(1), 0).unwrap();
        for i in 0..2000 {
            writer.append(event(i)).unwrap();
        }
        let tail = read_tail(writer.path(), 500).unwrap();
        assert_eq!((tail.len(), tail[0].seq, tail[499].seq), (500, 1501, 2000));
    }

    #[test]
    fn follow_reports_appended_records_until_told_to_stop() {
        let dir = clean_log();
        let log = Arc::new(AuditLog::open(dir.path(), key(1), 0).unwrap());
        let from = std::fs::metadata(log.path()).unwrap().len();
        let writer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..5 {
                    std::thread::sleep(Duration::from_millis(5));
                    log.append(event(i)).unwrap();
                }
            })
        };
        let mut seen = Vec::new();
        follow(
            log.path(),
            from,
            |r| {
                seen.push(r.seq);
                seen.len() < 3
            },
            Duration::from_millis(1),
        )
        .unwrap();
        writer.join().unwrap();
        assert_eq!(seen, [12, 13, 14]);
        // A log that shrinks under the follower is an error, not a hang.
        std::fs::write(log.path(), b"").unwrap();
        let e = follow(log.path(), from, |_| true, Duration::from_millis(1)).unwrap_err();
        assert!(matches!(e, AuditError::Record { .. }), "{e}");
    }
}
