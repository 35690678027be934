//! Reading the end of the log: the last records (`warden audit tail`) and records as they are
//! appended (`--follow`). Neither checks the chain; `warden audit verify` does.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use super::{AuditError, AuditRecord, TAIL_CHUNK, io_error};

/// Reads back from the end of `file` until the bytes read hold more than `n` newlines (so the
/// last `n` complete lines are whole) or the whole file is read. Returns where they start.
pub(super) fn read_back(file: &mut File, n: usize) -> io::Result<(u64, Vec<u8>)> {
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
pub(super) fn complete_lines(bytes: &[u8], n: usize) -> Vec<&[u8]> {
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

/// The record numbered `seq`, read back from the end of the log: cheap when it is near the end,
/// as the head the state store last vouched for is. `None` when the log ends before it (or
/// holds no record with that seq).
///
/// # Errors
///
/// When the log cannot be read, or a record read on the way is not valid.
pub fn find_record(log: &Path, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
    let mut file = File::open(log).map_err(io_error("read", log))?;
    let mut n = 16;
    loop {
        let (start, bytes) = read_back(&mut file, n).map_err(io_error("read", log))?;
        let lines = complete_lines(&bytes, n);
        let Some(first) = lines.first() else {
            return Ok(None);
        };
        let first = parse_record(log, first)?;
        if first.seq <= seq || start == 0 {
            // Seqs run without gaps in a sound log; a tampered one is searched line by line.
            let at = usize::try_from(seq.saturating_sub(first.seq)).unwrap_or(usize::MAX);
            if let Some(line) = lines.get(at) {
                let record = parse_record(log, line)?;
                if record.seq == seq {
                    return Ok(Some(record));
                }
            }
            for line in lines {
                let record = parse_record(log, line)?;
                if record.seq == seq {
                    return Ok(Some(record));
                }
            }
            return Ok(None);
        }
        n = n.saturating_mul(4);
    }
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
