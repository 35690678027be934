//! Structured logging into the host's trace.
//!
//! Records are attributed to the agent and the task by the host; the agent cannot forge either.
//! Everything logged counts against the policy's `limits.output`.

use crate::bindings::warden::agent::log as raw;

pub use raw::Level;

/// Record `message` at `level`.
pub fn log(level: Level, message: &str) {
    raw::log(level, message);
}

/// Record `message` at info level.
pub fn info(message: &str) {
    raw::log(Level::Info, message);
}

/// Record `message` at warn level.
pub fn warn(message: &str) {
    raw::log(Level::Warn, message);
}

/// Record `message` at error level.
pub fn error(message: &str) {
    raw::log(Level::Error, message);
}

/// Record `message` at debug level.
pub fn debug(message: &str) {
    raw::log(Level::Debug, message);
}
