//! The host's front door: a [`Runtime`] is the sandbox plus what the host keeps around it (the
//! host configuration, the ledger). It loads an agent under a policy — its signature checked
//! before compiling, a refusal audited, an import of an API that does not exist demoting it —
//! into a [`LoadedAgent`] whose runs go through the ledger (`run.rs`). With `[agents] dir` in its
//! configuration it also finds agents by name for agent calls (`calls/directory.rs`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use serde_json::json;
use sha2::Digest;

use crate::audit::AuditEvent;
use crate::calls::AgentDirectory;
use crate::capabilities::net::tls::{self, TlsConfigError};
use crate::capabilities::tools::ToolRegistry;
use crate::engine::{EngineConfig, EngineError, WardenEngine};
use crate::imports::ImportError;
use crate::ledger::Ledger;
use crate::policy::keys::Domain;
use crate::policy::{HostConfig, Policy};
use crate::secrets::SecretStore;
use crate::trust::{Ladder, Verdict};
use warden_sandbox::{LoadError, PreparedAgent, Sandbox};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// Its signature was missing or refused (signed policies are required).
    #[error("refused policy: {0}")]
    Signature(crate::identity::IdentityError),
    /// The policy itself is invalid.
    #[error("{0}")]
    Invalid(crate::policy::PolicyError),
    /// The policy file could not be read, or is over its size limit (read before its signature
    /// is checked).
    #[error("cannot read the policy: {0}")]
    Read(crate::bounded::ReadError),
}

/// A host: the sandbox (one engine, the registered tools, a bound on live instances), the host
/// configuration and, optionally, the ledger every task is recorded in.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) sandbox: Sandbox,
    pub(crate) config: Arc<HostConfig>,
    pub(crate) tasks: Arc<AtomicU64>,
    pub(crate) ledger: Option<Arc<Ledger>>,
    pub(crate) models: Option<Arc<warden_orchestra::model::Models>>,
    /// The agents agent calls find by name (`[agents] dir`), loaded through this host. Every
    /// builder method starts it afresh: an agent loaded before would run on the host as it was.
    pub(crate) agents: Option<Arc<AgentDirectory>>,
    /// For an agent the directory itself loaded (which must not keep the directory alive: the
    /// directory keeps it): the directory its calls find agents in, while the host has it.
    pub(crate) loaded_from: Option<std::sync::Weak<AgentDirectory>>,
    pub(crate) memory: Option<Arc<warden_orchestra::memory::Memory>>,
    /// The host's secrets, as the memory filter checks writes against them.
    pub(crate) secrets: Arc<SecretStore>,
}

impl Runtime {
    /// A host with `config` and `tools`.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the engine cannot be configured.
    pub fn new(config: EngineConfig, tools: ToolRegistry) -> Result<Self, EngineError> {
        Ok(Runtime {
            sandbox: Sandbox::new(config, tools)?,
            config: Arc::new(HostConfig::default()),
            tasks: Arc::new(AtomicU64::new(0)),
            ledger: None,
            models: None,
            agents: None,
            loaded_from: None,
            memory: None,
            secrets: Arc::default(),
        })
    }

    /// The same host with an empty agents directory (see [`Runtime::agents`]).
    fn afresh(mut self) -> Self {
        self.loaded_from = None;
        self.agents = self
            .config
            .agents_dir
            .clone()
            .map(|dir| Arc::new(AgentDirectory::new(dir)));
        self
    }

    /// Use `config` (trusted and revoked keys, signature requirements, host tools, ceilings on
    /// every task's limits, the agents directory and the limits of a task tree) from now on. Its
    /// `[tls] ca` is applied by [`Runtime::with_tls_ca`], which can fail.
    pub fn with_host_config(mut self, config: HostConfig) -> Self {
        self.sandbox.register_host_tools(&config.tools);
        self.sandbox.set_ceiling(config.limits.clone());
        self.config = Arc::new(config);
        self.afresh()
    }

    /// Trust, for every outbound `https` connection (agents' and the host's own), the web PKI
    /// roots plus the certificate authorities in `ca` (the host configuration's `[tls] ca`).
    ///
    /// # Errors
    ///
    /// [`TlsConfigError`] naming a CA file that cannot be read or holds no usable certificate:
    /// the host does not start with it.
    pub fn with_tls_ca(mut self, ca: &[std::path::PathBuf]) -> Result<Self, TlsConfigError> {
        self.sandbox.set_tls(tls::client_config(ca)?);
        Ok(self.afresh())
    }

