//! The host's model providers ([`Models`]), built once at start-up from `warden.toml`'s
//! `[[model]]` entries with their API keys read, and the per-task sessions made from them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use warden_policy::bounded::{self, Limit};
use warden_policy::{HostConfig, KeySource, ModelProvider, ProviderKind};

use super::budget::Budget;
use super::client::CallerModel;
use super::context::ContextStack;
use super::provider::Provider;
use super::session::{CallObserver, TaskModels};

/// The providers by name, shared by every session.
pub(crate) type Providers = Arc<BTreeMap<String, Arc<Provider>>>;

/// The models the calling MCP client serves (`provider = "mcp-client"`), by name.
pub(crate) type ClientServed = Arc<BTreeMap<String, ModelProvider>>;

/// Shortest API key the host accepts: a shorter one cannot be redacted without mangling text.
const MIN_KEY_BYTES: usize = 8;
/// Most bytes of a `key_file`.
const KEY_FILE: Limit = Limit::new("a model API key file (key_file)", 64 << 10);

/// Why the host's models cannot be set up (the host does not start). No variant carries a key.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// `key_env` names a variable that is not set.
    #[error(
        "model `{model}`: environment variable {var} (key_env) is not set; set it to the provider's API key"
    )]
    MissingKeyEnv {
        /// The model's name.
        model: String,
        /// The variable.
        var: String,
    },
    /// `key_file` cannot be read.
    #[error("model `{model}`: cannot read its key_file: {why}")]
    KeyFile {
        /// The model's name.
        model: String,
        /// Why (names the file).
        why: String,
    },
    /// The key is empty, too short, or not printable ASCII.
    #[error("model `{model}`: the API key in {source_name} {problem}")]
    BadKey {
        /// The model's name.
        model: String,
        /// The variable or file it came from.
        source_name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The base URL cannot be used.
    #[error("model `{model}`: {why}")]
    Url {
        /// The model's name.
        model: String,
        /// Why.
        why: String,
    },
}

/// What one task's model session is for: whose prompts, under which rules and budget.
#[derive(Clone)]
pub struct SessionScope {
    /// The agent's name.
    pub agent: String,
    /// The policy's `[model] rules` (layer 1, after the host's constitution).
    pub rules: String,
    /// Curated memory (layer 2; empty until the memory store exists).
    pub memory: String,
    /// `(name, description)` of each tool the agent's policy grants (layer 4).
    pub tools: Vec<(String, String)>,
    /// The task's token budget (policy ∩ user).
    pub tokens: u64,
    /// The task's money budget in millionths of a US dollar (policy ∩ user).
    pub micro_usd: u64,
    /// Called after each call with its record.
    pub observer: Option<CallObserver>,
    /// The MCP client that called the tool this task serves, for its `provider = "mcp-client"`
    /// models (`None`: the run came from elsewhere, and such a model answers with an error).
    pub client: Option<Arc<dyn CallerModel>>,
}

impl std::fmt::Debug for SessionScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionScope")
            .field("agent", &self.agent)
            .field("tools", &self.tools.len())
            .field("tokens", &self.tokens)
            .field("micro_usd", &self.micro_usd)
            .field("observer", &self.observer.is_some())
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// The host's model providers. Its `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct Models {
    providers: Providers,
    clients: ClientServed,
    constitution: String,
}

impl Models {
    /// Every `[[model]]` of `config`, keys read now (once), `https` providers reached through
    /// `tls` (certificate and host-name checks always on).
    ///
    /// # Errors
    ///
    /// [`ModelsError`] for the first provider whose key or URL cannot be used.
    pub fn from_config(
        config: &HostConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Models, ModelsError> {
        let mut providers = BTreeMap::new();
        let mut clients = BTreeMap::new();
        for p in &config.models {
            if p.kind == ProviderKind::McpClient {
                clients.insert(p.name.clone(), p.clone());
                continue;
            }
            let key = read_key(&p.name, &p.key)?;
            let provider = Provider::new(p, key, &tls).map_err(|why| ModelsError::Url {
                model: p.name.clone(),
                why,
            })?;
            providers.insert(p.name.clone(), Arc::new(provider));
        }
        Ok(Models {
            providers: Arc::new(providers),
            clients: Arc::new(clients),
            constitution: config.constitution.clone(),
        })
    }

    /// Whether the host has no model.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty() && self.clients.is_empty()
    }

    /// The models' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .providers
            .keys()
            .chain(self.clients.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// Whether model `name` is served by the calling MCP client (`provider = "mcp-client"`):
    /// a task of an agent granted it needs a client that declared `sampling`.
    pub fn is_client_served(&self, name: &str) -> bool {
        self.clients.contains_key(name)
    }

    /// A session for one task, with a budget of its own (`scope.tokens`, `scope.micro_usd`).
    pub fn session(&self, scope: SessionScope) -> Arc<TaskModels> {
        let budget = Budget::new(scope.tokens, scope.micro_usd);
        self.session_sharing(scope, budget)
    }

    /// A session that draws on `budget`, shared with other sessions (a tree of agent calls);
    /// `scope.tokens` and `scope.micro_usd` are not used.
    pub fn session_sharing(&self, scope: SessionScope, budget: Arc<Budget>) -> Arc<TaskModels> {
        Arc::new(TaskModels {
            providers: self.providers.clone(),
            clients: self.clients.clone(),
            client: scope.client,
            stack: ContextStack::new(
                &self.constitution,
                &scope.rules,
                &scope.memory,
                &scope.tools,
            ),
            agent: scope.agent,
            budget,
            observer: scope.observer,
            escalation: OnceLock::new(),
            calls: Mutex::new(Vec::new()),
        })
    }
}

/// The key of model `model` from `source`, checked.
fn read_key(model: &str, source: &KeySource) -> Result<Option<String>, ModelsError> {
    let (value, source_name) = match source {
        KeySource::None => return Ok(None),
        KeySource::Env(var) => {
            let value = std::env::var(var).map_err(|_| ModelsError::MissingKeyEnv {
                model: model.to_owned(),
                var: var.clone(),
            })?;
            (value, format!("environment variable {var}"))
        }
        KeySource::File(path) => {
            let value =
                bounded::read_to_string(path, KEY_FILE).map_err(|e| ModelsError::KeyFile {
                    model: model.to_owned(),
                    why: e.to_string(),
                })?;
            (value, format!("file {}", path.display()))
        }
    };
    let value = value.trim().to_owned();
    let bad = |problem| ModelsError::BadKey {
        model: model.to_owned(),
        source_name: source_name.clone(),
        problem,
    };
    if value.is_empty() {
        return Err(bad("is empty"));
    }
    if value.len() < MIN_KEY_BYTES {
        return Err(bad(
            "is shorter than 8 bytes; a key that short cannot be redacted reliably",
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "holds a character that is not printable ASCII (spaces included)",
        ));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests;
