//! The gate: the single place where a capability use is decided. Every host function of a granted
//! capability asks the gate; a refusal becomes a [`Violation`] that is recorded once, emitted as a
//! `tracing` event, and returned as a trap that ends the instance at that call.
//!
//! Limits (memory, tables, CPU, wall time, output) report through the same [`KillSwitch`], so a
//! run ends with exactly one structured reason, whichever part of the host noticed it first.
//!
//! The switch also keeps the task's [`TraceEvent`]s: every decision of the gate (capability,
//! arguments summarised, decision, duration), bounded to [`TRACE_LIMIT`] events per task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Why an instance was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillReason {
    /// Called an interface the policy does not grant (bound to a kill stub at load).
    NotGranted,
    /// Used a granted capability outside its scope (path, host, port, tool).
    OutOfScope,
    /// Tried to grow linear memory past `limits.memory`.
    MemoryLimit,
    /// Tried to grow a table past `limits.tables`.
    TableLimit,
    /// Ran past `limits.cpu` of guest execution time.
    CpuLimit,
    /// Ran past `limits.wall` since the task started.
    WallLimit,
    /// Recursed past the host's stack limit.
    StackOverflow,
    /// Wrote more than `limits.output` (result, stdout, stderr and logs together).
    OutputLimit,
    /// Held more open handles (files, streams, requests) than the host allows one instance.
    HandleLimit,
    /// The guest trapped on its own (a panic, `unreachable`, an out-of-bounds access).
    Trap,
    /// The agent's result broke its own output schema (its contract): recorded and demoted like
    /// any violation.
    ContractBreach,
}

impl KillReason {
    /// The reason's stable name, as printed by the CLI and written in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KillReason::NotGranted => "not-granted",
            KillReason::OutOfScope => "out-of-scope",
            KillReason::MemoryLimit => "memory-limit",
            KillReason::TableLimit => "table-limit",
            KillReason::CpuLimit => "cpu-limit",
            KillReason::WallLimit => "wall-limit",
            KillReason::StackOverflow => "stack-overflow",
            KillReason::OutputLimit => "output-limit",
            KillReason::HandleLimit => "handle-limit",
            KillReason::Trap => "trap",
            KillReason::ContractBreach => "contract-breach",
        }
    }
}

impl std::fmt::Display for KillReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused capability use or an exceeded limit: what ended the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("killed ({reason}) by {capability}: {detail}")]
pub struct Violation {
    /// Why.
    pub reason: KillReason,
    /// The capability or limit involved, e.g. `fs`, `net`, `tools`, `wasi:sockets/tcp`, `limits.memory`.
    pub capability: String,
    /// What exactly was attempted, e.g. the path or host:port.
    pub detail: String,
}

/// Most characters of a violation's detail kept. A detail quotes what the guest named (a path, a
/// tool, a model), and the guest chooses its length: past this, it is cut and its size said, so
/// that one kill cannot write megabytes into the logs, the audit log and the task record.
pub const DETAIL_LIMIT: usize = 1024;

impl Violation {
    /// A violation with the given parts; `detail` cut to [`DETAIL_LIMIT`] characters.
    pub fn new(
        reason: KillReason,
        capability: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        let detail = detail.into();
        let detail = match detail.char_indices().nth(DETAIL_LIMIT) {
            Some((cut, _)) => format!("{}… ({} bytes in all)", &detail[..cut], detail.len()),
            None => detail,
        };
        Violation {
            reason,
            capability: capability.into(),
            detail,
        }
    }
}

/// Most trace events kept per task; later ones are counted, not kept.
pub const TRACE_LIMIT: usize = 512;

/// One decision of the gate, for the task's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TraceEvent {
    /// Microseconds since the task started.
    pub at_us: u64,
    /// The capability (`fs`, `net`, `tools`, `random`, `limits.cpu`, …).
    pub capability: String,
    /// The call, summarised (`open_at docs/a.md (write)`, `GET api.example.com:443`, …).
    pub call: String,
    /// `allowed`, `denied` (an error the guest sees), `pending` (held for approval) or `killed`.
    pub decision: String,
    /// How long the host took to serve it, in microseconds.
    pub duration_us: u64,
}

/// A task's trace: the events kept and how many were dropped past [`TRACE_LIMIT`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Trace {
    /// The events, in order.
    pub events: Vec<TraceEvent>,
    /// Events not kept.
    pub dropped: u64,
}

#[derive(Debug)]
struct TraceBuf {
    started: Instant,
    trace: Trace,
}

/// Shared record of the first violation of one instance.
///
/// Cloned into every part of the host that can end the instance (host functions, output streams,
/// the resource limiter, the epoch callback). The first violation wins; later ones are the
/// consequences of the first and are not recorded.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    agent: Arc<str>,
    task: u64,
    first: Arc<Mutex<Option<Violation>>>,
    trace: Arc<Mutex<TraceBuf>>,
}

impl KillSwitch {
    /// A fresh switch for one task of `agent`.
    pub fn new(agent: Arc<str>, task: u64) -> Self {
        KillSwitch {
            agent,
            task,
            first: Arc::new(Mutex::new(None)),
            trace: Arc::new(Mutex::new(TraceBuf {
                started: Instant::now(),
                trace: Trace::default(),
            })),
        }
    }

