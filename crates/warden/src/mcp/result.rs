//! A task's end as an MCP tool result. A completed task is a success carrying what the agent
//! returned; a task that stopped for a person (escalated) or that left irreversible actions
//! waiting for an approval is a success too, saying what the person must do; a task the host
//! killed, an agent's own error and an interrupted task are tool errors (`isError: true`) with the
//! reason, never protocol errors, so that the model and the person see why.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

use crate::store::{ActionRecord, TaskRecord};

/// The result of the ended task `row`, whose pending irreversible actions are `pending`, for a
/// tool that declares an output schema (`structured`) or not.
pub fn result_of(row: &TaskRecord, pending: &[ActionRecord], structured: bool) -> CallToolResult {
    let outcome = row.outcome.clone().unwrap_or(Value::Null);
    let text_of = |key: &str| {
        outcome
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let id = row.id;
    match row.status.as_str() {
        "completed" => {
            let raw = text_of("output");
            let output = serde_json::from_str(&raw).unwrap_or(Value::String(raw.clone()));
            let mut content = vec![ContentBlock::text(raw)];
            let approvals: Vec<Value> = pending
                .iter()
                .map(|a| {
                    content.push(ContentBlock::text(format!(
                        "Task {id} asked for the irreversible tool `{}` (action {}): it waits for a person's approval. A person with an approver's key runs `warden approve {}`; until then nothing was done.",
                        a.tool, a.id, a.id
                    )));
                    json!({"action": a.id, "tool": a.tool, "approve": format!("warden approve {}", a.id)})
                })
                .collect();
            let mut result = CallToolResult::success(content);
            if structured {
                let mut envelope = json!({"task": id, "status": "completed", "output": output});
                if !approvals.is_empty() {
                    envelope["approvals"] = Value::Array(approvals);
                }
                result.structured_content = Some(envelope);
            }
            result
        }
        "escalated" => {
            let (reason, detail) = (text_of("reason"), text_of("detail"));
            let review = format!("warden task show {id}");
            let mut result = CallToolResult::success(vec![ContentBlock::text(format!(
                "Task {id} stopped for a person to decide ({reason}): {detail}. Nothing failed: a person reviews it with `{review}` (or GET /v1/tasks/{id}) and decides."
            ))]);
            if structured {
                result.structured_content = Some(json!({
                    "task": id,
                    "status": "escalated",
                    "escalation": {"reason": reason, "detail": detail, "review": review}
                }));
            }
            result
        }
        "killed" => CallToolResult::error(vec![ContentBlock::text(format!(
            "Task {id} was killed by the host ({}, {}): {}. See `warden task show {id}`.",
            text_of("reason"),
            text_of("capability"),
            text_of("detail")
        ))]),
        "agent-error" => CallToolResult::error(vec![ContentBlock::text(format!(
            "Task {id} failed: the agent returned an error ({}): {}",
            text_of("kind"),
            text_of("message")
        ))]),
        "interrupted" => CallToolResult::error(vec![ContentBlock::text(format!(
            "Task {id} was interrupted: the host stopped before it ended. Run it again."
        ))]),
        "cancelled" => CallToolResult::error(vec![ContentBlock::text(format!(
            "Task {id} was cancelled before it ended; nothing it staged was applied."
        ))]),
        other => CallToolResult::error(vec![ContentBlock::text(format!(
            "Task {id} ended `{other}`. See `warden task show {id}`."
        ))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, outcome: Value) -> TaskRecord {
        TaskRecord {
            id: 7,
            agent: "echo".into(),
            agent_id: "unsigned/echo".into(),
            module_hash: String::new(),
            user: "dev".into(),
            level: 0,
            grant: Value::Null,
            status: status.into(),
            outcome: Some(outcome),
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: 0,
            ended_ms: Some(1),
            parent: None,
        }
    }

    fn action(id: u64) -> ActionRecord {
        ActionRecord {
            id,
            task: 7,
            agent: "echo".into(),
            user: "dev".into(),
            tool: "send-mail".into(),
            params: "{}".into(),
            hash: String::new(),
            status: "pending".into(),
            created_ms: 0,
            expires_ms: 1,
            approver: None,
            result: None,
        }
    }

    fn text(r: &CallToolResult) -> String {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_completed_task_is_its_output() {
        let done = row(
            "completed",
            json!({"status": "completed", "output": "{\"n\":1}"}),
        );
        let r = result_of(&done, &[], true);
        assert_eq!(r.is_error, Some(false));
        assert_eq!(text(&r), "{\"n\":1}");
        assert_eq!(
            r.structured_content,
            Some(json!({"task": 7, "status": "completed", "output": {"n": 1}}))
        );
        // No output schema, no structured content.
        assert_eq!(result_of(&done, &[], false).structured_content, None);
    }

    #[test]
    fn waiting_for_an_approval_or_a_person_is_not_an_error() {
        let done = row(
            "completed",
            json!({"status": "completed", "output": "\"sent?\""}),
        );
        let r = result_of(&done, &[action(3)], true);
        assert_eq!(r.is_error, Some(false));
        assert!(text(&r).contains("warden approve 3"), "{}", text(&r));
        assert_eq!(
            r.structured_content.unwrap()["approvals"][0]["approve"],
            "warden approve 3"
        );

        let held = row(
            "escalated",
            json!({"status": "escalated", "reason": "budget-cap", "detail": "spent 2 of 1"}),
        );
        let r = result_of(&held, &[], true);
        assert_eq!(r.is_error, Some(false));
        assert!(text(&r).contains("warden task show 7"), "{}", text(&r));
        let s = r.structured_content.unwrap();
        assert_eq!(s["status"], "escalated");
        assert_eq!(s["escalation"]["reason"], "budget-cap");
    }

    #[test]
    fn a_killed_or_failed_task_is_an_error_result_with_the_reason() {
        for (status, outcome, says) in [
            (
                "killed",
                json!({"status": "killed", "reason": "net-denied", "capability": "net", "detail": "evil.example"}),
                "evil.example",
            ),
            (
                "agent-error",
                json!({"status": "agent-error", "kind": "failed", "message": "no"}),
                "returned an error (failed): no",
            ),
            ("interrupted", Value::Null, "interrupted"),
        ] {
            let r = result_of(&row(status, outcome), &[], true);
            assert_eq!(r.is_error, Some(true), "{status}");
            assert!(text(&r).contains(says), "{status}: {}", text(&r));
            assert_eq!(r.structured_content, None, "{status}");
        }
    }
}
