//! `warden run` and `warden batch`: the user a task acts for (from its token), the task's input,
//! the agent's file, and what the CLI prints of a run — the agent's output on stdout, its
//! captured stdout, stderr, logs and the kill reason on stderr, escaped; one JSON line per task
//! for a batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden::bounded::{self, Limit};
use warden::policy::{HostConfig, Policy};
use warden::terminal;
use warden::user::User;
use warden::{Outcome, RunOptions, RunReport, Runtime};

use super::{
    EXIT_AGENT_ERROR, EXIT_ESCALATED, EXIT_KILLED, Failure, bad_input, host_failure, load_policy,
};

/// The arguments of `warden run` besides its policy and token.
pub struct RunArgs {
    /// The agent: a file or the name of a built agent.
    pub agent: String,
    /// The task: JSON, or @FILE.
    pub input: String,
    /// The workspace folder.
    pub workspace: PathBuf,
    /// Print the report as JSON.
    pub json: bool,
}

/// `warden run`: one task, its report printed, its exit code returned.
pub async fn run(
    runtime: &Runtime,
    policy: Policy,
    user: Option<Arc<User>>,
    args: RunArgs,
) -> Result<u8, Failure> {
    let task = read_input(&args.input)?;
    let path = resolve_agent(&args.agent).map_err(bad_input)?;
    let loaded = runtime.load_file(&path, policy).map_err(bad_input)?;
    let options = RunOptions {
        workspace: Some(args.workspace),
        user,
        on_begin: None,
        queued: None,
        client: None,
    };
    let report = loaded.run(&task, &options).await.map_err(|e| match e {
        warden::RunError::Ledger(_) => host_failure(e),
        e => bad_input(e),
    })?;
    print_report(&report, args.json)?;
    Ok(exit_code(&report.outcome))
}

fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Completed { .. } => 0,
        Outcome::AgentError { .. } => EXIT_AGENT_ERROR,
        Outcome::Killed { .. } => EXIT_KILLED,
        Outcome::Escalated { .. } => EXIT_ESCALATED,
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

/// `warden batch`: one task per line of `file` (or stdin for `-`), one JSON result per line on
/// stdout, saying what `run --json` says of the outcome. Each line is read with a bound; the
/// batch ends early when nobody reads its results any more.
pub async fn batch(runtime: &Runtime, file: &Path, user: Option<Arc<User>>) -> Result<u8, Failure> {
    let reader: Box<dyn std::io::BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(
            |e| {
                bad_input(anyhow::anyhow!(
                    "cannot open the batch file {}: {e}",
                    super::shown(file)
                ))
            },
        )?))
    };
    let name = if file == Path::new("-") {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    let mut loaded: std::collections::HashMap<(String, PathBuf), warden::LoadedAgent> =
        std::collections::HashMap::new();
    let mut worst = 0;
    for line in bounded::lines(reader, &name, Limit::BATCH_LINE) {
        let (n, line) = line.map_err(bad_input)?;
        if line.trim().is_empty() {
            continue;
        }
        let spec: BatchTask = serde_json::from_str(&line)
            .map_err(|e| bad_input(anyhow::anyhow!("{name}:{n}: not a batch task: {e}")))?;
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
            on_begin: None,
            queued: None,
            client: None,
        };
        let report = agent
            .run(&spec.input.to_string(), &options)
            .await
            .map_err(host_failure)?;
        let result = batch_result(n, &report);
        outln!("{}", terminal::json_line(&result).map_err(host_failure)?)?;
        worst = worst.max(exit_code(&report.outcome));
        if terminal::stdout_closed() {
            // Nobody reads the results: running more tasks would do work no one sees.
            break;
        }
    }
    Ok(worst)
}

/// A batch's result line: the line number, the task, its outcome as `run --json` gives it
/// (`status`, and `output`, `kind` and `message`, or `reason`, `capability` and `detail`), the
/// staging disposition and the trust level.
fn batch_result(line: usize, report: &RunReport) -> serde_json::Value {
    let mut result = serde_json::json!({
        "line": line,
        "task": report.task,
        "agent": report.agent,
    });
    let fields = result.as_object_mut().expect("an object");
    if let Ok(serde_json::Value::Object(outcome)) = serde_json::to_value(&report.outcome) {
        fields.extend(outcome);
    }
    fields.insert("staging".into(), serde_json::json!(report.staging));
    fields.insert("level".into(), serde_json::json!(report.level));
    if let Some(model) = &report.model {
        fields.insert("model".into(), serde_json::json!(model));
    }
    result
}

