//! A ledger task row as an A2A task: Warden's status words mapped to A2A's states, the output
//! as an artifact, why a task failed or what a person must do as the status message. And the
//! irreversible actions still waiting for a person's approval, which turn a completed task into
//! `AUTH_REQUIRED` until they are settled.

use serde_json::{Map, Value, json};

use super::wire::{Artifact, Message, Part, Task, TaskState, TaskStatus, rfc3339};
use crate::store::{ActionRecord, StateStore, TaskRecord};
use crate::terminal::line;

/// How many of a tree's pending actions a task names; one more is read, to say that there are
/// more.
const PENDING_SHOWN: usize = 32;

/// The pending, unexpired actions of task `root`'s tree (an agent's callee's action belongs to
/// the task the user started), oldest first, at most [`PENDING_SHOWN`] and one: one indexed read
/// of the ledger, however many actions the host has. Who may see `root` is the caller's to
/// decide before.
pub fn pending_approvals(
    store: &dyn StateStore,
    root: u64,
    now_ms: u64,
) -> Result<Vec<ActionRecord>, String> {
    store
        .tree_actions(root, "pending", Some(now_ms), None, PENDING_SHOWN + 1)
        .map_err(|e| format!("the ledger's actions of task {root} cannot be read: {e}"))
}

/// `row` as an A2A task, `pending` being the actions of its tree waiting for approval; with its
/// artifacts when `artifacts` is set.
pub fn task(row: &TaskRecord, pending: &[ActionRecord], artifacts: bool) -> Task {
    let outcome = row.outcome.as_ref().unwrap_or(&Value::Null);
    let (state, word) = state_of(row, outcome, pending);
    let id = row.id.to_string();
    let message = word.map(|(text, data)| {
        let mut parts = vec![Part::text(text)];
        parts.extend(data.map(Part::data));
        Message {
            message_id: format!("{id}-{}", row.status),
            context_id: Some(id.clone()),
            task_id: Some(id.clone()),
            role: "ROLE_AGENT".into(),
            parts,
            metadata: None,
        }
    });
    let output = outcome["output"]
        .as_str()
        .filter(|_| artifacts && matches!(state, TaskState::Completed | TaskState::AuthRequired));
    let mut metadata = Map::new();
    metadata.insert("agent".into(), json!(row.agent));
    metadata.insert("status".into(), json!(row.status));
    Task {
        context_id: id.clone(),
        id,
        status: TaskStatus {
            state,
            message,
            timestamp: Some(rfc3339(row.ended_ms.unwrap_or(row.started_ms))),
        },
        artifacts: output.map(output_artifact).into_iter().collect(),
        metadata,
    }
}

/// The A2A state of `row`, `pending` being the actions of its tree waiting for approval (what
/// [`task`] shows, without building the rest).
pub fn state(row: &TaskRecord, pending: &[ActionRecord]) -> TaskState {
    let outcome = row.outcome.as_ref().unwrap_or(&Value::Null);
    state_of(row, outcome, pending).0
}

/// The artifact of an agent's output: JSON (an object or an array) as a data part, anything
/// else as text.
fn output_artifact(output: &str) -> Artifact {
    let part = match serde_json::from_str::<Value>(output) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Part::data(v),
        _ => Part::text(output),
    };
    Artifact {
        artifact_id: "output".into(),
        name: "output".into(),
        parts: vec![part],
    }
}

/// A word for the client: text, and data where there is something to act on.
type Word = Option<(String, Option<Value>)>;

/// The A2A state of a row, and what the client should be told.
fn state_of(row: &TaskRecord, outcome: &Value, pending: &[ActionRecord]) -> (TaskState, Word) {
    let s = |v: &Value| line(v.as_str().unwrap_or("?")).into_owned();
    match row.status.as_str() {
        "queued" => (TaskState::Submitted, None),
        "running" => (TaskState::Working, None),
        "completed" if pending.is_empty() => (TaskState::Completed, None),
        "completed" => (TaskState::AuthRequired, Some(approvals(pending))),
        "cancelled" | "stopped" => (
            TaskState::Canceled,
            Some((format!("the task was {}", row.status), None)),
        ),
        "escalated" => (
            TaskState::InputRequired,
            Some((
                format!(
                    "escalated ({}): {} — {}",
                    s(&outcome["reason"]),
                    s(&outcome["detail"]),
                    what_a_person_does(row),
                ),
                Some(json!({"reason": outcome["reason"], "detail": outcome["detail"]})),
            )),
        ),
        "killed" => (
            TaskState::Failed,
            Some((
                format!(
                    "killed: {} ({}): {}",
                    s(&outcome["reason"]),
                    s(&outcome["capability"]),
                    s(&outcome["detail"])
                ),
                None,
            )),
        ),
        "agent-error" => (
            TaskState::Failed,
            Some((
                format!(
                    "the agent failed ({}): {}",
                    s(&outcome["kind"]),
                    s(&outcome["message"])
                ),
                None,
            )),
        ),
        "interrupted" => (
            TaskState::Failed,
            Some((
                "interrupted: the host stopped before the task ended; submit it again".into(),
                None,
            )),
        ),
        other => (
            TaskState::Failed,
            Some((format!("the task ended {}", line(other)), None)),
        ),
    }
}

/// Who settles an escalation, and how: a cascade is resumed or stopped where it stands; an
/// agent's task is over, and a person changes its budget or request and sends a new message.
fn what_a_person_does(row: &TaskRecord) -> String {
    if row.agent == crate::cascade::CASCADE_AGENT {
        format!(
            "a person decides: `warden task show {id}`, then `warden task resume {id}` or `warden task stop {id}`",
            id = row.id
        )
    } else {
        format!(
            "a person decides (`warden task show {}`): raise the limit that stopped it in the policy or the roles, or change the request, and send a new message",
            row.id
        )
    }
}

/// What a person must do for `pending` (not empty): approve each action, or let it expire.
/// Past [`PENDING_SHOWN`], the rest are only said to be there.
fn approvals(pending: &[ActionRecord]) -> (String, Option<Value>) {
    let more = pending.len() > PENDING_SHOWN;
    let pending = &pending[..pending.len().min(PENDING_SHOWN)];
    let mut each: Vec<String> = pending
        .iter()
        .map(|a| {
            format!(
                "action {} (tool `{}`) until {}: `warden approve {}` by a person whose role may approve `{}`",
                a.id,
                line(&a.tool),
                rfc3339(a.expires_ms),
                a.id,
                line(&a.tool)
            )
        })
        .collect();
    if more {
        each.push("and more: `warden approve --list` shows them all".into());
    }
    let data: Vec<Value> = pending
        .iter()
        .map(|a| json!({"action": a.id, "tool": a.tool, "expires": rfc3339(a.expires_ms)}))
        .collect();
    (
        format!(
            "waiting for a person's approval of an irreversible action: {}",
            each.join("; ")
        ),
        Some(json!({"approvals": data})),
    )
}