    /// Keep every task, trace, trust record, pending action and audit record in `ledger`:
    /// from now on runs climb the trust ladder, stage their writes in the data directory and
    /// leave an audit trail.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self.afresh()
    }

    /// Send agents' model calls to `models` (the providers of the host configuration's
    /// `[[model]]`, built with [`warden_orchestra::model::Models::from_config`]).
    pub fn with_models(mut self, models: warden_orchestra::model::Models) -> Self {
        self.models = Some(Arc::new(models));
        self.afresh()
    }

    /// Keep agents' curated memory in `memory` (opened once per process, in the ledger's data
    /// directory: [`warden_orchestra::memory::Memory::open`]`(ledger.dir())`). Tasks of a policy
    /// with `[memory]` then read and write it, and their models see it as layer 2 of the context
    /// stack; on a host without a ledger it stays unused (every write is audited).
    pub fn with_memory(mut self, memory: Arc<warden_orchestra::memory::Memory>) -> Self {
        self.memory = Some(memory);
        self.afresh()
    }

    /// The curated memory, if the host keeps one.
    pub fn memory(&self) -> Option<&Arc<warden_orchestra::memory::Memory>> {
        self.memory.as_ref()
    }

    /// The TLS client configuration of outbound HTTPS (web PKI roots plus `tls.ca`).
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.sandbox.tls()
    }

    /// The model providers, if the host has any.
    pub fn models(&self) -> Option<&warden_orchestra::model::Models> {
        self.models.as_deref()
    }

    /// The ledger, if the host keeps one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// Inject `secrets` into the outbound requests their rules name (and screen output and
    /// memory writes for them).
    pub fn with_secrets(mut self, secrets: SecretStore) -> Self {
        self.secrets = Arc::new(secrets.clone());
        self.sandbox.set_secrets(secrets);
        self.afresh()
    }

    /// The host configuration.
    pub fn host_config(&self) -> &HostConfig {
        &self.config
    }

    /// Where agent calls find agents by name (`[agents] dir`), if the host has such a folder.
    pub fn agents_dir(&self) -> Option<&Path> {
        self.agents.as_deref().map(AgentDirectory::dir)
    }

    /// Read the policy at `path`, checking its reviewer's signature first when the host
    /// configuration requires signed policies.
    ///
    /// # Errors
    ///
    /// [`PolicyLoadError`]: the signature refusal, or the policy's own located error.
    pub fn load_policy(&self, path: &Path) -> Result<Policy, PolicyLoadError> {
        if self.config.require_signed_policies {
            let bytes = crate::bounded::read(path, crate::bounded::Limit::POLICY)
                .map_err(PolicyLoadError::Read)?;
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
        self.sandbox.engine()
    }

    /// The registered tools.
    pub fn tools(&self) -> &ToolRegistry {
        self.sandbox.tools()
    }

    /// Load the component at `path` under `policy`.
    ///
    /// # Errors
    ///
    /// See [`LoadError`].
    pub fn load_file(&self, path: &Path, policy: Policy) -> Result<LoadedAgent, LoadError> {
        let bytes = read_bounded(path, self.engine().config().max_component_size)?;
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
        let (trust, source) = (policy.trust.clone(), policy.source.clone());
        let prepared = match self.sandbox.prepare(bytes, policy) {
            Ok(p) => p,
            Err(e) => {
                if let LoadError::Import { refusal, .. } = &e {
                    self.refused_load(&identity, &agent, &trust, refusal)?;
                }
                return Err(e);
            }
        };
        if let Some(ledger) = &self.ledger {
            ledger
                .record(AuditEvent::new("agent-loaded").agent(&agent).detail(json!({
                    "agent_id": identity.agent_id,
                    "module_hash": identity.module_hash,
                    "policy": source,
                    "stubs": prepared.stubs(),
                })))
                .map_err(|e| LoadError::Ledger(e.to_string()))?;
        }
        Ok(LoadedAgent {
            runtime: self.clone(),
            identity,
            prepared,
            contract: tokio::sync::OnceCell::new(),
        })
    }

    /// Audit a refused load; an import of an API that does not exist also demotes the agent.
    fn refused_load(
        &self,
        identity: &AgentIdentity,
        agent: &str,
        trust: &crate::policy::TrustPolicy,
        refusal: &ImportError,
    ) -> Result<(), LoadError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let fail = |e: crate::ledger::LedgerError| LoadError::Ledger(e.to_string());
        ledger
            .record(AuditEvent::new("agent-refused").agent(agent).detail(json!({
                "agent_id": identity.agent_id,
                "module_hash": identity.module_hash,
                "why": refusal.to_string(),
            })))
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
            trust.inherit,
        );
        let verdict = Verdict::Demote(format!("imports an API that does not exist: {refusal}"));
        if let Some(change) = Ladder::after_task(&mut record, &verdict, trust.promote_after, 0) {
            ledger
                .record(AuditEvent::new(change.kind()).agent(agent).detail(json!({
                    "agent_id": identity.agent_id,
                    "change": change,
                })))
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

/// An agent ready to run under a host: prepared in the sandbox, with its identity on the trust
/// ladder. Each run ([`LoadedAgent::run`]) is a fresh instance.
pub struct LoadedAgent {
    pub(crate) runtime: Runtime,
    pub(crate) identity: AgentIdentity,
    pub(crate) prepared: PreparedAgent,
    /// Its contract, taken from `describe` at its first run (see `contract.rs`).
    pub(crate) contract: tokio::sync::OnceCell<Arc<crate::contract::Contract>>,
}

impl std::fmt::Debug for LoadedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedAgent")
            .field("agent", &self.prepared.policy().agent.name)
            .finish()
    }
}

impl LoadedAgent {
    /// The policy it runs under.
    pub fn policy(&self) -> &Policy {
        self.prepared.policy()
    }

    /// Its imports, classified against the policy.
    pub fn imports(&self) -> &[crate::imports::ImportReport] {
        self.prepared.imports()
    }

    /// Who it is on the trust ladder.
    pub fn identity(&self) -> &AgentIdentity {
        &self.identity
    }

    /// Ask the agent to describe itself (in a fresh instance, like any run).
    ///
    /// # Errors
    ///
    /// [`warden_sandbox::RunError`] when the instance cannot be set up, or a kill outcome as
    /// `RunError::Setup`.
    pub async fn describe(&self) -> Result<crate::Description, warden_sandbox::RunError> {
        self.prepared.describe().await
    }
}
