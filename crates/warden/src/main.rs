//! `warden`: the command-line host.
//!
//! Exit codes: 0 the agent completed; 1 the agent returned an error; 2 bad input (usage, a
//! malformed policy, a refused or unreadable agent, bad `--input`); 3 the instance was killed;
//! 70 the host itself failed.

#[path = "cli/ledger.rs"]
mod ledger_cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;
use warden::capabilities::tools::ToolRegistry;
use warden::identity::SecretKey;
use warden::policy::keys::Domain;

use warden::policy::{HostConfig, Policy, Roles};
use warden::secrets::SecretStore;
use warden::user::User;
use warden::{EngineConfig, Outcome, PolicyLoadError, RunOptions, Runtime};

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
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_HOST);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

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
            let user = acting_user(&host_config, token.as_deref())?;
            batch(&runtime, &file, user).await
        }
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => Ok(policy_check(&new_runtime(config)?, &files)),
        Command::Policy {
            command: PolicyCommand::Sign { file, key },
        } => sign(&file, &key, Domain::Policy),
        Command::Sign { agent, key } => sign(&agent, &key, Domain::Agent),
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
            println!("{token}");
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
            explain(&policy, &user);
            Ok(0)
        }
        Command::Keygen { stem } => {
            let key = SecretKey::generate().map_err(host_failure)?;
            let (secret, public) = key.write(&stem).map_err(bad_input)?;
            eprintln!(
                "wrote {} (secret, mode 0600) and {}",
                secret.display(),
                public.display()
            );
            println!("{}", key.public());
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
            let user = acting_user(&host_config, token.as_deref())?;
            let task = read_input(&input).map_err(bad_input)?;
            let path = resolve_agent(&agent).map_err(bad_input)?;
            let loaded = runtime.load_file(&path, policy).map_err(bad_input)?;
            let options = RunOptions {
                workspace: Some(workspace),
                user,
            };
            let report = loaded.run(&task, &options).await.map_err(|e| match e {
                warden::RunError::Ledger(_) => host_failure(e),
                e => bad_input(e),
            })?;
            print_report(&report, json).map_err(host_failure)?;
            Ok(match report.outcome {
                Outcome::Completed { .. } => 0,
                Outcome::AgentError { .. } => EXIT_AGENT_ERROR,
                Outcome::Killed { .. } => EXIT_KILLED,
            })
        }
        Command::Inspect { agent, policy } => {
            let path = resolve_agent(&agent).map_err(bad_input)?;
            let runtime = new_runtime(config)?;
            let policy = match policy {
                Some(p) => load_policy(&runtime, &p)?,
                None => Policy::deny_all("inspect"),
            };
            inspect(&runtime, &path, policy).await
        }
    }
}

/// One line of a `warden batch` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchTask {
    agent: String,
    policy: PathBuf,
    #[serde(default)]
    input: serde_json::Value,
    workspace: Option<PathBuf>,
}

async fn batch(runtime: &Runtime, file: &Path, user: Option<Arc<User>>) -> Result<u8, Failure> {
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))
                .map_err(bad_input)?,
        ))
    };
    let mut loaded: std::collections::HashMap<(String, PathBuf), warden::LoadedAgent> =
        std::collections::HashMap::new();
    let mut worst = 0;
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(bad_input)?;
        if line.trim().is_empty() {
            continue;
        }
        let spec: BatchTask = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a batch task", file.display(), n + 1))
            .map_err(bad_input)?;
        let key = (spec.agent.clone(), spec.policy.clone());
        if !loaded.contains_key(&key) {
            let policy = load_policy(runtime, &spec.policy)?;
            let path = resolve_agent(&spec.agent).map_err(bad_input)?;
            let agent = runtime.load_file(&path, policy).map_err(bad_input)?;
            loaded.insert(key.clone(), agent);
        }
        let agent = &loaded[&key];
        let options = RunOptions {
            workspace: Some(spec.workspace.unwrap_or_else(|| PathBuf::from("."))),
            user: user.clone(),
        };
        let report = agent
            .run(&spec.input.to_string(), &options)
            .await
            .map_err(host_failure)?;
        let mut out = std::io::stdout().lock();
        let status = warden::outcome_name(&report.outcome);
        writeln!(
            out,
            "{}",
            serde_json::json!({"line": n + 1, "task": report.task, "status": status, "staging": report.staging})
        )
        .and_then(|()| out.flush())
        .map_err(host_failure)?;
        worst = worst.max(match report.outcome {
            Outcome::Completed { .. } => 0,
            Outcome::AgentError { .. } => EXIT_AGENT_ERROR,
            Outcome::Killed { .. } => EXIT_KILLED,
        });
    }
    Ok(worst)
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

