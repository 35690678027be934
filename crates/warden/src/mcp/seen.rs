//! The agents a caller was found allowed to use, kept for [`KEPT_FOR`]: a `tools/call` needs the
//! agent's entry (who may see it, how its arguments map to its input, whether it promises an
//! output schema), and looking it up loads the agent. The task itself is admitted and bounded
//! afresh by [`crate::serve::ServerState::submit`]; only a refusal is never kept.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::serve::{AgentEntry, Caller, ServerState};

/// How long an entry is kept: a removed agent is found gone by a `tools/call` at most this
/// late (the task would be refused anyway: it loads the agent from its files). The time the
/// agents folder's listing took to notice a removal before it was watched; kept at that.
const KEPT_FOR: Duration = Duration::from_secs(1);

/// The most entries kept; past it the cache starts over.
const MAX_KEPT: usize = 1024;

/// A caller's subject, their roles, an agent's name.
type Key = (String, Vec<String>, String);

/// Recently allowed agents, per caller.
#[derive(Debug, Default)]
pub(super) struct Seen(Mutex<HashMap<Key, (Instant, AgentEntry)>>);

impl Seen {
    /// The agent `name` as `caller` may use it, if they may.
    pub(super) async fn entry(
        &self,
        state: &ServerState,
        caller: &Caller,
        name: &str,
    ) -> Option<AgentEntry> {
        let key = (
            caller.user.subject.clone(),
            caller.user.roles.clone(),
            name.to_owned(),
        );
        {
            let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, entry)) = kept.get(&key)
                && at.elapsed() < KEPT_FOR
            {
                return Some(entry.clone());
            }
        }
        let entry = state.agent(caller, name).await?;
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(key, (Instant::now(), entry.clone()));
        Some(entry)
    }
}
