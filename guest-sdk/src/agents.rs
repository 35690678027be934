//! Calls to other agents, through the host (`warden:agent/agents`, policy `[agents] call`).
//!
//! The callee runs in a fresh instance of its own component under its own policy, bounded by the
//! user this task acts for and by what this agent itself may do; only its final result (or error)
//! comes back. Calling an agent the policy does not name kills this agent at the call.
//!
//! ```ignore
//! let report = warden_guest::agents::call("tester", r#"{"change": "…"}"#)?;
//! ```

use crate::bindings::warden::agent::agents as raw;

pub use raw::CallError;

/// Run the agent `name` on `input` (JSON matching its input schema); returns its result.
///
/// # Errors
///
/// [`CallError`]: the input broke the callee's contract, a limit of the task tree refused the
/// call, or the callee failed, was killed, broke its own output contract or was escalated.
pub fn call(name: &str, input: &str) -> Result<String, CallError> {
    raw::call(name, input)
}