/// The user a run acts for: from its token, or the host's development identity. No token, no
/// run, on a host that lists token issuers; a host with no configuration runs for no user.
fn acting_user(config: &HostConfig, token: Option<&str>) -> Result<Option<Arc<User>>, Failure> {
    let identity = match token {
        Some(t) => {
            let text = match t.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read token file {file}"))
                    .map_err(bad_input)?,
                None => t.to_string(),
            };
            let id = warden::token::verify(&text, config).map_err(bad_input)?;
            Some((id.subject, id.roles))
        }
        None => match &config.dev_identity {
            Some(dev) => Some((dev.subject.clone(), dev.roles.clone())),
            None if !config.issuers.is_empty() => {
                return Err(bad_input(anyhow::anyhow!(
                    "no identity token: this host requires one (--token or WARDEN_TOKEN)"
                )));
            }
            None => None,
        },
    };
    let Some((subject, roles)) = identity else {
        return Ok(None);
    };
    let roles_file = load_roles(config.roles.as_deref())?;
    let user =
        User::new(&subject, roles, &roles_file).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    Ok(Some(Arc::new(user)))
}

fn explain(policy: &Policy, user: &User) {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "nothing".to_string()
        } else {
            v.join(", ")
        }
    };
    println!(
        "agent `{}` acting for {} with roles [{}]",
        policy.agent.name,
        user.subject,
        user.roles.join(", ")
    );
    println!(
        "an action is allowed only if the agent's policy AND one of the user's roles allow it\n"
    );
    println!("files");
    println!(
        "  agent read:  {}",
        list(
            policy
                .fs
                .read
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        )
    );
    println!(
        "  agent write: {}",
        list(
            policy
                .fs
                .write
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        )
    );
    for (i, r) in user.grant.roles().iter().enumerate() {
        println!(
            "  role {} read:  {}",
            user.roles.get(i).map_or("?", String::as_str),
            list(r.fs.read.iter().map(|p| p.as_str().to_string()).collect())
        );
        println!(
            "  role {} write: {}",
            user.roles.get(i).map_or("?", String::as_str),
            list(r.fs.write.iter().map(|p| p.as_str().to_string()).collect())
        );
    }
    println!("network");
    println!(
        "  agent: {}",
        list(policy.net.allow.iter().map(ToString::to_string).collect())
    );
    for (i, r) in user.grant.roles().iter().enumerate() {
        println!(
            "  role {}: {}",
            user.roles.get(i).map_or("?", String::as_str),
            list(r.net.allow.iter().map(ToString::to_string).collect())
        );
    }
    println!("tools (effective)");
    let tools: Vec<String> = policy
        .tools
        .allow
        .iter()
        .filter(|t| user.grant.allows_tool(t))
        .cloned()
        .collect();
    println!("  {}", list(tools));
    let l = user.grant.limit(&policy.limits);
    println!("limits (effective)");
    println!(
        "  memory {} bytes, tables {}, cpu {:?}, wall {:?}, output {} bytes",
        l.memory, l.tables, l.cpu, l.wall, l.output
    );
}

fn load_policy(runtime: &Runtime, path: &Path) -> Result<Policy, Failure> {
    runtime.load_policy(path).map_err(|e| match e {
        PolicyLoadError::Invalid(e) => bad_input(anyhow::anyhow!("{}", policy_message(&e))),
        other => bad_input(other),
    })
}

fn sign(file: &Path, key: &Path, domain: Domain) -> Result<u8, Failure> {
    let key = SecretKey::read(key).map_err(bad_input)?;
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(bad_input)?;
    if domain == Domain::Policy {
        // Sign only what would load: a reviewer's signature on a broken policy helps nobody.
        let text = String::from_utf8_lossy(&bytes);
        Policy::parse(&file.display().to_string(), &text)
            .map_err(|e| bad_input(anyhow::anyhow!("{}", policy_message(&e))))?;
    }
    let sig = key
        .sign(domain, &bytes)
        .write_beside(file)
        .map_err(host_failure)?;
    println!(
        "signed {} as {} with {}: {}",
        file.display(),
        domain.as_str(),
        key.public(),
        sig.display()
    );
    Ok(0)
}