/// The user a run acts for: from its token, or the host's development identity. No token, no
/// run, on a host that lists token issuers; a host with no configuration runs for no user. An
/// empty token (`--token ""`, `WARDEN_TOKEN=`) is no token.
pub fn acting_user(config: &HostConfig, token: Option<&str>) -> Result<Option<Arc<User>>, Failure> {
    let identity = match token.filter(|t| !t.trim().is_empty()) {
        Some(t) => {
            let text = match t.strip_prefix('@') {
                Some(file) => {
                    bounded::read_to_string(Path::new(file), Limit::TOKEN).map_err(bad_input)?
                }
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
    let roles_file = super::load_roles(config.roles.as_deref())?;
    let user = User::new(&subject, roles, &roles_file)
        .map_err(|e| bad_input(anyhow::anyhow!(terminal::line(&e.to_string()).into_owned())))?;
    Ok(Some(Arc::new(user)))
}

fn read_input(input: &str) -> Result<String, Failure> {
    let text = match input.strip_prefix('@') {
        Some(file) => {
            bounded::read_to_string(Path::new(file), Limit::TASK_INPUT).map_err(bad_input)?
        }
        None => input.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
        bad_input(anyhow::anyhow!(
            "--input is not JSON ({e}); quote text as '\"text\"' or pass @FILE"
        ))
    })?;
    Ok(text)
}

/// The component file of `agent`: a path, or the name of an agent built in
/// `target/wasm32-wasip2/release`.
pub fn resolve_agent(agent: &str) -> anyhow::Result<PathBuf> {
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

fn print_report(report: &RunReport, json: bool) -> Result<(), Failure> {
    if json {
        return outln!("{}", terminal::json_pretty(report).map_err(host_failure)?);
    }
    for (name, bytes) in [
        ("stdout", &report.output.stdout),
        ("stderr", &report.output.stderr),
    ] {
        if !bytes.is_empty() {
            errln!(
                "[agent {name}] {}",
                terminal::block(&String::from_utf8_lossy(bytes))
            );
        }
    }
    for rec in &report.output.logs {
        errln!("[agent log {}] {}", rec.level, terminal::line(&rec.message));
    }
    match &report.outcome {
        Outcome::Completed { output } => {
            outln!("{}", terminal::block(output))?;
            if report.staging == warden::StagingDisposition::Proposed {
                errln!(
                    "proposed: the agent is at trust level {}, so its file changes wait for a reviewer (warden task diff {id} | task apply {id} --key … | task discard {id})",
                    report.level.unwrap_or(1),
                    id = report.task
                );
            }
            if let Some(applied) = &report.applied
                && (!applied.written.is_empty() || !applied.removed.is_empty())
            {
                errln!(
                    "applied: {} written, {} removed",
                    applied.written.len(),
                    applied.removed.len()
                );
            }
        }
        Outcome::AgentError { kind, message } => {
            errln!("agent error ({kind}): {}", terminal::line(message));
        }
        Outcome::Escalated { reason, detail } => {
            errln!(
                "escalated: {}: {} (warden task show {})",
                terminal::line(reason),
                terminal::line(detail),
                report.task
            );
        }
        Outcome::Killed {
            reason,
            capability,
            detail,
        } => {
            errln!(
                "killed: {reason} ({}): {}",
                terminal::line(capability),
                terminal::line(detail)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_token_is_no_token() {
        let with_issuer = HostConfig {
            issuers: vec![warden::policy::Issuer {
                name: "sso".into(),
                key: warden::identity::SecretKey::generate().unwrap().public(),
                audience: "warden".into(),
            }],
            ..HostConfig::default()
        };
        for empty in [None, Some(""), Some("   "), Some("\n")] {
            let e = acting_user(&with_issuer, empty).expect_err("refused");
            let text = e.error.to_string();
            assert!(text.starts_with("no identity token"), "{empty:?}: {text}");
        }
        // The deny twin: a token that is there but is not one is malformed, not missing.
        let e = acting_user(&with_issuer, Some("v4.public.xyz")).expect_err("refused");
        assert!(e.error.to_string().contains("malformed"), "{}", e.error);
        // On a host without issuers an empty token runs for no user, as no token does.
        assert!(
            acting_user(&HostConfig::default(), Some(""))
                .unwrap()
                .is_none()
        );
    }
}
