//! An agent's log lines (its `log` interface) to the MCP client that asked for them, as
//! `notifications/message`, and to no other. A client asks by setting a level: for its session
//! with `logging/setLevel` (2025-11-25), or per request with `_meta`'s
//! `io.modelcontextprotocol/logLevel` (2026-07-28); a call without either gets none.
//!
//! The server keeps each run's log lines for a short while ([`KeptLogs`], bounded in tasks and
//! bytes) when the run ends; the call waiting on that task takes them and sends those at or
//! above the client's level, named after the agent (`logger`), before the tool result. The lines
//! are already bounded by the agent's `limits.output` and screened as the run wrote them.

// rmcp marks MCP logging deprecated (SEP-2577), but both spec eras Warden serves still define it.
#![allow(deprecated)]

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::service::{Peer, RequestContext};
use serde_json::json;
use warden_sandbox::output::LogRecord;

/// Most tasks whose log lines are kept at once (the oldest go first).
pub const MAX_TASKS: usize = 256;

/// Most bytes of log lines kept at once, over all tasks.
pub const MAX_BYTES: usize = 4 << 20;

/// Most sessions whose level is remembered at once.
pub const MAX_SESSIONS: usize = 4096;

/// How long a call waits for its task's log lines after the task ended (the runner keeps them
/// as the run returns, a moment after the task's row ends).
const SETTLE: Duration = Duration::from_millis(250);

/// The log lines of recently ended runs, by task, until the call waiting on each takes them.
#[derive(Debug, Default)]
pub struct KeptLogs {
    inner: Mutex<Kept>,
    kept: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Kept {
    order: VecDeque<u64>,
    by_task: HashMap<u64, Vec<LogRecord>>,
    bytes: usize,
}

fn size(logs: &[LogRecord]) -> usize {
    logs.iter().map(|r| r.message.len() + 16).sum()
}

impl KeptLogs {
    /// Keep the log lines of the run of task `task` (which just ended); the oldest tasks' lines
    /// go when the bounds are reached. A run's lines larger than [`MAX_BYTES`] are not kept.
    pub fn keep(&self, task: u64, logs: &[LogRecord]) {
        let bytes = size(logs);
        if bytes > MAX_BYTES {
            return;
        }
        let mut k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while k.order.len() >= MAX_TASKS || k.bytes + bytes > MAX_BYTES {
            let Some(old) = k.order.pop_front() else {
                break;
            };
            if let Some(gone) = k.by_task.remove(&old) {
                k.bytes -= size(&gone);
            }
        }
        if let Some(before) = k.by_task.insert(task, logs.to_vec()) {
            k.bytes -= size(&before);
        } else {
            k.order.push_back(task);
        }
        k.bytes += bytes;
        drop(k);
        self.kept.notify_waiters();
    }

    /// The kept log lines of task `task`, taken (none when they were not kept or already taken).
    pub fn take(&self, task: u64) -> Option<Vec<LogRecord>> {
        let mut k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let logs = k.by_task.remove(&task)?;
        k.bytes -= size(&logs);
        k.order.retain(|t| *t != task);
        Some(logs)
    }

    /// As [`KeptLogs::take`], waiting a moment for lines not kept yet.
    pub async fn take_settled(&self, task: u64) -> Vec<LogRecord> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let kept = self.kept.notified();
            if let Some(logs) = self.take(task) {
                return logs;
            }
            if tokio::time::timeout_at(deadline, kept).await.is_err() {
                return Vec::new();
            }
        }
    }
}

/// The levels 2025-11-25 sessions set with `logging/setLevel`, by session (`""` for stdio).
#[derive(Debug, Default)]
pub struct SessionLevels {
    levels: Mutex<HashMap<String, LoggingLevel>>,
}

