//! The host's front door: a [`Runtime`] loads agents (compile through the cache, check imports
//! against the policy, link only what is granted, pre-instantiate) and each [`LoadedAgent`] runs
//! tasks, every one in a fresh instance with its own store, limits and kill switch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::audit::AuditEvent;
use crate::bindings::{AgentPre, warden::agent::types as wit};
use crate::capabilities::fs::{FsScope, FsState, MountError};
use crate::capabilities::net::{NetHooks, NetScope};
use crate::capabilities::tools::ToolRegistry;
use crate::credential::{CredentialMinter, TaskClaims, TaskContext};
use crate::engine::{EngineConfig, EngineError, WardenEngine};
use crate::gate::{KillReason, KillSwitch, Violation};
use crate::imports::{self, ImportError, ImportReport};
use crate::instance::{CpuMeter, InstanceState, TaskLimiter};
use crate::ledger::Ledger;
use crate::output::{CapturedOutput, OutputBudget, Stream};
use crate::policy::keys::Domain;
use crate::policy::{HostConfig, Policy};
use crate::secrets::SecretStore;
use crate::staging::{AppliedChanges, Staging};
use crate::store::{TaskEnd, TaskRecord, TrustRecord, now_ms};
use crate::trust::{Ladder, Verdict};
use serde_json::json;
use sha2::Digest;

/// Most handles (files, streams, requests) one instance may hold at once.
const MAX_HANDLES: usize = 4_096;

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
        refusal: crate::identity::IdentityError,
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

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// Its signature was missing or refused (signed policies are required).
    #[error("refused policy: {0}")]
    Signature(crate::identity::IdentityError),
    /// The policy itself is invalid.
    #[error("{0}")]
    Invalid(crate::policy::PolicyError),
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

/// Everything about one finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The task's number in this host process.
    pub task: u64,
    /// The agent's name.
    pub agent: String,
    /// How it ended.
    pub outcome: Outcome,
    /// stdout, stderr and log records.
    pub output: CapturedOutput,
    /// File changes applied to the workspace (only for completed runs).
    pub applied: Option<AppliedChanges>,
    /// What became of the task's staged writes.
    pub staging: StagingDisposition,
    /// The agent's trust level for the task (on a host with a ledger).
    pub level: Option<u8>,
    /// Wall-clock time from the start of the run (JSON: `elapsed_us`).
    #[serde(rename = "elapsed_us", serialize_with = "micros")]
    pub elapsed: Duration,
    /// CPU time of the task, the guest's and the host's on its behalf, from the thread CPU
    /// clock (JSON: `cpu_us`).
    #[serde(rename = "cpu_us", serialize_with = "micros")]
    pub cpu: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What one task used: wall time, guest CPU time, peak linear memory.
#[derive(Debug, Clone, Copy)]
struct Usage {
    elapsed: Duration,
    cpu: Duration,
    memory: u64,
}

/// What became of a task's staged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StagingDisposition {
    /// Nothing was written.
    None,
    /// Applied to the workspace.
    Applied,
    /// Kept for a reviewer: `warden task diff | apply | discard`.
    Proposed,
    /// Thrown away (the task did not complete).
    Discarded,
}

impl StagingDisposition {
    /// Its name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            StagingDisposition::None => "none",
            StagingDisposition::Applied => "applied",
            StagingDisposition::Proposed => "proposed",
            StagingDisposition::Discarded => "discarded",
        }
    }
}

/// A summary of the effective grant of one task, for its record.
fn grant_summary(
    policy: &Policy,
    user: Option<&crate::user::User>,
    level: u8,
) -> serde_json::Value {
    let strings =
        |v: &[crate::policy::PathPattern]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "policy": policy.source,
        "user": user.map(|u| u.subject.clone()),
        "roles": user.map(|u| u.roles.clone()),
        "level": level,
        "fs": {"read": strings(&policy.fs.read), "write": strings(&policy.fs.write)},
        "net": policy.net.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "tools": policy.tools.allow,
        "write_level": policy.trust.write_level(),
        "limits": {
            "memory": policy.limits.memory,
            "cpu_ms": policy.limits.cpu.as_millis() as u64,
            "wall_ms": policy.limits.wall.as_millis() as u64,
            "output": policy.limits.output,
        },
    })
}

