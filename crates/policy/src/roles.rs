//! Users' roles (`policies/roles.toml`): what each role may do, in the same sections and syntax as
//! an agent policy. An agent acting for a user gets the **intersection** of its own policy and the
//! union of the user's roles: a path, host, tool, clock or random source must be allowed by both,
//! and each limit is the smaller of the two. Which agents its holders may start at all is the
//! role's `agents` list (names, or `"*"`); none without it (deny by default).
//!
//! ```toml
//! [role.docs-writer]
//! agents = ["documenter"]
//! fs.read = ["**"]
//! fs.write = ["docs/**"]
//! tools.allow = ["echo"]
//!
//! [role.operator]
//! agents = ["*"]
//! fs.write = ["**"]
//! net.allow = ["api.example.com:443"]
//! limits = { cpu = "5 s", wall = "30 s" }
//! ```
//!
//! A role's `[model]` table (`model.allow`, `model.tokens`, `model.usd`) bounds the models an agent
//! acting for its holders may call, and the per-task budget: a model must be allowed by both, and
//! each budget is the smaller of the agent's and the most generous role's. A user none of whose
//! roles has a `[model]` table may not have models called for them.
//!
//! A role may also let the people who hold it review agents (`review = true`: apply a level-1
//! agent's proposed changes, reinstate a demoted agent) and approve irreversible actions of named
//! tools (`approve = ["deploy"]`). People sign those decisions with their own key:
//!
//! ```toml
//! [person.alice]
//! key = "ed25519:…"
//! roles = ["release-manager"]
//!
//! [role.release-manager]
//! review = true
//! approve = ["deploy"]
//! ```
//!
//! A role without a `[limits]` table does not limit; one with it takes the policy defaults for
//! the keys it leaves out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Source;
use crate::raw::{RawClocks, RawFs, RawLimits, RawNet, RawRandom, RawTools, Table};
use crate::{
    ClockGrant, FsGrant, Limits, ModelGrant, NetGrant, PolicyError, PolicyErrorKind, RandomGrant,
    ToolGrant, check_name, read_text,
};

/// What one role may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    /// Limits, when the role sets any.
    pub limits: Option<Limits>,
    /// Files.
    pub fs: FsGrant,
    /// Network.
    pub net: NetGrant,
    /// Tools.
    pub tools: ToolGrant,
    /// Models and their budgets, when the role has a `[model]` table.
    pub model: Option<ModelGrant>,
    /// Memory namespaces readable and writable.
    pub memory: crate::MemoryGrant,
    /// Clocks.
    pub clocks: ClockGrant,
    /// Secure random.
    pub random: RandomGrant,
    /// `review`: may apply proposed changes and reinstate demoted agents.
    pub review: bool,
    /// `approve`: tools whose irreversible actions this role may approve.
    pub approve: Vec<String>,
    /// `agents`: the agents its holders may start, by name, or `"*"` for every agent the host
    /// serves. None by default: a role without the key lets its holders run no agent.
    pub agents: Vec<String>,
}

/// A person who signs reviews and approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their name (the `[person.<name>]` table).
    pub name: String,
    /// Their public key.
    pub key: crate::keys::PublicKey,
    /// Their roles.
    pub roles: Vec<String>,
}

/// Every role, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    roles: BTreeMap<String, RoleGrant>,
    people: BTreeMap<String, Person>,
    /// The file they came from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    role: Option<BTreeMap<Spanned<String>, RawRole>>,
    person: Option<BTreeMap<Spanned<String>, RawPerson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    key: Spanned<String>,
    roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    limits: Option<Table<RawLimits>>,
    fs: Option<Table<RawFs>>,
    net: Option<Table<RawNet>>,
    tools: Option<Table<RawTools>>,
    model: Option<Table<crate::model::RawModel>>,
    memory: Option<Table<crate::agents::RawMemory>>,
    clocks: Option<Table<RawClocks>>,
    random: Option<Table<RawRandom>>,
    review: Option<bool>,
    approve: Option<crate::raw::SpannedList>,
    agents: Option<crate::raw::SpannedList>,
}

