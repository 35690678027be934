//! `[agents]` and `[memory]`: whom an agent may call ([`AgentsGrant`]) and which namespaces of the
//! curated memory it may read and write ([`MemoryGrant`]).
//!
//! ```toml
//! [agents]
//! call = ["tester", "skeptic"]     # agents found by name in the host's agents directory
//! [memory]
//! read = ["lessons", "patterns"]   # namespaces this agent may read
//! write = ["lessons"]              # only curator agents: namespaces it may write
//! ```
//!
//! Deny by default: no `[agents]`, no calls; no `[memory]`, no memory. A user's roles bound memory
//! like every other grant (`memory.read` / `memory.write` in a role); what a callee may do is
//! bounded by its caller's grant as well as by the user's roles (see `roles.rs`).

use serde::Deserialize;

use super::EntryError;
use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::raw::{Section, SpannedList, Table};

/// `[agents]`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgents {
    pub(crate) call: Option<SpannedList>,
}

impl Section for RawAgents {
    const EXPECTING: &'static str = "the [agents] table (key `call`)";
}

/// `[memory]`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemory {
    pub(crate) read: Option<SpannedList>,
    pub(crate) write: Option<SpannedList>,
}

impl Section for RawMemory {
    const EXPECTING: &'static str = "the [memory] table (keys `read`, `write`)";
}

/// The agents an agent may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentsGrant {
    /// Agent names (`[agent] name` of each callee), in file order.
    pub call: Vec<String>,
}

impl AgentsGrant {
    /// True if the agent `name` may be called (exact match).
    pub fn allows(&self, name: &str) -> bool {
        self.call.iter().any(|a| a == name)
    }

    /// True if no agent may be called.
    pub fn is_empty(&self) -> bool {
        self.call.is_empty()
    }

    /// Validates `[agents]`.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawAgents>>,
    ) -> Result<AgentsGrant, PolicyError> {
        let entries = raw.and_then(|Table(r)| r.call).unwrap_or_default();
        let call = agent_names(source, "agents.call", &entries, false)?;
        Ok(AgentsGrant { call })
    }
}

/// The memory namespaces an agent may read and write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryGrant {
    /// Namespaces it may read.
    pub read: Vec<String>,
    /// Namespaces it may write (curators only).
    pub write: Vec<String>,
}

impl MemoryGrant {
    /// True if `namespace` may be read (a writable namespace may also be read).
    pub fn allows_read(&self, namespace: &str) -> bool {
        self.read.iter().chain(&self.write).any(|n| n == namespace)
    }

    /// True if `namespace` may be written.
    pub fn allows_write(&self, namespace: &str) -> bool {
        self.write.iter().any(|n| n == namespace)
    }

    /// True if no namespace may be read or written.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }

    /// Validates `[memory]`.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawMemory>>,
    ) -> Result<MemoryGrant, PolicyError> {
        let Some(Table(raw)) = raw else {
            return Ok(MemoryGrant::default());
        };
        let list = |key: &str, entries: Option<SpannedList>| {
            super::parse_list(source, key, &entries.unwrap_or_default(), |name| {
                check_namespace(name)
                    .map(|()| name.to_owned())
                    .map_err(|reason| EntryError {
                        kind: PolicyErrorKind::InvalidName,
                        reason: reason.to_owned(),
                        expected: NAMESPACE_RULE,
                    })
            })
        };
        Ok(MemoryGrant {
            read: list("memory.read", raw.read)?,
            write: list("memory.write", raw.write)?,
        })
    }
}

/// The rule for a memory namespace, as errors state it.
pub const NAMESPACE_RULE: &str = "a namespace of 1 to 64 characters from a-z, 0-9, '_', '.', '-'";

/// Checks a memory namespace name.
///
/// # Errors
///
/// Why the name is refused.
pub fn check_namespace(name: &str) -> Result<(), &'static str> {
    super::check_name(name, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
    })
}

/// A list of agent names under `key` (`[agents] call`, a role's `agents`); with `star`, `"*"`
/// (every agent) is one too.
pub(crate) fn agent_names(
    source: &Source<'_>,
    key: &str,
    entries: &[toml::Spanned<String>],
    star: bool,
) -> Result<Vec<String>, PolicyError> {
    super::parse_list(source, key, entries, |name| {
        if star && name == "*" {
            return Ok(name.to_owned());
        }
        super::check_name(name, super::is_agent_name_byte)
        .map(|()| name.to_owned())
        .map_err(|reason| EntryError {
            kind: PolicyErrorKind::InvalidName,
            reason: reason.to_owned(),
            expected: if star {
                "an agent name of 1 to 64 characters from a-z, 0-9, '-', '_', or \"*\" for every agent"
            } else {
                "an agent name of 1 to 64 characters from a-z, 0-9, '-', '_'"
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use crate::{Policy, PolicyErrorKind};

    #[test]
    fn grants_and_mistakes() {
        let p = Policy::parse(
            "p.toml",
            "[agent]\nname = \"a\"\n[agents]\ncall = [\"tester\", \"skeptic\"]\n[memory]\nread = [\"patterns\"]\nwrite = [\"lessons\"]\n",
        )
        .unwrap();
        assert!(p.agents.allows("tester") && !p.agents.allows("implementer"));
        assert!(p.memory.allows_read("patterns") && p.memory.allows_read("lessons"));
        assert!(p.memory.allows_write("lessons") && !p.memory.allows_write("patterns"));
        let none = Policy::parse("p.toml", "[agent]\nname = \"a\"\n").unwrap();
        assert!(none.agents.is_empty() && none.memory.is_empty());
        assert!(!none.memory.allows_read("lessons"));
        for (text, kind) in [
            (
                "[agents]\ncall = [\"Tester\"]\n",
                PolicyErrorKind::InvalidName,
            ),
            (
                "[agents]\ncall = [\"a\", \"a\"]\n",
                PolicyErrorKind::Duplicate,
            ),
            ("[agents]\nspawn = []\n", PolicyErrorKind::UnknownKey),
            ("[memory]\nread = [\"a/b\"]\n", PolicyErrorKind::InvalidName),
        ] {
            let e = Policy::parse("p.toml", &format!("[agent]\nname = \"a\"\n{text}")).unwrap_err();
            assert_eq!((e.line, e.kind), (4, kind), "{text}: {e}");
        }
    }
}