/// Options for one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The workspace folder the policy's `[fs]` paths are relative to.
    pub workspace: Option<PathBuf>,
    /// The user the agent acts for: its grant is then intersected with the user's roles.
    pub user: Option<Arc<crate::user::User>>,
}

/// A host: one engine, the registered tools, and a bound on live instances.
#[derive(Debug, Clone)]
pub struct Runtime {
    engine: Arc<WardenEngine>,
    tools: Arc<ToolRegistry>,
    config: Arc<HostConfig>,
    secrets: Arc<SecretStore>,
    minter: Arc<CredentialMinter>,
    slots: Arc<Semaphore>,
    tasks: Arc<AtomicU64>,
    ledger: Option<Arc<Ledger>>,
}

impl Runtime {
    /// A host with `config` and `tools`.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the engine cannot be configured.
    pub fn new(config: EngineConfig, tools: ToolRegistry) -> Result<Self, EngineError> {
        let slots = config.max_instances as usize;
        Ok(Runtime {
            engine: Arc::new(WardenEngine::new(config)?),
            tools: Arc::new(tools),
            config: Arc::new(HostConfig::default()),
            secrets: Arc::default(),
            minter: Arc::new(
                CredentialMinter::new().map_err(|e| EngineError::Config(e.to_string()))?,
            ),
            slots: Arc::new(Semaphore::new(slots)),
            tasks: Arc::new(AtomicU64::new(0)),
            ledger: None,
        })
    }

    /// Use `config` (trusted and revoked keys, signature requirements, host tools) from now on.
    pub fn with_host_config(mut self, config: HostConfig) -> Self {
        if !config.tools.is_empty() {
            Arc::make_mut(&mut self.tools).register_host_tools(&config.tools);
        }
        self.config = Arc::new(config);
        self
    }

    /// Keep every task, trace, trust record, pending action and audit record in `ledger`:
    /// from now on runs climb the trust ladder, stage their writes in the data directory and
    /// leave an audit trail.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The ledger, if the host keeps one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// Inject `secrets` into the outbound requests their rules name (and screen output for them).
    pub fn with_secrets(mut self, secrets: SecretStore) -> Self {
        self.secrets = Arc::new(secrets);
        self
    }

    /// The host configuration.
    pub fn host_config(&self) -> &HostConfig {
        &self.config
    }

    /// Read the policy at `path`, checking its reviewer's signature first when the host
    /// configuration requires signed policies.
    ///
    /// # Errors
    ///
    /// [`PolicyLoadError`]: the signature refusal, or the policy's own located error.
    pub fn load_policy(&self, path: &Path) -> Result<Policy, PolicyLoadError> {
        if self.config.require_signed_policies {
            let bytes = crate::bounded::read(path, crate::bounded::Limit::POLICY).map_err(|e| {
                PolicyLoadError::Signature(crate::identity::IdentityError::Malformed {
                    sig: path.display().to_string(),
                    why: e.to_string(),
                })
            })?;
            crate::identity::verify(
                Domain::Policy,
                path,
                &bytes,
                &self.config.reviewers,
                &self.config,
            )
            .map_err(PolicyLoadError::Signature)?;
        }
        Policy::load(path).map_err(PolicyLoadError::Invalid)
    }

    /// The engine.
    pub fn engine(&self) -> &WardenEngine {
        &self.engine
    }

    /// The registered tools.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Load the component at `path` under `policy`.
    ///
    /// # Errors
    ///
    /// See [`LoadError`].
    pub fn load_file(&self, path: &Path, policy: Policy) -> Result<LoadedAgent, LoadError> {
        let bytes = read_bounded(path, self.engine.config().max_component_size)?;
        if let Some(trusted) = crate::identity::agent_signers(&policy, &self.config) {
            // Checked before compiling: an unsigned or tampered component is never parsed.
            let signer = crate::identity::verify(Domain::Agent, path, &bytes, &trusted, &self.config)
                .map_err(|refusal| {
                    tracing::warn!(target: "warden::load", agent = %policy.agent.name, error = %refusal, "signature refused");
                    LoadError::Signature {
                        agent: policy.agent.name.clone(),
                        refusal,
                    }
                });
            let signer = match signer {
                Ok(s) => s,
                Err(e) => {
                    if let Some(ledger) = &self.ledger {
                        ledger
                            .record(
                                AuditEvent::new("agent-refused")
                                    .agent(&policy.agent.name)
                                    .detail(json!({"path": path.display().to_string(), "why": e.to_string()})),
                            )
                            .map_err(|e| LoadError::Ledger(e.to_string()))?;
                    }
                    return Err(e);
                }
            };
            tracing::info!(target: "warden::load", agent = %policy.agent.name, %signer, "signature verified");
            return self.load_verified(&bytes, policy, Some(signer.to_string()));
        }
        self.load_verified(&bytes, policy, None)
    }

