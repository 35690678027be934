//! Reading the log from a place in it, a bounded batch at a time: a page of records after a
//! given seq (`GET /v1/audit?after=SEQ`), and a cursor that picks up records as they are
//! appended (`GET /v1/tasks/{id}/events`). Like `tail.rs`, it reads and does not check the
//! chain; `warden audit verify` does.
//!
//! Where to start is found by bisection over byte offsets (each probe reads the first whole
//! line after an offset), so a page deep in a large log costs a few reads, not a scan: records
//! are appended in order, so both `seq` and, but for a clock stepped back, `time_ms` grow along
//! the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{AuditError, AuditRecord, io_error};

/// The longest line a cursor accepts (a record is far smaller; the bound keeps a damaged log
/// from growing a reader's buffer without end).
pub const MAX_LINE: usize = 1024 * 1024;

/// How much a cursor reads at a time.
const CHUNK: usize = 64 * 1024;

/// A reading position in the log, at the start of a line, and the bytes read past it that do
/// not yet make a whole line.
#[derive(Debug)]
pub struct LogCursor {
    path: PathBuf,
    file: File,
    offset: u64,
    pending: Vec<u8>,
}

impl LogCursor {
    /// A cursor at the start of `log`.
    ///
    /// # Errors
    ///
    /// When the log cannot be opened.
    pub fn open(log: &Path) -> Result<LogCursor, AuditError> {
        let file = File::open(log).map_err(io_error("read", log))?;
        Ok(LogCursor {
            path: log.to_path_buf(),
            file,
            offset: 0,
            pending: Vec::new(),
        })
    }

    /// A cursor at the first record whose seq is above `seq` (the end of the log when there is
    /// none yet: it then sees the records appended next).
    ///
    /// # Errors
    ///
    /// When the log cannot be read or a record probed is not valid.
    pub fn after_seq(log: &Path, seq: u64) -> Result<LogCursor, AuditError> {
        let mut cursor = LogCursor::open(log)?;
        cursor.offset = cursor.first_line_where(|r| r.seq > seq)?;
        Ok(cursor)
    }

    /// A cursor at the first record written at or after `time_ms` (Unix ms) as the log's order
    /// has it: a record before it with a later time (a clock stepped back) may be skipped, so
    /// callers start a little early and filter.
    ///
    /// # Errors
    ///
    /// As [`LogCursor::after_seq`].
    pub fn from_time(log: &Path, time_ms: u64) -> Result<LogCursor, AuditError> {
        let mut cursor = LogCursor::open(log)?;
        cursor.offset = cursor.first_line_where(|r| r.time_ms >= time_ms)?;
        Ok(cursor)
    }

    /// The byte offset the cursor will read from next (the start of a line).
    pub fn offset(&self) -> u64 {
        self.offset + self.pending.len() as u64
    }

    /// Up to `max` whole records appended since the last call (none when the log holds no
    /// more yet; a line still being written waits for its newline).
    ///
    /// # Errors
    ///
    /// When the log cannot be read, a record is not valid, a line is longer than [`MAX_LINE`],
    /// or the log shrank below the cursor (it was truncated or replaced).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let mut out = Vec::new();
        self.take_lines(&mut out, max)?;
        let len = self
            .file
            .metadata()
            .map_err(io_error("read", &self.path))?
            .len();
        if len < self.offset() {
            return Err(self.bad(format!(
                "the log shrank from {} to {len} bytes while it was read",
                self.offset()
            )));
        }
        let mut chunk = vec![0; CHUNK];
        while out.len() < max && self.offset() < len {
            self.file
                .seek(SeekFrom::Start(self.offset()))
                .map_err(io_error("read", &self.path))?;
            let read = self
                .file
                .read(&mut chunk)
                .map_err(io_error("read", &self.path))?;
            if read == 0 {
                break;
            }
            self.pending.extend_from_slice(&chunk[..read]);
            self.take_lines(&mut out, max)?;
            if self.pending.len() > MAX_LINE {
                return Err(self.bad(format!("a line is longer than {MAX_LINE} bytes")));
            }
        }
        Ok(out)
    }

    /// Move whole lines from `pending` into `out`, at most `max` in all.
    fn take_lines(&mut self, out: &mut Vec<AuditRecord>, max: usize) -> Result<(), AuditError> {
        let mut used = 0;
        while out.len() < max {
            let Some(end) = self.pending[used..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = &self.pending[used..used + end];
            out.push(parse(&self.path, line)?);
            used += end + 1;
        }
        self.pending.drain(..used);
        self.offset += used as u64;
        Ok(())
    }

    /// The offset of the first line for which `past` holds, `past` being false then true along
    /// the file (the file's length when it holds for none).
    fn first_line_where(&mut self, past: impl Fn(&AuditRecord) -> bool) -> Result<u64, AuditError> {
        let len = self
            .file
            .metadata()
            .map_err(io_error("read", &self.path))?
            .len();
        // Invariant: the line starting at or after `lo` may be the first; none before `lo` is;
        // the line starting at or after `hi` is past (or there is none).
        let (mut lo, mut hi) = (0u64, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.line_at_or_after(mid)? {
                Some((start, record)) if start < hi => {
                    if past(&record) {
                        hi = mid;
                    } else {
                        lo = start + 1;
                    }
                }
                _ => hi = mid,
            }
        }
        Ok(self.line_at_or_after(lo)?.map_or(len, |(start, _)| start))
    }

    /// The first whole line starting at or after `offset`, with where it starts.
    fn line_at_or_after(&mut self, offset: u64) -> Result<Option<(u64, AuditRecord)>, AuditError> {
        let path = self.path.clone();
        let err = |e: io::Error| AuditError::Io {
            action: "read",
            path: path.clone(),
            source: e,
        };
        // A line starts after a newline: look from the byte before.
        let from = offset.saturating_sub(1);
        self.file.seek(SeekFrom::Start(from)).map_err(err)?;
        let mut reader = BufReader::new((&mut self.file).take(2 * MAX_LINE as u64 + 1));
        let mut start = from;
        if offset > 0 {
            let mut skipped = Vec::new();
            reader.read_until(b'\n', &mut skipped).map_err(err)?;
            if skipped.last() != Some(&b'\n') {
                return Ok(None);
            }
            start += skipped.len() as u64;
        }
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).map_err(err)?;
        if line.last() != Some(&b'\n') {
            if line.len() > MAX_LINE {
                return Err(self.bad(format!("a line is longer than {MAX_LINE} bytes")));
            }
            // An unterminated last line (a write in progress) is not a record yet.
            return Ok(None);
        }
        line.pop();
        Ok(Some((start, parse(&self.path, &line)?)))
    }

    fn bad(&self, why: String) -> AuditError {
        AuditError::Record {
            path: self.path.clone(),
            why,
        }
    }
}

