//! The agent policy: what one agent may do, parsed once at load from TOML into
//! typed, validated grants ([`Policy`]). Enforcement code only ever sees these
//! types, never a string rule.
//!
//! Loading goes TOML text → raw serde structs (unknown keys refused, spans
//! kept) → [`Policy`]. Every mistake is a [`PolicyError`] located at the
//! offending key or value. Deny by default: a section that is absent grants
//! nothing; `policies/README.md` is the full reference.
#![deny(missing_docs)]

pub mod address;
pub mod agents;
pub mod bounded;
mod clocks;
mod diagnostic;
mod dns;
mod fs;
mod host;
mod host_config;
mod human;
pub mod keys;
mod limits;
mod model;
mod net;
pub mod path;
mod pattern;
mod random;
mod raw;
mod roles;
mod tools;
pub mod trust;
mod units;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::hash::Hash;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

pub use agents::{AgentsGrant, MemoryGrant};
pub use clocks::ClockGrant;
pub use diagnostic::{PolicyError, PolicyErrorKind};
pub use fs::{FsGrant, Mount};
pub use host::{AllowedHost, HostError, HostPattern};
pub use host_config::server::ServerSettings;
pub use host_config::{
    CascadeSettings, DEFAULT_CONSTITUTION, DEFAULT_HORIZON, DevIdentity, GateLimits, HostConfig,
    HostTool, Issuer, KeySource, MCP_CLIENT_PROVIDER, ModelProvider, Price, ProviderKind,
    SecretRule, SecretSource, TreeLimits,
};
pub use host_config::{DEFAULT_SPAN_QUEUE, LogFormat, OtlpEndpoint, TelemetrySettings};
pub use human::HumanGrant;
pub use limits::Limits;
pub use model::ModelGrant;
pub use net::NetGrant;
pub use pattern::{PathPattern, PatternError};
pub use random::RandomGrant;
pub use roles::{Person, RoleGrant, Roles, UserGrant};
pub use tools::ToolGrant;
pub use trust::TrustPolicy;

use diagnostic::Source;
use raw::{RawAgent, RawPolicy, Table};

/// Largest policy file [`Policy::load`] reads; policies are a few dozen lines.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Everything one agent is allowed, validated.
///
/// Built by [`Policy::parse`] or [`Policy::load`]; [`Policy::deny_all`] gives
/// the policy with no grants. Every grant defaults to nothing and every limit
/// to the value documented on [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `[agent]`: who the policy is for and how unknown imports are treated.
    pub agent: AgentSection,
    /// `[limits]`: resource ceilings.
    pub limits: Limits,
    /// `[fs]`: workspace paths readable and writable.
    pub fs: FsGrant,
    /// `[net]`: hosts and ports reachable.
    pub net: NetGrant,
    /// `[tools]`: host tools callable.
    pub tools: ToolGrant,
    /// `[model]`: models callable and the budget of one task.
    pub model: ModelGrant,
    /// `[agents]`: agents callable.
    pub agents: AgentsGrant,
    /// `[memory]`: memory namespaces readable and writable.
    pub memory: MemoryGrant,
    /// `[clocks]`: clocks readable.
    pub clocks: ClockGrant,
    /// `[random]`: randomness available.
    pub random: RandomGrant,
    /// `[human]`: whether the agent may ask the person it works for.
    pub human: HumanGrant,
    /// `[trust]`: how the agent earns autonomy and what each level may do.
    pub trust: TrustPolicy,
    /// Label of the file the policy came from (used in messages).
    pub source: String,
}

/// `[agent]`: the agent the policy is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSection {
    /// `agent.name` (required): 1 to 64 characters from `a-z`, `0-9`, `-`.
    pub name: String,
    /// `agent.strict` (default false): refuse to load a component that imports
    /// an interface this policy does not grant. When false, such imports are
    /// bound to a stub that kills the agent on its first call.
    pub strict: bool,
    /// `agent.publishers` (default none): the keys that may sign this agent's component. When
    /// the list is not empty, only a component signed by one of them loads.
    pub publishers: Vec<keys::PublicKey>,
}

