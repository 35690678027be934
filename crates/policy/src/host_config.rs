//! The host's own configuration, `warden.toml`: which keys it trusts to publish agents and to
//! review policies, which keys are revoked, whether agents and policies must be signed, and where
//! it keeps its data. Parsed like a policy: unknown keys refused, every mistake located.
//!
//! ```toml
//! [keys]
//! publishers = ["ed25519:…"]   # may sign agents (a policy's `agent.publishers` narrows this)
//! reviewers  = ["ed25519:…"]   # may sign policies
//! revoked    = ["ed25519:…"]   # never accepted, whatever else says so
//! [agents]
//! require_signed = true        # default false: only agents whose policy pins publishers
//! [policies]
//! require_signed = true        # default false
//! [host]
//! cache_dir = "/var/cache/warden"
//! data_dir = "/var/lib/warden"   # tasks, trust, approvals, staging, the audit log
//! checkpoint_every = 1024        # audit records between signed checkpoints
//! roles = "policies/roles.toml"  # what each role of a user may do
//! [[issuers]]                  # who may sign user identity tokens (PASETO v4.public)
//! name = "corp-sso"
//! key = "ed25519:…"
//! audience = "warden"
//! [[secrets]]                  # held by the host, injected into allowed requests only
//! name = "api-token"
//! env = "API_TOKEN"            # or file = "/run/secrets/api-token"
//! host = "api.example.com:443" # which requests get it
//! header = "authorization"
//! format = "Bearer {}"         # {} is the secret (default "{}")
//! [limits]                     # host ceilings: every task gets at most these (same keys as a policy)
//! memory = "256 MiB"
//! wall = "60 s"
//! [[tools]]                    # host tools, each reversible or not
//! name = "deploy"
//! irreversible = true          # held until a person approves it (`warden approve`)
//! command = ["/usr/local/bin/deploy", "--prod"]  # run with the call's input on stdin
//! approval_ttl = "1 h"         # how long a pending action may wait (default 24 h)
//! writable = ["/srv/deploy"]   # folders the tool's jail may write (default none)
//! [[model]]                    # model providers (see `host_config/models.rs`), [tls] ca, [prompt]
//! name = "small"
//! url = "http://127.0.0.1:8080/v1"
//! id = "smollm2"
//! [log]                        # text or JSON, level; [telemetry] otlp: traces (`host_config/telemetry.rs`)
//! [dev]                        # an explicit local development identity: runs without a token
//! subject = "dev"
//! roles = ["admin"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Source;
use crate::keys::PublicKey;
use crate::{AllowedHost, EntryError, PolicyError, PolicyErrorKind, parse_list, read_text};

mod cascade;
mod models;
mod orchestra;
pub mod server;
mod telemetry;
mod tools;
mod values;

pub use cascade::{CascadeSettings, GateLimits};
pub use models::{DEFAULT_CONSTITUTION, KeySource, ModelProvider, Price};
pub use models::{MCP_CLIENT_PROVIDER, ProviderKind};
pub use orchestra::{DEFAULT_HORIZON, TreeLimits};
pub use telemetry::{DEFAULT_SPAN_QUEUE, LogFormat, OtlpEndpoint, TelemetrySettings};

