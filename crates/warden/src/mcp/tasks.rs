//! MCP's tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`: how the 2026-07-28 spec
//! lets a `tools/call` outlive its request) on Warden's durable tasks. A client that declares
//! the extension (in the request's `_meta` client capabilities, or at `initialize`) gets, for
//! each `tools/call`, a task handle (`resultType: "task"`) at once instead of waiting; the MCP
//! task id *is* the Warden task id, so the task is stored, queued, run and audited as any other
//! and a client may disconnect and poll later (`tasks/get`, over HTTP with a token of the same
//! user). `tasks/get` answers the task's status and, once it ended, the very `CallToolResult` a
//! synchronous call would have given ([`super::result`]); `tasks/cancel` is
//! [`crate::serve::ServerState::cancel`]. Another user's task id is answered as a missing one.
//!
//! Statuses: `queued` and `running` are `working`; a completed task whose irreversible actions
//! wait for a person's approval, and an escalated task, are `input_required` (with no
//! `inputRequests`: a person, not the client, acts — `statusMessage` says how); `cancelled` and
//! `stopped` are `cancelled`; every other end (completed, killed, the agent's error,
//! interrupted) is `completed` carrying its result (an `isError` result for a failure, as the
//! spec asks: `failed` is for JSON-RPC errors, which a stored task never has). The extension has
//! no `tasks/list` nor `tasks/result` (removed by SEP-2663: a listing leaks other callers'
//! tasks, and the result rides in `tasks/get`); `tasks/update` has nothing to answer.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use rmcp::model::{
    CreateTaskResult, DetailedTask, GetTaskResult, InputRequests, JsonObject, Task, TaskPayload,
    TaskStatus,
};
use rmcp::{ErrorData, RoleServer, service::RequestContext};

use super::{AgentTools, protocol_error, result};
use crate::serve::Caller;
use crate::store::{ActionRecord, TaskRecord};

/// How often a client is asked to poll `tasks/get` (`pollIntervalMs`).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the client of `context` declared the tasks extension for this request.
pub fn declared(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|caps| caps.supports_tasks())
}

/// The Warden task id an MCP `taskId` names: the decimal id, nothing else.
pub fn warden_id(task_id: &str) -> Option<u64> {
    if task_id.is_empty() || task_id.len() > 20 || !task_id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    task_id.parse().ok()
}

/// A time in milliseconds since the epoch, in RFC 3339 (UTC, milliseconds).
fn rfc3339(ms: u64) -> String {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The base MCP task of `row` (its status is set from the payload by [`DetailedTask::new`]).
fn base(row: &TaskRecord) -> Task {
    let updated = row.ended_ms.unwrap_or(row.started_ms);
    let mut task = Task::new(
        row.id.to_string(),
        TaskStatus::Working,
        rfc3339(row.started_ms),
        rfc3339(updated),
    )
    .with_poll_interval_ms(POLL_INTERVAL.as_millis() as u64);
    // The ledger keeps every task: no time to live.
    task.ttl_ms = None;
    task
}

/// The handle a `tools/call` answers for the task `row` it submitted.
pub fn handle(row: &TaskRecord) -> CreateTaskResult {
    let mut task = base(row);
    task.status = TaskStatus::Working;
    CreateTaskResult::new(
        task.with_status_message(format!("task {} {}: poll tasks/get", row.id, row.status)),
    )
}

/// `row` as an MCP task with what its status carries; `pending` are its irreversible actions
/// waiting for an approval, `structured` whether its tool declares an output schema.
pub fn detailed(row: &TaskRecord, pending: &[ActionRecord], structured: bool) -> DetailedTask {
    let id = row.id;
    let outcome = row.outcome.clone().unwrap_or_default();
    let text = |key: &str| outcome[key].as_str().unwrap_or("?").to_owned();
    let waiting = || TaskPayload::InputRequired {
        input_requests: InputRequests::new(),
    };
    let (payload, message) = match row.status.as_str() {
        "queued" => (
            TaskPayload::Working,
            format!("task {id} is queued: it starts when a worker is free"),
        ),
        "running" => (TaskPayload::Working, format!("task {id} is running")),
        "completed" if !pending.is_empty() => {
            let each: Vec<String> = pending
                .iter()
                .map(|a| format!("`warden approve {}` (the tool `{}`)", a.id, a.tool))
                .collect();
            (
                waiting(),
                format!(
                    "task {id} ended and asked for irreversible actions that wait for a person's approval: a person with an approver's key runs {}; until then nothing was done (each expires unapproved)",
                    each.join(", ")
                ),
            )
        }
        "escalated" => (
            waiting(),
            format!(
                "task {id} stopped for a person to decide ({}): {}. A person reviews it with `warden task show {id}` (or GET /v1/tasks/{id}) and decides",
                text("reason"),
                text("detail")
            ),
        ),
        "cancelled" | "stopped" => (
            TaskPayload::Cancelled,
            format!(
                "task {id} was {}; nothing it staged was applied",
                row.status
            ),
        ),
        status => {
            let result = result::result_of(row, pending, structured);
            let object = match serde_json::to_value(&result) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => JsonObject::new(),
            };
            (
                TaskPayload::Completed { result: object },
                format!("task {id} ended {status}; the result is the tool's answer"),
            )
        }
    };
    DetailedTask::new(base(row).with_status_message(message), payload)
}

