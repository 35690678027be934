//! `ListTasks`: the caller's own top-level tasks, newest first, paged by task id, each with the
//! pending approvals of its tree read for it alone (`task::pending_approvals`).

use serde_json::{Value, json};

use super::wire::{self, Code, ListParams, RpcError, TaskState};
use super::{Call, internal, task};
use crate::store::{ActionRecord, StateStore, TaskRecord};

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
        let query = Query {
            user: self.caller.user.subject.clone(),
            agent: self.agent.clone(),
            context: p.context_id.filter(|c| !c.is_empty()),
            state,
            before,
            size: size as usize,
            artifacts: p.include_artifacts.unwrap_or(false),
        };
        let (page, next, total) = tokio::task::spawn_blocking(move || {
            let rows = ledger
                .store()
                .tasks(LIST_SCANNED)
                .map_err(|e| format!("the ledger cannot be read: {e}"))?;
            query.page(ledger.store(), rows, crate::store::now_ms())
        })
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(internal)?;
        Ok(json!({"tasks": page, "nextPageToken": next, "pageSize": size, "totalSize": total}))
    }
}

/// What `ListTasks` asked for, checked.
pub(super) struct Query {
    /// The caller: only their tasks are listed.
    pub user: String,
    /// On `/a2a/{agent}`, only that agent's tasks.
    pub agent: Option<String>,
    /// Only the task of this context (a task's context is its id).
    pub context: Option<String>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks older than this id (the page token).
    pub before: u64,
    /// The page size (1 to 100).
    pub size: usize,
    /// Whether each task shows its artifacts.
    pub artifacts: bool,
}

/// A page: its tasks, the next page's token (empty on the last), and how many tasks matched.
type Page = (Vec<wire::Task>, String, usize);

impl Query {
    /// The page of `rows` (the host's newest tasks, newest first) this query asks for, as of
    /// `now_ms`.
    ///
    /// Pending approvals only move a completed task between `COMPLETED` and `AUTH_REQUIRED`, so
    /// the ledger is asked for them (one indexed read a task) for the tasks shown, and for every
    /// completed one only when the filter is one of those two states.
    pub fn page(
        &self,
        store: &dyn StateStore,
        rows: Vec<TaskRecord>,
        now_ms: u64,
    ) -> Result<Page, String> {
        let pending = |r: &TaskRecord| -> Result<Vec<ActionRecord>, String> {
            if r.status == "completed" {
                task::pending_approvals(store, r.id, now_ms)
            } else {
                Ok(Vec::new())
            }
        };
        let by_approval = matches!(
            self.state,
            Some(TaskState::Completed | TaskState::AuthRequired)
        );
        let mut matching: Vec<(TaskRecord, Option<Vec<ActionRecord>>)> = Vec::new();
        for r in rows {
            let listed = r.parent.is_none()
                && r.user == self.user
                && self.agent.as_ref().is_none_or(|a| *a == r.agent)
                && self.context.as_ref().is_none_or(|c| *c == r.id.to_string());
            if !listed {
                continue;
            }
            let waiting = by_approval.then(|| pending(&r)).transpose()?;
            let shown = task::state(&r, waiting.as_deref().unwrap_or_default());
            if self.state.is_none_or(|s| s == shown) {
                matching.push((r, waiting));
            }
        }
        let total = matching.len();
        let mut page: Vec<_> = matching
            .into_iter()
            .filter(|(r, _)| r.id < self.before)
            .take(self.size + 1)
            .collect();
        let next = if page.len() > self.size {
            page.truncate(self.size);
            page[self.size - 1].0.id.to_string()
        } else {
            String::new()
        };
        let tasks = page
            .into_iter()
            .map(|(r, waiting)| {
                let waiting = match waiting {
                    Some(w) => w,
                    None => pending(&r)?,
                };
                Ok(task::task(&r, &waiting, self.artifacts))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((tasks, next, total))
    }
}
