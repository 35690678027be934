//! Where the server finds the agent a task names: the host configuration's `[agents] dir`
//! (component and policy side by side, reloaded when a file changes, exactly as agent calls find
//! them), or, on a host without one, the repository's built agents as `warden run NAME` finds
//! them (`target/wasm32-wasip2/release/<name>.wasm`) with the policy `policies/<name>.toml`.
//! Either way a task names an agent, never a file: a name is 1 to 64 of `a-z`, `0-9` and `-`.
//! Either way an agent is loaded once and kept until one of its files changes, and a server
//! loads its agents as it starts ([`ServerState::warm`]), so its first calls find them loaded.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;

use super::{ApiError, ServerState};

/// Where the component of a named agent lies.
type ComponentOf = Box<dyn Fn(&str) -> PathBuf>;

/// The most agents a listing names.
pub const MAX_LISTED: usize = 1000;
use crate::calls::is_agent_name;
use crate::runtime::{LoadedAgent, Runtime};

/// Where agents are found.
#[derive(Debug, Clone)]
pub enum AgentSource {
    /// The runtime's agents directory (`[agents] dir` of its host configuration).
    Directory,
    /// Built components in `components` (`<name>.wasm`, `-` spelled `_`, as cargo names them)
    /// with their policies in `policies` (`<name>.toml`), kept once loaded and loaded again when
    /// a file changes, as a directory's are. Made by [`AgentSource::built`].
    Built {
        /// The folder of built components (`target/wasm32-wasip2/release`).
        components: PathBuf,
        /// The folder of policies (`policies`).
        policies: PathBuf,
        /// The agents loaded from them.
        kept: BuiltAgents,
    },
}

/// The agents a [`AgentSource::Built`] loaded, each with the stamps of its files.
#[derive(Debug, Clone)]
pub struct BuiltAgents(Arc<crate::calls::AgentDirectory>);

impl AgentSource {
    /// The agent `name` if it was loaded already and its files have not changed since (a stat
    /// of each: cheap enough for an async worker).
    pub(crate) fn kept(&self, runtime: &Runtime, name: &str) -> Option<Arc<LoadedAgent>> {
        let dir = match self {
            AgentSource::Directory => runtime.agents.as_deref()?,
            AgentSource::Built { kept, .. } => &kept.0,
        };
        dir.kept(name).ok().flatten()
    }

    /// A repository's built agents: the components in `components`, their policies in
    /// `policies`.
    pub fn built(components: PathBuf, policies: PathBuf) -> Self {
        let kept = BuiltAgents(Arc::new(crate::calls::AgentDirectory::built(
            components.clone(),
            policies.clone(),
        )));
        AgentSource::Built {
            components,
            policies,
            kept,
        }
    }
}

/// `name` if it is an agent name, else 400 `bad-agent-name`. A submission checks it before
/// anything else, so a string that is not a name (a path, a megabyte of text) is never looked up,
/// never weighed against a user's roles and never written to the audit log.
///
/// # Errors
///
/// 400 `bad-agent-name` for a name that is not one.
pub fn checked_name(name: &str) -> Result<&str, ApiError> {
    if is_agent_name(name) {
        return Ok(name);
    }
    Err(ApiError::bad_request(
        "bad-agent-name",
        format!(
            "`{}` is not an agent name (1 to 64 of a-z, 0-9, '-', '_'); tasks name agents, never paths",
            crate::terminal::line(&name.chars().take(64).collect::<String>())
        ),
    ))
}

