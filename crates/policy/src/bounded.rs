//! Reads of files and streams a user names — `--input @FILE`, `--token @FILE`, a batch file or
//! stdin, keys, signatures, approvals, agent components — each with a [`Limit`]. Going past it is
//! a [`ReadError`] that names the file, what it is and the limit, read no further than one byte
//! past the limit: `@/dev/zero` costs a few MiB, not the machine.
//!
//! The size a file claims is not trusted (`/dev/zero` and `/proc` files say 0, a FIFO says
//! nothing, a file can grow while it is read): the read itself is bounded.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// How much of one kind of input the host reads, and what to call that input in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What the input is, for the message: "a task input (--input @FILE)".
    pub what: &'static str,
    /// The most bytes accepted.
    pub bytes: u64,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

impl Limit {
    /// A task's input, `--input @FILE` (and each line of a batch, which carries one).
    pub const TASK_INPUT: Limit = Limit::new("a task input (--input @FILE)", 16 * MIB);
    /// One line of a `warden batch` file or stdin: a task with its input.
    pub const BATCH_LINE: Limit =
        Limit::new("one line of a batch (a task and its input)", 16 * MIB);
    /// An identity token, `--token @FILE` (a PASETO token is a few hundred bytes).
    pub const TOKEN: Limit = Limit::new("an identity token (--token @FILE)", 64 * KIB);
    /// A key file (`.key`, `.pub`: one line of hex).
    pub const KEY: Limit = Limit::new("a key file", 4 * KIB);
    /// A detached signature file (`.sig`: four short TOML lines).
    pub const SIGNATURE: Limit = Limit::new("a signature file", 64 * KIB);
    /// A saved approval (`warden approve --save`, read back by `--submit`).
    pub const APPROVAL: Limit = Limit::new("a saved approval (--submit FILE)", MIB);
    /// A policy file to sign (the same bound the policy loader keeps).
    pub const POLICY: Limit = Limit::new("a policy file", MIB);
    /// A secret's file (`[[secrets]] file = …` in the host configuration).
    pub const SECRET: Limit = Limit::new("a secret file", 64 * KIB);

    /// A limit of `bytes` for `what`.
    pub const fn new(what: &'static str, bytes: u64) -> Limit {
        Limit { what, bytes }
    }

    /// An agent component, bounded by the engine's `max_component_size`.
    pub fn component(bytes: usize) -> Limit {
        Limit::new("an agent component", bytes as u64)
    }
}

/// A size as people write it: `16 MiB`, `64 KiB`, `1000 bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Over the limit.
    #[error(
        "{path} is over the {} limit for {}; give a smaller file",
        Size(limit.bytes),
        limit.what
    )]
    TooLarge {
        /// The file or stream.
        path: String,
        /// The limit it passed.
        limit: Limit,
    },
    /// One line of a line-by-line input is over the limit (or never ends: `/dev/zero`).
    #[error(
        "line {line} of {path} is over the {} limit for {}; split it or give a smaller task",
        Size(limit.bytes),
        limit.what
    )]
    LineTooLong {
        /// The file or stream.
        path: String,
        /// Its line number, from 1.
        line: usize,
        /// The limit it passed.
        limit: Limit,
    },
    /// Not UTF-8 where text was expected.
    #[error("{path} is not UTF-8 text ({})", limit.what)]
    NotText {
        /// The file or stream.
        path: String,
        /// What it was read as.
        limit: Limit,
    },
    /// The file could not be opened or read.
    #[error("cannot read {path} ({}): {error}", limit.what)]
    Io {
        /// The file or stream.
        path: String,
        /// What it was read as.
        limit: Limit,
        /// The reason.
        #[source]
        error: io::Error,
    },
}

impl ReadError {
    /// The I/O error kind behind an [`ReadError::Io`] (to tell a missing file apart).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            ReadError::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }
}

/// Read the file at `path`, at most `limit.bytes` of it.
///
/// # Errors
///
/// [`ReadError::TooLarge`] past the limit, [`ReadError::Io`] when it cannot be read.
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, ReadError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|error| ReadError::Io {
        path: name.clone(),
        limit,
        error,
    })?;
    // Room for the whole file at once (as its size says now, within the limit): one read into
    // one allocation rather than a dozen growing ones (a 270 KB component took ~0.7 ms).
    let size = file.metadata().map_or(0, |m| m.len()).min(limit.bytes);
    let room = usize::try_from(size).unwrap_or(0).saturating_add(1);
    read_into(file, &name, limit, Vec::with_capacity(room))
}

/// Read the file at `path` as UTF-8 text, at most `limit.bytes` of it.
///
/// # Errors
///
/// As [`read`], and [`ReadError::NotText`] when it is not UTF-8.
pub fn read_to_string(path: &Path, limit: Limit) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit)?).map_err(|_| ReadError::NotText {
        path: path.display().to_string(),
        limit,
    })
}

/// Read `reader` (called `name` in errors) to its end, at most `limit.bytes` of it.
///
/// # Errors
///
/// [`ReadError::TooLarge`] past the limit, [`ReadError::Io`] when it cannot be read.
pub fn read_stream(reader: impl Read, name: &str, limit: Limit) -> Result<Vec<u8>, ReadError> {
    read_into(reader, name, limit, Vec::new())
}