    /// Load `bytes` under `policy`: compile, check imports, link, pre-instantiate.
    ///
    /// # Errors
    ///
    /// See [`LoadError`]. Nothing of the guest has run when this fails.
    pub fn load(&self, bytes: &[u8], policy: Policy) -> Result<LoadedAgent, LoadError> {
        if crate::identity::agent_signers(&policy, &self.config).is_some() {
            // In-memory bytes have no signature beside them.
            return Err(LoadError::Signature {
                agent: policy.agent.name.clone(),
                refusal: crate::identity::IdentityError::Unsigned {
                    artifact: "the in-memory component".into(),
                    sig: "a signature file".into(),
                },
            });
        }
        self.load_verified(bytes, policy, None)
    }

    fn load_verified(
        &self,
        bytes: &[u8],
        policy: Policy,
        publisher: Option<String>,
    ) -> Result<LoadedAgent, LoadError> {
        let agent = policy.agent.name.clone();
        let identity = AgentIdentity {
            agent_id: crate::trust::agent_id(publisher.as_deref(), &agent),
            module_hash: crate::policy::keys::to_hex(&sha2::Sha256::digest(bytes)),
        };
        let component = self.engine.compile(bytes)?;
        let engine = self.engine.engine();
        let stubs = match imports::check(engine, &component, &policy) {
            Ok(stubs) => stubs,
            Err(refusal) => {
                tracing::warn!(target: "warden::load", agent = %agent, error = %refusal, "load refused");
                self.refused_load(&identity, &policy, &refusal)?;
                return Err(LoadError::Import {
                    agent: agent.clone(),
                    refusal,
                });
            }
        };
        let imports = imports::report(engine, &component, &policy);
        let exports_err = |e: wasmtime::Error| LoadError::Exports {
            agent: agent.clone(),
            detail: format!("{e:#}"),
        };
        let link_err = |e: wasmtime::Error| LoadError::Link {
            agent: agent.clone(),
            detail: format!("{e:#}"),
        };
        let linker = crate::linker::build(engine, &component, &policy, &stubs).map_err(link_err)?;
        let pre = match linker.instantiate_pre(&component) {
            Ok(pre) => pre,
            Err(e) => {
                // Every interface the verdicts promised is in the linker: a failure is the
                // component's view of one of them, refused in Warden's words like any import.
                let detail = format!("{e:#}");
                let Some(refusal) = imports::mismatch(engine, &component, &detail) else {
                    return Err(link_err(e));
                };
                tracing::warn!(target: "warden::load", agent = %agent, error = %refusal, "load refused");
                self.refused_load(&identity, &policy, &refusal)?;
                return Err(LoadError::Import {
                    agent: agent.clone(),
                    refusal,
                });
            }
        };
        let pre = AgentPre::new(pre).map_err(exports_err)?;
        tracing::info!(target: "warden::load", agent = %agent, stubs = stubs.len(), "agent loaded");
        if let Some(ledger) = &self.ledger {
            ledger
                .record(
                    AuditEvent::new("agent-loaded")
                        .agent(&agent)
                        .detail(serde_json::json!({
                            "agent_id": identity.agent_id,
                            "module_hash": identity.module_hash,
                            "policy": policy.source,
                            "stubs": stubs.len(),
                        })),
                )
                .map_err(|e| LoadError::Ledger(e.to_string()))?;
        }
        Ok(LoadedAgent {
            runtime: self.clone(),
            identity,
            pre,
            net: Arc::new(policy.net.clone()),
            policy: Arc::new(policy),
            imports,
        })
    }
}

