//! `ListTasks`: the caller's own top-level tasks, newest first, paged by task id, each with the
//! pending approvals of its tree read for it alone (`task::pending_approvals`).

use serde_json::{Value, json};

use super::wire::{self, Code, ListParams, RpcError, TaskState};
use super::{Call, internal, task};
use crate::store::{ActionRecord, TaskRecord};

/// How many of the host's newest tasks `ListTasks` looks through for the caller's.
const LIST_SCANNED: usize = 2000;

/// `ListTasks`' page size when none is asked for, and the largest it takes.
const PAGE: (i64, i64) = (50, 100);

impl Call {
    /// `ListTasks`: the caller's own top-level tasks (on `/a2a/{agent}`, that agent's), newest
    /// first, among the host's newest [`LIST_SCANNED`].
    pub(super) async fn list(&self, p: ListParams) -> Result<Value, RpcError> {
        let bad = |what: &str| {
            Err(RpcError::new(
                Code::InvalidParams,
                "bad-params",
                what.to_owned(),
            ))
        };
        if p.status_timestamp_after.is_some() {
            return Err(RpcError::new(
                Code::Unsupported,
                "unsupported-filter",
                "`statusTimestampAfter` is not supported: page through the tasks instead",
            ));
        }
        let size = p.page_size.unwrap_or(PAGE.0);
        if !(1..=PAGE.1).contains(&size) {
            return bad("`pageSize` is 1 to 100");
        }
        let before = match p.page_token.as_deref() {
            None | Some("") => u64::MAX,
            Some(t) => match t.parse() {
                Ok(id) => id,
                Err(_) => return bad("`pageToken` is the `nextPageToken` of the previous page"),
            },
        };
        let state = match p.status.as_deref() {
            None | Some("" | "TASK_STATE_UNSPECIFIED") => None,
            Some(s) => match serde_json::from_value::<TaskState>(json!(s)) {
                Ok(state) => Some(state),
                Err(_) => return bad("`status` is a TASK_STATE_* name"),
            },
        };
        let ledger = self.ledger()?;
        let subject = self.caller.user.subject.clone();
        let agent = self.agent.clone();
        let context = p.context_id.filter(|c| !c.is_empty());
        let artifacts = p.include_artifacts.unwrap_or(false);
        let size = size as usize;
        let (page, next, total) = tokio::task::spawn_blocking(move || {
            let store = ledger.store();
            let rows = store
                .tasks(LIST_SCANNED)
                .map_err(|e| format!("the ledger cannot be read: {e}"))?;
            let now = crate::store::now_ms();
            let pending = |r: &TaskRecord| -> Result<Vec<ActionRecord>, String> {
                if r.status == "completed" {
                    task::pending_approvals(store, r.id, now)
                } else {
                    Ok(Vec::new())
                }
            };
            // Pending approvals only move a completed task between COMPLETED and AUTH_REQUIRED,
            // so the ledger is asked for them (one indexed read a task) for the tasks shown, and
            // for every completed one only when the filter is one of those two states.
            let by_approval = matches!(state, Some(TaskState::Completed | TaskState::AuthRequired));
            let mut matching: Vec<(TaskRecord, Option<Vec<ActionRecord>>)> = Vec::new();
            for r in rows {
                let listed = r.parent.is_none()
                    && r.user == subject
                    && agent.as_ref().is_none_or(|a| *a == r.agent)
                    && context.as_ref().is_none_or(|c| *c == r.id.to_string());
                if !listed {
                    continue;
                }
                let waiting = by_approval.then(|| pending(&r)).transpose()?;
                let shown = task::state(&r, waiting.as_deref().unwrap_or_default());
                if state.is_none_or(|s| s == shown) {
                    matching.push((r, waiting));
                }
            }
            let total = matching.len();
            let mut page: Vec<(TaskRecord, Option<Vec<ActionRecord>>)> = matching
                .into_iter()
                .filter(|(r, _)| r.id < before)
                .take(size + 1)
                .collect();
            let next = if page.len() > size {
                page.truncate(size);
                page[size - 1].0.id.to_string()
            } else {
                String::new()
            };
            let page = page
                .into_iter()
                .map(|(r, waiting)| {
                    let waiting = match waiting {
                        Some(w) => w,
                        None => pending(&r)?,
                    };
                    Ok(task::task(&r, &waiting, artifacts))
                })
                .collect::<Result<Vec<wire::Task>, String>>()?;
            Ok::<_, String>((page, next, total))
        })
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(internal)?;
        Ok(json!({"tasks": page, "nextPageToken": next, "pageSize": size, "totalSize": total}))
    }
}
