//! Host-registered tools.
//!
//! The host decides which tools exist; the policy's `[tools] allow` decides which this agent may
//! call. Calling a tool that is not allowed kills the instance.

use crate::bindings::warden::agent::tools as raw;

/// Call the tool `name` with `input` (usually JSON).
///
/// # Errors
///
/// Returns the tool's own error message when the tool ran and failed.
pub fn call(name: &str, input: &str) -> Result<String, String> {
    raw::call(name, input)
}
