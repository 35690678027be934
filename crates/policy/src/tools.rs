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
    /// Allowed tools labelled sensitive (`tools.sensitive`): a call to one is not performed; the
    /// task pauses for a person (outcome `escalated`, reason `sensitive-tool`).
    pub sensitive: Vec<String>,
}

impl ToolGrant {
    /// True if the tool `name` may be called (exact, case-sensitive match).
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|allowed| allowed == name)
    }

    /// True if `name` is labelled sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.iter().any(|s| s == name)
    }

    /// True if no tool may be called.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// Validates `[tools]`: every name, and no name twice.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawTools>>,
        labels: crate::Labels,
    ) -> Result<ToolGrant, PolicyError> {
        let (entries, labelled) = match raw {
            Some(Table(raw)) => {
                labels.check(source, "tools.sensitive", raw.sensitive.as_ref())?;
                (
                    raw.allow.unwrap_or_default(),
                    raw.sensitive.unwrap_or_default(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let name = |name: &str| {
            check_tool_name(name)
                .map(|()| name.to_owned())
                .map_err(|reason| EntryError {
                    kind: PolicyErrorKind::InvalidName,
                    reason: reason.to_owned(),
                    expected: "a tool name of 1 to 64 characters from a-z, 0-9, '_', '.', '-'",
                })
        };
        let allow = super::parse_list(source, "tools.allow", &entries, name)?;
        let sensitive = super::parse_list(source, "tools.sensitive", &labelled, name)?;
        if let Some(stray) = labelled.iter().find(|l| !allow.contains(l.get_ref())) {
            return Err(source.error(
                stray.span(),
                PolicyErrorKind::Contradiction,
                format!(
                    "tools.sensitive names `{}`, which tools.allow does not grant",
                    stray.get_ref()
                ),
                Some("label only tools the policy allows".to_owned()),
            ));
        }
        Ok(ToolGrant { allow, sensitive })
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
            sensitive: Vec::new(),
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

#[cfg(test)]
mod label_tests {
    use crate::{Policy, PolicyErrorKind, Roles};

    #[test]
    fn sensitive_tools_are_allowed_ones_and_roles_cannot_label() {
        let p = Policy::parse(
            "t.toml",
            "[agent]\nname = \"t\"\n[tools]\nallow = [\"echo\", \"deploy\"]\nsensitive = [\"deploy\"]\n",
        )
        .unwrap();
        assert!(p.tools.is_sensitive("deploy") && !p.tools.is_sensitive("echo"));
        let e = Policy::parse(
            "t.toml",
            "[agent]\nname = \"t\"\n[tools]\nallow = [\"echo\"]\nsensitive = [\"deploy\"]\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.kind), (5, PolicyErrorKind::Contradiction), "{e}");
        let e = Roles::parse(
            "r.toml",
            "[role.dev]\n[role.dev.fs]\nread = [\"**\"]\nsensitive = [\"auth/**\"]\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.kind), (4, PolicyErrorKind::UnknownKey), "{e}");
    }
}