impl AgentSource {
    /// The agent `name`, loaded through `runtime` (signatures and imports checked as `warden run`
    /// checks them). Blocking (reads, maybe a compile): call it off the async workers.
    ///
    /// # Errors
    ///
    /// 400 `bad-agent-name` for a name that is not one, 404 `no-agent` when there is no such
    /// agent, 422 `agent-refused` when its policy or component is refused.
    pub fn find(&self, runtime: &Runtime, name: &str) -> Result<Arc<LoadedAgent>, ApiError> {
        checked_name(name)?;
        let refused = |e: String| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "agent-refused",
                crate::terminal::line(&e).into_owned(),
            )
        };
        let missing = || {
            ApiError::not_found(
                "no-agent",
                format!("this host has no agent `{name}`; ask its operator which agents it serves"),
            )
        };
        match self {
            AgentSource::Directory => {
                let Some(dir) = runtime.agents.as_ref() else {
                    return Err(ApiError::internal(
                        "the server serves an agents directory but its host configuration names none",
                    ));
                };
                if let Some(agent) = dir.kept(name).map_err(refused)? {
                    return Ok(agent);
                }
                let base = dir.dir().join(name);
                if !base.with_extension("wasm").is_file() || !base.with_extension("toml").is_file()
                {
                    return Err(missing());
                }
                dir.load(runtime, name).map_err(refused)
            }
            AgentSource::Built {
                components,
                policies,
                kept,
            } => {
                let wasm = components.join(format!("{}.wasm", name.replace('-', "_")));
                let toml = policies.join(format!("{name}.toml"));
                if let Some(agent) = kept.0.kept(name).map_err(refused)? {
                    return Ok(agent);
                }
                if !wasm.is_file() || !toml.is_file() {
                    return Err(missing());
                }
                kept.0.load(runtime, name).map_err(refused)
            }
        }
    }
    /// The names of the agents this source holds now (component and policy both present),
    /// sorted; at most [`MAX_LISTED`]. Blocking (reads a folder): call it off the async workers.
    ///
    /// # Errors
    ///
    /// 500 when the folder cannot be read.
    pub fn names(&self, runtime: &Runtime) -> Result<Vec<String>, ApiError> {
        let (listed, component): (PathBuf, ComponentOf) = match self {
            AgentSource::Directory => {
                let Some(dir) = runtime.agents.as_ref() else {
                    return Err(ApiError::internal(
                        "the server serves an agents directory but its host configuration names none",
                    ));
                };
                let dir = dir.dir().to_path_buf();
                let wasm = dir.clone();
                (dir, Box::new(move |n| wasm.join(format!("{n}.wasm"))))
            }
            AgentSource::Built {
                components,
                policies,
                ..
            } => {
                let components = components.clone();
                (
                    policies.clone(),
                    Box::new(move |n| components.join(format!("{}.wasm", n.replace('-', "_")))),
                )
            }
        };
        let entries = std::fs::read_dir(&listed).map_err(|e| {
            ApiError::internal(format!(
                "the agents folder {} cannot be read: {e}",
                crate::terminal::line(&listed.display().to_string())
            ))
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".toml")?.to_owned();
                (is_agent_name(&name) && component(&name).is_file()).then_some(name)
            })
            .take(MAX_LISTED * 4)
            .collect();
        names.sort();
        names.truncate(MAX_LISTED);
        Ok(names)
    }
}

/// How many of the directory's agents a start loads ahead of their first call; the rest load at
/// their first call, as every agent did before.
pub const MAX_WARMED: usize = 64;

impl ServerState {
    /// Load the agents this server serves (its agents directory's, or a repository's built
    /// ones) and their contracts now, in the background, one
    /// after the other (at most [`MAX_WARMED`], by name): on a starting server this runs while the
    /// client connects, so the first call of an agent does not wait for its component, its
    /// policy and its contract (~3 ms for a small agent, warm compile cache). A call that comes
    /// while its agent is loading waits for that load rather than repeating it (loads of one
    /// name take turns: `calls/directory.rs`). An agent that does not load is left for its first
    /// call to refuse, with its error.
    pub fn warm(&self) {
        let state = self.clone();
        let handle = tokio::runtime::Handle::current();
        // A thread of the blocking pool, not an async worker: `warden mcp` has one worker, and
        // the client's handshake must not wait behind an agent's `describe`.
        tokio::task::spawn_blocking(move || {
            let names = match state.agents.names(&state.runtime) {
                Ok(names) => names,
                Err(_) => return,
            };
            for name in names.iter().take(MAX_WARMED) {
                let warmed = state
                    .agents
                    .find(&state.runtime, name)
                    .map_err(|e| crate::terminal::line(&e.message).into_owned())
                    .and_then(|agent| handle.block_on(agent.contract()).map_err(|e| e.to_string()));
                if let Err(why) = warmed {
                    tracing::debug!(agent = %name, %why, "not warmed: left for its first call");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::checked_name;

    #[test]
    fn a_name_passes_and_a_path_or_an_overlong_name_is_a_bad_agent_name() {
        assert_eq!(checked_name("hello").unwrap(), "hello");
        for bad in [
            "../hello",
            "hello/../../x",
            "/etc/passwd",
            "hello.wasm",
            "",
            "Hello",
        ] {
            assert_eq!(
                checked_name(bad).unwrap_err().code,
                "bad-agent-name",
                "{bad}"
            );
        }
        assert!(checked_name(&"a".repeat(65)).is_err());
    }
}