/// The answer to a `taskId` that names no task of the caller.
fn no_task(task_id: &str) -> ErrorData {
    let shown: String = crate::terminal::line(task_id).chars().take(24).collect();
    ErrorData::invalid_params(
        format!(
            "no task `{shown}` for you: a task id is the `taskId` a `tools/call` answered, and only its caller sees it"
        ),
        None,
    )
}

impl AgentTools {
    /// `caller`'s task `task_id` as Warden stores it.
    async fn row(&self, caller: &Caller, task_id: &str) -> Result<TaskRecord, ErrorData> {
        let id = warden_id(task_id).ok_or_else(|| no_task(task_id))?;
        self.state.task(caller, id).await.map_err(|e| {
            if e.status.as_u16() == 404 {
                no_task(task_id)
            } else {
                protocol_error(e)
            }
        })
    }

    /// `tasks/get`: the task's status, and once it ended the tool's result.
    pub(super) async fn get_task_of(
        &self,
        caller: &Caller,
        task_id: &str,
    ) -> Result<GetTaskResult, ErrorData> {
        let row = self.row(caller, task_id).await?;
        let pending = if row.status == "completed" {
            self.state
                .pending_actions(caller, row.id)
                .await
                .map_err(protocol_error)?
        } else {
            Vec::new()
        };
        let structured = match row.status.as_str() {
            "queued" | "running" => false,
            _ => self
                .seen
                .entry(&self.state, caller, &row.agent)
                .await
                .is_some_and(|e| e.output_schema.is_some()),
        };
        Ok(GetTaskResult::new(detailed(&row, &pending, structured)))
    }

    /// `tasks/cancel`: stop the task at once (see [`crate::serve::ServerState::cancel`]).
    pub(super) async fn cancel_task_of(
        &self,
        caller: &Caller,
        task_id: &str,
    ) -> Result<(), ErrorData> {
        let row = self.row(caller, task_id).await?;
        self.state
            .cancel(caller, row.id)
            .await
            .map_err(protocol_error)?;
        Ok(())
    }

