//! Tasks a server acknowledged and has not started yet: a `queued` row in `tasks` (its id is
//! the task's id from its submission on, and stays so once it runs) and, beside it, everything
//! needed to run it later — its work, as the server wrote it ([`QueuedTask::work`]). Starting
//! it turns the row `running` and drops the work; ending it before it starts (cancelled,
//! refused) closes the row the same way. The ledger's recovery never touches a `queued` row: a
//! restarted server resumes it.

use serde::{Deserialize, Serialize};

/// A task waiting in the durable queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedTask {
    /// The task id (its row's).
    pub id: u64,
    /// The user it was submitted for (its row's `user`).
    pub user: String,
    /// What to run, as the server stored it (JSON text the server defines and parses).
    pub work: String,
    /// Unix time in milliseconds when it was queued.
    pub queued_ms: u64,
}

/// How a queued task ended without running.
#[derive(Debug, Clone)]
pub struct QueuedEnd {
    /// The task.
    pub id: u64,
    /// Its final status (`cancelled`, `refused`).
    pub status: String,
    /// Its outcome (JSON), saying why.
    pub outcome: serde_json::Value,
}