fn policy_check(runtime: &Runtime, files: &[PathBuf]) -> u8 {
    let mut failed = 0;
    for file in files {
        // A roles file is checked as one (its sections are a policy's, under [role.NAME]).
        if file.file_name().is_some_and(|n| n == "roles.toml") {
            match Roles::load(file) {
                Ok(_) => println!("ok: {} (roles)", file.display()),
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "{}",
                        e.render(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    );
                }
            }
            continue;
        }
        match runtime.load_policy(file) {
            Ok(p) => println!("ok: {} (agent `{}`)", file.display(), p.agent.name),
            Err(PolicyLoadError::Signature(e)) => {
                failed += 1;
                eprintln!("error: {e}");
            }
            Err(PolicyLoadError::Invalid(e)) => {
                failed += 1;
                eprintln!(
                    "{}",
                    e.render(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                );
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} policies failed", files.len());
        EXIT_BAD_INPUT
    } else {
        0
    }
}

async fn inspect(runtime: &Runtime, path: &Path, policy: Policy) -> Result<u8, Failure> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(bad_input)?;
    let component = runtime.engine().compile(&bytes).map_err(bad_input)?;
    let engine = runtime.engine().engine();
    println!("agent: {}", path.display());
    println!(
        "policy: {} (agent `{}`, strict = {})",
        policy.source, policy.agent.name, policy.agent.strict
    );
    println!("\nimports:");
    let reports = warden::imports::report(engine, &component, &policy);
    for r in &reports {
        let class = match r.class {
            warden::imports::ImportClass::Baseline => "baseline".to_string(),
            warden::imports::ImportClass::Capability(c) => {
                format!("capability ({})", c.policy_key())
            }
            warden::imports::ImportClass::Unknown => "UNKNOWN to this host".to_string(),
        };
        let verdict =
            if r.granted && !r.has_functions && r.class != warden::imports::ImportClass::Baseline {
                "types only: no grant needed"
            } else if r.granted {
                "granted"
            } else if r.class == warden::imports::ImportClass::Unknown {
                "refused at load"
            } else if policy.agent.strict {
                "refused at load (strict)"
            } else {
                "kills on first call"
            };
        println!("  {:<45} {:<40} {}", r.name, class, verdict);
    }
    println!("\nexports:");
    for (name, _) in component.component_type().exports(engine) {
        println!("  {name}");
    }
    match runtime.load(&bytes, policy) {
        Ok(agent) => match agent.describe().await {
            Ok(d) => {
                println!("\ndescribe: {} {} — {}", d.name, d.version, d.summary);
                println!("  accepts: {}\n  returns: {}", d.accepts, d.returns);
                Ok(0)
            }
            Err(e) => {
                println!("\ndescribe failed: {e}");
                Ok(EXIT_BAD_INPUT)
            }
        },
        Err(e) => {
            println!("\nload: {e}");
            Ok(EXIT_BAD_INPUT)
        }
    }
}

fn read_input(input: &str) -> anyhow::Result<String> {
    let text = match input.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --input file {file}"))?,
        None => input.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
        anyhow::anyhow!("--input is not JSON ({e}); quote text as '\"text\"' or pass @FILE")
    })?;
    Ok(text)
}

fn resolve_agent(agent: &str) -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from(agent);
    if direct.is_file() {
        return Ok(direct);
    }
    let is_name = !agent.contains('/') && !agent.ends_with(".wasm");
    if is_name {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from);
        let built = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", agent.replace('-', "_")));
        if built.is_file() {
            return Ok(built);
        }
        anyhow::bail!(
            "no agent `{agent}`: neither a file nor {} (build it with `cargo build --release --target wasm32-wasip2 -p {agent}`)",
            built.display()
        );
    }
    anyhow::bail!("no agent file at {agent}")
}

fn print_report(report: &warden::RunReport, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    for (name, bytes) in [
        ("stdout", &report.output.stdout),
        ("stderr", &report.output.stderr),
    ] {
        if !bytes.is_empty() {
            writeln!(
                err,
                "[agent {name}] {}",
                sanitize(&String::from_utf8_lossy(bytes))
            )?;
        }
    }
    for rec in &report.output.logs {
        writeln!(err, "[agent log {}] {}", rec.level, sanitize(&rec.message))?;
    }
    match &report.outcome {
        Outcome::Completed { output } => {
            writeln!(out, "{}", sanitize(output))?;
            if report.staging == warden::StagingDisposition::Proposed {
                writeln!(
                    err,
                    "proposed: the agent is at trust level {}, so its file changes wait for a reviewer (warden task diff {id} | task apply {id} --key … | task discard {id})",
                    report.level.unwrap_or(1),
                    id = report.task
                )?;
            }
            if let Some(applied) = &report.applied
                && (!applied.written.is_empty() || !applied.removed.is_empty())
            {
                writeln!(
                    err,
                    "applied: {} written, {} removed",
                    applied.written.len(),
                    applied.removed.len()
                )?;
            }
        }
        Outcome::AgentError { kind, message } => {
            writeln!(err, "agent error ({kind}): {}", sanitize(message))?;
        }
        Outcome::Killed {
            reason,
            capability,
            detail,
        } => {
            writeln!(err, "killed: {reason} ({capability}): {}", sanitize(detail))?;
        }
    }
    Ok(())
}

/// Escape control characters so that agent output cannot drive the operator's terminal.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