impl Runtime {
    /// Audit a refused load; an import of an API that does not exist also demotes the agent.
    fn refused_load(
        &self,
        identity: &AgentIdentity,
        policy: &Policy,
        refusal: &ImportError,
    ) -> Result<(), LoadError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let fail = |e: crate::ledger::LedgerError| LoadError::Ledger(e.to_string());
        ledger
            .record(
                AuditEvent::new("agent-refused")
                    .agent(&policy.agent.name)
                    .detail(serde_json::json!({
                        "agent_id": identity.agent_id,
                        "module_hash": identity.module_hash,
                        "why": refusal.to_string(),
                    })),
            )
            .map_err(fail)?;
        if !refusal.is_unknown_api() {
            return Ok(());
        }
        let store = ledger.store();
        let existing = store
            .trust(&identity.agent_id)
            .map_err(|e| fail(e.into()))?;
        let (mut record, _) = Ladder::for_module(
            existing,
            &identity.agent_id,
            &identity.module_hash,
            policy.trust.inherit,
        );
        let verdict = Verdict::Demote(format!("imports an API that does not exist: {refusal}"));
        if let Some(change) =
            Ladder::after_task(&mut record, &verdict, policy.trust.promote_after, 0)
        {
            ledger
                .record(
                    AuditEvent::new(change.kind())
                        .agent(&policy.agent.name)
                        .detail(serde_json::json!({
                            "agent_id": identity.agent_id,
                            "change": change,
                        })),
                )
                .map_err(fail)?;
        }
        store.put_trust(&record).map_err(|e| fail(e.into()))
    }
}

/// Who an agent is on the trust ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentIdentity {
    /// Publisher key + name.
    pub agent_id: String,
    /// sha256 of the component bytes.
    pub module_hash: String,
}

fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, LoadError> {
    let err = |error| LoadError::Read {
        path: path.to_path_buf(),
        error,
    };
    let size = std::fs::metadata(path).map_err(err)?.len();
    if size > limit as u64 {
        return Err(EngineError::TooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit,
        }
        .into());
    }
    // The size a file reports cannot be trusted (`/proc`, a file that grows): the read itself
    // stops one byte past the limit.
    crate::bounded::read(path, crate::bounded::Limit::component(limit)).map_err(|e| match e {
        crate::bounded::ReadError::Io { error, .. } => err(error),
        other => err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            other.to_string(),
        )),
    })
}

/// An agent ready to run: compiled, checked, linked and pre-instantiated.
pub struct LoadedAgent {
    runtime: Runtime,
    identity: AgentIdentity,
    pre: AgentPre<InstanceState>,
    net: Arc<crate::policy::NetGrant>,
    policy: Arc<Policy>,
    imports: Vec<ImportReport>,
}

impl std::fmt::Debug for LoadedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedAgent")
            .field("agent", &self.policy.agent.name)
            .finish()
    }
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
    /// What `run` accepts.
    pub accepts: String,
    /// What `run` returns.
    pub returns: String,
}

impl LoadedAgent {
    /// The policy it runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Its imports, classified against the policy.
    pub fn imports(&self) -> &[ImportReport] {
        &self.imports
    }

    /// Who it is on the trust ladder.
    pub fn identity(&self) -> &AgentIdentity {
        &self.identity
    }

