//! What the protocol front ends (MCP, A2A) ask of the server beyond [`super::work`]: the names
//! of the agents served (a cheap listing to notice an agent added or removed) and the
//! irreversible actions a task left waiting for a person's approval.

use super::{ApiError, Caller, ServerState};
use crate::store::ActionRecord;

/// How many of the newest actions are searched for a task's pending ones: a task that just ended
/// made its actions last, so they are among these.
const RECENT_ACTIONS: usize = 1000;

impl ServerState {
    /// The names of the agents served, sorted (no agent is loaded: a directory listing). Who may
    /// use which is [`ServerState::agents`]'s business.
    ///
    /// # Errors
    ///
    /// 500 when the agents' folder cannot be read.
    pub async fn agent_names(&self) -> Result<Vec<String>, ApiError> {
        let (runtime, agents) = (self.runtime.clone(), self.agents.clone());
        tokio::task::spawn_blocking(move || agents.names(&runtime))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    }

    /// The irreversible actions of task `id` still waiting for a person's approval, oldest first,
    /// if `caller` may see the task.
    ///
    /// # Errors
    ///
    /// As [`ServerState::task`]; 500 when the ledger cannot be read.
    pub async fn pending_actions(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Vec<ActionRecord>, ApiError> {
        let ledger = self.ledger()?;
        // The task and its actions in one trip to the blocking pool.
        let (row, actions) = tokio::task::spawn_blocking(move || {
            let store = ledger.store();
            (store.task(id), store.actions(RECENT_ACTIONS))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let seen = row.is_ok_and(|r| r.user == caller.user.subject || caller.reviewer);
        if !seen {
            return Err(super::work::no_task());
        }
        let actions =
            actions.map_err(|e| ApiError::internal(format!("the ledger cannot be read: {e}")))?;
        let mut pending: Vec<ActionRecord> = actions
            .into_iter()
            .filter(|a| a.task == id && a.status == "pending")
            .collect();
        pending.reverse();
        Ok(pending)
    }
}
