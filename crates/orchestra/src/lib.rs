//! Warden's orchestration layer: what the host does on an agent's behalf above the sandbox.
//!
//! Today that is [`model`]: the model providers of `warden.toml`, the context stack the host
//! puts in front of every prompt, and each task's budget and accounting. Agent-to-agent calls,
//! the memory store and the cascade will join it (see `ARCHITECTURE.md`, §7–8).
//!
//! This crate sits above `warden-sandbox` (whose traits it implements) and below the `warden`
//! binary; it never depends on `warden-ledger` or `warden`.

#![deny(missing_docs)]

pub mod model;

pub use model::{Models, ModelsError, SessionScope, TaskModels};
