//! The `warden` command line as clap parses it: global flags and every command with its
//! arguments. What each command does lives beside it in `cli/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::{audit_cli, memory_cli, task_cli, trust_cli};

/// Warden: run AI agents as capability-restricted WebAssembly components.
#[derive(Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    /// Log format for the host's own structured logs, on stderr (default: `[log] format` of the
    /// host configuration, else text; level from WARDEN_LOG, else `[log] level`, else warn).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Folder for compiled components (default: $XDG_CACHE_HOME/warden or ~/.cache/warden).
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the compiled-component cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// The host configuration (trusted and revoked keys, signature requirements). Without it the
    /// host trusts no key and requires only the signatures that policies pin.
    #[arg(long, global = true, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data directory: tasks, trust records, approvals, staging and the audit log
    /// (default: host.data_dir, else $XDG_STATE_HOME/warden or ~/.local/state/warden).
    #[arg(long, global = true, env = "WARDEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run one task in a fresh instance of an agent and print its output or why it was killed.
    Run {
        /// The agent: a .wasm component, or the name of an agent built in target/wasm32-wasip2/release.
        agent: String,
        /// The agent's policy (TOML).
        #[arg(long)]
        policy: PathBuf,
        /// The task, as JSON, or @FILE to read it from a file.
        #[arg(long, default_value = "null")]
        input: String,
        /// The workspace folder that the policy's [fs] paths are relative to.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Print the whole run report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The user's identity token (PASETO v4.public), or @FILE. Required on a host whose
        /// configuration lists issuers, unless it names a development identity.
        #[arg(long, env = "WARDEN_TOKEN")]
        token: Option<String>,
    },
    /// Run a stream of tasks in one host process: one JSON object per line of FILE
    /// (`{"agent": …, "policy": …, "input": …, "workspace": …}`), one JSON result per line out.
    Batch {
        /// The task file (JSON lines), or - for standard input.
        file: PathBuf,
        /// The user's identity token, as for `run`.
        #[arg(long, env = "WARDEN_TOKEN")]
        token: Option<String>,
    },
    /// Tasks: list, show, trace, and diff / apply / discard their proposed changes.
    Task {
        #[command(subcommand)]
        command: task_cli::TaskCommand,
    },
    /// The curated memory: list, show, history, and revert / forget / pin an entry.
    Memory {
        #[command(subcommand)]
        command: memory_cli::MemoryCommand,
    },
    /// Model usage per agent over the newest tasks: calls, tokens, cost per task, cache hit rate.
    Stats {
        /// How many of the newest tasks to count.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// Print one JSON object per agent instead.
        #[arg(long)]
        json: bool,
    },
    /// The trust ladder: levels, review and reinstatement of demoted agents, regressions.
    Trust {
        #[command(subcommand)]
        command: trust_cli::TrustCommand,
    },
    /// Approve an irreversible action held for a person (signed with your key), then the host
    /// performs it.
    Approve {
        /// The action id (from the agent's pending status or `warden approve --list`).
        id: Option<u64>,
        /// Your secret key; your person in the roles file needs a role that may approve the tool.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Write the signed approval to FILE instead of submitting it.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Submit an approval written by --save.
        #[arg(long, conflicts_with = "id")]
        submit: Option<PathBuf>,
        /// Sign, without the data directory, an action as `GET /v1/approvals` lists it (one
        /// element of `approvals`, saved as JSON); with --key and --save, for
        /// `POST /v1/approvals/{id}` on a server.
        #[arg(long, conflicts_with_all = ["id", "submit", "list"], requires_all = ["key", "save"])]
        sign: Option<PathBuf>,
        /// Your name in the roles file, for --sign (default: the person the roles file gives
        /// your key).
        #[arg(long, requires = "sign")]
        approver: Option<String>,
        /// List actions and their status.
        #[arg(long)]
        list: bool,
        /// The roles file (default: `host.roles`).
        #[arg(long)]
        roles_file: Option<PathBuf>,
    },
    /// The audit log: verify it, or follow it.
    Audit {
        #[command(subcommand)]
        command: audit_cli::AuditCommand,
    },
    /// Issue user identity tokens (for operators and tests).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Validate policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write a new ed25519 key pair: <STEM>.key (secret, mode 0600) and <STEM>.pub (one line).
    Keygen {
        /// Path and file name without extension, e.g. keys/alice.
        stem: PathBuf,
    },
    /// Sign an agent component: writes <AGENT>.sig beside it.
    Sign {
        /// The .wasm component.
        agent: PathBuf,
        /// The publisher's secret key (from `warden keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Serve the HTTP API (docs/server.md) until SIGTERM or ctrl-c. Prints `listening http://…`
    /// on stdout when ready; on a host with no token issuer, a development token on stderr.
    Serve {
        /// The address to listen on (loopback unless told otherwise).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Seconds running tasks get to finish once a shutdown begins.
        #[arg(long, default_value_t = 30)]
        grace_secs: u64,
    },
    /// Serve the agents as MCP tools over stdin/stdout (docs/mcp.md), for the user of --token,
    /// or the development identity. MCP clients start it: `{"command": "warden", "args": ["mcp"]}`.
    Mcp {
        /// The user's identity token, @FILE, or a file holding it.
        #[arg(long, env = "WARDEN_TOKEN")]
        token: Option<String>,
        /// The workspace folder that the agents' [fs] paths are relative to (default: the
        /// current folder, unless it holds this server's own files, such as the repository's
        /// built agents: then none).
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// List an agent's imports and exports, and what a policy grants of them.
    Inspect {
        /// The agent: a .wasm component or the name of a built agent.
        agent: String,
        /// Judge the imports against this policy (default: a policy that grants nothing).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a PASETO v4.public token for a user, signed with the issuer's key.
    Issue {
        /// The issuer's secret key (from `warden keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The issuer's name (the `iss` claim), as warden.toml lists it.
        #[arg(long)]
        issuer: String,
        /// Who (the `sub` claim).
        #[arg(long)]
        subject: String,
        /// A role of the user (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The audience (the `aud` claim), as warden.toml lists it for the issuer.
        #[arg(long, default_value = "warden")]
        audience: String,
        /// How long it is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        valid_secs: u64,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check that each file is a valid policy; print a located error for each that is not.
    Check {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print what an agent could do for a user: its policy intersected with the user's roles.
    Explain {
        /// The agent's policy.
        policy: PathBuf,
        /// The user: a person of the roles file (`[person.NAME]`), or their roles, comma-separated.
        #[arg(long = "as", value_name = "USER|ROLES")]
        roles: String,
        /// The roles file (default: `host.roles` of the host configuration).
        #[arg(long)]
        roles_file: Option<PathBuf>,
    },
    /// Sign a policy as its reviewer: writes <FILE>.sig beside it.
    Sign {
        /// The policy file.
        file: PathBuf,
        /// The reviewer's secret key (from `warden keygen`).
        #[arg(long)]
        key: PathBuf,
    },
}