impl Policy {
    /// Parses and validates policy text. `file_label` names the source in errors.
    ///
    /// # Errors
    ///
    /// The first mistake found, located at the offending key or value: invalid
    /// TOML, an unknown or missing key, a wrong type, an invalid name, pattern,
    /// host, size or duration, a value out of range, a duplicate entry, or a
    /// contradiction (cpu > wall, a pattern in both `fs.read` and `fs.write`).
    ///
    /// # Examples
    ///
    /// ```
    /// use warden_policy::Policy;
    /// let policy = Policy::parse("files.toml", "[agent]\nname = \"files\"\n[fs]\nread = [\"data/**\"]\n").unwrap();
    /// assert!(policy.fs.allows_read("data/a.txt"));
    /// assert!(!policy.fs.allows_write("data/a.txt"));
    /// assert!(policy.net.is_empty());
    /// ```
    pub fn parse(file_label: &str, text: &str) -> Result<Policy, PolicyError> {
        let source = Source {
            file: file_label,
            text,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|error| source.toml_error(&error))?;
        let tools = ToolGrant::from_raw(&source, raw.tools, Labels::Allowed)?;
        let policy = Policy {
            agent: agent_section(&source, raw.agent)?,
            limits: Limits::from_raw(&source, raw.limits)?,
            fs: FsGrant::from_raw(&source, raw.fs, Labels::Allowed)?,
            net: NetGrant::from_raw(&source, raw.net)?,
            trust: TrustPolicy::from_raw(&source, raw.trust, &tools)?,
            tools,
            model: ModelGrant::from_raw(&source, raw.model)?,
            agents: AgentsGrant::from_raw(&source, raw.agents)?,
            memory: MemoryGrant::from_raw(&source, raw.memory)?,
            clocks: ClockGrant::from_raw(raw.clocks),
            random: RandomGrant::from_raw(raw.random),
            human: HumanGrant::from_raw(raw.human),
            source: file_label.to_owned(),
        };
        tracing::debug!(file = file_label, agent = %policy.agent.name, "policy loaded");
        Ok(policy)
    }

    /// Reads and parses the policy file at `path` (labelled with its path in errors).
    ///
    /// # Errors
    ///
    /// As [`Policy::parse`], plus a [`PolicyErrorKind::Io`] error (line and
    /// column 0) when the file cannot be read, is not UTF-8 or exceeds 1 MiB.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let (label, text) = read_text(path, "policy")?;
        Policy::parse(&label, &text)
    }

    /// The policy that grants nothing: no files, no network, no tools, no
    /// clocks, no randomness, default limits, not strict. `name` is used as
    /// given (not validated); the source label is `<deny-all>`.
    pub fn deny_all(name: &str) -> Policy {
        Policy {
            agent: AgentSection {
                name: name.to_owned(),
                strict: false,
                publishers: Vec::new(),
            },
            limits: Limits::default(),
            fs: FsGrant::default(),
            net: NetGrant::default(),
            tools: ToolGrant::default(),
            model: ModelGrant::default(),
            agents: AgentsGrant::default(),
            memory: MemoryGrant::default(),
            clocks: ClockGrant::default(),
            random: RandomGrant::default(),
            human: HumanGrant::default(),
            trust: TrustPolicy::default(),
            source: "<deny-all>".to_owned(),
        }
    }
}

fn agent_section(
    source: &Source<'_>,
    raw: Option<Spanned<Table<RawAgent>>>,
) -> Result<AgentSection, PolicyError> {
    const NAME_RULE: &str = "name = \"...\" (1 to 64 characters from a-z, 0-9, '-', '_')";
    let Some(agent) = raw else {
        let message = "the [agent] section is missing";
        return Err(source.error(
            0..0,
            PolicyErrorKind::MissingKey,
            message,
            Some(format!("an [agent] table with {NAME_RULE}")),
        ));
    };
    let section_span = agent.span();
    let Table(agent) = agent.into_inner();
    let Some(name) = agent.name else {
        let message = "[agent] has no `name`";
        return Err(source.error(
            section_span,
            PolicyErrorKind::MissingKey,
            message,
            Some(NAME_RULE.to_owned()),
        ));
    };
    let span = name.span();
    let name = name.into_inner();
    check_name(&name, is_agent_name_byte).map_err(|reason| {
        let message = format!("agent.name \"{name}\" is invalid: {reason}");
        source.error(
            span,
            PolicyErrorKind::InvalidName,
            message,
            Some(NAME_RULE.to_owned()),
        )
    })?;
    let publishers = parse_list(
        source,
        "agent.publishers",
        agent.publishers.as_deref().unwrap_or(&[]),
        |text| {
            keys::PublicKey::parse(text).map_err(|e| EntryError {
                kind: PolicyErrorKind::InvalidName,
                reason: e.to_string(),
                expected: "a publisher key such as \"ed25519:3b6a…\" (64 hex digits), as `warden keygen` prints",
            })
        },
    )?;
    Ok(AgentSection {
        name,
        strict: agent.strict.unwrap_or(false),
        publishers,
    })
}