/// The validated host configuration. [`HostConfig::default`] trusts no key and requires no
/// signature beyond what each policy pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// `keys.publishers`: keys trusted to sign agents.
    pub publishers: Vec<PublicKey>,
    /// `keys.reviewers`: keys trusted to sign policies.
    pub reviewers: Vec<PublicKey>,
    /// `keys.revoked`: keys refused everywhere.
    pub revoked: Vec<PublicKey>,
    /// `agents.require_signed`: every agent must be signed by a trusted publisher.
    pub require_signed_agents: bool,
    /// `policies.require_signed`: every policy must be signed by a reviewer.
    pub require_signed_policies: bool,
    /// `host.cache_dir`: where compiled components are cached.
    pub cache_dir: Option<PathBuf>,
    /// `host.roles`: the roles file users' tokens refer to.
    pub roles: Option<PathBuf>,
    /// `[[issuers]]`: who may sign user identity tokens.
    pub issuers: Vec<Issuer>,
    /// `[dev]`: the identity used when a run carries no token (local development only).
    pub dev_identity: Option<DevIdentity>,
    /// `[[secrets]]`: secrets the host injects into allowed outbound requests.
    pub secrets: Vec<SecretRule>,
    /// `host.data_dir`: where tasks, trust records, approvals, staging areas and the audit log
    /// live.
    pub data_dir: Option<PathBuf>,
    /// `host.checkpoint_every` (default 1024): audit records between signed checkpoints.
    pub checkpoint_every: u64,
    /// `[[tools]]`: tools the host performs, each flagged reversible or irreversible.
    pub tools: Vec<HostTool>,
    /// `[[model]]`: the model providers agents' model calls go to.
    pub models: Vec<ModelProvider>,
    /// `tls.ca`: PEM files of certificate authorities trusted beyond the web PKI.
    pub tls_ca: Vec<PathBuf>,
    /// `agents.dir`: where agents are found by name (`<name>.wasm` beside `<name>.toml`).
    pub agents_dir: Option<PathBuf>,
    /// `[agents]` limits of a task tree: depth, fan-out, wall time.
    pub tree: TreeLimits,
    /// `memory.horizon`: how long a memory entry lives unless written with its own ttl.
    pub memory_horizon: std::time::Duration,
    /// `[cascade]`: the request cascade's rules, task budget and gate limits.
    pub cascade: CascadeSettings,
    /// `[server]`: the bounds of `warden serve`'s queue (all users, one user).
    pub server: server::ServerSettings,
    /// `[log]` and `[telemetry]`: the host's log lines and its OTLP trace export (off by default).
    pub telemetry: TelemetrySettings,
    /// `prompt.constitution`: the first layer of every prompt ([`DEFAULT_CONSTITUTION`]).
    pub constitution: String,
    /// `[limits]`: the host's ceilings; each task's limit is the smaller of its policy's (and
    /// its user's) and this. Keys left out are the policy defaults.
    pub limits: Option<crate::Limits>,
    /// The file it came from.
    pub source: String,
}

/// A trusted issuer of user identity tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Its name, expected in the token's `iss` claim.
    pub name: String,
    /// Its public key.
    pub key: PublicKey,
    /// The audience its tokens must name (`aud`) to be accepted here.
    pub audience: String,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the host process.
    Env(String),
    /// A file on the host.
    File(PathBuf),
}

/// A secret and the requests it is injected into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRule {
    /// Its name, for logs (never its value).
    pub name: String,
    /// Where its value comes from.
    pub source: SecretSource,
    /// The requests that get it.
    pub host: AllowedHost,
    /// The header it is sent in.
    pub header: String,
    /// The header's value, with `{}` standing for the secret.
    pub format: String,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            publishers: Vec::new(),
            reviewers: Vec::new(),
            revoked: Vec::new(),
            require_signed_agents: false,
            require_signed_policies: false,
            cache_dir: None,
            roles: None,
            issuers: Vec::new(),
            dev_identity: None,
            secrets: Vec::new(),
            data_dir: None,
            checkpoint_every: 1024,
            tools: Vec::new(),
            models: Vec::new(),
            tls_ca: Vec::new(),
            constitution: DEFAULT_CONSTITUTION.to_owned(),
            agents_dir: None,
            tree: TreeLimits::default(),
            memory_horizon: DEFAULT_HORIZON,
            cascade: CascadeSettings::default(),
            server: server::ServerSettings::default(),
            telemetry: TelemetrySettings::default(),
            limits: None,
            source: String::new(),
        }
    }
}

/// A tool declared in the host configuration: a program the host runs with the call's input
/// on stdin (no shell, no inherited environment), its stdout the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTool {
    /// The name agents call it by (and policies grant).
    pub name: String,
    /// When true, a call is held as a pending action until a person approves it.
    pub irreversible: bool,
    /// The program and its fixed arguments.
    pub command: Vec<String>,
    /// How long a pending action (and an approval of it) stays valid.
    pub approval_ttl: std::time::Duration,
    /// Host folders (absolute) the tool may write, mounted at the same path in its jail; none by
    /// default. Everything else of the host is absent or read-only to a tool.
    pub writable: Vec<std::path::PathBuf>,
}

