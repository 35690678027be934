//! `[trust]`: how an agent earns and loses autonomy ([`TrustPolicy`]).
//!
//! Levels are 1 (assistive: may only propose), 2 (semi-autonomous) and 3 (autonomous). The
//! section says after how many clean successes in a row the agent moves up a level, whether a new
//! build of the agent keeps the level its predecessor earned, and the minimum level each
//! capability or tool needs. Without the section: promotion after 10 clean runs, no
//! inheritance, staged writes applied from level 2, every granted tool usable from level 1.

use std::collections::BTreeMap;

use toml::Spanned;

use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::raw::{Integer, RawTrust, Table};
use super::tools::ToolGrant;

/// The lowest level: the agent may only propose.
pub const ASSISTIVE: u8 = 1;
/// The highest level.
pub const AUTONOMOUS: u8 = 3;

/// The validated `[trust]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// `trust.promote_after` (default 10, 1 to 100000): clean successes in a row that move the
    /// agent up one level.
    pub promote_after: u32,
    /// `trust.inherit` (default false): a new module hash keeps the level of the one before.
    pub inherit: bool,
    /// `trust.require`: minimum level per capability (`"fs.write"`) or tool (`"tools.<name>"`,
    /// or `"tools"` for every tool).
    pub require: BTreeMap<String, u8>,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            promote_after: 10,
            inherit: false,
            require: BTreeMap::new(),
        }
    }
}

impl TrustPolicy {
    /// The level from which the agent's staged writes are applied without a reviewer (default
    /// 2; never 1, since a level-1 agent may only propose).
    pub fn write_level(&self) -> u8 {
        self.require.get("fs.write").copied().unwrap_or(2)
    }

    /// The level from which the agent may call tool `name` (the higher of `tools` and
    /// `tools.<name>`, default 1).
    pub fn tool_level(&self, name: &str) -> u8 {
        let all = self.require.get("tools").copied().unwrap_or(ASSISTIVE);
        let one = self
            .require
            .get(&format!("tools.{name}"))
            .copied()
            .unwrap_or(ASSISTIVE);
        all.max(one)
    }

    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawTrust>>,
        tools: &ToolGrant,
    ) -> Result<TrustPolicy, PolicyError> {
        let mut policy = TrustPolicy::default();
        let Some(Table(raw)) = raw else {
            return Ok(policy);
        };
        if let Some(n) = raw.promote_after {
            let span = n.span();
            policy.promote_after = u32::try_from(n.into_inner().0)
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| {
                    source.error(
                        span,
                        PolicyErrorKind::OutOfRange,
                        "trust.promote_after is out of range",
                        Some("a whole number of clean runs from 1 to 100000".to_owned()),
                    )
                })?;
        }
        policy.inherit = raw.inherit.unwrap_or(false);
        let entries: BTreeMap<String, Spanned<Integer>> = raw.require.unwrap_or_default();
        for (key, level) in entries {
            let span = level.span();
            let expected_key =
                "a key `fs.write`, `tools` or `tools.<name>` for a tool that [tools] allows";
            let known = key == "fs.write"
                || key == "tools"
                || key
                    .strip_prefix("tools.")
                    .is_some_and(|name| tools.allows(name));
            if !known {
                let (kind, message) = match key.strip_prefix("tools.") {
                    Some(name) => (
                        PolicyErrorKind::Contradiction,
                        format!(
                            "trust.require names tool \"{name}\", which [tools] does not allow"
                        ),
                    ),
                    None => (
                        PolicyErrorKind::UnknownKey,
                        format!("trust.require has an unknown capability \"{key}\""),
                    ),
                };
                return Err(source.error(span, kind, message, Some(expected_key.to_owned())));
            }
            let value = u8::try_from(level.into_inner().0)
                .ok()
                .filter(|l| (ASSISTIVE..=AUTONOMOUS).contains(l))
                .ok_or_else(|| {
                    source.error(
                        span.clone(),
                        PolicyErrorKind::OutOfRange,
                        format!("trust.require.\"{key}\" is not a trust level"),
                        Some("1 (assistive), 2 (semi-autonomous) or 3 (autonomous)".to_owned()),
                    )
                })?;
            if key == "fs.write" && value == ASSISTIVE {
                return Err(source.error(
                    span,
                    PolicyErrorKind::Contradiction,
                    "trust.require.\"fs.write\" = 1 would let a level-1 agent commit its writes, but level 1 may only propose",
                    Some("2 or 3".to_owned()),
                ));
            }
            policy.require.insert(key, value);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Policy, PolicyErrorKind};

    fn parse(trust: &str) -> Result<Policy, crate::PolicyError> {
        let text = format!(
            "[agent]\nname = \"a\"\n[tools]\nallow = [\"deploy\", \"echo\"]\n[trust]\n{trust}"
        );
        Policy::parse("t.toml", &text)
    }

    #[test]
    fn defaults_and_requirements() {
        let none = Policy::parse("t.toml", "[agent]\nname = \"a\"\n").unwrap();
        assert_eq!(none.trust.promote_after, 10);
        assert!(!none.trust.inherit);
        assert_eq!(none.trust.write_level(), 2);
        assert_eq!(none.trust.tool_level("echo"), 1);

        let p = parse(
            "promote_after = 3\ninherit = true\nrequire = { \"fs.write\" = 3, \"tools.deploy\" = 3, tools = 2 }\n",
        )
        .unwrap();
        assert_eq!(p.trust.promote_after, 3);
        assert!(p.trust.inherit);
        assert_eq!(p.trust.write_level(), 3);
        assert_eq!(p.trust.tool_level("deploy"), 3);
        assert_eq!(p.trust.tool_level("echo"), 2);
    }

    /// (trust section, error kind, line, column)
    #[test]
    fn mistakes_are_located() {
        let cases = [
            ("promote_after = 0\n", PolicyErrorKind::OutOfRange, 6, 17),
            (
                "require = { \"fs.write\" = 1 }\n",
                PolicyErrorKind::Contradiction,
                6,
                26,
            ),
            (
                "require = { tools = 4 }\n",
                PolicyErrorKind::OutOfRange,
                6,
                21,
            ),
            (
                "require = { \"tools.rm\" = 2 }\n",
                PolicyErrorKind::Contradiction,
                6,
                26,
            ),
            (
                "require = { net = 2 }\n",
                PolicyErrorKind::UnknownKey,
                6,
                19,
            ),
            ("level = 2\n", PolicyErrorKind::UnknownKey, 6, 1),
            ("inherit = \"yes\"\n", PolicyErrorKind::WrongType, 6, 11),
        ];
        for (text, kind, line, column) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(
                (err.kind, err.line, err.column),
                (kind, line, column),
                "{text}: {err}"
            );
            assert!(err.expected.is_some(), "{text}: {err}");
        }
    }
}
