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
//! allowed_hosts = ["mcp.example.com", "mcp.example.com:443"]  # Host values /mcp accepts
//! allowed_origins = ["https://app.example.com"]               # browser Origins /mcp accepts
//! metrics_without_token = false  # true: GET /metrics answers without a bearer token
//! workspaces = ["/srv/work", "~/projects"]  # folders clients may name as a workspace (or inside)
//! ```
//!
//! `/mcp` accepts the loopback names and origins always (against DNS rebinding, nothing else by
//! default); `allowed_hosts` (`name` or `name:port`) and `allowed_origins`
//! (`http(s)://name[:port]`) add others for a server reached under another name.
//!
//! Past `max_queued` or `per_user_queued` a submission is answered `429` and nothing is
//! stored. `per_user` and `per_user_queued` are at most `max_queued`.
//!
//! `metrics_without_token` (default `false`) opens `GET /metrics` to a scraper on a trusted
//! network that holds no identity token. It grants ambient read access: anyone who reaches the
//! port then reads the counts (runs and kills by agent, escalations, queue depth, refusals,
//! model spend). Everything else still needs a token.
//!
//! `workspaces` lists the only folders a client may name as a task's workspace, a folder inside
//! one included (deny by default: without the key, the server's current folder alone; `[]`,
//! none). `server/workspaces.rs` says how each is read and what is refused.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::values::whole;
use crate::PolicyError;
use crate::diagnostic::Source;

mod workspaces;

/// The largest `max_queued` a host may set.
const MAX_QUEUED: i64 = 1_000_000;

/// The largest `workers` a host may set.
const MAX_WORKERS: i64 = 4096;

/// The most workers the default gives (2 per core), however many cores.
const DEFAULT_WORKERS_CAP: usize = 64;

/// `[server]`, validated. [`ServerSettings::default`] is what a host without the table uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Tasks held (queued or running), all users together.
    pub max_queued: usize,
    /// Tasks running at once, all users together.
    pub workers: usize,
    /// Tasks of one user running at once (the rest of theirs wait in the queue).
    pub per_user: usize,
    /// Tasks one user may hold, queued or running (at most `max_queued`).
    pub per_user_queued: usize,
    /// `Host` values `/mcp` accepts besides the loopback names (`name` or `name:port`).
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin` values `/mcp` accepts besides the loopback ones
    /// (`http(s)://name[:port]`).
    pub allowed_origins: Vec<String>,
    /// Whether `GET /metrics` answers without a bearer token (default `false`: it needs one,
    /// like the API). Ambient authority: anyone who reaches the port reads the counts.
    pub metrics_without_token: bool,
    /// `workspaces`: the folders a client may name as a task's workspace, or a folder inside
    /// one, as written (`~` expanded; a relative one is against the server's current folder).
    /// `None` without the key: the server's own default workspace (its current folder) is the
    /// only root. `Some([])` allows none.
    pub workspaces: Option<Vec<PathBuf>>,
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
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            metrics_without_token: false,
            workspaces: None,
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
    allowed_hosts: Option<Vec<Spanned<String>>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    metrics_without_token: Option<bool>,
    workspaces: Option<Vec<Spanned<String>>>,
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

/// `[server]` from its raw table (the defaults without one); `own` is the server's data
/// directory and agents folder as the same file names them (`host.data_dir`, `agents.dir`),
/// which no workspace root may be, hold or lie inside.
pub(super) fn settings(
    source: &Source<'_>,
    raw: Option<RawServer>,
    own: [&Option<PathBuf>; 2],
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
    for host in raw.allowed_hosts.unwrap_or_default() {
        s.allowed_hosts
            .push(checked(source, "allowed_hosts", host, is_host)?);
    }
    for origin in raw.allowed_origins.unwrap_or_default() {
        s.allowed_origins
            .push(checked(source, "allowed_origins", origin, is_origin)?);
    }
    s.metrics_without_token = raw.metrics_without_token.unwrap_or(false);
    if let Some(list) = raw.workspaces {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        s.workspaces = Some(workspaces::roots(
            source,
            list,
            own[0].as_deref(),
            own[1].as_deref(),
            home.as_deref(),
        )?);
    }
    Ok(s)
}