/// [`read_stream`] into `bytes` (empty, with the room the caller expects to need).
fn read_into(
    reader: impl Read,
    name: &str,
    limit: Limit,
    mut bytes: Vec<u8>,
) -> Result<Vec<u8>, ReadError> {
    reader
        .take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| ReadError::Io {
            path: name.to_string(),
            limit,
            error,
        })?;
    if bytes.len() as u64 > limit.bytes {
        return Err(ReadError::TooLarge {
            path: name.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// The lines of `reader` (called `name` in errors), each at most `limit.bytes` long without its
/// line ending; a longer line is an error read no further than one byte past the limit
/// (`BufRead::lines` would read a line without end, `/dev/zero`, forever).
pub fn lines<R: BufRead>(reader: R, name: &str, limit: Limit) -> Lines<R> {
    Lines {
        reader,
        name: name.to_string(),
        limit,
        line: 0,
        done: false,
    }
}

/// The iterator of [`lines`]: each item is a line's number (from 1) and its text.
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    name: String,
    limit: Limit,
    line: usize,
    done: bool,
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<(usize, String), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.line += 1;
        let mut buf = Vec::new();
        // The limit, plus room for "\r\n", plus the one byte that shows it was passed.
        let cap = self.limit.bytes.saturating_add(3);
        let read = (&mut self.reader).take(cap).read_until(b'\n', &mut buf);
        let fail = |done: &mut bool, e: ReadError| {
            *done = true;
            Some(Err(e))
        };
        if let Err(error) = read {
            let e = ReadError::Io {
                path: self.name.clone(),
                limit: self.limit,
                error,
            };
            return fail(&mut self.done, e);
        }
        if buf.is_empty() {
            self.done = true;
            return None;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() as u64 > self.limit.bytes {
            let e = ReadError::LineTooLong {
                path: self.name.clone(),
                line: self.line,
                limit: self.limit,
            };
            return fail(&mut self.done, e);
        }
        match String::from_utf8(buf) {
            Ok(text) => Some(Ok((self.line, text))),
            Err(_) => {
                let e = ReadError::NotText {
                    path: format!("line {} of {}", self.line, self.name),
                    limit: self.limit,
                };
                fail(&mut self.done, e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limit = Limit::new("a test input", 8);

    #[test]
    fn reads_within_the_limit_and_refuses_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, usize, bool)] = &[
            ("empty", 0, true),
            ("at the limit", 8, true),
            ("one byte over", 9, false),
            ("far over", 1 << 20, false),
        ];
        for (what, len, ok) in cases {
            let path = dir.path().join(what);
            std::fs::write(&path, vec![b'x'; *len]).unwrap();
            let got = read(&path, SMALL);
            assert_eq!(got.is_ok(), *ok, "{what}: {got:?}");
            if let Err(e) = got {
                let text = e.to_string();
                assert!(
                    text.contains(&path.display().to_string())
                        && text.contains("8 bytes")
                        && text.contains("a test input"),
                    "{what}: {text}"
                );
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_endless_file_is_refused_at_the_limit() {
        let limit = Limit::new("a token", 64 * KIB);
        let e = read(Path::new("/dev/zero"), limit).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero is over the 64 KiB limit for a token; give a smaller file"
        );
        let e = lines(
            io::BufReader::new(std::fs::File::open("/dev/zero").unwrap()),
            "/dev/zero",
            SMALL,
        )
        .next()
        .unwrap()
        .unwrap_err();
        assert!(matches!(e, ReadError::LineTooLong { line: 1, .. }), "{e}");
    }

    #[test]
    fn lines_are_bounded_one_by_one() {
        let text = "short\r\n12345678\n\nlast without newline";
        let got: Vec<_> = lines(text.as_bytes(), "t", SMALL).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &(1, "short".to_string()));
        assert_eq!(got[1].as_ref().unwrap(), &(2, "12345678".to_string()));
        assert_eq!(got[2].as_ref().unwrap(), &(3, String::new()));
        // The deny twin: the fourth line is 20 bytes; the error stops the iteration.
        assert!(matches!(
            got[3],
            Err(ReadError::LineTooLong { line: 4, .. })
        ));
        let mut it = lines("123456789\nok\n".as_bytes(), "t", SMALL);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn missing_and_non_utf8_files_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read(&dir.path().join("nope"), SMALL).unwrap_err();
        assert_eq!(missing.io_kind(), Some(io::ErrorKind::NotFound));
        let path = dir.path().join("bin");
        std::fs::write(&path, b"\xff\xfe").unwrap();
        assert!(matches!(
            read_to_string(&path, SMALL),
            Err(ReadError::NotText { .. })
        ));
    }

    #[test]
    fn sizes_are_written_as_people_write_them() {
        for (n, shown) in [
            (16 * MIB, "16 MiB"),
            (64 * KIB, "64 KiB"),
            (1000, "1000 bytes"),
            (MIB + 1, "1048577 bytes"),
        ] {
            assert_eq!(Size(n).to_string(), shown);
        }
    }
}