impl Roles {
    /// Parse a roles file; `file_label` names it in errors.
    ///
    /// # Errors
    ///
    /// The first mistake, located, exactly as in a policy (plus an invalid role name).
    pub fn parse(file_label: &str, text: &str) -> Result<Roles, PolicyError> {
        let source = Source {
            file: file_label,
            text,
        };
        let raw: RawRoles = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        let mut roles = BTreeMap::new();
        for (name, role) in raw.role.unwrap_or_default() {
            check_name(name.get_ref(), |b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
            })
            .map_err(|reason| {
                source.error(
                    name.span(),
                    PolicyErrorKind::InvalidName,
                    format!("role name \"{}\" is invalid: {reason}", name.get_ref()),
                    Some("1 to 64 characters from a-z, 0-9, '-'".to_owned()),
                )
            })?;
            let limits = match role.limits {
                Some(l) => Some(Limits::from_raw(&source, Some(l))?),
                None => None,
            };
            let grant = RoleGrant {
                limits,
                fs: FsGrant::from_raw(&source, role.fs, crate::Labels::Refused)?,
                net: NetGrant::from_raw(&source, role.net)?,
                tools: ToolGrant::from_raw(&source, role.tools, crate::Labels::Refused)?,
                model: match role.model {
                    Some(m) => Some(ModelGrant::from_raw(&source, Some(m))?),
                    None => None,
                },
                memory: crate::MemoryGrant::from_raw(&source, role.memory)?,
                clocks: ClockGrant::from_raw(role.clocks),
                random: RandomGrant::from_raw(role.random),
                review: role.review.unwrap_or(false),
                approve: ToolGrant::from_raw(
                    &source,
                    role.approve.map(|allow| {
                        Table(RawTools {
                            allow: Some(allow),
                            sensitive: None,
                        })
                    }),
                    crate::Labels::Refused,
                )?
                .allow,
                agents: crate::agents::agent_names(
                    &source,
                    "agents",
                    role.agents.as_deref().unwrap_or_default(),
                    true,
                )?,
            };
            roles.insert(name.into_inner(), grant);
        }
        let mut people = BTreeMap::new();
        for (name, person) in raw.person.unwrap_or_default() {
            check_name(name.get_ref(), |b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
            })
            .map_err(|reason| {
                source.error(
                    name.span(),
                    PolicyErrorKind::InvalidName,
                    format!("person name \"{}\" is invalid: {reason}", name.get_ref()),
                    Some("1 to 64 characters from a-z, 0-9, '-', '.', '_'".to_owned()),
                )
            })?;
            let key = crate::keys::PublicKey::parse(person.key.get_ref()).map_err(|e| {
                source.error(
                    person.key.span(),
                    PolicyErrorKind::InvalidName,
                    format!("person.{}.key is invalid: {e}", name.get_ref()),
                    Some("a key such as \"ed25519:3b6a…\", as `warden keygen` prints".to_owned()),
                )
            })?;
            let mut held = Vec::new();
            for role in person.roles {
                if !roles.contains_key(role.get_ref()) {
                    return Err(source.error(
                        role.span(),
                        PolicyErrorKind::Contradiction,
                        format!(
                            "person.{} holds role \"{}\", which this file does not define",
                            name.get_ref(),
                            role.get_ref()
                        ),
                        Some("the name of a [role.<name>] table in this file".to_owned()),
                    ));
                }
                held.push(role.into_inner());
            }
            let name = name.into_inner();
            people.insert(
                name.clone(),
                Person {
                    name,
                    key,
                    roles: held,
                },
            );
        }
        Ok(Roles {
            roles,
            people,
            source: file_label.to_owned(),
        })
    }

    /// Read and parse the roles file at `path`.
    ///
    /// # Errors
    ///
    /// As [`Roles::parse`], plus an unlocated error when the file cannot be read.
    pub fn load(path: &Path) -> Result<Roles, PolicyError> {
        let (label, text) = read_text(path, "roles")?;
        Roles::parse(&label, &text)
    }

    /// The person whose key is `key`, if any.
    pub fn person_with_key(&self, key: &crate::keys::PublicKey) -> Option<&Person> {
        self.people.values().find(|p| &p.key == key)
    }

    /// The person called `name`.
    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people.get(name)
    }

    /// Whether `person` holds a role that may review agents.
    pub fn may_review(&self, person: &Person) -> bool {
        person
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .any(|r| r.review)
    }

    /// Whether `person` holds a role that may approve irreversible actions of `tool`.
    pub fn may_approve(&self, person: &Person, tool: &str) -> bool {
        person
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .any(|r| r.approve.iter().any(|t| t == tool))
    }

    /// The role `name`.
    pub fn get(&self, name: &str) -> Option<&RoleGrant> {
        self.roles.get(name)
    }

    /// What a user holding `roles` may do: the union of those roles. Unknown role names grant
    /// nothing (and are returned, so the caller can report them).
    pub fn grant_for(&self, roles: &[String]) -> (UserGrant, Vec<String>) {
        let mut grants = Vec::new();
        let mut unknown = Vec::new();
        for r in roles {
            match self.roles.get(r) {
                Some(g) => grants.push(g.clone()),
                None => unknown.push(r.clone()),
            }
        }
        (
            UserGrant {
                roles: grants,
                bounds: Vec::new(),
            },
            unknown,
        )
    }
}

