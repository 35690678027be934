//! `warden`: the command-line host.
//!
//! Exit codes: 0 the agent completed; 1 the agent returned an error; 2 bad input (usage, a
//! malformed policy, a refused or unreadable agent, bad `--input`); 3 the instance was killed;
//! 70 the host itself failed.
//!
//! Everything a command prints goes through [`outln!`] / [`errln!`] (a reader that closes stdout
//! ends the output quietly) and every string that did not come from this binary goes through
//! `warden::terminal`'s escaping first: agents, tokens, policies, file names and tools can all
//! hold bytes that drive a terminal.

/// Print a line on stdout (`warden::terminal::stdout`: a closed pipe ends the output, it is not
/// an error); evaluates to `Result<(), Failure>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        ::std::io::Write::write_fmt(
            &mut ::warden::terminal::stdout(),
            format_args!("{}\n", format_args!($($arg)*)),
        )
        .map_err($crate::host_failure)
    };
}

/// Print a line on stderr; a failure to write there has nowhere else to be reported.
macro_rules! errln {
    ($($arg:tt)*) => {{
        let _ = ::std::io::Write::write_fmt(
            &mut ::warden::terminal::stderr(),
            format_args!("{}\n", format_args!($($arg)*)),
        );
    }};
}

#[path = "cli/inspect.rs"]
mod inspect_cli;
#[path = "cli/ledger.rs"]
mod ledger_cli;
#[path = "cli/policy.rs"]
mod policy_cli;
#[path = "cli/run.rs"]
mod run_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;
use warden::capabilities::tools::ToolRegistry;
use warden::identity::SecretKey;
use warden::policy::keys::Domain;

use warden::policy::{HostConfig, Policy, Roles};
use warden::secrets::SecretStore;
use warden::terminal;
use warden::user::User;
use warden::{EngineConfig, PolicyLoadError, Runtime};

const EXIT_AGENT_ERROR: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_KILLED: u8 = 3;
const EXIT_HOST: u8 = 70;

/// Warden: run AI agents as capability-restricted WebAssembly components.
#[derive(Parser)]
#[command(name = "warden", version, about)]
struct Cli {
    /// Log format for the host's own structured logs (on stderr; level from WARDEN_LOG, default warn).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Folder for compiled components (default: $XDG_CACHE_HOME/warden or ~/.cache/warden).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the compiled-component cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// The host configuration (trusted and revoked keys, signature requirements). Without it the
    /// host trusts no key and requires only the signatures that policies pin.
    #[arg(long, global = true, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory: tasks, trust records, approvals, staging and the audit log
    /// (default: host.data_dir, else $XDG_STATE_HOME/warden or ~/.local/state/warden).
    #[arg(long, global = true, env = "WARDEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
        command: ledger_cli::TaskCommand,
    },
    /// The trust ladder: levels, review and reinstatement of demoted agents, regressions.
    Trust {
        #[command(subcommand)]
        command: ledger_cli::TrustCommand,
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
        command: ledger_cli::AuditCommand,
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
enum TokenCommand {
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
enum PolicyCommand {
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_HOST);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // An error can quote a policy value, a file name or a guest's text. Escaped as a
            // block: a policy diagnostic spans lines and stays readable, and nothing in it
            // drives the terminal.
            errln!(
                "error: {}",
                terminal::block(&format!("{:#}", failure.error))
            );
            ExitCode::from(failure.code)
        }
    }
}

/// Help, the version, or a usage error. A usage error quotes the arguments, which can be a file
/// name from anywhere: clap's own (coloured) rendering only when it holds nothing to escape.
fn usage(e: &clap::Error) -> ExitCode {
    let plain = e.render().to_string();
    let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_BAD_INPUT));
    match terminal::block(&plain) {
        std::borrow::Cow::Borrowed(_) => {
            // clap writes to the stream it chose; a closed pipe there is the end of the output.
            let _ = e.print();
        }
        escaped if e.use_stderr() => errln!("{}", escaped.trim_end()),
        escaped => {
            let _ = outln!("{}", escaped.trim_end());
        }
    }
    code
}

#[derive(Debug)]
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn bad_input(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_BAD_INPUT,
        error: error.into(),
    }
}