    /// Add one decision to the task's trace. `call` is truncated to 160 characters.
    pub fn record(&self, capability: &str, call: &str, decision: &str, took: Duration) {
        let mut buf = self.trace.lock().unwrap_or_else(|p| p.into_inner());
        if buf.trace.events.len() >= TRACE_LIMIT {
            buf.trace.dropped += 1;
            return;
        }
        let call = match call.char_indices().nth(160) {
            Some((cut, _)) => format!("{}…", &call[..cut]),
            None => call.to_owned(),
        };
        let event = TraceEvent {
            at_us: buf.started.elapsed().as_micros() as u64,
            capability: capability.to_owned(),
            // Printable ASCII that escaping leaves as it is (most calls: a name, a path) is
            // kept without the formatter.
            call: if call
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'\\' | b'\'' | b'"'))
            {
                call
            } else {
                call.escape_debug().to_string()
            },
            decision: decision.to_owned(),
            duration_us: took.as_micros() as u64,
        };
        buf.trace.events.push(event);
    }

    /// The trace so far.
    pub fn trace(&self) -> Trace {
        self.trace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .trace
            .clone()
    }

    /// Record `violation` (if it is the first) and return the trap that ends the instance.
    pub fn kill(&self, violation: Violation) -> wasmtime::Error {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            tracing::warn!(
                target: "warden::gate",
                agent = %self.agent,
                task = self.task,
                reason = violation.reason.as_str(),
                capability = %violation.capability,
                detail = %violation.detail,
                "instance killed"
            );
            self.record(
                &violation.capability,
                &violation.detail,
                "killed",
                Duration::ZERO,
            );
            *first = Some(violation.clone());
        }
        wasmtime::Error::new(violation)
    }

    /// The first recorded violation, if any.
    pub fn violation(&self) -> Option<Violation> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the instance has been killed.
    pub fn is_killed(&self) -> bool {
        self.first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The agent this switch belongs to.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The task this switch belongs to.
    pub fn task(&self) -> u64 {
        self.task
    }
}

/// Decide one capability use: `Ok(())` when `allowed`, otherwise kill with an out-of-scope
/// violation built by `detail`. Keeps every host function's check one line long.
pub fn check(
    kill: &KillSwitch,
    allowed: bool,
    capability: &str,
    detail: impl FnOnce() -> String,
) -> Result<(), wasmtime::Error> {
    if allowed {
        tracing::trace!(target: "warden::gate", agent = %kill.agent, capability, "allowed");
        Ok(())
    } else {
        Err(kill.kill(Violation::new(KillReason::OutOfScope, capability, detail())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_violation_wins() {
        let k = KillSwitch::new("a".into(), 1);
        assert!(!k.is_killed());
        let _ = k.kill(Violation::new(
            KillReason::OutOfScope,
            "fs",
            "../etc/passwd",
        ));
        let _ = k.kill(Violation::new(KillReason::Trap, "guest", "unreachable"));
        let v = k.violation().unwrap();
        assert_eq!(v.reason, KillReason::OutOfScope);
        assert_eq!(v.detail, "../etc/passwd");
        let trace = k.trace();
        assert_eq!(trace.events.len(), 1);
        assert_eq!(trace.events[0].decision, "killed");
    }

    #[test]
    fn a_detail_the_guest_made_long_is_cut() {
        let detail = format!("model `{}`", "é".repeat(DETAIL_LIMIT * 5));
        let v = Violation::new(KillReason::OutOfScope, "model", detail.clone());
        let kept: String = detail.chars().take(DETAIL_LIMIT).collect();
        assert_eq!(v.detail, format!("{kept}… ({} bytes in all)", detail.len()));
        let short = Violation::new(KillReason::OutOfScope, "fs", "x".repeat(DETAIL_LIMIT));
        assert_eq!(
            short.detail,
            "x".repeat(DETAIL_LIMIT),
            "at the limit: kept whole"
        );
    }

    #[test]
    fn the_trace_is_bounded_and_summarised() {
        let k = KillSwitch::new("a".into(), 1);
        let long = "x".repeat(500);
        for _ in 0..TRACE_LIMIT + 10 {
            k.record("tools", &long, "allowed", Duration::from_micros(3));
        }
        let trace = k.trace();
        assert_eq!((trace.events.len(), trace.dropped), (TRACE_LIMIT, 10));
        assert!(trace.events[0].call.chars().count() <= 161);
        assert_eq!(trace.events[0].duration_us, 3);
    }

    #[test]
    fn a_call_is_recorded_escaped_as_debug_escapes_it() {
        let k = KillSwitch::new("a".into(), 1);
        let calls = [
            "docs/a.md",
            "hello world ~!@#$%^&*()_+{}|:<>?",
            "a\nb\tc\\d\"e'f",
            "\u{1b}[31mred\u{7}",
            "é\u{301}\u{200b}",
            "\u{7f}",
        ];
        for call in calls {
            k.record("fs", call, "allowed", Duration::ZERO);
        }
        let trace = k.trace();
        for (event, call) in trace.events.iter().zip(calls) {
            assert_eq!(event.call, call.escape_debug().to_string(), "{call:?}");
        }
    }

    #[test]
    fn a_kill_emits_one_tracing_event() {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let k = KillSwitch::new("docs".into(), 7);
            let _ = k.kill(Violation::new(KillReason::OutOfScope, "net", "10.0.0.1:22"));
            let _ = k.kill(Violation::new(KillReason::Trap, "guest", "later"));
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("instance killed").count(), 1, "{text}");
        assert!(
            text.contains("agent=docs") && text.contains("task=7"),
            "{text}"
        );
        assert!(
            text.contains("reason=\"out-of-scope\"") && text.contains("10.0.0.1:22"),
            "{text}"
        );
    }

    #[test]
    fn check_allows_and_denies() {
        let k = KillSwitch::new("a".into(), 1);
        assert!(check(&k, true, "tools", || "echo".into()).is_ok());
        assert!(!k.is_killed());
        let err = check(&k, false, "tools", || "rm".into()).unwrap_err();
        assert!(err.downcast_ref::<Violation>().is_some());
        assert_eq!(k.violation().unwrap().capability, "tools");
    }
}
