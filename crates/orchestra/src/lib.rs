//! Warden's orchestration layer: what the host does on an agent's behalf above the sandbox.
//!
//! [`model`]: the model providers of `warden.toml`, the context stack the host puts in front of
//! every prompt, and each task's budget and accounting. [`cascade`]: the request cascade's rules (router → fast path → gate → team → person). [`memory`]: the curated memory — its
//! store, the filter every write passes, and one task's view of it. Agent-to-agent calls and the
//! cascade will join them (see `ARCHITECTURE.md`, §7–8).
//!
//! This crate sits above `warden-sandbox` (whose traits it implements) and below the `warden`
//! binary; it never depends on `warden-ledger` or `warden`.

#![deny(missing_docs)]

pub mod cascade;
pub mod memory;
pub mod model;

pub use model::{Models, ModelsError, SessionScope, TaskModels};
