//! A task's end as an MCP tool result. A completed task is a success carrying what the agent
//! returned; a task that stopped for a person (escalated) or that left irreversible actions
//! waiting for an approval is a success too, saying what the person must do; a task the host
//! killed, an agent's own error and an interrupted task are tool errors (`isError: true`) with the
//! reason, never protocol errors, so that the model and the person see why. An agent whose
//! contract declares MCP content ([`super::content`]) has its output shown as those blocks.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

use super::content;
use crate::store::{ActionRecord, TaskRecord};

/// The result of the ended task `row` of a tool whose contract's output schema is
/// `output_schema` (none: nothing promised), whose pending irreversible actions are `pending`.
/// As [`result_of`], but a completed task of an agent that declares MCP content answers with the
/// blocks it returned (then the notes on pending approvals), or with a tool error saying why its
/// output is not content.
pub fn result_for(
    row: &TaskRecord,
    pending: &[ActionRecord],
    output_schema: Option<&Value>,
) -> CallToolResult {
    let mut result = result_of(row, pending, output_schema.is_some());
    if row.status != "completed" || !content::declares_content(output_schema) {
        return result;
    }
    let raw = row
        .outcome
        .as_ref()
        .and_then(|o| o.get("output"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let output = serde_json::from_str(raw).unwrap_or(Value::Null);
    match content::blocks_of(&output) {
        Ok(blocks) => {
            // The first block of `result_of` is the raw output; the rest are approval notes.
            let notes = result.content.split_off(1.min(result.content.len()));
            result.content = blocks;
            result.content.extend(notes);
        }
        Err(why) => {
            let id = row.id;
            result = CallToolResult::error(vec![ContentBlock::text(format!(
                "Task {id} completed, but its agent's contract declares MCP content and {why}. See `warden task show {id}`."
            ))]);
        }
    }
    result
}

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
pub(super) mod tests {
    use super::*;

    /// A task row of `status` with `outcome`, for the tests of results and tasks.
    pub(in crate::mcp) fn row(status: &str, outcome: Value) -> TaskRecord {
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

    pub(in crate::mcp) fn action(id: u64) -> ActionRecord {
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
    fn an_agent_that_declares_content_answers_with_its_blocks() {
        let schema = json!({"type": "object", "x-warden-output": "mcp-content"});
        let output = json!({"content": [
            {"type": "text", "text": "look:"},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}
        ]});
        let done = row(
            "completed",
            json!({"status": "completed", "output": output.to_string()}),
        );
        let r = result_for(&done, &[action(3)], Some(&schema));
        assert_eq!(r.is_error, Some(false));
        let kinds: Vec<Value> = r
            .content
            .iter()
            .map(|c| serde_json::to_value(c).unwrap()["type"].clone())
            .collect();
        assert_eq!(kinds, [json!("text"), json!("image"), json!("text")]);
        assert!(text(&r).contains("warden approve 3"), "{}", text(&r));
        assert_eq!(r.structured_content.unwrap()["output"], output);

        // The same output from an agent that declares none is JSON text, as any other.
        let plain = result_for(&done, &[], Some(&json!({"type": "object"})));
        assert_eq!(text(&plain), output.to_string());

        // Declared but not content: a tool error that says why.
        let wrong = row(
            "completed",
            json!({"status": "completed", "output": "\"hi\""}),
        );
        let r = result_for(&wrong, &[], Some(&schema));
        assert_eq!(r.is_error, Some(true));
        assert!(text(&r).contains("no `content` array"), "{}", text(&r));

        // A failed task stays a failure.
        let failed = row(
            "agent-error",
            json!({"status": "agent-error", "kind": "failed", "message": "no"}),
        );
        assert_eq!(result_for(&failed, &[], Some(&schema)).is_error, Some(true));
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