/// The identity a host uses for runs without a token, when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevIdentity {
    /// The subject.
    pub subject: String,
    /// Its roles.
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    keys: Option<RawKeys>,
    agents: Option<orchestra::RawAgentsHost>,
    memory: Option<orchestra::RawMemoryHost>,
    cascade: Option<cascade::RawCascade>,
    server: Option<server::RawServer>,
    log: Option<telemetry::RawLog>,
    telemetry: Option<telemetry::RawTelemetry>,
    policies: Option<RawRequire>,
    host: Option<RawHost>,
    issuers: Option<Vec<RawIssuer>>,
    dev: Option<RawDev>,
    secrets: Option<Vec<RawSecret>>,
    tools: Option<Vec<tools::RawTool>>,
    model: Option<Vec<models::RawProvider>>,
    tls: Option<models::RawTls>,
    prompt: Option<models::RawPrompt>,
    limits: Option<crate::raw::Table<crate::raw::RawLimits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    name: Spanned<String>,
    env: Option<String>,
    file: Option<String>,
    host: Spanned<String>,
    header: Spanned<String>,
    format: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    key: Spanned<String>,
    audience: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDev {
    subject: String,
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    publishers: Option<Vec<Spanned<String>>>,
    reviewers: Option<Vec<Spanned<String>>>,
    revoked: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    require_signed: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    cache_dir: Option<String>,
    roles: Option<String>,
    data_dir: Option<String>,
    checkpoint_every: Option<Spanned<i64>>,
}