/// The session a request belongs to: its `Mcp-Session-Id` over HTTP, `""` over stdio.
fn session_of(context: &RequestContext<RoleServer>) -> String {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl SessionLevels {
    /// Remember `level` for the session of `context`.
    pub fn set(&self, context: &RequestContext<RoleServer>, level: LoggingLevel) {
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        if levels.len() >= MAX_SESSIONS {
            // Sessions are not told to us when they end: forget them all rather than grow.
            levels.clear();
        }
        levels.insert(session_of(context), level);
    }

    /// The level a call asked for: its request's `_meta` level, else its session's, else none.
    pub fn level_for(&self, context: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        context.meta.log_level().or_else(|| {
            let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
            levels.get(&session_of(context)).copied()
        })
    }
}

/// A level's rank, least severe first.
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The MCP level of an agent's log level (`trace` … `error`).
pub fn level_of(agent_level: &str) -> LoggingLevel {
    match agent_level {
        "trace" | "debug" => LoggingLevel::Debug,
        "info" => LoggingLevel::Info,
        "warn" => LoggingLevel::Warning,
        _ => LoggingLevel::Error,
    }
}

/// The notifications of `logs` (from the agent `agent`'s task `task`) a client that asked for
/// `at_least` receives, in order.
pub fn messages(
    logs: &[LogRecord],
    agent: &str,
    task: u64,
    at_least: LoggingLevel,
) -> Vec<LoggingMessageNotificationParam> {
    logs.iter()
        .filter(|r| rank(level_of(r.level)) >= rank(at_least))
        .map(|r| {
            let mut m = LoggingMessageNotificationParam::new(
                level_of(r.level),
                json!({"task": task, "message": r.message}),
            );
            m.logger = Some(agent.to_owned());
            m
        })
        .collect()
}

/// Send `messages` to `peer`; a client gone is found elsewhere.
pub async fn send(peer: &Peer<RoleServer>, messages: Vec<LoggingMessageNotificationParam>) {
    for m in messages {
        if peer.notify_logging_message(m).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(level: &'static str, message: &str) -> LogRecord {
        LogRecord {
            level,
            message: message.into(),
        }
    }

    #[test]
    fn only_lines_at_or_above_the_level_go_named_after_the_agent() {
        let logs = [
            rec("trace", "t"),
            rec("info", "i"),
            rec("warn", "w"),
            rec("error", "e"),
        ];
        let sent = messages(&logs, "echo", 7, LoggingLevel::Info);
        let said: Vec<_> = sent.iter().map(|m| m.data["message"].clone()).collect();
        assert_eq!(said, [json!("i"), json!("w"), json!("e")]);
        assert_eq!(sent[1].level, LoggingLevel::Warning);
        assert_eq!(sent[0].logger.as_deref(), Some("echo"));
        assert_eq!(sent[0].data["task"], 7);
        assert_eq!(messages(&logs, "echo", 7, LoggingLevel::Debug).len(), 4);
        assert!(messages(&logs, "echo", 7, LoggingLevel::Critical).is_empty());
    }

    #[test]
    fn kept_lines_are_taken_once_and_bounded() {
        let kept = KeptLogs::default();
        kept.keep(1, &[rec("info", "a")]);
        assert_eq!(kept.take(1).unwrap()[0].message, "a");
        assert!(kept.take(1).is_none());
        for task in 0..(MAX_TASKS as u64 + 10) {
            kept.keep(task, &[rec("info", "x")]);
        }
        assert!(kept.take(0).is_none(), "the oldest went first");
        assert!(kept.take(MAX_TASKS as u64 + 9).is_some());
        let big = "x".repeat(MAX_BYTES / 2);
        kept.keep(1000, &[rec("info", &big)]);
        kept.keep(1001, &[rec("info", &big)]);
        assert!(kept.take(1000).is_none(), "bytes are bounded too");
        assert!(kept.take(1001).is_some());
        kept.keep(1002, &[rec("info", &"x".repeat(MAX_BYTES + 1))]);
        assert!(kept.take(1002).is_none());
    }

    #[tokio::test]
    async fn a_call_waits_a_moment_for_lines_kept_late() {
        let kept = std::sync::Arc::new(KeptLogs::default());
        let late = kept.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            late.keep(5, &[rec("info", "late")]);
        });
        assert_eq!(kept.take_settled(5).await[0].message, "late");
        assert!(kept.take_settled(6).await.is_empty());
    }
}