    /// `tasks/update`: a Warden task never asks the client for input.
    pub(super) async fn update_task_of(
        &self,
        caller: &Caller,
        task_id: &str,
    ) -> Result<(), ErrorData> {
        let row = self.row(caller, task_id).await?;
        Err(ErrorData::invalid_params(
            format!(
                "task {} asks the client for nothing (it sends no inputRequests): what a person must do is in tasks/get's statusMessage",
                row.id
            ),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn row(status: &str, outcome: Value) -> TaskRecord {
        TaskRecord {
            id: 42,
            started_ms: 1_700_000_000_000,
            ended_ms: Some(1_700_000_001_500),
            ..super::super::result::tests::row(status, outcome)
        }
    }

    fn wire(t: &DetailedTask) -> Value {
        serde_json::to_value(t).unwrap()
    }

    #[test]
    fn a_task_id_is_the_decimal_warden_id_and_nothing_else() {
        assert_eq!(warden_id("42"), Some(42));
        for bad in [
            "",
            "-1",
            "+1",
            "4 2",
            "0x2a",
            "99999999999999999999999",
            "1e3",
        ] {
            assert_eq!(warden_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_handle_is_a_working_task_with_times_and_a_poll_interval() {
        let mut queued = row("queued", Value::Null);
        queued.ended_ms = None;
        let v = serde_json::to_value(handle(&queued)).unwrap();
        assert_eq!(v["resultType"], "task");
        assert_eq!(v["taskId"], "42");
        assert_eq!(v["status"], "working");
        assert_eq!(v["createdAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["lastUpdatedAt"], v["createdAt"]);
        assert_eq!(v["ttlMs"], Value::Null);
        assert_eq!(v["pollIntervalMs"], 1000);
    }

    #[test]
    fn an_ended_task_carries_the_result_a_synchronous_call_gives() {
        let done = row(
            "completed",
            json!({"status": "completed", "output": "\"hi\""}),
        );
        let v = wire(&detailed(&done, &[], true));
        assert_eq!(v["status"], "completed");
        assert_eq!(v["lastUpdatedAt"], "2023-11-14T22:13:21.500Z");
        let sync = serde_json::to_value(result::result_of(&done, &[], true)).unwrap();
        assert_eq!(v["result"], sync);
        assert_eq!(v["result"]["structuredContent"]["output"], "hi");

        // A kill is a completed task whose result is an error, not a failed task.
        let killed = row(
            "killed",
            json!({"reason": "net-denied", "capability": "net", "detail": "x"}),
        );
        let v = wire(&detailed(&killed, &[], true));
        assert_eq!(v["status"], "completed");
        assert_eq!(v["result"]["isError"], true);
    }

    #[test]
    fn a_person_to_act_is_input_required_and_says_what_to_do() {
        let done = row(
            "completed",
            json!({"status": "completed", "output": "\"sent?\""}),
        );
        let action = ActionRecord {
            task: 42,
            ..super::super::result::tests::action(3)
        };
        let v = wire(&detailed(&done, &[action], true));
        assert_eq!(v["status"], "input_required");
        assert_eq!(v["inputRequests"], json!({}));
        assert!(
            v["statusMessage"]
                .as_str()
                .unwrap()
                .contains("warden approve 3"),
            "{v}"
        );
        assert!(v.get("result").is_none());

        let held = row(
            "escalated",
            json!({"reason": "budget-cap", "detail": "spent 2 of 1"}),
        );
        let v = wire(&detailed(&held, &[], true));
        assert_eq!(v["status"], "input_required");
        let m = v["statusMessage"].as_str().unwrap();
        assert!(
            m.contains("budget-cap") && m.contains("warden task show 42"),
            "{m}"
        );
    }

    #[test]
    fn running_and_cancelled_carry_no_result() {
        for (status, word) in [
            ("queued", "working"),
            ("running", "working"),
            ("cancelled", "cancelled"),
            ("stopped", "cancelled"),
        ] {
            let v = wire(&detailed(&row(status, Value::Null), &[], true));
            assert_eq!(v["status"], word, "{status}");
            assert!(v.get("result").is_none(), "{status}: {v}");
            assert!(v["statusMessage"].as_str().unwrap().contains("task 42"));
        }
    }
}