impl HostConfig {
    /// Parse `warden.toml` text; `file_label` names it in errors.
    ///
    /// # Errors
    ///
    /// The first mistake, located: invalid TOML, an unknown key, a wrong type, a malformed,
    /// invalid or weak key, a key listed twice, or a key both trusted and revoked.
    pub fn parse(file_label: &str, text: &str) -> Result<HostConfig, PolicyError> {
        let source = Source {
            file: file_label,
            text,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        let keys = raw.keys.unwrap_or(RawKeys {
            publishers: None,
            reviewers: None,
            revoked: None,
        });
        let key_list = |name: &str, list: &Option<Vec<Spanned<String>>>| {
            parse_list(&source, name, list.as_deref().unwrap_or(&[]), |text| {
                PublicKey::parse(text).map_err(|e| EntryError {
                    kind: PolicyErrorKind::InvalidName,
                    reason: e.to_string(),
                    expected: "a key such as \"ed25519:3b6a…\" (64 hex digits), as `warden keygen` prints",
                })
            })
        };
        let publishers = key_list("keys.publishers", &keys.publishers)?;
        let reviewers = key_list("keys.reviewers", &keys.reviewers)?;
        let revoked = key_list("keys.revoked", &keys.revoked)?;
        // A key both trusted and revoked is a contradiction: say so rather than pick one.
        for (list, name) in [
            (&keys.publishers, "keys.publishers"),
            (&keys.reviewers, "keys.reviewers"),
        ] {
            for entry in list.as_deref().unwrap_or(&[]) {
                if let Ok(key) = PublicKey::parse(entry.get_ref())
                    && revoked.contains(&key)
                {
                    return Err(source.error(
                        entry.span(),
                        PolicyErrorKind::Contradiction,
                        format!("{name} lists {key}, which keys.revoked also lists"),
                        Some("remove the key from one of the two lists".to_owned()),
                    ));
                }
            }
        }
        let mut issuers = Vec::new();
        for raw in raw.issuers.unwrap_or_default() {
            let key = PublicKey::parse(raw.key.get_ref()).map_err(|e| {
                source.error(
                    raw.key.span(),
                    PolicyErrorKind::InvalidName,
                    format!("issuers.key is invalid: {e}"),
                    Some("a key such as \"ed25519:3b6a…\" (64 hex digits)".to_owned()),
                )
            })?;
            issuers.push(Issuer {
                name: raw.name,
                key,
                audience: raw.audience,
            });
        }
        let mut secrets = Vec::new();
        for raw in raw.secrets.unwrap_or_default() {
            let at = |span: std::ops::Range<usize>, message: String, expected: &str| {
                source.error(
                    span,
                    PolicyErrorKind::InvalidName,
                    message,
                    Some(expected.to_owned()),
                )
            };
            let from = match (raw.env, raw.file) {
                (Some(e), None) => SecretSource::Env(e),
                (None, Some(f)) => SecretSource::File(PathBuf::from(f)),
                _ => {
                    return Err(at(
                        raw.name.span(),
                        format!("secret `{}` needs exactly one source", raw.name.get_ref()),
                        "either env = \"VAR\" or file = \"/path\"",
                    ));
                }
            };
            let host = AllowedHost::parse(raw.host.get_ref()).map_err(|e| {
                at(
                    raw.host.span(),
                    format!("secrets.host is invalid: {e}"),
                    "host:port, as in net.allow",
                )
            })?;
            let header = raw.header.get_ref().to_ascii_lowercase();
            if header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(at(
                    raw.header.span(),
                    "secrets.header is not a header name".into(),
                    "a header such as \"authorization\"",
                ));
            }
            let format = match raw.format {
                Some(f) if f.get_ref().matches("{}").count() == 1 => f.into_inner(),
                Some(f) => {
                    return Err(at(
                        f.span(),
                        "secrets.format must contain `{}` exactly once".into(),
                        "a format such as \"Bearer {}\"",
                    ));
                }
                None => "{}".to_string(),
            };
            secrets.push(SecretRule {
                name: raw.name.into_inner(),
                source: from,
                host,
                header,
                format,
            });
        }
        let tools = tools::host_tools(&source, raw.tools.unwrap_or_default())?;
        let (cache_dir, roles, data_dir, checkpoint_every) = match raw.host {
            Some(h) => {
                let every = match h.checkpoint_every {
                    Some(n) if (1..=1_000_000).contains(n.get_ref()) => *n.get_ref() as u64,
                    Some(n) => {
                        return Err(source.error(
                            n.span(),
                            PolicyErrorKind::OutOfRange,
                            "host.checkpoint_every is out of range",
                            Some("a whole number of records from 1 to 1000000".to_owned()),
                        ));
                    }
                    None => 1024,
                };
                (
                    h.cache_dir.map(PathBuf::from),
                    h.roles.map(PathBuf::from),
                    h.data_dir.map(PathBuf::from),
                    every,
                )
            }
            None => (None, None, None, 1024),
        };
        let limits = Option::map(raw.limits, |l| crate::Limits::from_raw(&source, Some(l)));
        let limits = limits.transpose()?;
        let (agents_dir, tree) = orchestra::agents(&source, raw.agents.as_ref())?;
        let models = models::providers(&source, raw.model.unwrap_or_default())?;
        let known: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        Ok(HostConfig {
            cascade: cascade::settings(&source, raw.cascade, &known)?,
            server: server::settings(&source, raw.server, [&data_dir, &agents_dir])?,
            telemetry: telemetry::settings(&source, raw.log, raw.telemetry)?,
            agents_dir,
            tree,
            memory_horizon: orchestra::horizon(&source, raw.memory)?,
            models,
            tls_ca: raw
                .tls
                .and_then(|t| t.ca)
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            constitution: models::constitution(&source, raw.prompt)?,
            limits,
            data_dir,
            checkpoint_every,
            tools,
            secrets,
            roles,
            issuers,
            dev_identity: raw.dev.map(|d| DevIdentity {
                subject: d.subject,
                roles: d.roles,
            }),
            publishers,
            reviewers,
            revoked,
            require_signed_agents: raw
                .agents
                .as_ref()
                .and_then(|a| a.require_signed)
                .unwrap_or(false),
            require_signed_policies: raw.policies.and_then(|p| p.require_signed).unwrap_or(false),
            cache_dir,
            source: file_label.to_owned(),
        })
    }

    /// Read and parse `warden.toml` at `path`.
    ///
    /// # Errors
    ///
    /// As [`HostConfig::parse`], plus an unlocated error when the file cannot be read.
    pub fn load(path: &Path) -> Result<HostConfig, PolicyError> {
        let (label, text) = read_text(path, "host configuration")?;
        HostConfig::parse(&label, &text)
    }

    /// Whether `key` is revoked.
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.contains(key)
    }
}

#[cfg(test)]
mod tests;
