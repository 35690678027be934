//! The load path: a [`Sandbox`] (one engine, the host's tools and secrets, a bound on live
//! instances) turns component bytes and a policy into a [`PreparedAgent`]: compiled through the
//! cache, imports checked against the policy, only the granted capabilities linked,
//! pre-instantiated. Nothing of the guest runs here.

use std::sync::Arc;

use rustls::ClientConfig;
use tokio::sync::{Semaphore, SemaphorePermit};
use warden_identity::credential::CredentialMinter;
use warden_identity::secrets::SecretStore;

use crate::bindings::AgentPre;
use crate::capabilities::net::NetConfig;
use crate::capabilities::net::tls;
use crate::capabilities::tools::ToolRegistry;
use crate::engine::{EngineConfig, EngineError, WardenEngine};
use crate::imports::{self, ImportReport};
use crate::instance::InstanceState;
use crate::outcome::{LoadError, RunError};
use crate::policy::{Limits, Policy};

/// The sandbox of one host: the engine, the registered tools, host-held secrets, the certificate
/// authorities `https` trusts, the host's ceilings on every task's limits, and a bound on live
/// instances. Cheap to clone (shared).
///
/// Defaults: no secrets, no ceilings beyond the engine's, the tools it was built with, the web
/// PKI roots only ([`tls::web_pki_config`]).
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(crate) engine: Arc<WardenEngine>,
    pub(crate) tools: Arc<ToolRegistry>,
    pub(crate) secrets: Arc<SecretStore>,
    pub(crate) minter: Arc<CredentialMinter>,
    pub(crate) ceiling: Option<Limits>,
    tls: Arc<ClientConfig>,
    slots: Arc<Semaphore>,
}

impl Sandbox {
    /// A sandbox with `config` and `tools`.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the engine cannot be configured.
    pub fn new(config: EngineConfig, tools: ToolRegistry) -> Result<Self, EngineError> {
        let slots = config.max_instances as usize;
        Ok(Sandbox {
            engine: Arc::new(WardenEngine::new(config)?),
            tools: Arc::new(tools),
            secrets: Arc::default(),
            minter: Arc::new(
                CredentialMinter::new().map_err(|e| EngineError::Config(e.to_string()))?,
            ),
            ceiling: None,
            tls: tls::web_pki_config().map_err(|e| EngineError::Config(e.to_string()))?,
            slots: Arc::new(Semaphore::new(slots)),
        })
    }

    /// Register the tools the host configuration declares (`[[tools]]`).
    pub fn register_host_tools(&mut self, tools: &[crate::policy::HostTool]) {
        if !tools.is_empty() {
            Arc::make_mut(&mut self.tools).register_host_tools(tools);
        }
    }

    /// Cap every task's limits by `ceiling` (the host configuration's `[limits]`).
    pub fn set_ceiling(&mut self, ceiling: Option<Limits>) {
        self.ceiling = ceiling;
    }

    /// Inject `secrets` into the outbound requests their rules name (and screen output for them).
    pub fn set_secrets(&mut self, secrets: SecretStore) {
        self.secrets = Arc::new(secrets);
    }

    /// Trust what `config` trusts for every `https` connection of the agents prepared from now
    /// on (the host's own calls to model providers use it too, through [`Sandbox::tls`]). Build
    /// it with [`tls::client_config`]: the web PKI roots plus the host configuration's `[tls] ca`.
    /// Certificate and host-name checks are part of every such configuration.
    pub fn set_tls(&mut self, config: Arc<ClientConfig>) {
        self.tls = config;
    }

    /// The TLS client configuration of outbound `https` (see [`Sandbox::set_tls`]); connect with
    /// [`tls::connect_tls`].
    pub fn tls(&self) -> Arc<ClientConfig> {
        self.tls.clone()
    }

    /// The engine.
    pub fn engine(&self) -> &WardenEngine {
        &self.engine
    }

    /// The registered tools.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Wait for a free instance slot; the instance lives while the permit is held.
    ///
    /// # Errors
    ///
    /// [`RunError::Setup`] if the host is shutting down.
    pub async fn slot(&self) -> Result<SemaphorePermit<'_>, RunError> {
        self.slots
            .acquire()
            .await
            .map_err(|e| RunError::Setup(e.to_string()))
    }

    /// Compile `bytes`, check its imports against `policy`, link what is granted and
    /// pre-instantiate.
    ///
    /// # Errors
    ///
    /// [`LoadError`]: `Engine` (too large, not a component), `Import` (an import refused),
    /// `Link` or `Exports`. Nothing of the guest has run when this fails.
    pub fn prepare(&self, bytes: &[u8], policy: Policy) -> Result<PreparedAgent, LoadError> {
        let agent = policy.agent.name.clone();
        let component = self.engine.compile(bytes)?;
        let engine = self.engine.engine();
        let stubs = match imports::check(engine, &component, &policy) {
            Ok(stubs) => stubs,
            Err(refusal) => {
                tracing::warn!(target: "warden::load", agent = %agent, error = %refusal, "load refused");
                return Err(LoadError::Import { agent, refusal });
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
                return Err(LoadError::Import { agent, refusal });
            }
        };
        let pre = AgentPre::new(pre).map_err(exports_err)?;
        tracing::info!(target: "warden::load", agent = %agent, stubs = stubs.len(), "agent loaded");
        Ok(PreparedAgent {
            sandbox: self.clone(),
            pre,
            net: NetConfig {
                grant: Arc::new(policy.net.clone()),
                tls: self.tls.clone(),
            },
            policy: Arc::new(policy),
            imports,
            stubs: stubs.len(),
        })
    }
}

/// An agent ready to run: compiled, checked, linked and pre-instantiated. Each run is a fresh
/// instance of it ([`PreparedAgent::execute`]).
pub struct PreparedAgent {
    pub(crate) sandbox: Sandbox,
    pub(crate) pre: AgentPre<InstanceState>,
    pub(crate) net: NetConfig,
    pub(crate) policy: Arc<Policy>,
    imports: Vec<ImportReport>,
    stubs: usize,
}

impl std::fmt::Debug for PreparedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedAgent")
            .field("agent", &self.policy.agent.name)
            .finish()
    }
}

impl PreparedAgent {
    /// The policy it runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Its imports, classified against the policy.
    pub fn imports(&self) -> &[ImportReport] {
        &self.imports
    }

    /// How many ungranted imports were bound to stubs that kill on first call.
    pub fn stubs(&self) -> usize {
        self.stubs
    }

    /// The sandbox it was prepared in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}