/// Checks a 1..=64 character name whose bytes all satisfy `allowed`.
/// Whether `b` may appear in an agent's name: a-z, 0-9, `-` and `_` (MCP tool names such as
/// `read_file` are agent names). Never `.`, `/` or `\\`: a name is never a path.
pub fn is_agent_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

fn check_name(name: &str, allowed: impl Fn(u8) -> bool) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.len() > 64 {
        Err("it is longer than 64 characters")
    } else if !name.bytes().all(allowed) {
        Err("it contains a character that is not allowed")
    } else {
        Ok(())
    }
}

/// Why one list entry was refused, before it is located in the file.
pub(crate) struct EntryError {
    kind: PolicyErrorKind,
    reason: String,
    expected: &'static str,
}

/// Parses every entry of the list `list` (e.g. `"fs.read"`), in file order,
/// refusing an invalid entry, or an entry equal to an earlier one (located at
/// the later one).
fn parse_list<T: Eq + Hash + Clone>(
    source: &Source<'_>,
    list: &str,
    entries: &[Spanned<String>],
    parse: impl Fn(&str) -> Result<T, EntryError>,
) -> Result<Vec<T>, PolicyError> {
    let mut parsed = Vec::with_capacity(entries.len());
    let mut seen = HashSet::with_capacity(entries.len());
    for entry in entries {
        let text = entry.get_ref();
        let value = parse(text).map_err(|error| {
            let message = format!("{list} entry \"{text}\" is invalid: {}", error.reason);
            source.error(
                entry.span(),
                error.kind,
                message,
                Some(error.expected.to_owned()),
            )
        })?;
        if !seen.insert(value.clone()) {
            let message = format!("{list} lists \"{text}\" more than once");
            let expected = "each entry at most once".to_owned();
            return Err(source.error(
                entry.span(),
                PolicyErrorKind::Duplicate,
                message,
                Some(expected),
            ));
        }
        parsed.push(value);
    }
    Ok(parsed)
}

/// Reads a TOML file of at most 1 MiB as UTF-8, with an error naming `what` and saying what to
/// do; returns the file's label (its path) and text.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<(String, String), PolicyError> {
    let label = path.display().to_string();
    let io_error = |message: String| {
        let expected =
            "a readable UTF-8 TOML file of at most 1 MiB; check the path and its permissions";
        PolicyError::unlocated(
            &label,
            PolicyErrorKind::Io,
            message,
            Some(expected.to_owned()),
        )
    };
    let file = std::fs::File::open(path)
        .map_err(|error| io_error(format!("cannot open {what} file: {error}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| io_error(format!("cannot read {what} file: {error}")))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(io_error(format!(
            "{what} file is larger than 1 MiB, the limit for a {what} file"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| io_error(format!("{what} file is not valid UTF-8")))?;
    Ok((label, text))
}

/// Of two spans, the one that starts later in the file.
/// Whether a section may carry `sensitive` labels: an agent's policy may; a role may not (a label
/// says how an agent's change is handled, which a user's role has no say in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Labels {
    Allowed,
    Refused,
}

impl Labels {
    /// The error for `sensitive` where labels are refused.
    pub(crate) fn check(
        self,
        source: &Source<'_>,
        key: &str,
        list: Option<&raw::SpannedList>,
    ) -> Result<(), PolicyError> {
        match (self, list.and_then(|l| l.first())) {
            (Labels::Refused, Some(first)) => Err(source.error(
                first.span(),
                PolicyErrorKind::UnknownKey,
                format!("{key} labels an agent's paths or tools; a role cannot carry it"),
                Some("put `sensitive` in the agent's policy".to_owned()),
            )),
            _ => Ok(()),
        }
    }
}

fn later(a: Range<usize>, b: Range<usize>) -> Range<usize> {
    if b.start > a.start { b } else { a }
}
