//! The agents capability (`[agents]` in a policy, `warden:agent/agents` in WIT,
//! `warden_guest::agents`): calls to other agents, through the host.
//!
//! The gate: a call names an agent; unless the policy's `agents.call` names it, the caller is
//! killed at that call. Everything else — finding the callee by name, running it fresh under its
//! own policy bounded by the user's roles and by this caller's grant, the limits of the task tree,
//! the shared model budget, recording the hop — belongs to the host's [`AgentCalls`], implemented
//! above the sandbox. Only the callee's final result (or error) comes back.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use crate::bindings::warden::agent::agents as wit;
use crate::gate::{KillReason, Violation};
use crate::instance::InstanceState;

/// Most bytes of input one call may carry.
pub const MAX_CALL_INPUT: usize = 1 << 20;

/// Why a call returned no result (each reaches the caller as its `call-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The input does not match the callee's input schema (the callee did not run).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A limit of the task tree refused the call (depth, fan-out, wall time, budget), or the
    /// callee could not be found or loaded.
    #[error("refused: {0}")]
    Refused(String),
    /// The callee returned an error of its own.
    #[error("failed: {0}")]
    Failed(String),
    /// The callee was killed (and demoted).
    #[error("killed: {0}")]
    Killed(String),
    /// The callee's result broke its own output schema (it was demoted).
    #[error("contract breach: {0}")]
    ContractBreach(String),
    /// The callee's task was escalated to a person.
    #[error("escalated: {0}")]
    Escalated(String),
}

/// A boxed future of one call.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<String, CallFailure>> + Send + 'a>>;

/// The host's side of one task's calls to other agents.
pub trait AgentCalls: Send + Sync {
    /// Run `callee` (already past the gate) on `input` and return its result.
    fn call(&self, callee: String, input: String) -> CallFuture<'_>;
}

impl From<CallFailure> for wit::CallError {
    fn from(f: CallFailure) -> Self {
        match f {
            CallFailure::InvalidInput(m) => wit::CallError::InvalidInput(m),
            CallFailure::Refused(m) => wit::CallError::Refused(m),
            CallFailure::Failed(m) => wit::CallError::Failed(m),
            CallFailure::Killed(m) => wit::CallError::Killed(m),
            CallFailure::ContractBreach(m) => wit::CallError::ContractBreach(m),
            CallFailure::Escalated(m) => wit::CallError::Escalated(m),
        }
    }
}

impl wit::Host for InstanceState {
    async fn call(
        &mut self,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        let started = Instant::now();
        if !self.policy.agents.allows(&name) {
            let shown: String = name.chars().take(64).collect();
            return Err(self.kill.kill(Violation::new(
                KillReason::OutOfScope,
                "agents",
                format!("agent `{shown}` is not in the policy's agents.call"),
            )));
        }
        if input.len() > MAX_CALL_INPUT {
            self.kill
                .record("agents", &name, "invalid", started.elapsed());
            return Ok(Err(wit::CallError::InvalidInput(format!(
                "the input is {} bytes; a call carries at most {MAX_CALL_INPUT}",
                input.len()
            ))));
        }
        let Some(calls) = self.agents.clone() else {
            self.kill
                .record("agents", &name, "unavailable", started.elapsed());
            return Ok(Err(wit::CallError::Refused(
                "this host runs no agent calls (no agents directory: `[agents] dir` in warden.toml)"
                    .into(),
            )));
        };
        let result = calls.call(name.clone(), input).await;
        let decision = match &result {
            Ok(_) => "allowed",
            Err(CallFailure::InvalidInput(_)) => "invalid",
            Err(CallFailure::Refused(_)) => "refused",
            Err(CallFailure::Failed(_)) => "allowed (callee error)",
            Err(CallFailure::Killed(_)) => "allowed (callee killed)",
            Err(CallFailure::ContractBreach(_)) => "allowed (callee breach)",
            Err(CallFailure::Escalated(_)) => "allowed (callee escalated)",
        };
        self.kill
            .record("agents", &name, decision, started.elapsed());
        Ok(result.map_err(wit::CallError::from))
    }
}