/// What a user may do: the union of their roles' grants. An agent acting for the user is held to
/// this as well as to its own policy.
///
/// Through agent calls it also carries what each caller on the way may do ([`UserGrant::delegated_by`]):
/// a callee is held to the user's roles **and** to every caller's policy, so a chain of calls can
/// never do more than any agent in it, nor more than the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGrant {
    roles: Vec<RoleGrant>,
    /// Further grants that must all allow too (the callers' policies along a chain of calls).
    bounds: Vec<UserGrant>,
}

impl UserGrant {
    /// What the agent of `policy` may do, as a grant (its one "role"): for the callees it calls.
    pub fn of_policy(policy: &crate::Policy) -> UserGrant {
        UserGrant {
            roles: vec![RoleGrant {
                limits: Some(policy.limits.clone()),
                fs: policy.fs.clone(),
                net: policy.net.clone(),
                tools: policy.tools.clone(),
                model: Some(policy.model.clone()),
                memory: policy.memory.clone(),
                clocks: policy.clocks,
                random: policy.random,
                review: false,
                approve: Vec::new(),
                // Whom a caller may call is its own `[agents] call`, checked at its call; it
                // bounds no deeper hop (the callee's callees are the callee's to name).
                agents: vec!["*".to_owned()],
            }],
            bounds: Vec::new(),
        }
    }

    /// [`UserGrant::of_policy`] with its wall limit lowered to `wall` at most (the time left).
    pub fn of_policy_within(policy: &crate::Policy, wall: std::time::Duration) -> UserGrant {
        let mut g = UserGrant::of_policy(policy);
        let limits = g.roles.iter_mut().filter_map(|r| r.limits.as_mut());
        limits.for_each(|l| l.wall = l.wall.min(wall));
        g
    }

    /// This grant, further bounded by what the calling agent of `caller` may do.
    pub fn delegated_by(&self, caller: &crate::Policy) -> UserGrant {
        self.delegated_within(caller, std::time::Duration::MAX)
    }

    /// [`UserGrant::delegated_by`] with the caller's wall limit lowered to at most `wall`.
    pub fn delegated_within(&self, caller: &crate::Policy, wall: std::time::Duration) -> UserGrant {
        let mut g = self.clone();
        g.bounds.push(UserGrant::of_policy_within(caller, wall));
        g
    }

    fn bounded(&self, f: impl Fn(&UserGrant) -> bool) -> bool {
        self.bounds.iter().all(f)
    }