    /// Run `task` in a fresh instance.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the run cannot start; everything the guest does ends in an [`Outcome`].
    pub async fn run(&self, task: &str, options: &RunOptions) -> Result<RunReport, RunError> {
        let _slot = self
            .runtime
            .slots
            .acquire()
            .await
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let started = Instant::now();
        let ledger = self.runtime.ledger.clone();
        let (mut trust, id) = match &ledger {
            Some(l) => self.begin(l, options)?,
            None => (
                TrustRecord::new(&self.identity.agent_id, &self.identity.module_hash),
                self.runtime.tasks.fetch_add(1, Ordering::Relaxed) + 1,
            ),
        };
        let level = trust.level;
        let (mut store, staging) = match self.new_store(id, started, Mounts::Workspace(options)) {
            Ok(s) => s,
            Err(e) => {
                if let Some(l) = &ledger {
                    self.abandon(l, id, &e)?;
                }
                return Err(e);
            }
        };
        store.data_mut().level = level;
        store.data_mut().ledger = ledger.clone();
        // The effective wall limit (policy ∩ user ∩ host), as the instance's meter holds it.
        let wall = store
            .data()
            .meter
            .wall_deadline
            .saturating_duration_since(Instant::now());
        let kill = store.data().kill.clone();
        let output = store.data().output.clone();
        let account = store.data().meter.account.clone();

        let call = async {
            let agent = self.pre.instantiate_async(&mut store).await?;
            agent.call_run(&mut store, task).await
        };
        let result = match tokio::time::timeout(wall, account.run(call)).await {
            Ok(r) => r,
            Err(_) => Err(kill.kill(Violation::new(
                KillReason::WallLimit,
                "limits.wall",
                "the task ran past its wall-clock limit",
            ))),
        };
        let cpu = store.data().meter.used();
        let memory = store.data().limiter.peak_memory;
        // A guest that returned after spending past its limit in its last stretch (a long host
        // call, a bulk-memory instruction) gets no epoch tick to be stopped at: it ends the same
        // way as one that was stopped (the check records the violation, which wins below).
        if result.is_ok() && !kill.is_killed() {
            let _ = store.data().meter.check(&kill);
        }
        drop(store);

        // A violation recorded outside a host call (the address check after DNS) wins over
        // whatever the guest managed to return before its next tick.
        let result = match (kill.violation(), result) {
            (Some(v), Ok(_)) => Err(wasmtime::Error::new(v)),
            (_, r) => r,
        };
        let mut outcome = match result {
            Ok(Ok(out)) => match output
                .charge(out.len(), "the result")
                .and_then(|()| output.screen(out.as_bytes(), "the result"))
            {
                Ok(()) => Outcome::Completed { output: out },
                Err(_) => killed(kill.violation()),
            },
            Ok(Err(wit::AgentError::InvalidInput(message))) => Outcome::AgentError {
                kind: "invalid-input",
                message,
            },
            Ok(Err(wit::AgentError::Failed(message))) => Outcome::AgentError {
                kind: "failed",
                message,
            },
            Err(err) => classify_trap(&kill, &err),
        };

        // Staged writes: applied when the agent's level lets it commit them (always, on a host
        // without a ledger), proposed for a reviewer otherwise, discarded unless completed.
        let mut applied = None;
        let mut disposition = StagingDisposition::None;
        if let Some(staging) = staging {
            let completed = matches!(outcome, Outcome::Completed { .. });
            let commits = ledger.is_none() || level >= self.policy.trust.write_level();
            let done = if !completed {
                disposition = StagingDisposition::Discarded;
                staging.discard()
            } else if commits {
                staging.apply().map(|changes| {
                    disposition = if changes.written.is_empty() && changes.removed.is_empty() {
                        StagingDisposition::None
                    } else {
                        StagingDisposition::Applied
                    };
                    applied = Some(changes);
                })
            } else {
                match staging.diff() {
                    Ok(diff) if diff.is_empty() => {
                        disposition = StagingDisposition::None;
                        staging.discard()
                    }
                    Ok(_) => {
                        disposition = StagingDisposition::Proposed;
                        staging.seal()
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = done {
                outcome = Outcome::AgentError {
                    kind: "failed",
                    message: format!("the host could not stage the agent's file changes: {e}"),
                };
            }
        }
        let elapsed = started.elapsed();
        if let Some(l) = &ledger {
            self.finish(
                l,
                id,
                &outcome,
                &kill.trace(),
                &mut trust,
                disposition,
                Usage {
                    elapsed,
                    cpu,
                    memory,
                },
            )?;
        }
        let report = RunReport {
            task: id,
            agent: self.policy.agent.name.clone(),
            outcome,
            output: output.snapshot(),
            applied,
            staging: disposition,
            level: ledger.as_ref().map(|_| level),
            elapsed,
            cpu,
        };
        tracing::info!(
            target: "warden::run",
            agent = %report.agent,
            task = id,
            status = outcome_name(&report.outcome),
            elapsed_us = report.elapsed.as_micros() as u64,
            "run finished"
        );
        Ok(report)
    }

    /// Open the task in the ledger: the agent's trust record for this module, the task row and
    /// its first audit record.
    fn begin(&self, ledger: &Ledger, options: &RunOptions) -> Result<(TrustRecord, u64), RunError> {
        let fail = |e: crate::ledger::LedgerError| RunError::Ledger(e.to_string());
        let store = ledger.store();
        let policy = &self.policy;
        let existing = store
            .trust(&self.identity.agent_id)
            .map_err(|e| fail(e.into()))?;
        let (trust, change) = Ladder::for_module(
            existing,
            &self.identity.agent_id,
            &self.identity.module_hash,
            policy.trust.inherit,
        );
        if let Some(change) = change {
            ledger
                .record(
                    AuditEvent::new(change.kind())
                        .agent(&policy.agent.name)
                        .detail(json!({"agent_id": self.identity.agent_id, "change": change})),
                )
                .map_err(fail)?;
            store.put_trust(&trust).map_err(|e| fail(e.into()))?;
        }
        let user = options.user.as_deref();
        let subject = user.map_or("-", |u| u.subject.as_str());
        let grant = grant_summary(policy, user, trust.level);
        let id = store
            .begin_task(
                &TaskRecord {
                    id: 0,
                    agent: policy.agent.name.clone(),
                    agent_id: self.identity.agent_id.clone(),
                    module_hash: self.identity.module_hash.clone(),
                    user: subject.to_owned(),
                    level: trust.level,
                    grant: grant.clone(),
                    status: "running".into(),
                    outcome: None,
                    trace: None,
                    staging: "none".into(),
                    staging_path: None,
                    started_ms: now_ms(),
                    ended_ms: None,
                },
                ledger.owner(),
            )
            .map_err(|e| fail(e.into()))?;
        ledger
            .record(
                AuditEvent::new("task-started")
                    .task(id)
                    .agent(&policy.agent.name)
                    .user(subject)
                    .detail(json!({
                        "agent_id": self.identity.agent_id,
                        "module_hash": self.identity.module_hash,
                        "level": trust.level,
                        "grant": grant,
                    })),
            )
            .map_err(fail)?;
        Ok((trust, id))
    }

    /// A task that could not start: record it as ended without running.
    fn abandon(&self, ledger: &Ledger, id: u64, error: &RunError) -> Result<(), RunError> {
        let fail = |e: crate::ledger::LedgerError| RunError::Ledger(e.to_string());
        ledger
            .record(
                AuditEvent::new("task-failed-to-start")
                    .task(id)
                    .agent(&self.policy.agent.name)
                    .detail(json!({"why": error.to_string()})),
            )
            .map_err(fail)?;
        let trust = ledger
            .store()
            .trust(&self.identity.agent_id)
            .map_err(|e| fail(e.into()))?
            .unwrap_or_else(|| {
                TrustRecord::new(&self.identity.agent_id, &self.identity.module_hash)
            });
        ledger
            .store()
            .end_task(&TaskEnd {
                id,
                status: "failed-to-start".into(),
                outcome: json!({"status": "failed-to-start", "why": error.to_string()}),
                trace: json!({"events": [], "dropped": 0}),
                staging: "none".into(),
                staging_path: None,
                trust,
            })
            .map_err(|e| fail(e.into()))
    }

    /// Close the task in the ledger: kill and staging records, the ladder's verdict, the end
    /// record (binding the trace by its hash), then the task row and trust record in one commit.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        ledger: &Ledger,
        id: u64,
        outcome: &Outcome,
        trace: &crate::gate::Trace,
        trust: &mut TrustRecord,
        disposition: StagingDisposition,
        usage: Usage,
    ) -> Result<(), RunError> {
        let fail = |e: crate::ledger::LedgerError| RunError::Ledger(e.to_string());
        let policy = &self.policy;
        let agent = policy.agent.name.as_str();
        let event = |kind: &str| AuditEvent::new(kind).task(id).agent(agent);
        let verdict = match outcome {
            Outcome::Completed { .. } => Verdict::Clean,
            Outcome::AgentError { .. } => Verdict::AgentError,
            Outcome::Killed {
                reason,
                capability,
                detail,
            } => {
                ledger
                    .record(event("task-killed").detail(json!({
                        "reason": reason,
                        "capability": capability,
                        "detail": detail,
                    })))
                    .map_err(fail)?;
                Verdict::Demote(format!("killed ({reason}) by {capability}: {detail}"))
            }
        };
        let staging_path = (disposition == StagingDisposition::Proposed)
            .then(|| ledger.staging_root(id).display().to_string());
        if disposition != StagingDisposition::None {
            ledger
                .record(
                    event(&format!("staging-{}", disposition.as_str())).detail(json!({
                        "level": trust.level,
                        "write_level": policy.trust.write_level(),
                    })),
                )
                .map_err(fail)?;
        }
        let level = trust.level;
        if let Some(change) = Ladder::after_task(trust, &verdict, policy.trust.promote_after, id) {
            ledger
                .record(event(change.kind()).detail(json!({
                    "agent_id": trust.agent_id,
                    "change": change,
                })))
                .map_err(fail)?;
        }
        let trace_json = serde_json::to_value(trace).unwrap_or_default();
        let trace_hash =
            crate::policy::keys::to_hex(&sha2::Sha256::digest(trace_json.to_string().as_bytes()));
        let mut outcome_json = serde_json::to_value(outcome).unwrap_or_default();
        outcome_json["usage"] = json!({
            "elapsed_us": usage.elapsed.as_micros() as u64,
            "cpu_us": usage.cpu.as_micros() as u64,
            "peak_memory": usage.memory,
        });
        let status = outcome_name(outcome);
        ledger
            .record(event("task-ended").detail(json!({
                "status": status,
                "level": level,
                "trace_sha256": trace_hash,
                "trace_events": trace.events.len(),
                "elapsed_us": usage.elapsed.as_micros() as u64,
                "cpu_us": usage.cpu.as_micros() as u64,
                "peak_memory": usage.memory,
            })))
            .map_err(fail)?;
        ledger
            .store()
            .end_task(&TaskEnd {
                id,
                status: status.to_owned(),
                outcome: outcome_json,
                trace: trace_json,
                staging: disposition.as_str().to_owned(),
                staging_path,
                trust: trust.clone(),
            })
            .map_err(|e| fail(e.into()))
    }

    /// Ask the agent to describe itself (in a fresh instance, like any run).
    ///
    /// # Errors
    ///
    /// [`RunError`] when the instance cannot be set up, or a kill outcome as `RunError::Setup`.
    pub async fn describe(&self) -> Result<Description, RunError> {
        let _slot = self
            .runtime
            .slots
            .acquire()
            .await
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let started = Instant::now();
        let (mut store, _staging) = self.new_store(0, started, Mounts::None)?;
        let kill = store.data().kill.clone();
        let account = store.data().meter.account.clone();
        let call = async {
            let agent = self.pre.instantiate_async(&mut store).await?;
            agent.call_describe(&mut store).await
        };
        match tokio::time::timeout(self.policy.limits.wall, account.run(call)).await {
            Ok(Ok(d)) => Ok(Description {
                name: d.name,
                version: d.version,
                summary: d.summary,
                accepts: d.accepts,
                returns: d.returns,
            }),
            Ok(Err(e)) => Err(RunError::Setup(format!(
                "describe failed: {:?}",
                classify_trap(&kill, &e)
            ))),
            Err(_) => Err(RunError::Setup(
                "describe ran past the wall-clock limit".into(),
            )),
        }
    }

    fn new_store(
        &self,
        id: u64,
        started: Instant,
        mounts: Mounts<'_>,
    ) -> Result<(Store<InstanceState>, Option<Staging>), RunError> {
        let policy = &self.policy;
        let acting_for = match mounts {
            Mounts::Workspace(o) => o.user.clone(),
            Mounts::None => None,
        };
        let user = acting_for.as_ref().map(|u| u.grant.clone());
        let limits = match &user {
            Some(u) => u.limit(&policy.limits),
            None => policy.limits.clone(),
        };
        let limits = &match &self.runtime.config.limits {
            Some(ceiling) => limits.capped_by(ceiling),
            None => limits,
        };
        let kill = KillSwitch::new(policy.agent.name.as_str().into(), id);
        let task = TaskContext::new(
            self.runtime.minter.clone(),
            TaskClaims {
                task: id,
                agent: policy.agent.name.clone(),
                user: acting_for
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |u| u.subject.clone()),
            },
            limits.wall,
        )
        .map_err(|e| RunError::Setup(e.to_string()))?;
        let output = OutputBudget::new(limits.output, kill.clone(), self.runtime.secrets.clone());

        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.writer(Stream::Stdout))
            .stderr(output.writer(Stream::Stderr))
            .max_random_size(crate::capabilities::random::MAX_RANDOM_BYTES)
            // File operations run on the task's own thread, where its CPU meter sees them: on
            // a blocking thread a listing or a deep path walk would cost the guest nothing.
            // Each one is bounded (path length and depth, symlink hops, read sizes).
            .allow_blocking_current_thread(true);

        let mut staging = None;
        // Without mounts (describe) the file capability is still linked if granted, but it has
        // no folder: any use of it kills.
        let mut fs = FsState::new(FsScope::unbound(&policy.fs));
        if let (false, Mounts::Workspace(options)) = (policy.fs.is_empty(), mounts) {
            let workspace = options
                .workspace
                .as_deref()
                .ok_or_else(|| RunError::NoWorkspace(policy.agent.name.clone()))?;
            let mut scope = FsScope::bind(&policy.fs, workspace)?.for_user(user.clone());
            let writable: Vec<(PathBuf, String)> = scope
                .mounts()
                .iter()
                .filter(|m| m.writable)
                .map(|m| (m.host.clone(), m.rel.clone()))
                .collect();
            // Each writable folder is served from an empty staging folder that the overlay fills
            // on demand: nothing of the workspace is copied up front. With a ledger the staging
            // area is kept in its data directory, so a proposed change outlives the process.
            if !writable.is_empty() {
                let stage = match &self.runtime.ledger {
                    Some(l) => Staging::create(&l.staging_root(id), &writable)?,
                    None => Staging::new(&writable)?,
                };
                for f in stage.folders() {
                    scope.restage(&f.original, &f.staged)?;
                }
                staging = Some(stage);
            }
            for m in scope.mounts() {
                let perms = if m.writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                wasi.preopened_dir(&m.host, &m.guest, perms).map_err(|e| {
                    RunError::Setup(format!("cannot open {}: {e}", m.host.display()))
                })?;
            }
            fs = FsState::new(scope);
            if let Some(stage) = &staging {
                fs = fs.with_overlay(stage.overlay());
            }
        }

        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let meter = CpuMeter::new(limits.cpu, started, limits.wall);
        let state = InstanceState {
            wasi: wasi.build(),
            table,
            http: WasiHttpCtx::new(),
            net: NetHooks::new(
                Arc::new(NetScope::new(self.net.clone(), user.clone())),
                kill.clone(),
                self.runtime.secrets.clone(),
                meter.account.clone(),
            ),
            fs,
            tools: self.runtime.tools.clone(),
            policy: policy.clone(),
            user,
            task,
            limiter: TaskLimiter {
                memory: limits.memory,
                tables: limits.tables,
                kill: kill.clone(),
                peak_memory: 0,
            },
            meter,
            kill,
            output,
            level: 1,
            ledger: None,
        };
        let mut store = Store::new(self.runtime.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.meter.on_deadline(&state.kill)
        });
        Ok((store, staging))
    }
}

/// What a new instance gets mounted.
#[derive(Clone, Copy)]
enum Mounts<'a> {
    /// The policy's folders in the run's workspace.
    Workspace(&'a RunOptions),
    /// Nothing (for `describe`, which must not use capabilities).
    None,
}

fn killed(v: Option<Violation>) -> Outcome {
    let v = v.unwrap_or_else(|| Violation::new(KillReason::Trap, "guest", "killed"));
    Outcome::Killed {
        reason: v.reason,
        capability: v.capability,
        detail: v.detail,
    }
}

/// Turn a failed call into an outcome: a recorded violation wins; otherwise the trap itself.
fn classify_trap(kill: &KillSwitch, err: &wasmtime::Error) -> Outcome {
    if let Some(v) = kill.violation() {
        return killed(Some(v));
    }
    if let Some(v) = err.downcast_ref::<Violation>() {
        return killed(Some(v.clone()));
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
        Outcome::Killed { .. } => "killed",
    }
}