/// `name` or `name:port`: letters, digits, `-` and `.` (an IPv6 literal in brackets), a port
/// of 1 to 65535.
fn is_host(value: &str) -> bool {
    let (name, port) = match value.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(':') && !value.starts_with('[') || n.ends_with(']') => {
            (n, Some(p))
        }
        _ => (value, None),
    };
    let name_ok = if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// `http://host` or `https://host`, `host` as [`is_host`] takes it, nothing after it.
fn is_origin(value: &str) -> bool {
    value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .is_some_and(is_host)
}

/// `raw` if `ok` takes it, else an error at its place.
fn checked(
    source: &Source<'_>,
    key: &str,
    raw: Spanned<String>,
    ok: fn(&str) -> bool,
) -> Result<String, PolicyError> {
    if ok(raw.get_ref()) {
        return Ok(raw.into_inner());
    }
    let expected = if key == "allowed_hosts" {
        "a host name or `name:port` (`mcp.example.com`, `mcp.example.com:443`)"
    } else {
        "an origin `http(s)://name[:port]` (`https://app.example.com`), nothing after it"
    };
    Err(source.error(
        raw.span(),
        crate::PolicyErrorKind::InvalidHost,
        format!("server.{key}: `{}` is not one", raw.get_ref()),
        Some(expected.to_owned()),
    ))
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
    fn allowed_hosts_and_origins_are_checked_and_located() {
        let c = HostConfig::parse(
            "w.toml",
            "[server]\nallowed_hosts = [\"mcp.example.com\", \"mcp.example.com:443\", \"[::1]:8787\"]\nallowed_origins = [\"https://app.example.com\", \"http://10.0.0.2:8080\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.allowed_hosts.len(), 3);
        assert_eq!(c.server.allowed_origins.len(), 2);
        for (text, line) in [
            ("[server]\nallowed_hosts = [\"http://x.example\"]\n", 2),
            ("[server]\nallowed_hosts = [\"x.example:0\"]\n", 2),
            ("[server]\nallowed_hosts = [\"x y\"]\n", 2),
            ("[server]\n\nallowed_origins = [\"app.example.com\"]\n", 3),
            (
                "[server]\nallowed_origins = [\"https://a.example/path\"]\n",
                2,
            ),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!(
                (e.line, e.kind),
                (line, PolicyErrorKind::InvalidHost),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn metrics_without_token_is_off_unless_set_and_parsed_strictly() {
        let off = HostConfig::parse("w.toml", "[server]\nworkers = 2\n").unwrap();
        assert!(!off.server.metrics_without_token);
        assert!(!ServerSettings::default().metrics_without_token);
        let on = HostConfig::parse("w.toml", "[server]\nmetrics_without_token = true\n").unwrap();
        assert!(on.server.metrics_without_token);
        let kept =
            HostConfig::parse("w.toml", "[server]\nmetrics_without_token = false\n").unwrap();
        assert!(!kept.server.metrics_without_token);
        for (text, line, kind) in [
            // A typo of the key: refused at its line, never taken as "off".
            (
                "[server]\nworkers = 2\nmetrics_without_tokens = true\n",
                3,
                PolicyErrorKind::UnknownKey,
            ),
            (
                "[server]\n\nmetrics_without_token = \"yes\"\n",
                3,
                PolicyErrorKind::WrongType,
            ),
            (
                "[server]\nmetrics_without_token = 1\n",
                2,
                PolicyErrorKind::WrongType,
            ),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!((e.line, e.kind), (line, kind), "{text}: {e}");
        }
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
