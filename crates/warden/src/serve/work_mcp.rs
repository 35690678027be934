//! What the protocol front ends (MCP, A2A) ask of the server beyond [`super::work`]: the names
//! of the agents served (a cheap listing to notice an agent added or removed, and the server's
//! one watcher of them) and the irreversible actions a task left waiting for a person's approval.

use std::sync::Arc;

use super::{AgentSource, ApiError, Caller, ServerState};
use crate::Runtime;
use crate::mcp::watch::{AgentsWatch, Names};
use crate::store::ActionRecord;

/// The folders `agents` lists agents from.
pub(super) fn agent_folders(runtime: &Runtime, agents: &AgentSource) -> Vec<std::path::PathBuf> {
    match agents {
        AgentSource::Directory => runtime
            .agents
            .as_ref()
            .map(|dir| vec![dir.dir().to_path_buf()])
            .unwrap_or_default(),
        AgentSource::Built {
            components,
            policies,
            ..
        } => vec![policies.clone(), components.clone()],
    }
}

/// The watcher of the folders `agents` lists agents from (see [`crate::mcp::watch`]).
pub(super) fn agent_watch(runtime: &Runtime, agents: &AgentSource) -> AgentsWatch {
    let folders = agent_folders(runtime, agents);
    let (runtime, agents) = (runtime.clone(), agents.clone());
    AgentsWatch::new(
        folders,
        Arc::new(move || agents.names(&runtime).map_err(|e| e.message)),
    )
}

/// The most pending actions a task's result lists (an agent's calls are bounded well below).
const MAX_PENDING: usize = 1000;

impl ServerState {
    /// The server's own folders, never a task's workspace (see [`super::workspace`]): its data
    /// directory and its agents folders.
    ///
    /// # Errors
    ///
    /// 500 when the server keeps no ledger.
    pub(super) fn own_folders(&self) -> Result<Vec<std::path::PathBuf>, ApiError> {
        let mut own = agent_folders(&self.runtime, &self.agents);
        own.push(self.ledger()?.dir().to_path_buf());
        Ok(own)
    }

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

    /// The names of the agents served now, then each change of them (agents added or removed;
    /// `None` until the folder could be read). One watcher per server, running while anyone
    /// holds a receiver.
    pub(crate) async fn agent_changes(&self) -> tokio::sync::watch::Receiver<Names> {
        self.agent_watch.subscribe().await
    }

    /// The irreversible actions of task `id`'s tree (the task and the agents it called) still
    /// waiting for a person's approval and not expired, oldest first (at most 1000) — what A2A
    /// shows too; none for a task `caller` may not see (their own, or any for a reviewer), so
    /// its existence is not learnt. Indexed reads of the store, which checks the task's owner
    /// too: the callers, who hold the task's row already, need no second read.
    ///
    /// # Errors
    ///
    /// 500 when the ledger cannot be read.
    pub async fn pending_actions(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Vec<ActionRecord>, ApiError> {
        let owner = (!caller.reviewer).then_some(caller.user.subject.as_str());
        // Read on this worker, as the run's ended row is (`ended_row`): one indexed read costs
        // less than the two thread hand-offs of the blocking pool.
        self.ledger()?
            .store()
            .tree_actions(
                id,
                "pending",
                Some(crate::store::now_ms()),
                owner,
                MAX_PENDING,
            )
            .map_err(|e| ApiError::internal(format!("the ledger cannot be read: {e}")))
    }
}

impl ServerState {
    /// How many actions this server's ledger has held so far ([`Ledger::actions_held`]): read
    /// before a task that starts at once ([`ServerState::run_now_counted`]), it lets
    /// [`ServerState::pending_actions_after`] skip the store.
    ///
    /// [`Ledger::actions_held`]: crate::ledger::Ledger::actions_held
    pub fn actions_held(&self) -> Option<u64> {
        self.runtime.ledger().map(|l| l.actions_held())
    }

    /// Whether no action was held since the ledger counted `held` (`None`: no count, so not
    /// known): then a tree that began after that count and ran in this process holds none.
    pub(crate) fn none_held_since(&self, held: Option<u64>) -> bool {
        held.is_some() && held == self.actions_held()
    }

    /// [`ServerState::pending_actions`] of task `id`, whose tree began after this server's
    /// ledger counted `held` actions and ran in this process ([`ServerState::run_now_counted`]
    /// gives the count only then; every action is held by the process that runs its task):
    /// none, without a read of the store, when the count has not moved since — no task of this
    /// process held an action meanwhile. Otherwise (or with no count) the store is read.
    ///
    /// # Errors
    ///
    /// 500 when the ledger cannot be read.
    pub async fn pending_actions_after(
        &self,
        caller: &Caller,
        id: u64,
        held: Option<u64>,
    ) -> Result<Vec<ActionRecord>, ApiError> {
        if self.none_held_since(held) {
            return Ok(Vec::new());
        }
        self.pending_actions(caller, id).await
    }
}
