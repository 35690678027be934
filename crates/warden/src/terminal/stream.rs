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

/// stderr for the host's own log lines (`tracing`), each escaped as a one-line field before it
/// is written: a log event quotes agent names, refusals and kill details, and a value holding a
/// newline, a carriage return or a bidi control would otherwise forge or reorder log lines.
///
/// `tracing-subscriber` formats a whole event and writes it at once, with its own colours (ESC
/// sequences) when `ansi` is on; it escapes ESC, BEL and C1 in field values itself, so every ESC
/// that reaches this writer is the formatter's and is kept, and everything else is escaped. JSON
/// lines get JSON escapes, so they still parse.
#[derive(Debug, Clone, Copy)]
pub struct LogStderr {
    /// Whether the formatter writes colours.
    pub ansi: bool,
    /// Whether each line is a JSON object.
    pub json: bool,
}

impl LogStderr {
    /// One formatted log line, escaped (its final newline kept).
    fn escape(self, text: &str) -> String {
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text, ""),
        };
        let escaped = if self.json {
            super::escape(body, super::Mode::Json).into_owned()
        } else if self.ansi {
            body.split('\u{1b}')
                .map(super::line)
                .collect::<Vec<_>>()
                .join("\u{1b}")
        } else {
            super::line(body).into_owned()
        };
        escaped + end
    }
}

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = self.escape(&String::from_utf8_lossy(buf));
        stderr().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_ends_the_output_and_other_errors_stay_errors() {
        let out = stderr();
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(out.ended(Err(pipe), 7).unwrap(), 7);
        assert!(STDERR_CLOSED.load(Ordering::Relaxed));
        // The deny twin: a full disk is an error the command reports.
        let full = io::Error::other("no space left on device");
        assert!(out.ended::<usize>(Err(full), 7).is_err());
        STDERR_CLOSED.store(false, Ordering::Relaxed);
    }

    #[test]
    fn log_lines_are_escaped_but_keep_their_own_colours_and_json() {
        let hostile = "agent=ev\u{202e}il\rerror: forged\u{9b}2J\n";
        let plain = LogStderr {
            ansi: false,
            json: false,
        };
        assert_eq!(
            plain.escape(hostile),
            "agent=ev\\u{202e}il\\rerror: forged\\u{9b}2J\n"
        );
        // With colours, the formatter's ESC sequences stay; the value's hazards do not.
        let coloured = LogStderr {
            ansi: true,
            json: false,
        };
        let line = coloured.escape("\u{1b}[33mWARN\u{1b}[0m agent=a\nb\n");
        assert_eq!(line, "\u{1b}[33mWARN\u{1b}[0m agent=a\\nb\n");
        // JSON lines stay JSON.
        let json = LogStderr {
            ansi: false,
            json: true,
        };
        let line = json.escape("{\"agent\":\"a\u{202e}b\"}\n");
        assert_eq!(line, "{\"agent\":\"a\\u202eb\"}\n");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["agent"], "a\u{202e}b");
        // The deny twin: an honest line passes as it is.
        assert_eq!(plain.escape("INFO task done\n"), "INFO task done\n");
    }
}