/// Up to `limit` records with a seq above `after`, oldest first (a page of the log).
///
/// # Errors
///
/// When the log cannot be read or one of those records is not valid.
pub fn read_after(log: &Path, after: u64, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
    LogCursor::after_seq(log, after)?.next_batch(limit)
}

fn parse(log: &Path, line: &[u8]) -> Result<AuditRecord, AuditError> {
    serde_json::from_slice(line).map_err(|e| AuditError::Record {
        path: log.to_path_buf(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{AuditEvent, AuditLog};
    use super::*;

    fn log_of(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let log = AuditLog::open(dir.path(), key, 1_000_000).unwrap();
        for i in 0..n {
            log.append(AuditEvent::new("test").task(i)).unwrap();
        }
        let path = log.path().to_path_buf();
        drop(log);
        (dir, path)
    }

    #[test]
    fn a_page_starts_after_the_seq_asked_for_and_holds_at_most_its_limit() {
        let (_dir, log) = log_of(300);
        for after in [0, 1, 2, 150, 298] {
            let page = read_after(&log, after, 5).unwrap();
            assert_eq!(
                page.first().map(|r| r.seq),
                Some(after + 1),
                "after {after}"
            );
            assert!(page.len() <= 5);
            assert!(page.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        }
        let last = read_after(&log, 299, 5).unwrap();
        assert_eq!(last.iter().map(|r| r.seq).collect::<Vec<_>>(), [300]);
        // Past the end: nothing yet, not an error.
        assert!(read_after(&log, 300, 5).unwrap().is_empty());
        assert!(read_after(&log, u64::MAX, 5).unwrap().is_empty());
        assert!(read_after(&log, 0, 0).unwrap().is_empty());
    }

    #[test]
    fn a_cursor_sees_records_appended_after_it_and_never_half_a_line() {
        let (dir, log) = log_of(3);
        let mut cursor = LogCursor::after_seq(&log, 3).unwrap();
        assert!(cursor.next_batch(10).unwrap().is_empty());
        // A line being written: not a record until its newline.
        let whole = std::fs::read(&log).unwrap();
        let line = &whole[..whole.iter().position(|&b| b == b'\n').unwrap() + 1];
        let mut next = String::from_utf8(line.to_vec()).unwrap();
        next = next.replacen("\"seq\":1", "\"seq\":4", 1);
        let (head, tail) = next.split_at(20);
        let append = |s: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        append(head);
        assert!(cursor.next_batch(10).unwrap().is_empty());
        append(tail);
        let got = cursor.next_batch(10).unwrap();
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [4]);
        // From a time: the records at or after it.
        let all = read_after(&log, 0, 10).unwrap();
        let mut from = LogCursor::from_time(&log, all[0].time_ms).unwrap();
        assert_eq!(from.next_batch(10).unwrap().len(), all.len());
        let mut late = LogCursor::from_time(&log, u64::MAX).unwrap();
        assert!(late.next_batch(10).unwrap().is_empty());
        drop(dir);
    }

    #[test]
    fn a_log_that_shrank_under_a_cursor_is_an_error() {
        let (_dir, log) = log_of(5);
        let mut cursor = LogCursor::open(&log).unwrap();
        assert_eq!(cursor.next_batch(100).unwrap().len(), 5);
        std::fs::write(&log, b"").unwrap();
        assert!(cursor.next_batch(100).is_err());
    }
}
