//! Users' roles (`policies/roles.toml`): what each role may do, in the same sections and syntax as
//! an agent policy. An agent acting for a user gets the **intersection** of its own policy and the
//! union of the user's roles: a path, host, tool, clock or random source must be allowed by both,
//! and each limit is the smaller of the two.
//!
//! ```toml
//! [role.docs-writer]
//! fs.read = ["**"]
//! fs.write = ["docs/**"]
//! tools.allow = ["echo"]
//!
//! [role.operator]
//! fs.write = ["**"]
//! net.allow = ["api.example.com:443"]
//! limits = { cpu = "5 s", wall = "30 s" }
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
    ClockGrant, FsGrant, Limits, NetGrant, PolicyError, PolicyErrorKind, RandomGrant, ToolGrant,
    check_name, read_text,
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
    /// Clocks.
    pub clocks: ClockGrant,
    /// Secure random.
    pub random: RandomGrant,
}

/// Every role, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    roles: BTreeMap<String, RoleGrant>,
    /// The file they came from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    role: Option<BTreeMap<Spanned<String>, RawRole>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    limits: Option<Table<RawLimits>>,
    fs: Option<Table<RawFs>>,
    net: Option<Table<RawNet>>,
    tools: Option<Table<RawTools>>,
    clocks: Option<Table<RawClocks>>,
    random: Option<Table<RawRandom>>,
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
                fs: FsGrant::from_raw(&source, role.fs)?,
                net: NetGrant::from_raw(&source, role.net)?,
                tools: ToolGrant::from_raw(&source, role.tools)?,
                clocks: ClockGrant::from_raw(role.clocks),
                random: RandomGrant::from_raw(role.random),
            };
            roles.insert(name.into_inner(), grant);
        }
        Ok(Roles {
            roles,
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
        (UserGrant { roles: grants }, unknown)
    }
}

/// What a user may do: the union of their roles' grants. An agent acting for the user is held to
/// this as well as to its own policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGrant {
    roles: Vec<RoleGrant>,
}

impl UserGrant {
    /// Whether any role allows reading `rel` (a folder may also be traversed).
    pub fn allows_read(&self, rel: &str, is_dir: bool) -> bool {
        self.roles
            .iter()
            .any(|r| r.fs.allows_read(rel) || (is_dir && r.fs.allows_traverse(rel)))
    }

    /// Whether any role allows writing `rel`.
    pub fn allows_write(&self, rel: &str) -> bool {
        self.roles.iter().any(|r| r.fs.allows_write(rel))
    }

    /// Whether any role allows `host:port`.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.roles.iter().any(|r| r.net.allows(host, port))
    }

    /// Whether any role names `ip:port` explicitly (for non-public addresses).
    pub fn names_ip(&self, ip: std::net::IpAddr, port: u16) -> bool {
        self.roles.iter().any(|r| r.net.names_ip(ip, port))
    }

    /// Whether any role allows the tool `name`.
    pub fn allows_tool(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.tools.allows(name))
    }

    /// Whether any role grants the wall clock.
    pub fn wall_clock(&self) -> bool {
        self.roles.iter().any(|r| r.clocks.wall)
    }

    /// Whether any role grants the monotonic clock.
    pub fn monotonic_clock(&self) -> bool {
        self.roles.iter().any(|r| r.clocks.monotonic)
    }

    /// Whether any role grants secure random.
    pub fn secure_random(&self) -> bool {
        self.roles.iter().any(|r| r.random.secure)
    }

    /// `agent`'s limits, lowered to the most generous of the user's roles that set limits.
    pub fn limit(&self, agent: &Limits) -> Limits {
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
mod tests {
    use super::*;

    const ROLES: &str = r#"
[role.docs-writer]
fs.read = ["**"]
fs.write = ["docs/**"]
tools.allow = ["echo"]

[role.operator]
fs.write = ["**"]
net.allow = ["api.example.com:443"]
limits = { cpu = "5 s", wall = "30 s", memory = "32 MiB" }
"#;

    #[test]
    fn union_of_roles() {
        let roles = Roles::parse("roles.toml", ROLES).unwrap();
        let (writer, unknown) = roles.grant_for(&["docs-writer".into(), "ghost".into()]);
        assert_eq!(unknown, vec!["ghost".to_string()]);
        assert!(writer.allows_write("docs/a.md") && !writer.allows_write("src/a.rs"));
        assert!(writer.allows_read("src/a.rs", false));
        assert!(writer.allows_tool("echo") && !writer.allows_tool("deploy"));
        assert!(!writer.allows_host("api.example.com", 443));
        let (both, _) = roles.grant_for(&["docs-writer".into(), "operator".into()]);
        assert!(both.allows_write("src/a.rs") && both.allows_host("api.example.com", 443));
        let (nobody, _) = roles.grant_for(&[]);
        assert!(!nobody.allows_read("docs/a.md", false) && !nobody.allows_tool("echo"));
    }

    #[test]
    fn limits_take_the_smaller() {
        let roles = Roles::parse("roles.toml", ROLES).unwrap();
        let (op, _) = roles.grant_for(&["operator".into()]);
        let agent = Limits::default();
        let l = op.limit(&agent);
        assert_eq!(l.memory, 32 << 20);
        assert_eq!(l.cpu, agent.cpu.min(std::time::Duration::from_secs(5)));
        let (writer, _) = roles.grant_for(&["docs-writer".into()]);
        assert_eq!(writer.limit(&agent), agent);
    }

    #[test]
    fn mistakes_are_located() {
        let e = Roles::parse("roles.toml", "[role.x]\nfs.read = [\"/etc\"]\n").unwrap_err();
        assert_eq!((e.line, e.kind), (2, PolicyErrorKind::InvalidPath), "{e}");
        let e = Roles::parse("roles.toml", "[role.Bad]\n").unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::InvalidName, "{e}");
        let e = Roles::parse("roles.toml", "[role.x]\nexec = 1\n").unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::UnknownKey, "{e}");
    }
}
