//! `[tools]`: the host tools an agent may call by name ([`ToolGrant`]).
//!
//! Deny by default: with no `[tools]` section no tool may be called.

use super::EntryError;
use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::raw::{RawTools, Table};

/// The tool grant: names of host tools the agent may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolGrant {
    /// Tool names (`[a-z0-9_.-]`, 1 to 64 characters), in file order.
    pub allow: Vec<String>,
}

impl ToolGrant {
    /// True if the tool `name` may be called (exact, case-sensitive match).
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|allowed| allowed == name)
    }

    /// True if no tool may be called.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// Validates `[tools]`: every name, and no name twice.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawTools>>,
    ) -> Result<ToolGrant, PolicyError> {
        let entries = raw.and_then(|Table(raw)| raw.allow).unwrap_or_default();
        let allow = super::parse_list(source, "tools.allow", &entries, |name| {
            check_tool_name(name)
                .map(|()| name.to_owned())
                .map_err(|reason| EntryError {
                    kind: PolicyErrorKind::InvalidName,
                    reason: reason.to_owned(),
                    expected: "a tool name of 1 to 64 characters from a-z, 0-9, '_', '.', '-'",
                })
        })?;
        Ok(ToolGrant { allow })
    }
}

fn check_tool_name(name: &str) -> Result<(), &'static str> {
    super::check_name(name, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name accepted, its refused twin)
    #[test]
    fn tool_names() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases = [
            ("echo", "Echo"),
            ("fs.read_file", "fs/read"),
            ("a-b_c.d9", "a b"),
            (long.as_str(), too_long.as_str()),
            ("x", ""),
            ("web.fetch", "wëb"),
        ];
        for (good, bad) in cases {
            assert_eq!(check_tool_name(good), Ok(()), "{good}");
            assert!(check_tool_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allows_exact_names_only() {
        let grant = ToolGrant {
            allow: vec!["echo".into(), "web.fetch".into()],
        };
        for (allowed, denied) in [
            ("echo", "echo2"),
            ("web.fetch", "web"),
            ("echo", "ECHO"),
            ("web.fetch", ""),
        ] {
            assert!(grant.allows(allowed), "{allowed}");
            assert!(!grant.allows(denied), "{denied}");
        }
        assert!(!grant.is_empty());
        assert!(ToolGrant::default().is_empty() && !ToolGrant::default().allows("echo"));
    }
}
