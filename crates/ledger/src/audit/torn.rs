//! A last line cut short by a kill: Linux checks for a fatal signal between the pages of a
//! `write(2)`, so a process killed while appending a multi-page group of records can leave the
//! log ending in part of a line. Those records were never acknowledged (their write never
//! returned), but the log is never cut silently either: with the file lock held (so no writer
//! is mid-write), the incomplete bytes are copied aside to `audit.torn-<offset>` (synced), the
//! log is cut back to its last complete line, and the writer's next record says so
//! (`audit-torn-tail-discarded`, with the offset, the byte count, the bytes' SHA-256 and where
//! they were saved). A complete last line that is not a valid record is still refused: that is
//! damage, not a torn write.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{AuditError, AuditEvent, io_error};
use crate::policy::keys::to_hex;

/// The kind of the record a writer appends after cutting a torn tail.
pub const TORN_TAIL_KIND: &str = "audit-torn-tail-discarded";

/// The most bytes an incomplete last line may hold to be treated as a torn write (a group
/// commit writes far less at once); more is damage for `warden audit verify`.
const MAX_TORN: u64 = 64 * 1024 * 1024;

/// What [`cut_torn_tail`] removed.
#[derive(Debug, Clone)]
pub(super) struct TornTail {
    offset: u64,
    bytes: u64,
    sha256: String,
    saved: PathBuf,
}

impl TornTail {
    /// The record that says what was cut and where the bytes are.
    pub(super) fn event(&self) -> AuditEvent {
        AuditEvent::new(TORN_TAIL_KIND).detail(serde_json::json!({
            "offset": self.offset,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "saved_to": self.saved.display().to_string(),
            "why": "the log ended in an incomplete line: a process was killed while appending; \
                    the records in it were never acknowledged",
        }))
    }
}

/// With the log's file lock held: when `file` (the log at `path` in `dir`) ends in an
/// incomplete line, saves that line's bytes to `dir/audit.torn-<offset>`, cuts the log back to
/// the end of its last complete line, and says what it did.
///
/// # Errors
///
/// [`AuditError::Damaged`] when the incomplete part is larger than any torn write could be;
/// [`AuditError::Io`] when the log cannot be read or cut or the bytes cannot be saved (the log
/// is then left as it was).
pub(super) fn cut_torn_tail(
    file: &File,
    path: &Path,
    dir: &Path,
) -> Result<Option<TornTail>, AuditError> {
    let mut reader = file.try_clone().map_err(io_error("read", path))?;
    let len = reader.metadata().map_err(io_error("check", path))?.len();
    if len == 0 || last_byte(&mut reader).map_err(io_error("read", path))? == b'\n' {
        return Ok(None);
    }
    let Some(offset) =
        last_newline_before(&mut reader, len, MAX_TORN).map_err(io_error("read", path))?
    else {
        return Err(AuditError::Damaged {
            path: path.to_path_buf(),
            why: format!(
                "it ends in more than {MAX_TORN} bytes without a newline, more than any single write appends"
            ),
        });
    };
    let bytes = len - offset;
    let (saved, sha256) = save_aside(&mut reader, offset, bytes, dir)?;
    file.set_len(offset).map_err(io_error("cut", path))?;
    Ok(Some(TornTail {
        offset,
        bytes,
        sha256,
        saved,
    }))
}

/// How many of the first `len` bytes of the log at `path` are whole lines: `len` when they end
/// in a newline, else the offset just past the last newline before (a write in progress, or
/// a torn one the next writer cuts). Reads back from `len` only as far as that newline.
///
/// # Errors
///
/// When the log cannot be read.
pub fn complete_length(path: &Path, len: u64) -> Result<u64, AuditError> {
    if len == 0 {
        return Ok(0);
    }
    let mut reader = File::open(path).map_err(io_error("read", path))?;
    last_newline_before(&mut reader, len, u64::MAX)
        .map(|found| found.unwrap_or(0))
        .map_err(io_error("read", path))
}

fn last_byte(reader: &mut File) -> io::Result<u8> {
    let mut byte = [0u8];
    reader.seek(SeekFrom::End(-1))?;
    reader.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// The offset just past the last newline before `before` (0 when the file holds none before
/// it), scanning back in chunks; `None` when none is found within `limit` bytes.
fn last_newline_before(reader: &mut File, mut before: u64, limit: u64) -> io::Result<Option<u64>> {
    let floor = before.saturating_sub(limit);
    let mut chunk = vec![0u8; 64 * 1024];
    while before > floor {
        let step = (chunk.len() as u64).min(before - floor);
        before -= step;
        let buf = &mut chunk[..usize::try_from(step).unwrap_or(0)];
        reader.seek(SeekFrom::Start(before))?;
        reader.read_exact(buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(before + i as u64 + 1));
        }
    }
    Ok((before == 0).then_some(0))
}

/// Copies `bytes` bytes from `offset` to a new file `dir/audit.torn-<offset>` (`.1`, `.2`, …
/// when an earlier cut at the same offset left one; mode 0600, synced) and returns where and
/// their SHA-256 (hex).
fn save_aside(
    reader: &mut File,
    offset: u64,
    bytes: u64,
    dir: &Path,
) -> Result<(PathBuf, String), AuditError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut n = 0u32;
    let (saved, mut out) = loop {
        let saved = match n {
            0 => dir.join(format!("audit.torn-{offset}")),
            n => dir.join(format!("audit.torn-{offset}.{n}")),
        };
        match options.open(&saved) {
            Ok(out) => break (saved, out),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(io_error("create", &saved)(e)),
        }
    };
    let saved_ref = saved.as_path();
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(io_error("read", saved_ref))?;
    let mut hasher = Sha256::new();
    let mut left = reader.take(bytes);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = left.read(&mut chunk).map_err(io_error("read", saved_ref))?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n])
            .map_err(io_error("write", saved_ref))?;
    }
    out.sync_all().map_err(io_error("sync", saved_ref))?;
    Ok((saved, to_hex(&hasher.finalize())))
}
