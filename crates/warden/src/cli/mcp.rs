//! `warden mcp`: the agents as MCP tools over stdio (`warden::mcp`), for one user for the whole
//! connection: the user of the identity token given (`--token TOKEN`, `--token @FILE` or
//! `WARDEN_TOKEN`), or, with none, the host's development identity as `warden run` takes it
//! (`[dev]` in the host configuration), or on a host with no issuers and no `[dev]`, the
//! development user `warden serve` makes (role `dev`: the workspace, nothing else). Run from a
//! repository root with no configuration it serves the repository's built agents
//! (`target/wasm32-wasip2/release/<name>.wasm` under `policies/<name>.toml`), so an MCP client
//! is set up with one line: `{"command": "warden", "args": ["mcp"]}`; the repository's root,
//! which holds those agents and their policies, is then no workspace (the tools run without
//! one unless `--workspace DIR` names one). Standard output carries only the protocol; messages
//! go to standard error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use warden::Runtime;
use warden::bounded::{self, Limit};
use warden::mcp::{AgentTools, Identity};
use warden::policy::HostConfig;
use warden::serve::{AgentSource, Authority, Caller, DevIssuer, ServerState};
use warden::user::User;

use super::{Failure, bad_input, host_failure};

/// The arguments of `warden mcp`.
pub struct McpArgs {
    /// The identity token, `@FILE`, or a file holding it.
    pub token: Option<String>,
    /// The workspace folder the agents' `[fs]` grants are relative to; `None`: the current
    /// folder if a task may name it here, else none (see [`mcp`]).
    pub workspace: Option<PathBuf>,
}

/// `warden mcp`: serve MCP on stdin/stdout until the client closes it.
pub async fn mcp(
    runtime: Runtime,
    config: &HostConfig,
    data_dir: &Path,
    args: McpArgs,
) -> Result<u8, Failure> {
    let (authority, dev) = authority(config, data_dir)?;
    let token = match args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => Some(read_token(t)?),
        None => None,
    };
    let caller = match (token, &config.dev_identity, dev) {
        (Some(token), _, _) => authority
            .caller_of_token(&token)
            .map_err(|e| bad_input(anyhow::anyhow!("{}", e.message)))?,
        (None, Some(identity), _) => {
            let roles = super::load_roles(config.roles.as_deref())?;
            let user = User::new(&identity.subject, identity.roles.clone(), &roles)
                .map_err(|e| bad_input(anyhow::anyhow!("{}", warden::terminal::line(&e))))?;
            Caller {
                user: Arc::new(user),
                reviewer: false,
            }
        }
        (None, None, Some(dev)) => {
            let token = dev
                .token(Duration::from_secs(24 * 3600))
                .map_err(|e| host_failure(anyhow::anyhow!(e)))?;
            authority
                .caller_of_token(&token)
                .map_err(|e| host_failure(anyhow::anyhow!("{}", e.message)))?
        }
        (None, None, None) => {
            return Err(bad_input(anyhow::anyhow!(
                "no identity token: this host requires one (--token or WARDEN_TOKEN)"
            )));
        }
    };
    let named = args.workspace.is_some();
    let dir = args.workspace.unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(bad_input(anyhow::anyhow!(
            "the workspace {} is not a folder",
            super::shown(&dir)
        )));
    }
    // The operator's workspace is a root of this server, whatever `[server] workspaces` lists.
    let state = ServerState::new(runtime, authority, agent_source(config))
        .map_err(host_failure)?
        .with_workspace_root(&dir);
    // While the client connects.
    state.warm();
    // A workspace every call would be refused (it is, holds or lies inside this server's own
    // files) is refused now when the operator named it; the default one, the current folder,
    // is then no workspace: from a repository's root, which holds the built agents served, the
    // tools run with none rather than not at all.
    let workspace = match state.check_workspace(&dir) {
        Ok(_) => Some(dir),
        Err(e) if named => {
            return Err(bad_input(anyhow::anyhow!(
                "the workspace {}: {} ({})",
                super::shown(&dir),
                e.message,
                e.code
            )));
        }
        Err(e) => {
            errln!(
                "note: the current folder is no workspace for these tools ({}); they run without one: give --workspace DIR for their [fs] grants",
                e.code
            );
            None
        }
    };
    let tools = AgentTools::new(state, Identity::Fixed(caller), workspace);
    let (input, output) = warden::mcp::stdio::stdio();
    tracing::debug!(input = ?input.channel(), output = ?output.channel(), "the MCP streams");
    let running = tools
        .serve(warden::mcp::stdio::transport(input, output))
        .await
        .map_err(|e| bad_input(anyhow::anyhow!("the MCP client did not initialize: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| host_failure(anyhow::anyhow!("the MCP server stopped: {e}")))?;
    Ok(0)
}

/// The token text of `--token`: `@FILE`, a file that exists, or the token itself.
fn read_token(value: &str) -> Result<String, Failure> {
    let file = value
        .strip_prefix('@')
        .map(Path::new)
        .or_else(|| Some(Path::new(value)).filter(|p| p.is_file()));
    match file {
        Some(path) => Ok(bounded::read_to_string(path, Limit::TOKEN)
            .map_err(bad_input)?
            .trim()
            .to_owned()),
        None => Ok(value.to_owned()),
    }
}

/// Who the host trusts, as `warden serve` does: its `[[issuers]]` with its roles file, or on a
/// host with none, the development issuer of `data_dir` (returned too).
fn authority(
    config: &HostConfig,
    data_dir: &Path,
) -> Result<(Authority, Option<DevIssuer>), Failure> {
    if !config.issuers.is_empty() {
        let roles = super::load_roles(config.roles.as_deref())?;
        return Ok((Authority::new(config, roles), None));
    }
    let dev = DevIssuer::open(data_dir).map_err(bad_input)?;
    let roles = match &config.roles {
        Some(path) => super::load_roles(Some(path))?,
        None => DevIssuer::roles().map_err(host_failure)?,
    };
    let trusted = HostConfig {
        issuers: vec![dev.issuer()],
        ..HostConfig::default()
    };
    Ok((Authority::new(&trusted, roles), Some(dev)))
}

/// Where agents are found, as `warden serve` finds them.
fn agent_source(config: &HostConfig) -> AgentSource {
    match &config.agents_dir {
        Some(_) => AgentSource::Directory,
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from("target"), PathBuf::from);
            AgentSource::built(
                target.join("wasm32-wasip2/release"),
                PathBuf::from("policies"),
            )
        }
    }
}
