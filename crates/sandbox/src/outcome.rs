//! How loading and running end: why an agent could not be loaded ([`LoadError`]), why a run
//! could not start ([`RunError`]), how a run ended ([`Outcome`]) and what an agent says about
//! itself ([`Description`]); and the one place a trap becomes an outcome ([`classify_trap`]).

use std::path::PathBuf;

use serde::Serialize;

use crate::capabilities::fs::MountError;
use crate::engine::EngineError;
use crate::gate::{KillReason, KillSwitch, Violation};
use crate::imports::ImportError;

/// Most handles (files, streams, requests) one instance may hold at once.
pub const MAX_HANDLES: usize = 4_096;

/// Why an agent could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Compiling failed (too large, not a component, cache trouble).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An import was refused.
    #[error("refused to load agent `{agent}`: {refusal}")]
    Import {
        /// The policy's agent name.
        agent: String,
        /// What was refused.
        refusal: ImportError,
    },
    /// The component's signature was missing or refused.
    #[error("refused to load agent `{agent}`: {refusal}")]
    Signature {
        /// The policy's agent name.
        agent: String,
        /// What was wrong with the signature.
        refusal: warden_identity::IdentityError,
    },
    /// The component's imports could not be linked to the host's interfaces.
    #[error("cannot link agent `{agent}`: {detail}")]
    Link {
        /// The policy's agent name.
        agent: String,
        /// wasmtime's explanation.
        detail: String,
    },
    /// The refusal could not be recorded in the ledger.
    #[error("cannot record the load in the ledger: {0}")]
    Ledger(String),
    /// The component does not export the `warden:agent` world.
    #[error(
        "agent `{agent}` does not export the warden:agent world (`describe` and `run`): {detail}; build it with warden-guest's `export_agent!`"
    )]
    Exports {
        /// The policy's agent name.
        agent: String,
        /// wasmtime's explanation.
        detail: String,
    },
}

/// Why a run could not start (the guest never ran).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The policy grants files but the run has no workspace.
    #[error("the policy of `{0}` grants files; give a workspace folder (`--workspace DIR`)")]
    NoWorkspace(String),
    /// A granted folder is missing or unsafe.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The staging copy could not be made or applied.
    #[error("staging: {0}")]
    Staging(#[from] std::io::Error),
    /// wasmtime refused to set up the instance for a reason that is not the guest's.
    #[error("cannot set up the instance: {0}")]
    Setup(String),
    /// The task's input does not match the agent's input schema (its contract): the instance
    /// was not started.
    #[error("the input does not match the contract of `{agent}`: {detail}")]
    InputContract {
        /// The agent.
        agent: String,
        /// Where the input breaks the schema.
        detail: String,
    },
    /// The user's roles do not let them use this agent (a role's `agents` list): the instance
    /// was not started.
    #[error(
        "user `{user}` may not use agent `{agent}`: none of their roles lists it (`agents = [...]` in the roles file); ask for a role that does"
    )]
    NotGranted {
        /// The agent.
        agent: String,
        /// The user's subject.
        user: String,
    },
    /// The ledger (state store or audit log) could not record the task: the host stops rather
    /// than run unrecorded.
    #[error("cannot record the task: {0}")]
    Ledger(String),
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The agent returned a result.
    Completed {
        /// What `run` returned.
        output: String,
    },
    /// The agent returned an error of its own.
    AgentError {
        /// `invalid-input` or `failed`.
        kind: &'static str,
        /// The agent's message.
        message: String,
    },
    /// The task was stopped for a person to decide (e.g. `budget-cap`): not a violation.
    Escalated {
        /// The trigger, e.g. `budget-cap`.
        reason: String,
        /// What happened and what the person decides.
        detail: String,
    },
    /// The host ended the instance.
    Killed {
        /// Why.
        reason: KillReason,
        /// The capability or limit involved.
        capability: String,
        /// What exactly happened.
        detail: String,
    },
}

/// What an agent says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// One line.
    pub summary: String,
    /// The contract's input: a JSON Schema (JSON text) every task must match.
    pub input_schema: String,
    /// The contract's output: a JSON Schema every result must match.
    pub output_schema: String,
}

pub(crate) fn killed(v: Option<Violation>) -> Outcome {
    let v = v.unwrap_or_else(|| Violation::new(KillReason::Trap, "guest", "killed"));
    Outcome::Killed {
        reason: v.reason,
        capability: v.capability,
        detail: v.detail,
    }
}

/// Turn a failed call into an outcome: a recorded violation wins; otherwise the trap itself.
/// The trap that ends an instance for a person to decide (a call to a tool labelled
/// `sensitive`): not a violation, so no kill and no demotion; the run ends
/// [`Outcome::Escalated`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("escalated ({reason}): {detail}")]
pub struct Escalation {
    /// The trigger, e.g. `sensitive-tool`.
    pub reason: &'static str,
    /// What happened and what the person decides.
    pub detail: String,
}

pub(crate) fn classify_trap(kill: &KillSwitch, err: &wasmtime::Error) -> Outcome {
    if let Some(v) = kill.violation() {
        return killed(Some(v));
    }
    if let Some(v) = err.downcast_ref::<Violation>() {
        return killed(Some(v.clone()));
    }
    if let Some(e) = err.downcast_ref::<Escalation>() {
        return Outcome::Escalated {
            reason: e.reason.to_owned(),
            detail: e.detail.clone(),
        };
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Outcome::AgentError {
            kind: "failed",
            message: format!(
                "the agent called exit({}) instead of returning a result",
                exit.0
            ),
        };
    }
    let table_full = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    });
    if table_full {
        let _ = kill.kill(Violation::new(
            KillReason::HandleLimit,
            "limits.handles",
            format!("held more than {MAX_HANDLES} open handles"),
        ));
        return killed(kill.violation());
    }
    let (reason, detail) = match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => (
            KillReason::StackOverflow,
            "the guest's call stack overflowed".to_string(),
        ),
        Some(trap) => (KillReason::Trap, format!("{trap}")),
        None => (KillReason::Trap, format!("{err:#}")),
    };
    let capability = if reason == KillReason::StackOverflow {
        "limits.stack"
    } else {
        "guest"
    };
    let _ = kill.kill(Violation::new(reason, capability, detail));
    killed(kill.violation())
}

/// The outcome's short name: `completed`, `agent-error` or `killed`.
pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Completed { .. } => "completed",
        Outcome::AgentError { .. } => "agent-error",
        Outcome::Escalated { .. } => "escalated",
        Outcome::Killed { .. } => "killed",
    }
}
