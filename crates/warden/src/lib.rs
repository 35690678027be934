//! Warden's host: loads AI agents as capability-restricted WebAssembly components, bounds each
//! by its policy and the user it acts for, kills any instance that reaches past its grant, and
//! records every task in the ledger.
//!
//! The crates below this one, each a concern of its own (dependencies point one way):
//! [`policy`] (parsing and the pure rules) ← `warden-identity` (keys, tokens, users, task
//! credentials, secrets) ← `warden-sandbox` (engine, imports, linker, gate, instances,
//! capabilities, staging) and `warden-ledger` (state store, audit log, trust ladder,
//! approvals) ← `warden-orchestra` (model providers, the context stack, budgets) ← this crate, which joins them: a [`Runtime`] is the sandbox plus the host
//! configuration and the ledger. Their modules are re-exported here under the names the host
//! has always used (`warden::engine`, `warden::ledger`, …).
//!
//! The path of one task:
//!
//! 1. [`policy::Policy`] parses and validates a TOML policy (deny by default, located errors).
//! 2. [`Runtime::load`] compiles the component through [`engine`]'s disk cache, checks its
//!    imports against the policy ([`imports`]), links only the granted capabilities
//!    ([`capabilities`], through the [`gate`]) and pre-instantiates it.
//! 3. [`LoadedAgent::run`] opens the task in the ledger, runs it in a fresh instance with its own
//!    limits, captured output ([`output`]) and staged writes ([`staging`]), closes its records and
//!    returns a [`RunReport`] whose [`Outcome`] is `completed`, `agent-error`,
//!    `escalated { reason, detail }` or `killed { reason, capability, detail }`. Its model calls
//!    go through a per-task session of [`orchestra::model`] (budget, context stack, accounting).
//! 4. An agent whose policy names others in `[agents] call` may call them by name: each callee
//!    runs as a child task — found in the host's agents directory, under its own policy bounded
//!    by the user's roles and by every caller, within the tree's limits of depth, fan-out, wall
//!    time and model budget — and only its result comes back (`calls.rs`). The tasks of one
//!    request form a tree in the ledger.
#![deny(missing_docs)]

pub mod alloc;
mod calls;
pub mod cascade;
mod contract;
pub mod mcp;
mod memory;
mod model;
mod record;
mod run;
mod runtime;
pub mod serve;
pub mod telemetry;
pub mod terminal;

pub use warden_identity::keys as identity;
pub use warden_identity::{credential, secrets, token, user};
pub use warden_ledger::{approval, audit, ledger, review, store, trust};
pub use warden_orchestra as orchestra;
pub use warden_policy as policy;
pub use warden_policy::bounded;
pub use warden_sandbox::{
    bindings, capabilities, complexity, engine, gate, imports, jail, output, staging,
};

pub use contract::{Contract, warm_meta_schema};
pub use run::{RunOptions, RunReport, StagingDisposition};
pub use runtime::{AgentIdentity, LoadedAgent, PolicyLoadError, Runtime};
pub use warden_sandbox::{
    Description, EngineConfig, EngineError, KillReason, LoadError, Outcome, RunError, Violation,
    WardenEngine, outcome_name,
};