fn host_failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_HOST,
        error: error.into(),
    }
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.clone().or_else(default_cache_dir)
    };
    let config = EngineConfig {
        cache_dir,
        ..EngineConfig::default()
    };
    let host_config = match &cli.config {
        Some(path) => HostConfig::load(path)
            .map_err(|e| bad_input(anyhow::anyhow!("{}", policy_message(&e))))?,
        None => HostConfig::default(),
    };
    let new_runtime = |config: EngineConfig| {
        let config = EngineConfig {
            cache_dir: config.cache_dir.or_else(|| host_config.cache_dir.clone()),
            ..config
        };
        Runtime::new(config, ToolRegistry::with_builtins())
            .map_err(host_failure)
            .and_then(|rt| {
                let secrets = SecretStore::load(&host_config).map_err(bad_input)?;
                Ok(rt
                    .with_host_config(host_config.clone())
                    .with_secrets(secrets))
            })
    };
    let data_dir = ledger_cli::data_dir(cli.data_dir.clone(), &host_config);
    match cli.command {
        Command::Task { command } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            ledger_cli::task(&ledger, &host_config, command)
        }
        Command::Trust { command } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            ledger_cli::trust(&ledger, &host_config, command)
        }
        Command::Approve {
            id,
            key,
            save,
            submit,
            list,
            roles_file,
        } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            ledger_cli::approve(
                &ledger,
                &host_config,
                ledger_cli::ApproveArgs {
                    id,
                    key,
                    save,
                    submit,
                    list,
                    roles_file,
                },
            )
        }
        Command::Audit { command } => ledger_cli::audit(&data_dir, command),
        Command::Batch { file, token } => {
            let ledger = Arc::new(ledger_cli::open(&data_dir, &host_config)?);
            let runtime = new_runtime(config)?.with_ledger(ledger);
            let user = run_cli::acting_user(&host_config, token.as_deref())?;
            run_cli::batch(&runtime, &file, user).await
        }
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => policy_cli::check(&new_runtime(config)?, &files),
        Command::Policy {
            command: PolicyCommand::Sign { file, key },
        } => policy_cli::sign(&file, &key, Domain::Policy, config.max_component_size),
        Command::Sign { agent, key } => {
            policy_cli::sign(&agent, &key, Domain::Agent, config.max_component_size)
        }
        Command::Token {
            command:
                TokenCommand::Issue {
                    key,
                    issuer,
                    subject,
                    roles,
                    audience,
                    valid_secs,
                },
        } => {
            let key = SecretKey::read(&key).map_err(bad_input)?;
            let token = warden::token::issue(
                &key,
                &issuer,
                &subject,
                &roles,
                &audience,
                std::time::Duration::from_secs(valid_secs),
            )
            .map_err(bad_input)?;
            // base64url: nothing in it to escape.
            outln!("{token}")?;
            Ok(0)
        }
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    policy,
                    roles,
                    roles_file,
                },
        } => {
            let runtime = new_runtime(config)?;
            let policy = load_policy(&runtime, &policy)?;
            let roles_file = load_roles(roles_file.as_deref().or(host_config.roles.as_deref()))?;
            // A person of the roles file, by name, or a comma-separated list of roles.
            let (subject, roles) = match roles_file.person(roles.trim()) {
                Some(person) => (person.name.clone(), person.roles.clone()),
                None => (
                    "explain".to_string(),
                    roles
                        .split(',')
                        .map(|r| r.trim().to_string())
                        .filter(|r| !r.is_empty())
                        .collect(),
                ),
            };
            let user = User::new(&subject, roles, &roles_file)
                .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
            policy_cli::explain(&policy, &user)?;
            Ok(0)
        }
        Command::Keygen { stem } => {
            let key = SecretKey::generate().map_err(host_failure)?;
            let (secret, public) = key.write(&stem).map_err(bad_input)?;
            errln!(
                "wrote {} (secret, mode 0600) and {}",
                shown(&secret),
                shown(&public)
            );
            outln!("{}", key.public())?;
            Ok(0)
        }
        Command::Run {
            agent,
            policy,
            input,
            workspace,
            json,
            token,
        } => {
            let ledger = Arc::new(ledger_cli::open(&data_dir, &host_config)?);
            let runtime = new_runtime(config)?.with_ledger(ledger);
            let policy = load_policy(&runtime, &policy)?;
            let user = run_cli::acting_user(&host_config, token.as_deref())?;
            let args = run_cli::RunArgs {
                agent,
                input,
                workspace,
                json,
            };
            run_cli::run(&runtime, policy, user, args).await
        }
        Command::Inspect { agent, policy } => {
            let path = run_cli::resolve_agent(&agent).map_err(bad_input)?;
            let runtime = new_runtime(config)?;
            let policy = match policy {
                Some(p) => load_policy(&runtime, &p)?,
                None => Policy::deny_all("inspect"),
            };
            inspect_cli::inspect(&runtime, &path, policy).await
        }
    }
}

/// A path for a line of output: lossy where it is not UTF-8, escaped (a file name can hold ESC).
fn shown(path: &Path) -> String {
    terminal::line(&path.display().to_string()).into_owned()
}

/// A policy error for the `error: ` line `main` prints: the rendered diagnostic without its own
/// leading `error: `.
fn policy_message(e: &warden::policy::PolicyError) -> String {
    let rendered = e.render(false);
    rendered
        .strip_prefix("error: ")
        .map(str::to_string)
        .unwrap_or(rendered)
}

fn load_roles(path: Option<&Path>) -> Result<Roles, Failure> {
    let path = path.ok_or_else(|| {
        bad_input(anyhow::anyhow!(
            "no roles file: give --roles-file or set host.roles in the host configuration"
        ))
    })?;
    Roles::load(path).map_err(|e| bad_input(anyhow::anyhow!("{}", policy_message(&e))))
}

fn load_policy(runtime: &Runtime, path: &Path) -> Result<Policy, Failure> {
    runtime.load_policy(path).map_err(|e| match e {
        PolicyLoadError::Invalid(e) => bad_input(anyhow::anyhow!("{}", policy_message(&e))),
        other => bad_input(other),
    })
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("warden"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/warden"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Log events quote agent names, refusals and kill details: each line is escaped.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || terminal::LogStderr {
            ansi,
            json: matches!(format, LogFormat::Json),
        });
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
