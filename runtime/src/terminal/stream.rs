//! The process's stdout and stderr for a command's text, where a reader that went away ends the
//! output rather than the command: `warden task list | head` prints ten lines and exits with the
//! command's own code, not "error: Broken pipe".
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE`; `println!` would panic on
//! it and `writeln!` would return it as an error. [`Output`] takes that error as the end of the
//! stream: the write and every later one succeed without output, and [`stdout_closed`] tells a
//! long-running command (a batch, `audit tail --follow`) that nobody reads it any more.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
}

/// stdout or stderr; a closed pipe is the end of the output, not an error. Other errors (a full
/// disk behind a redirect) are still errors.
#[derive(Debug)]
pub struct Output {
    which: Which,
}

/// The process's stdout (see [`Output`]).
pub fn stdout() -> Output {
    Output {
        which: Which::Stdout,
    }
}

/// The process's stderr (see [`Output`]).
pub fn stderr() -> Output {
    Output {
        which: Which::Stderr,
    }
}

/// Whether a reader closed stdout: nothing written from now on is read.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

impl Output {
    fn closed(&self) -> &'static AtomicBool {
        match self.which {
            Which::Stdout => &STDOUT_CLOSED,
            Which::Stderr => &STDERR_CLOSED,
        }
    }

    fn ended<T>(&self, result: io::Result<T>, otherwise: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed().store(true, Ordering::Relaxed);
                Ok(otherwise)
            }
            other => other,
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed().load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let result = match self.which {
            Which::Stdout => io::stdout().write(buf),
            Which::Stderr => io::stderr().write(buf),
        };
        self.ended(result, buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.closed().load(Ordering::Relaxed) {
            return Ok(());
        }
        // One call on the locked stream, so that a line written by one thread is not cut by
        // another's.
        let result = match self.which {
            Which::Stdout => io::stdout().lock().write_all(buf),
            Which::Stderr => io::stderr().lock().write_all(buf),
        };
        self.ended(result, ())
    }

    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> io::Result<()> {
        // Formatted whole first, then written at once (see `write_all`).
        self.write_all(std::fmt::format(args).as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed().load(Ordering::Relaxed) {
            return Ok(());
        }
        let result = match self.which {
            Which::Stdout => io::stdout().flush(),
            Which::Stderr => io::stderr().flush(),
        };
        self.ended(result, ())
    }
}
