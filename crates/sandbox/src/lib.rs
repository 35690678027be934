//! The sandbox: one wasmtime engine with its cache of compiled components ([`engine`]), the
//! load-time import check ([`imports`]), the per-agent linker, the one gate every capability use
//! passes ([`gate`]), instances under limits, captured output ([`output`]), the staging area
//! writes go to ([`staging`]), and one module per capability ([`capabilities`]: `fs`, `net`,
//! `tools`, `random`).
//!
//! The path of one task through it: [`Sandbox::prepare`] compiles a component, checks its
//! imports against the policy, links only what is granted and pre-instantiates it
//! ([`PreparedAgent`]); [`PreparedAgent::execute`] runs one task in a fresh instance and returns
//! its [`Outcome`], output, usage, trace and staged writes.
//!
//! It knows the policy and identity types and nothing above: what needs the host (holding an
//! irreversible action for approval, later calling another agent, memory, models) is a small
//! trait here ([`capabilities::tools::ActionHold`]) that the host implements.
#![deny(missing_docs)]

#[allow(missing_docs)]
pub mod bindings;
pub mod capabilities;
pub mod complexity;
pub mod engine;
mod execute;
pub mod gate;
pub mod imports;
mod instance;
pub mod jail;
mod linker;
mod outcome;
pub mod output;
mod prepare;
pub mod staging;

pub use engine::{EngineConfig, EngineError, KEEP_RESIDENT, WardenEngine};
pub use execute::{Executed, Execution};
pub use gate::{KillReason, Violation};
pub use instance::CpuAccount;
pub use jail::{Jail, JailBind, JailEnd, JailError, JailLimits, JailRun};
pub use outcome::{Description, LoadError, MAX_HANDLES, Outcome, RunError, outcome_name};
pub use prepare::{PreparedAgent, Sandbox};

use warden_identity::{credential, secrets};
use warden_policy as policy;
