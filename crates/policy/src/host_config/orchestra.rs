//! The host configuration's `[agents]` (where agents are found by name, and the limits of a task
//! tree of agent calls) and `[memory]` (the curated memory's default horizon).
//!
//! ```toml
//! [agents]
//! require_signed = true     # every agent must be signed by a trusted publisher
//! dir = "agents.d"          # <name>.wasm + <name>.toml side by side; callers name agents, never files
//! max_depth = 4             # calls below the task a user started (default 4)
//! max_fanout = 8            # calls one agent may make in one task (default 8)
//! tree_wall = "300 s"       # wall time of a whole task tree (default 300 s)
//! [memory]
//! horizon = "30 d"          # how long an entry lives unless written with its own ttl (default 30 days)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::values::{duration, whole};
use crate::PolicyError;
use crate::diagnostic::Source;

/// The limits of one task tree (a task and the agent calls below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Most levels of calls below the root task.
    pub max_depth: u32,
    /// Most calls one agent may make in one task.
    pub max_fanout: u32,
    /// Most wall time of the whole tree.
    pub wall: Duration,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_depth: 4,
            max_fanout: 8,
            wall: Duration::from_secs(300),
        }
    }
}

/// The curated memory's default horizon: 30 days.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentsHost {
    pub(super) require_signed: Option<bool>,
    dir: Option<String>,
    max_depth: Option<Spanned<i64>>,
    max_fanout: Option<Spanned<i64>>,
    tree_wall: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMemoryHost {
    horizon: Option<Spanned<String>>,
}

/// A whole number of `key` from 1 to `max`, as a count.
fn count(source: &Source<'_>, key: &str, raw: Spanned<i64>, max: i64) -> Result<u32, PolicyError> {
    Ok(whole(source, key, raw, max)? as u32)
}

/// `[agents]`: (dir, tree limits).
pub(super) fn agents(
    source: &Source<'_>,
    raw: Option<&RawAgentsHost>,
) -> Result<(Option<PathBuf>, TreeLimits), PolicyError> {
    let mut tree = TreeLimits::default();
    let Some(raw) = raw else {
        return Ok((None, tree));
    };
    if let Some(d) = raw.max_depth.clone() {
        tree.max_depth = count(source, "agents.max_depth", d, 64)?;
    }
    if let Some(f) = raw.max_fanout.clone() {
        tree.max_fanout = count(source, "agents.max_fanout", f, 1024)?;
    }
    if let Some(w) = raw.tree_wall.clone() {
        tree.wall = duration(
            source,
            "agents.tree_wall",
            w,
            Duration::from_secs(24 * 3600),
        )?;
    }
    Ok((raw.dir.as_ref().map(PathBuf::from), tree))
}

/// `[memory]`: the default horizon.
pub(super) fn horizon(
    source: &Source<'_>,
    raw: Option<RawMemoryHost>,
) -> Result<Duration, PolicyError> {
    match raw.and_then(|m| m.horizon) {
        None => Ok(DEFAULT_HORIZON),
        Some(h) => duration(
            source,
            "memory.horizon",
            h,
            Duration::from_secs(10 * 365 * 24 * 3600),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::{HostConfig, PolicyErrorKind};

    #[test]
    fn agents_and_memory() {
        let c = HostConfig::parse(
            "w.toml",
            "[agents]\nrequire_signed = true\ndir = \"agents.d\"\nmax_depth = 2\nmax_fanout = 3\ntree_wall = \"10 s\"\n[memory]\nhorizon = \"1 h\"\n",
        )
        .unwrap();
        assert!(c.require_signed_agents);
        assert_eq!(c.agents_dir, Some(std::path::PathBuf::from("agents.d")));
        assert_eq!((c.tree.max_depth, c.tree.max_fanout), (2, 3));
        assert_eq!(c.tree.wall, std::time::Duration::from_secs(10));
        assert_eq!(c.memory_horizon, std::time::Duration::from_secs(3600));
        let d = HostConfig::parse("w.toml", "").unwrap();
        assert_eq!(d.tree, super::TreeLimits::default());
        assert_eq!(d.memory_horizon, super::DEFAULT_HORIZON);
        for (text, kind) in [
            ("[agents]\nmax_depth = 0\n", PolicyErrorKind::OutOfRange),
            ("[agents]\nmax_fanout = 5000\n", PolicyErrorKind::OutOfRange),
            (
                "[agents]\ntree_wall = \"soon\"\n",
                PolicyErrorKind::InvalidDuration,
            ),
            (
                "[memory]\nhorizon = \"0 s\"\n",
                PolicyErrorKind::InvalidDuration,
            ),
            ("[memory]\nsize = 3\n", PolicyErrorKind::UnknownKey),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!((e.line, e.kind), (2, kind), "{text}: {e}");
        }
    }
}
