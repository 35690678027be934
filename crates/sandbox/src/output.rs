//! Captured output: the agent's stdout, stderr and log records, held by the host and bounded by
//! the policy's `limits.output`. Nothing reaches the host's own stdio; the CLI and the server
//! decide what to show. Writing past the limit kills the instance with `output-limit`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::gate::{KillReason, KillSwitch, Violation};
use crate::secrets::SecretStore;

/// One structured log record from the guest.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// Severity (`trace` … `error`).
    pub level: &'static str,
    /// The message, as the guest wrote it.
    pub message: String,
}

/// Everything an instance wrote, and how much of its budget that used.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CapturedOutput {
    /// Bytes written to stdout (JSON: text, invalid UTF-8 replaced).
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    /// Bytes written to stderr (JSON: text, invalid UTF-8 replaced).
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    /// Log records, in order.
    pub logs: Vec<LogRecord>,
    /// Bytes counted against `limits.output` (result included).
    pub used: u64,
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

#[derive(Debug)]
struct Shared {
    limit: u64,
    captured: CapturedOutput,
}

/// The output budget of one instance, shared by its stdout, stderr and log.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    shared: Arc<Mutex<Shared>>,
    kill: KillSwitch,
    secrets: Arc<SecretStore>,
}

/// Which captured stream a writer feeds.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

impl OutputBudget {
    /// A budget of `limit` bytes; exceeding it trips `kill`. Output that contains one of
    /// `secrets` trips it too.
    pub fn new(limit: u64, kill: KillSwitch, secrets: Arc<SecretStore>) -> Self {
        OutputBudget {
            shared: Arc::new(Mutex::new(Shared {
                limit,
                captured: CapturedOutput::default(),
            })),
            kill,
            secrets,
        }
    }

    /// Kill the instance if `bytes` (written to `what`) contain a host secret.
    ///
    /// # Errors
    ///
    /// The trap that ends the instance.
    pub fn screen(&self, bytes: &[u8], what: &str) -> Result<(), wasmtime::Error> {
        match self.secrets.found_in(bytes) {
            None => Ok(()),
            Some(name) => Err(self.kill.kill(Violation::new(
                KillReason::OutOfScope,
                "secrets",
                format!("{what} contains the host secret `{name}`; the output was blocked"),
            ))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count `len` bytes of `what`; kill the instance when the budget is exceeded.
    ///
    /// # Errors
    ///
    /// The trap that ends the instance.
    pub fn charge(&self, len: usize, what: &str) -> Result<(), wasmtime::Error> {
        let mut s = self.lock();
        let used = s.captured.used.saturating_add(len as u64);
        if used > s.limit {
            let limit = s.limit;
            drop(s);
            return Err(self.kill.kill(Violation::new(
                KillReason::OutputLimit,
                "limits.output",
                format!("{what} would bring output to {used} bytes; the limit is {limit}"),
            )));
        }
        s.captured.used = used;
        Ok(())
    }

    /// Append to stdout or stderr, within the budget.
    ///
    /// # Errors
    ///
    /// The trap that ends the instance when the budget is exceeded.
    pub fn write(&self, stream: Stream, bytes: &[u8]) -> Result<(), wasmtime::Error> {
        let name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        self.charge(bytes.len(), name)?;
        self.screen(bytes, name)?;
        let mut s = self.lock();
        match stream {
            Stream::Stdout => s.captured.stdout.extend_from_slice(bytes),
            Stream::Stderr => s.captured.stderr.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Record a log line, within the budget.
    ///
    /// # Errors
    ///
    /// The trap that ends the instance when the budget is exceeded.
    pub fn log(&self, level: &'static str, message: String) -> Result<(), wasmtime::Error> {
        self.charge(message.len(), "log")?;
        self.screen(message.as_bytes(), "log")?;
        self.lock().captured.logs.push(LogRecord { level, message });
        Ok(())
    }

    /// What was captured so far.
    pub fn snapshot(&self) -> CapturedOutput {
        self.lock().captured.clone()
    }

    /// A writer for `stream`, to hand to WASI as stdout or stderr.
    pub fn writer(&self, stream: Stream) -> CapturedStream {
        CapturedStream {
            budget: self.clone(),
            stream,
        }
    }
}

/// stdout or stderr of one instance, captured into its [`OutputBudget`].
#[derive(Debug, Clone)]
pub struct CapturedStream {
    budget: OutputBudget,
    stream: Stream,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.budget
            .write(self.stream, &bytes)
            .map_err(StreamError::Trap)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept a write: an oversized one kills the instance in `write`, with a reason,
        // rather than leaving the guest spinning on a stream that never becomes ready.
        Ok(64 * 1024)
    }
}

impl AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            self.budget
                .write(self.stream, buf)
                .map(|()| buf.len())
                .map_err(|e| io::Error::other(e.to_string())),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_budget_is_kept_and_over_budget_kills() {
        let kill = KillSwitch::new("a".into(), 1);
        let budget = OutputBudget::new(10, kill.clone(), Arc::default());
        budget.write(Stream::Stdout, b"hello").unwrap();
        budget.log("info", "abc".into()).unwrap();
        assert!(!kill.is_killed());
        assert!(budget.write(Stream::Stderr, b"toolong").is_err());
        let v = kill.violation().unwrap();
        assert_eq!(v.reason, KillReason::OutputLimit);
        let out = budget.snapshot();
        assert_eq!(out.stdout, b"hello");
        assert!(out.stderr.is_empty());
        assert_eq!(out.used, 8);
    }
}
