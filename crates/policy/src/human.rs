//! `[human]`: whether an agent may ask the person it works for a question mid-run
//! ([`HumanGrant`], `warden:agent/human` in WIT, `warden_guest::human`).
//!
//! Deny by default: without a grant the agent cannot ask, and a strict policy refuses at load a
//! component that imports the interface. A grant is no promise of an answer: only a run started
//! by an MCP client that declared `elicitation` has someone to ask (see `docs/mcp.md`).

use super::raw::{RawHuman, Table};

/// The grant to ask the person. Defaults to false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HumanGrant {
    /// `human.ask`: may ask the person questions (answered with a form, or declined).
    pub ask: bool,
}

impl HumanGrant {
    pub(crate) fn from_raw(raw: Option<Table<RawHuman>>) -> HumanGrant {
        HumanGrant {
            ask: raw.and_then(|Table(raw)| raw.ask).unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_only_when_written_true() {
        for (raw, ask) in [
            (None, false),
            (Some(None), false),
            (Some(Some(false)), false),
            (Some(Some(true)), true),
        ] {
            let raw = raw.map(|ask| Table(RawHuman { ask }));
            assert_eq!(HumanGrant::from_raw(raw).ask, ask);
        }
        let policy =
            crate::Policy::parse("h.toml", "[agent]\nname = \"a\"\n[human]\nask = true\n").unwrap();
        assert!(policy.human.ask);
        assert!(!crate::Policy::deny_all("a").human.ask);
        let e = crate::Policy::parse("h.toml", "[agent]\nname = \"a\"\n[human]\nshout = true\n")
            .unwrap_err();
        assert_eq!(e.kind, crate::PolicyErrorKind::UnknownKey, "{e}");
    }
}
