//! `warden memory list | show | history | revert | forget | pin`: the curated memory of the data
//! directory, for the operator; pinning needs a reviewer's key (their person in the roles file
//! holds a role with `review = true`). Every change is a new version and an audit record.
//!
//! Keys, texts, tags, owners and agent names came from agents and tokens: every one is escaped by
//! `warden::terminal` before it is printed.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;
use warden::audit::AuditEvent;
use warden::ledger::Ledger;
use warden::orchestra::memory::{Memory, MemoryError, Version, check_name, now_ms};
use warden::policy::HostConfig;
use warden::terminal::{self, line};

use super::ledger_cli::{person, roles};
use super::{Failure, bad_input, host_failure};

/// Who the command line writes versions as.
const OPERATOR: &str = "operator";

/// `warden memory …`
#[derive(Subcommand)]
pub enum MemoryCommand {
    /// The newest version of every entry, one line each (any user's; `--user` for what one user
    /// sees).
    List {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only what this user (a token's subject) sees: their live entries and general ones.
        #[arg(long, requires = "namespace")]
        user: Option<String>,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// One entry: its newest version (or `--version`), with its text.
    Show {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// This version instead of the newest.
        #[arg(long)]
        version: Option<u32>,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Every version of an entry, newest first.
    History {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Write a new version equal to an older one.
    Revert {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The version to bring back.
        #[arg(long)]
        to: u32,
    },
    /// Forget an entry: a tombstone version hides every older one from every user.
    Forget {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// Pin an entry's newest version so it never expires (a reviewer signs with their key).
    Pin {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The reviewer's secret key; their person in the roles file needs a role with
        /// `review = true`.
        #[arg(long = "key", value_name = "FILE")]
        reviewer_key: PathBuf,
        /// The roles file (default: `host.roles`).
        #[arg(long)]
        roles_file: Option<PathBuf>,
    },
}

/// Open the memory of `ledger`'s data directory.
pub fn open(ledger: &Ledger) -> Result<Arc<Memory>, Failure> {
    Memory::open(ledger.dir())
        .map(Arc::new)
        .map_err(host_failure)
}

fn failure(e: MemoryError) -> Failure {
    match e {
        MemoryError::Open { .. } | MemoryError::Store(_) | MemoryError::Filter(_) => {
            host_failure(e)
        }
        _ => bad_input(e),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64 + 719_468;
    let (era, doe) = (days.div_euclid(146_097), days.rem_euclid(146_097));
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

fn state(v: &Version, now: u64) -> String {
    match (v.change.as_str(), v.pinned, v.expires_ms) {
        ("forget", ..) => "forgotten".into(),
        (_, true, _) => "pinned".into(),
        (_, _, Some(e)) if e <= now => format!("expired {}", utc(e)),
        (_, _, Some(e)) => format!("expires {}", utc(e)),
        _ => "live".into(),
    }
}

fn version_line(v: &Version, now: u64) -> String {
    let task = v.task.map_or_else(|| "-".into(), |t| t.to_string());
    format!(
        "v{:<4} {:<7} {}  owner {}{}  by {} (task {task})  {}  {} B{}",
        v.version,
        v.change.as_str(),
        utc(v.written_ms),
        line(&v.owner),
        if v.general { " (general)" } else { "" },
        line(&v.agent),
        state(v, now),
        v.text.len(),
        if v.tags.is_empty() {
            String::new()
        } else {
            format!("  tags {}", line(&v.tags.join(",")))
        }
    )
}

fn record(ledger: &Ledger, kind: &str, detail: serde_json::Value) -> Result<(), Failure> {
    ledger
        .record(AuditEvent::new(kind).detail(detail))
        .map(|_| ())
        .map_err(host_failure)
}

/// `warden memory …`
pub fn memory(ledger: &Ledger, config: &HostConfig, command: MemoryCommand) -> Result<u8, Failure> {
    let memory = open(ledger)?;
    let now = now_ms();
    match command {
        MemoryCommand::List {
            namespace,
            user,
            limit,
            json,
        } => {
            let versions = match (&namespace, &user) {
                (Some(ns), Some(user)) => memory.list(ns, user, None, now, limit),
                (ns, _) => memory.keys(ns.as_deref(), limit),
            }
            .map_err(failure)?;
            for v in versions {
                if json {
                    outln!("{}", terminal::json_line(&v).map_err(host_failure)?)?;
                } else {
                    outln!(
                        "{}/{}  {}",
                        line(&v.namespace),
                        line(&v.key),
                        version_line(&v, now)
                    )?;
                }
            }
            Ok(0)
        }
        MemoryCommand::Show {
            namespace,
            key,
            version,
            json,
        } => {
            check_name(&namespace, &key).map_err(failure)?;
            let found = match version {
                Some(n) => memory.version(&namespace, &key, n),
                None => memory.newest(&namespace, &key),
            }
            .map_err(failure)?;
            let Some(v) = found else {
                return Err(failure(match version {
                    Some(version) => MemoryError::NoVersion {
                        namespace,
                        key,
                        version,
                    },
                    None => MemoryError::NotFound { namespace, key },
                }));
            };
            if json {
                outln!("{}", terminal::json_pretty(&v).map_err(host_failure)?)?;
                return Ok(0);
            }
            outln!("{}/{}", line(&v.namespace), line(&v.key))?;
            outln!("{}", version_line(&v, now))?;
            outln!("")?;
            let text = terminal::block(&v.text);
            outln!("{}", text.strip_suffix('\n').unwrap_or(&text))?;
            Ok(0)
        }
        MemoryCommand::History {
            namespace,
            key,
            limit,
        } => {
            check_name(&namespace, &key).map_err(failure)?;
            let versions = memory.history(&namespace, &key, limit).map_err(failure)?;
            if versions.is_empty() {
                return Err(failure(MemoryError::NotFound { namespace, key }));
            }
            for v in versions {
                outln!("{}", version_line(&v, now))?;
            }
            Ok(0)
        }
        MemoryCommand::Revert { namespace, key, to } => {
            let version = memory
                .revert(&namespace, &key, to, config.memory_horizon, OPERATOR, now)
                .map_err(failure)?;
            record(
                ledger,
                "memory-reverted",
                json!({"namespace": namespace, "key": key, "to": to, "version": version, "by": OPERATOR}),
            )?;
            outln!(
                "{}/{}: version {version} is version {to} again",
                line(&namespace),
                line(&key)
            )?;
            Ok(0)
        }
        MemoryCommand::Forget { namespace, key } => {
            let version = memory
                .forget(&namespace, &key, OPERATOR, now)
                .map_err(failure)?;
            record(
                ledger,
                "memory-forgotten",
                json!({"namespace": namespace, "key": key, "version": version, "by": OPERATOR}),
            )?;
            outln!(
                "{}/{}: forgotten (version {version})",
                line(&namespace),
                line(&key)
            )?;
            Ok(0)
        }
        MemoryCommand::Pin {
            namespace,
            key,
            reviewer_key,
            roles_file,
        } => {
            check_name(&namespace, &key).map_err(failure)?;
            let roles = roles(roles_file.as_deref(), config)?;
            let what = format!("warden-memory-pin-v1\n{namespace}\n{key}\n");
            let who = person(&reviewer_key, &roles, &what)?;
            let version = match memory.pin(&namespace, &key, &who, &roles, now) {
                Err(e @ MemoryError::NotReviewer { .. }) => {
                    record(
                        ledger,
                        "memory-pin-refused",
                        json!({"namespace": namespace, "key": key, "person": who.name, "why": "no review role"}),
                    )?;
                    return Err(failure(e));
                }
                other => other.map_err(failure)?,
            };
            record(
                ledger,
                "memory-pinned",
                json!({"namespace": namespace, "key": key, "version": version, "reviewer": who.name}),
            )?;
            outln!(
                "{}/{}: version {version} pinned by {}; it no longer expires",
                line(&namespace),
                line(&key),
                line(&who.name)
            )?;
            Ok(0)
        }
    }
}
