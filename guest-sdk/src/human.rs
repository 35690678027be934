//! Questions to the person the agent works for (`warden:agent/human`, policy `[human] ask = true`).
//!
//! The agent asks a question and says what shape of answer it wants (a JSON Schema of an object
//! with flat properties: strings, numbers, booleans, enums). The person accepts (with the form's
//! content), declines or cancels; or no one can be asked on this run's channel, and the agent
//! goes on without, fails, or escalates. Asking without the grant kills the instance (a strict
//! policy refuses the component at load).
//!
//! ```ignore
//! use warden_guest::human::{self, Answer};
//!
//! let schema = r#"{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}"#;
//! match human::ask("Whose report is this?", schema) {
//!     Ok(Answer::Accepted(json)) => warden_guest::log::info(&json),
//!     Ok(Answer::Declined | Answer::Cancelled) => {}
//!     Err(e) => warden_guest::log::warn(&format!("no one to ask: {e:?}")),
//! }
//! ```

use crate::bindings::warden::agent::human as raw;

pub use raw::{Answer, AskError};

/// Ask the person `message`, wanting an answer shaped by `requested_schema` (JSON Schema text).
///
/// # Errors
///
/// [`AskError::Unavailable`] when no one can be asked on this run's channel,
/// [`AskError::Invalid`] for a question the host does not send, [`AskError::Failed`] when the
/// person's side failed or did not answer in time.
pub fn ask(message: &str, requested_schema: &str) -> Result<Answer, AskError> {
    raw::ask(message, requested_schema)
}
