//! The host configuration's `[server]`: the bounds of `warden serve`'s durable task queue and
//! its fair scheduling (`docs/server.md`) — how many submitted tasks it holds at once, how many
//! run at once, and how much of either one user may take.
//!
//! ```toml
//! [server]
//! max_queued = 1024       # tasks held (queued + running), all users together (default 1024)
//! workers = 4             # tasks running at once, all users (default: 2 per core, at most 64)
//! per_user = 4            # of those, one user's at once; the rest wait queued (default 4)
//! per_user_queued = 256   # tasks one user may hold, queued + running (default 256)
//! ```
//!
//! Past `max_queued` or `per_user_queued` a submission is answered `429` and nothing is
//! stored. `per_user` and `per_user_queued` are at most `max_queued`.

use serde::Deserialize;
use toml::Spanned;

use super::values::whole;
use crate::PolicyError;
use crate::diagnostic::Source;

/// The largest `max_queued` a host may set.
const MAX_QUEUED: i64 = 1_000_000;

/// The largest `workers` a host may set.
const MAX_WORKERS: i64 = 4096;

/// The most workers the default gives (2 per core), however many cores.
const DEFAULT_WORKERS_CAP: usize = 64;

/// `[server]`, validated. [`ServerSettings::default`] is what a host without the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Tasks held (queued or running), all users together.
    pub max_queued: usize,
    /// Tasks running at once, all users together.
    pub workers: usize,
    /// Tasks of one user running at once (the rest of theirs wait in the queue).
    pub per_user: usize,
    /// Tasks one user may hold, queued or running (at most `max_queued`).
    pub per_user_queued: usize,
}

impl ServerSettings {
    /// The default number of workers: two per core (a task mostly waits on its instance slot,
    /// the ledger or a model), at least 2 and at most 64.
    pub fn default_workers() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores * 2).clamp(2, DEFAULT_WORKERS_CAP)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_queued: 1024,
            workers: Self::default_workers(),
            per_user: 4,
            per_user_queued: 256,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    max_queued: Option<Spanned<i64>>,
    workers: Option<Spanned<i64>>,
    per_user: Option<Spanned<i64>>,
    per_user_queued: Option<Spanned<i64>>,
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
    if let Some(n) = &raw.workers {
        s.workers = bounded(source, "workers", n, MAX_WORKERS)?;
    }
    let queue = s.max_queued as i64;
    // An unset cap is the default, never above the queue's own bound.
    s.per_user = match &raw.per_user {
        Some(n) => bounded(source, "per_user", n, queue)?,
        None => s.per_user.min(s.max_queued),
    };
    s.per_user_queued = match &raw.per_user_queued {
        Some(n) => bounded(source, "per_user_queued", n, queue)?,
        None => s.per_user_queued.min(s.max_queued),
    };
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
        assert_eq!(
            (
                c.server.max_queued,
                c.server.per_user,
                c.server.per_user_queued
            ),
            (1024, 4, 256)
        );
        assert!((2..=64).contains(&c.server.workers));
        let c = HostConfig::parse(
            "w.toml",
            "[server]\nmax_queued = 8\nworkers = 3\nper_user = 1\nper_user_queued = 2\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.server.max_queued,
                c.server.workers,
                c.server.per_user,
                c.server.per_user_queued
            ),
            (8, 3, 1, 2)
        );
        // A queue smaller than the default per-user caps bounds them.
        let c = HostConfig::parse("w.toml", "[server]\nmax_queued = 3\n").unwrap();
        assert_eq!(
            (
                c.server.max_queued,
                c.server.per_user,
                c.server.per_user_queued
            ),
            (3, 3, 3)
        );
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
            (
                "[server]\nmax_queued = 2\nper_user_queued = 3\n",
                3,
                PolicyErrorKind::OutOfRange,
            ),
            ("[server]\nworkers = 0\n", 2, PolicyErrorKind::OutOfRange),
            ("[server]\nworkers = 5000\n", 2, PolicyErrorKind::OutOfRange),
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
