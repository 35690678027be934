//! The audit log's writer: [`AuditLog`] appends chained records under a file lock shared with
//! other processes on the same data directory, signs checkpoints and keeps the anchor file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ed25519_dalek::SigningKey;

use super::stat::links_and_len;
use super::tail::{complete_lines, read_back};
use super::torn::cut_torn_tail;
use super::{
    ANCHOR_FILE, AuditError, AuditEvent, AuditRecord, CHECKPOINT_KIND, Checkpoint, GENESIS,
    HASH_PREFIX, LINE_CAPACITY, LOG_FILE, RecordBody, io_error, line_hash, now_ms, push_hex,
    read_anchor, record_hash,
};

/// What one write appends: the given events, in order, or (alone) a checkpoint signing the
/// head as it stands once the file lock is held.
enum Lines<'a> {
    Events(&'a [AuditEvent]),
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
    /// Whether the log ended in records no checkpoint signs when it was opened.
    opened_unsigned: bool,
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
        // Under the file lock no writer is mid-write: an incomplete last line is a torn write.
        file.lock().map_err(io_error("lock", &path))?;
        let opened = cut_torn_tail(&file, &path, dir).and_then(|torn| {
            let (seq, head, kind) = recover_head(&mut file, &path)?;
            let end = file.metadata().map_err(io_error("check", &path))?.len();
            Ok((torn, seq, head, kind, end))
        });
        let unlocked = file.unlock().map_err(io_error("unlock", &path));
        let (torn, seq, head, last_kind, end) = opened?;
        unlocked?;
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
        let log = AuditLog {
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
            opened_unsigned: seq > 0 && last_kind != CHECKPOINT_KIND,
        };
        if let Some(torn) = torn {
            log.append(torn.event())?;
        }
        Ok(log)
    }

    /// Whether the log, when this handle opened it, ended in records that no checkpoint signs:
    /// the last process to write it stopped without its closing checkpoint (it was killed or
    /// crashed), or another one is still writing.
    pub fn opened_unsigned(&self) -> bool {
        self.opened_unsigned
    }

    /// How many records the newest anchor this handle knows of covers (read at open, raised
    /// by each checkpoint it writes).
    pub fn anchored(&self) -> u64 {
        *self.anchored.lock().unwrap_or_else(|p| p.into_inner())
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
        self.append_all(std::slice::from_ref(&event))
    }

    /// Appends `events` in order, chained, with a single `write(2)` of all their lines (a group
    /// commit's records: one lock, one write, however many tasks they belong to) and no fsync,
    /// as [`AuditLog::append`] does for one. Returns the last record's seq (the head's, for
    /// none). Either every line is written or the log is left broken: nothing in between is
    /// reported as written.
    ///
    /// # Errors
    ///
    /// As [`AuditLog::append`]; one event of kind `checkpoint` refuses the whole batch, before
    /// anything is written.
    pub fn append_all(&self, events: &[AuditEvent]) -> Result<u64, AuditError> {
        if events.iter().any(|e| e.kind == CHECKPOINT_KIND) {
            return Err(AuditError::ReservedKind);
        }
        let (before, seq) = {
            let mut tail = self.lock();
            let before = tail.seq;
            if events.is_empty() {
                return Ok(before);
            }
            (
                before,
                self.write_locked(&mut tail, Lines::Events(events))?.0,
            )
        };
        // A checkpoint is due after every record whose seq is a multiple of `checkpoint_every`.
        let every = self.checkpoint_every;
        if every != 0 && every != u64::MAX && seq / every > before / every {
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
        let checkpoint = self.append_checkpoint()?;
        self.anchor(&checkpoint)?;
        Ok(checkpoint)
    }

    /// The first half of [`AuditLog::checkpoint`]: signs the current head and appends it as a
    /// checkpoint record, without syncing or anchoring it (for a caller that anchors it later,
    /// off its own path, with [`AuditLog::anchor`]).
    ///
    /// # Errors
    ///
    /// When the log cannot be written.
    pub fn append_checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let mut tail = self.lock();
        let (_, signed) = self.write_locked(&mut tail, Lines::Checkpoint)?;
        Ok(signed.expect("a checkpoint record carries its checkpoint"))
    }

    /// The second half of [`AuditLog::checkpoint`]: fsyncs the log, then writes `checkpoint`
    /// to `audit.anchor` unless it already holds a newer one.
    ///
    /// # Errors
    ///
    /// When the log cannot be synced or the anchor written.
    pub fn anchor(&self, checkpoint: &Checkpoint) -> Result<(), AuditError> {
        self.file
            .sync_data()
            .map_err(io_error("sync", &self.path))?;
        self.write_anchor(checkpoint)
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

    /// Chains the lines to the head, writes them with one `write(2)` and advances the head. A
    /// checkpoint record signs the head as it stands once the file lock is held, and is
    /// returned too.
    fn write_locked(
        &self,
        tail: &mut Tail,
        lines: Lines<'_>,
    ) -> Result<(u64, Option<Checkpoint>), AuditError> {
        if tail.broken {
            return Err(AuditError::Broken {
                path: self.path.clone(),
            });
        }
        // Several processes may share a data directory (a host and the CLI): the file lock
        // serialises their appends, and a head moved by another process is read back first.
        self.file.lock().map_err(io_error("lock", &self.path))?;
        let written = self.write_with_file_lock(tail, lines);
        let unlocked = self.file.unlock().map_err(io_error("unlock", &self.path));
        let written = written?;
        unlocked?;
        Ok(written)
    }

    /// [`AuditLog::write_locked`]'s body, run with the file lock held.
    fn write_with_file_lock(
        &self,
        tail: &mut Tail,
        lines: Lines<'_>,
    ) -> Result<(u64, Option<Checkpoint>), AuditError> {
        // One `statx` answers both questions: is the open file still the log, and did another
        // process append since our last write.
        let (links, len) = links_and_len(&self.file).map_err(io_error("check", &self.path))?;
        if !self.attached(links, matches!(lines, Lines::Checkpoint)) {
            tail.broken = true;
            return Err(AuditError::Detached {
                path: self.path.clone(),
            });
        }
        let mut torn = None;
        if len != tail.end {
            // Another process appended; if it was killed mid-write, its torn line goes first.
            torn = cut_torn_tail(&self.file, &self.path, &self.dir)?;
            let mut reader = self
                .file
                .try_clone()
                .map_err(io_error("read", &self.path))?;
            let (seq, head, _) = recover_head(&mut reader, &self.path)?;
            tail.seq = seq;
            tail.head = head;
            tail.end = links_and_len(&reader)
                .map_err(io_error("check", &self.path))?
                .1;
        }
        let time_ms = now_ms();
        let mut seq = tail.seq;
        let mut head = tail.head.clone();
        tail.line.clear();
        let torn = torn.map(|t| t.event());
        let encoded = match lines {
            Lines::Events(events) => torn
                .iter()
                .chain(events)
                .try_for_each(|e| {
                    seq += 1;
                    head = self.encode_event(&mut tail.line, seq, time_ms, e, &head)?;
                    Ok(())
                })
                .map(|()| None),
            Lines::Checkpoint => {
                // A cut is recorded first; the checkpoint then signs a head that covers it.
                if let Some(e) = &torn {
                    seq += 1;
                    head = self.encode_event(&mut tail.line, seq, time_ms, e, &head)?;
                }
                let checkpoint = Checkpoint::sign(&self.key, seq, &head);
                let detail = serde_json::to_value(&checkpoint)
                    .map_err(|e| self.encode_error("encode a checkpoint for", e))?;
                seq += 1;
                head = self.encode(
                    &mut tail.line,
                    &RecordBody {
                        seq,
                        time_ms,
                        kind: CHECKPOINT_KIND,
                        task: None,
                        agent: None,
                        user: None,
                        detail: &detail,
                        prev: &head,
                    },
                )?;
                Ok(Some(checkpoint))
            }
        };
        // On an encoding error nothing was written: the head stays where it was.
        let signed = encoded?;
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
        tail.head = head;
        Ok((seq, signed))
    }

    /// Serialises `event` as record `seq` chained to `prev` at the end of `out`; returns its
    /// hash.
    fn encode_event(
        &self,
        out: &mut Vec<u8>,
        seq: u64,
        time_ms: u64,
        e: &AuditEvent,
        prev: &str,
    ) -> Result<String, AuditError> {
        self.encode(
            out,
            &RecordBody {
                seq,
                time_ms,
                kind: &e.kind,
                task: e.task,
                agent: e.agent.as_deref(),
                user: e.user.as_deref(),
                detail: &e.detail,
                prev,
            },
        )
    }

    /// Serialises `body` as one line at the end of `out`, with its hash, and returns the hash
    /// (hex): the next record's `prev`.
    fn encode(&self, out: &mut Vec<u8>, body: &RecordBody<'_>) -> Result<String, AuditError> {
        let start = out.len();
        serde_json::to_writer(&mut *out, body)
            .map_err(|e| self.encode_error("encode a record for", e))?;
        let digest = record_hash(body.prev.as_bytes(), &out[start..], b"");
        // The body ends in `}`: reopen it for the hash field.
        out.pop();
        out.extend_from_slice(HASH_PREFIX);
        let hex_start = out.len();
        push_hex(out, &digest);
        let head = out[hex_start..].iter().map(|&b| char::from(b)).collect();
        out.extend_from_slice(b"\"}\n");
        Ok(head)
    }

    fn encode_error(&self, action: &'static str, e: serde_json::Error) -> AuditError {
        AuditError::Io {
            action,
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Whether the open file (with `links` links) is still the log at `path`. Records written
    /// to a file that was removed or replaced would reach no one, so appending must stop. Every
    /// append checks the link count; a checkpoint also compares the file at `path`.
    fn attached(&self, links: u64, by_path: bool) -> bool {
        if links == 0 {
            return false;
        }
        #[cfg(unix)]
        if by_path {
            use std::os::unix::fs::MetadataExt;
            let Ok(open) = self.file.metadata() else {
                return false;
            };
            return std::fs::metadata(&self.path)
                .is_ok_and(|m| (m.dev(), m.ino()) == (open.dev(), open.ino()));
        }
        let _ = by_path;
        true
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

/// The seq, hash and kind of the log's last record, refusing a torn or invalid last line.
fn recover_head(file: &mut File, path: &Path) -> Result<(u64, String, String), AuditError> {
    let (_, bytes) = read_back(file, 1).map_err(io_error("read", path))?;
    let damaged = |why: String| AuditError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    if bytes.is_empty() {
        return Ok((0, GENESIS.to_string(), String::new()));
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
        Some(hash) if hash == record.hash => Ok((record.seq, record.hash, record.kind)),
        _ => Err(damaged(format!(
            "record {} does not match its hash",
            record.seq
        ))),
    }
}