    /// Whether any role lets its holders use the agent `name` (`agents = ["name"]` or `["*"]`).
    /// A caller along a chain does not narrow it: its `[agents] call` is checked at its call.
    pub fn allows_agent(&self, name: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.agents.iter().any(|a| a == "*" || a == name))
            && self.bounded(|b| b.allows_agent(name))
    }

    /// Whether any role allows reading memory `namespace` (and every bound does).
    pub fn allows_memory_read(&self, namespace: &str) -> bool {
        self.roles.iter().any(|r| r.memory.allows_read(namespace))
            && self.bounded(|b| b.allows_memory_read(namespace))
    }

    /// Whether any role allows writing memory `namespace` (and every bound does).
    pub fn allows_memory_write(&self, namespace: &str) -> bool {
        self.roles.iter().any(|r| r.memory.allows_write(namespace))
            && self.bounded(|b| b.allows_memory_write(namespace))
    }

    /// Whether any role allows reading `rel` (a folder may also be traversed).
    pub fn allows_read(&self, rel: &str, is_dir: bool) -> bool {
        self.roles
            .iter()
            .any(|r| r.fs.allows_read(rel) || (is_dir && r.fs.allows_traverse(rel)))
            && self.bounded(|b| b.allows_read(rel, is_dir))
    }

    /// Whether any role allows writing `rel`.
    pub fn allows_write(&self, rel: &str) -> bool {
        self.roles.iter().any(|r| r.fs.allows_write(rel)) && self.bounded(|b| b.allows_write(rel))
    }

    /// Whether any role allows `host:port`.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.roles.iter().any(|r| r.net.allows(host, port))
            && self.bounded(|b| b.allows_host(host, port))
    }

    /// Whether any role names `ip:port` explicitly (for non-public addresses).
    pub fn names_ip(&self, ip: std::net::IpAddr, port: u16) -> bool {
        self.roles.iter().any(|r| r.net.names_ip(ip, port))
            && self.bounded(|b| b.names_ip(ip, port))
    }

    /// Whether any role allows the tool `name`.
    pub fn allows_tool(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.tools.allows(name)) && self.bounded(|b| b.allows_tool(name))
    }

    /// Whether any role allows the model `name`.
    pub fn allows_model(&self, name: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.model.as_ref().is_some_and(|m| m.allows(name)))
            && self.bounded(|b| b.allows_model(name))
    }

    /// `agent`'s model budget (tokens, millionths of a dollar), lowered to the most generous
    /// budget among the user's roles that have a `[model]` table.
    pub fn model_budget(&self, agent: &ModelGrant) -> (u64, u64) {
        let set: Vec<&ModelGrant> = self.roles.iter().filter_map(|r| r.model.as_ref()).collect();
        let tokens = set.iter().map(|m| m.tokens).max().unwrap_or(0);
        let usd = set.iter().map(|m| m.micro_usd).max().unwrap_or(0);
        let (mut t, mut u) = (agent.tokens.min(tokens), agent.micro_usd.min(usd));
        for b in &self.bounds {
            let (bt, bu) = b.model_budget(agent);
            (t, u) = (t.min(bt), u.min(bu));
        }
        (t, u)
    }

    /// Whether any role grants the wall clock.
    pub fn wall_clock(&self) -> bool {
        self.roles.iter().any(|r| r.clocks.wall) && self.bounded(UserGrant::wall_clock)
    }

    /// Whether any role grants the monotonic clock.
    pub fn monotonic_clock(&self) -> bool {
        self.roles.iter().any(|r| r.clocks.monotonic) && self.bounded(UserGrant::monotonic_clock)
    }

    /// Whether any role grants secure random.
    pub fn secure_random(&self) -> bool {
        self.roles.iter().any(|r| r.random.secure) && self.bounded(UserGrant::secure_random)
    }

    /// `agent`'s limits, lowered to the most generous of the user's roles that set limits.
    pub fn limit(&self, agent: &Limits) -> Limits {
        let own = self.limit_by_roles(agent);
        self.bounds.iter().fold(own, |l, b| b.limit(&l))
    }

    fn limit_by_roles(&self, agent: &Limits) -> Limits {
        let set: Vec<&Limits> = self
            .roles
            .iter()
            .filter_map(|r| r.limits.as_ref())
            .collect();
        // A role without limits does not limit: the user's ceiling is then the agent's own.
        if set.is_empty() || self.roles.iter().any(|r| r.limits.is_none()) {
            return agent.clone();
        }
        let max = |f: fn(&Limits) -> u64| set.iter().map(|l| f(l)).max().unwrap_or(u64::MAX);
        let max_d = |f: fn(&Limits) -> std::time::Duration| {
            set.iter().map(|l| f(l)).max().unwrap_or_default()
        };
        Limits {
            memory: agent.memory.min(max(|l| l.memory)),
            tables: agent
                .tables
                .min(u32::try_from(max(|l| u64::from(l.tables))).unwrap_or(u32::MAX)),
            cpu: agent.cpu.min(max_d(|l| l.cpu)),
            wall: agent.wall.min(max_d(|l| l.wall)),
            output: agent.output.min(max(|l| l.output)),
        }
    }

    /// The roles' grants, for `warden policy explain`.
    pub fn roles(&self) -> &[RoleGrant] {
        &self.roles
    }
}

#[cfg(test)]
mod tests;
