//! `ListTasks`: the caller's own top-level tasks, newest first, paged by task id.

use serde_json::{Value, json};

use super::wire::{self, Code, ListParams, RpcError, TaskState};
use super::{Call, internal, task};

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
        let rows = tokio::task::spawn_blocking(move || ledger.store().tasks(LIST_SCANNED))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| internal(format!("the ledger cannot be read: {e}")))?;
        let subject = &self.caller.user.subject;
        let mut pending = self.pending().await?;
        let artifacts = p.include_artifacts.unwrap_or(false);
        let tasks: Vec<wire::Task> = rows
            .into_iter()
            .filter(|r| r.parent.is_none() && &r.user == subject)
            .filter(|r| self.agent.as_ref().is_none_or(|a| *a == r.agent))
            .filter(|r| {
                p.context_id
                    .as_deref()
                    .is_none_or(|c| c.is_empty() || c == r.id.to_string())
            })
            .map(|r| {
                let waiting = if r.status == "completed" {
                    pending.remove(&r.id).unwrap_or_default()
                } else {
                    Vec::new()
                };
                task::task(&r, &waiting, artifacts)
            })
            .filter(|t| state.is_none_or(|s| s == t.status.state))
            .collect();
        let total = tasks.len();
        let page: Vec<&wire::Task> = tasks
            .iter()
            .filter(|t| t.id.parse::<u64>().is_ok_and(|id| id < before))
            .take(size as usize + 1)
            .collect();
        let next = if page.len() > size as usize {
            page[size as usize - 1].id.clone()
        } else {
            String::new()
        };
        let page = &page[..page.len().min(size as usize)];
        Ok(json!({"tasks": page, "nextPageToken": next, "pageSize": size, "totalSize": total}))
    }
}
