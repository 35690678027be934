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

/// mimalloc for small blocks, the system's allocator for large ones (`warden::alloc` says why).
#[global_allocator]
static ALLOCATOR: warden::alloc::HostAllocator = warden::alloc::HostAllocator;

#[path = "cli/approve.rs"]
mod approve_cli;
#[path = "cli/args.rs"]
mod args;
#[path = "cli/audit.rs"]
mod audit_cli;
#[path = "cli/cascade.rs"]
mod cascade_cli;
#[path = "cli/inspect.rs"]
mod inspect_cli;
#[path = "cli/ledger.rs"]
mod ledger_cli;
#[path = "cli/mcp.rs"]
mod mcp_cli;
#[path = "cli/memory.rs"]
mod memory_cli;
#[path = "cli/policy.rs"]
mod policy_cli;
#[path = "cli/run.rs"]
mod run_cli;
#[path = "cli/serve.rs"]
mod serve_cli;
#[path = "cli/stats.rs"]
mod stats_cli;
#[path = "cli/task.rs"]
mod task_cli;
#[path = "cli/trust.rs"]
mod trust_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::{Cli, Command, LogFormat, PolicyCommand, TokenCommand};
use clap::Parser;
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
const EXIT_ESCALATED: u8 = 4;
const EXIT_HOST: u8 = 70;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    // `warden mcp` serves one client over stdio: one worker thread answers its calls about 15%
    // sooner than two (no wake-ups across threads, no TLB shoot-downs for the guest's page
    // faults; `WARDEN_BENCH_ONLY=mcp`), and runs still interleave (a run yields at every epoch
    // tick). Everything else uses a worker per core.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Mcp { .. }) {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_HOST);
        }
    };
    let ended = host_config(&cli).and_then(|config| {
        let telemetry = init_logging(cli.log_format, &config, &runtime)?;
        let ended = runtime.block_on(dispatch(cli, config));
        // Off the runtime's tasks, with the runtime alive: the last spans go out on it.
        telemetry.shutdown();
        ended
    });
    match ended {
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

/// The host configuration `--config` names, or the defaults.
fn host_config(cli: &Cli) -> Result<HostConfig, Failure> {
    match &cli.config {
        Some(path) => {
            HostConfig::load(path).map_err(|e| bad_input(anyhow::anyhow!("{}", policy_message(&e))))
        }
        None => Ok(HostConfig::default()),
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

async fn dispatch(cli: Cli, host_config: HostConfig) -> Result<u8, Failure> {
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.clone().or_else(default_cache_dir)
    };
    let config = EngineConfig {
        cache_dir,
        ..EngineConfig::default()
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
                let rt = rt
                    .with_host_config(host_config.clone())
                    .with_tls_ca(&host_config.tls_ca)
                    .map_err(bad_input)?
                    .with_secrets(secrets);
                if host_config.models.is_empty() {
                    return Ok(rt);
                }
                // Keys are read now: a missing one is a clear error before any task runs.
                let models = warden::orchestra::model::Models::from_config(&host_config, rt.tls())
                    .map_err(bad_input)?;
                Ok(rt.with_models(models))
            })
    };
    let data_dir = ledger_cli::data_dir(cli.data_dir.clone(), &host_config);
    match cli.command {
        Command::Task { command } if command.is_cascade() => {
            let runtime = open_host(&data_dir, &host_config, || new_runtime(config))?;
            cascade_cli::task(&runtime, &host_config, command).await
        }
        Command::Task { command } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            task_cli::task(&ledger, &host_config, command)
        }
        Command::Memory { command } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            memory_cli::memory(&ledger, &host_config, command)
        }
        Command::Stats { limit, json } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            let tasks = ledger.store().tasks(limit).map_err(host_failure)?;
            stats_cli::stats(&ledger, &tasks, json)
        }
        Command::Trust { command } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            trust_cli::trust(&ledger, &host_config, command)
        }
        Command::Approve {
            sign: Some(action),
            key,
            save,
            approver,
            roles_file,
            ..
        } => approve_cli::sign_listed(
            &host_config,
            &action,
            key.as_deref(),
            save.as_deref(),
            approver,
            roles_file.as_deref(),
        ),
        Command::Approve {
            id,
            key,
            save,
            submit,
            list,
            roles_file,
            ..
        } => {
            let ledger = ledger_cli::open(&data_dir, &host_config)?;
            approve_cli::approve(
                &ledger,
                &host_config,
                approve_cli::ApproveArgs {
                    id,
                    key,
                    save,
                    submit,
                    list,
                    roles_file,
                },
            )
        }
        Command::Audit { command } => audit_cli::audit(&data_dir, command),
        Command::Batch { file, token } => {
            let runtime = open_host(&data_dir, &host_config, || new_runtime(config))?;
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
            let runtime = open_host(&data_dir, &host_config, || new_runtime(config))?;
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
        Command::Serve { listen, grace_secs } => {
            let runtime = open_host(&data_dir, &host_config, || new_runtime(config))?;
            let grace = std::time::Duration::from_secs(grace_secs);
            let args = serve_cli::ServeArgs { listen, grace };
            serve_cli::serve(runtime, &host_config, &data_dir, args).await
        }
        Command::Mcp { token, workspace } => {
            let runtime = open_host(&data_dir, &host_config, || new_runtime(config))?;
            let args = mcp_cli::McpArgs { token, workspace };
            mcp_cli::mcp(runtime, &host_config, &data_dir, args).await
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

/// The host that runs tasks: the runtime `new_runtime` builds, with the ledger and the memory of
/// `data_dir`. The runtime (its engine reserves and guards a fiber stack for every instance
/// slot, ~4 ms) is built on a thread of its own while this one opens the ledger and the memory
/// (~2.5 ms), so a start waits for the longer of the two, not their sum. A ledger that cannot
/// be opened is the error reported first, as when they were opened one after the other.
fn open_host(
    data_dir: &Path,
    host_config: &HostConfig,
    new_runtime: impl FnOnce() -> Result<Runtime, Failure> + Send,
) -> Result<Runtime, Failure> {
    // The runtime may start tasks on the async runtime (a model provider's client): its thread
    // enters it as this one has.
    let handle = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        let building = std::thread::Builder::new()
            .name("warden-start".into())
            .spawn_scoped(scope, move || {
                let _entered = handle.enter();
                new_runtime()
            })
            .map_err(|e| host_failure(anyhow::anyhow!("cannot start a thread: {e}")))?;
        let opened = ledger_cli::open(data_dir, host_config).and_then(|ledger| {
            let ledger = Arc::new(ledger);
            memory_cli::open(&ledger).map(|memory| (ledger, memory))
        });
        let built = building.join().unwrap_or_else(|_| {
            Err(host_failure(anyhow::anyhow!(
                "building the runtime panicked"
            )))
        });
        let (ledger, memory) = opened?;
        let runtime = built?.with_ledger(ledger).with_memory(memory);
        // On the core the engine's build has just left; the first contract needs it.
        warden::warm_meta_schema();
        Ok(runtime)
    })
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

/// The host's logs (`--log-format`, else `[log] format`) and, when `[telemetry] otlp` is set,
/// its trace export, which runs on `runtime` (`warden::telemetry`).
fn init_logging(
    flag: Option<LogFormat>,
    config: &HostConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<warden::telemetry::Telemetry, Failure> {
    let format = match flag {
        Some(LogFormat::Text) => warden::policy::LogFormat::Text,
        Some(LogFormat::Json) => warden::policy::LogFormat::Json,
        None => config.telemetry.log_format,
    };
    warden::telemetry::install(&config.telemetry, format, runtime.handle().clone())
        .map_err(bad_input)
}
