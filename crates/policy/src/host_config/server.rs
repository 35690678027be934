//! The host configuration's `[server]`: the bounds of `warden serve`'s task queue (`docs/server.md`)
//! — how many submitted tasks it holds at once, and how many of them one user may have.
//!
//! ```toml
//! [server]
//! max_queued = 1024   # submitted tasks not yet finished, all users together (default 1024)
//! per_user = 16       # of those, one user's (default 16)
//! ```
//!
//! Past either bound a submission is answered `429` and nothing is stored.

use serde::Deserialize;
use toml::Spanned;

use super::values::whole;
use crate::PolicyError;
use crate::diagnostic::Source;

/// The largest `max_queued` a host may set.
const MAX_QUEUED: i64 = 1_000_000;

/// `[server]`, validated. [`ServerSettings::default`] is what a host without the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Submitted tasks not yet finished, all users together.
    pub max_queued: usize,
    /// Submitted tasks not yet finished of one user (at most `max_queued`).
    pub per_user: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_queued: 1024,
            per_user: 16,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    max_queued: Option<Spanned<i64>>,
    per_user: Option<Spanned<i64>>,
}

/// A whole number of `key` from 1 to `max`, or an error at its place.
fn bounded(
    source: &Source<'_>,
    key: &str,
    raw: &Spanned<i64>,
    max: i64,
) -> Result<usize, PolicyError> {
    Ok(whole(source, &format!("server.{key}"), raw.clone(), max)? as usize)
}

/// `[server]` from its raw table (the defaults without one).
pub(super) fn settings(
    source: &Source<'_>,
    raw: Option<RawServer>,
) -> Result<ServerSettings, PolicyError> {
    let mut s = ServerSettings::default();
    let Some(raw) = raw else {
        return Ok(s);
    };
    if let Some(n) = &raw.max_queued {
        s.max_queued = bounded(source, "max_queued", n, MAX_QUEUED)?;
    }
    match &raw.per_user {
        Some(n) => s.per_user = bounded(source, "per_user", n, s.max_queued as i64)?,
        // The default cap, never above the queue's own bound.
        None => s.per_user = s.per_user.min(s.max_queued),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::ServerSettings;
    use crate::{HostConfig, PolicyErrorKind};

    #[test]
    fn parses_the_table_and_defaults_without_it() {
        let c = HostConfig::parse("w.toml", "").unwrap();
        assert_eq!(c.server, ServerSettings::default());
        assert_eq!((c.server.max_queued, c.server.per_user), (1024, 16));
        let c = HostConfig::parse("w.toml", "[server]\nmax_queued = 8\nper_user = 1\n").unwrap();
        assert_eq!((c.server.max_queued, c.server.per_user), (8, 1));
        // A queue smaller than the default per-user cap bounds it.
        let c = HostConfig::parse("w.toml", "[server]\nmax_queued = 4\n").unwrap();
        assert_eq!((c.server.max_queued, c.server.per_user), (4, 4));
    }

    #[test]
    fn mistakes_are_located() {
        for (text, line, kind) in [
            ("[server]\nmax_queued = 0\n", 2, PolicyErrorKind::OutOfRange),
            (
                "[server]\n\nper_user = -3\n",
                3,
                PolicyErrorKind::OutOfRange,
            ),
            (
                "[server]\nmax_queued = 2\nper_user = 3\n",
                3,
                PolicyErrorKind::OutOfRange,
            ),
            ("[server]\nqueue = 5\n", 2, PolicyErrorKind::UnknownKey),
            (
                "[server]\nper_user = \"many\"\n",
                2,
                PolicyErrorKind::WrongType,
            ),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!((e.line, e.kind), (line, kind), "{text}: {e}");
        }
    }
}
