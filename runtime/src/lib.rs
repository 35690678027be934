//! Warden's host runtime: loads AI agents as capability-restricted WebAssembly components,
//! enforces their policy, and kills any instance that reaches past what it was granted.
//!
//! The path of one task:
//!
//! 1. [`policy::Policy`] parses and validates a TOML policy (deny by default, located errors).
//! 2. [`Runtime::load`] compiles the component through [`engine`]'s disk cache, checks its
//!    imports against the policy ([`imports`]), links only the granted capabilities
//!    ([`capabilities`], through the [`gate`]) and pre-instantiates it.
//! 3. [`LoadedAgent::run`] runs the task in a fresh instance with its own limits, captured
//!    output ([`output`]) and staged writes ([`staging`]), and returns a [`RunReport`] whose
//!    [`Outcome`] is `completed`, `agent-error` or `killed { reason, capability, detail }`.
#![deny(missing_docs)]

pub mod approval;
pub mod audit;
#[allow(missing_docs)]
pub mod bindings;
pub mod bounded;
pub mod capabilities;
pub mod complexity;
pub mod credential;
pub mod engine;
pub mod gate;
pub mod identity;
pub mod imports;
mod instance;
pub mod ledger;
mod linker;
pub mod output;
pub use warden_policy as policy;
mod runtime;
pub mod secrets;
pub mod staging;
pub mod store;
pub mod terminal;
pub mod token;
pub mod trust;
pub mod user;

pub use engine::{EngineConfig, EngineError, WardenEngine};
pub use gate::{KillReason, Violation};
pub use runtime::{
    AgentIdentity, Description, LoadError, LoadedAgent, Outcome, PolicyLoadError, RunError,
    RunOptions, RunReport, Runtime, StagingDisposition, outcome_name,
};
