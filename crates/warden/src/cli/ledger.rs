//! The CLI's commands over the host's data directory: `warden task`, `warden trust`,
//! `warden approve` and `warden audit`. Each opens the ledger, does one thing, and leaves an
//! audit record for every decision it makes.
//!
//! What they print came from agents (trace calls, kill details, tool inputs, staged file names
//! and contents), tokens (subjects), policies and roles files (names): every such field is
//! escaped by `warden::terminal`, JSON included.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use warden::approval::Approval;
use warden::audit::AuditEvent;
use warden::bounded::{self, Limit};
use warden::identity::SecretKey;
use warden::ledger::Ledger;
use warden::policy::keys::Domain;
use warden::policy::{HostConfig, Person, Roles};
use warden::staging::Staging;
use warden::store::{TaskRecord, TrustRecord};
use warden::terminal::{self, line};
use warden::trust::Ladder;

use super::{Failure, bad_input, host_failure, shown};

/// `warden task …`
#[derive(Subcommand)]
pub enum TaskCommand {
    /// The newest tasks, one line each.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// One task: agent, user, grant, outcome, staging (JSON).
    Show {
        /// The task id.
        id: u64,
    },
    /// The task's trace: every gate decision, with its duration.
    Trace {
        /// The task id.
        id: u64,
    },
    /// The changes a task proposed (its staging area against the workspace).
    Diff {
        /// The task id.
        id: u64,
    },
    /// Apply a task's proposed changes to the workspace (a reviewer signs with their key).
    Apply {
        /// The task id.
        id: u64,
        /// The reviewer's secret key; their person in the roles file needs a role with
        /// `review = true`.
        #[arg(long)]
        key: PathBuf,
        /// The roles file (default: `host.roles`).
        #[arg(long)]
        roles_file: Option<PathBuf>,
    },
    /// Throw a task's proposed changes away.
    Discard {
        /// The task id.
        id: u64,
    },
}

/// `warden trust …`
#[derive(Subcommand)]
pub enum TrustCommand {
    /// Every agent's level.
    List,
    /// Show the trace that demoted an agent and the review code that reinstating needs.
    Review {
        /// The agent: its name or full id (`<publisher>/<name>`).
        agent: String,
    },
    /// Restore a demoted agent to its level before the demotion.
    Reinstate {
        /// The agent: its name or full id.
        agent: String,
        /// The reviewer's secret key (a person with a `review = true` role).
        #[arg(long)]
        key: PathBuf,
        /// The code `warden trust review` printed.
        #[arg(long)]
        code: String,
        /// The roles file (default: `host.roles`).
        #[arg(long)]
        roles_file: Option<PathBuf>,
    },
    /// Report a regression found in a task's work: demotes the agent to level 1.
    Report {
        /// The task whose work regressed.
        task: u64,
        /// What regressed.
        #[arg(long)]
        why: String,
    },
}

/// `warden audit …`
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole log (chain, signed checkpoints, anchor) and compare it with the state
    /// store both ways. Read-only. Names the first bad record or disagreement.
    Verify {
        /// The host's public key (default: host.pub in the data directory).
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the last records; with --follow, keep printing new ones.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep following the log.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// The data directory: `--data-dir`, `host.data_dir`, `$XDG_STATE_HOME/warden` or
/// `~/.local/state/warden`.
pub fn data_dir(flag: Option<PathBuf>, config: &HostConfig) -> PathBuf {
    flag.or_else(|| config.data_dir.clone())
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|x| PathBuf::from(x).join("warden")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/warden")))
        .unwrap_or_else(|| PathBuf::from(".warden"))
}

/// Open the ledger of `dir`.
pub fn open(dir: &Path, config: &HostConfig) -> Result<Ledger, Failure> {
    Ledger::open(dir, config.checkpoint_every).map_err(host_failure)
}

fn roles(file: Option<&Path>, config: &HostConfig) -> Result<Roles, Failure> {
    super::load_roles(file.or(config.roles.as_deref()))
}

/// The person whose secret key is at `key`, proven by a signature their public key verifies.
fn person(key: &Path, roles: &Roles, what: &str) -> Result<Person, Failure> {
    let key = SecretKey::read(key).map_err(bad_input)?;
    let public = key.public();
    // Prove possession the same way a remote reviewer would: sign, then verify.
    let sig = key.sign(Domain::Review, what.as_bytes());
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(what.as_bytes()).into();
    let signature: [u8; 64] = warden::policy::keys::from_hex(&sig.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| host_failure(anyhow::anyhow!("signing failed")))?;
    if !public.verifies(Domain::Review, &digest, &signature) {
        return Err(host_failure(anyhow::anyhow!("signing failed")));
    }
    roles.person_with_key(&public).cloned().ok_or_else(|| {
        bad_input(anyhow::anyhow!(
            "key {public} belongs to no person in the roles file; add it as [person.<name>] key = \"{public}\""
        ))
    })
}

fn find_trust(ledger: &Ledger, agent: &str) -> Result<TrustRecord, Failure> {
    let all = ledger.store().trust_all().map_err(host_failure)?;
    let matches: Vec<TrustRecord> = all
        .into_iter()
        .filter(|r| r.agent_id == agent || r.agent_id.rsplit('/').next() == Some(agent))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one")),
        0 => Err(bad_input(anyhow::anyhow!(
            "no trust record for `{agent}`; `warden trust list` shows the agents"
        ))),
        _ => Err(bad_input(anyhow::anyhow!(
            "`{agent}` names several agents; give the full id (`warden trust list`)"
        ))),
    }
}

fn task_line(t: &TaskRecord) -> String {
    let detail = match &t.outcome {
        Some(o) => match o["status"].as_str() {
            Some("killed") => format!(
                "killed: {} ({})",
                o["reason"].as_str().unwrap_or("?"),
                o["capability"].as_str().unwrap_or("?")
            ),
            Some(s) => s.to_string(),
            None => t.status.clone(),
        },
        None => t.status.clone(),
    };
    format!(
        "{:>6}  {:<16} {:<12} level {}  staging {:<9}  {}",
        t.id,
        line(&t.agent),
        line(&t.user),
        t.level,
        line(&t.staging),
        line(&detail)
    )
}

/// `warden task …`
pub fn task(ledger: &Ledger, config: &HostConfig, command: TaskCommand) -> Result<u8, Failure> {
    let store = ledger.store();
    match command {
        TaskCommand::List { limit, json } => {
            for t in store.tasks(limit).map_err(host_failure)? {
                if json {
                    outln!("{}", terminal::json_line(&t).map_err(host_failure)?)?;
                } else {
                    outln!("{}", task_line(&t))?;
                }
            }
            Ok(0)
        }
        TaskCommand::Show { id } => {
            let mut t = store.task(id).map_err(bad_input)?;
            let events = t
                .trace
                .as_ref()
                .and_then(|tr| tr["events"].as_array().map(Vec::len));
            t.trace = events.map(|n| json!(format!("{n} events: `warden task trace {id}`")));
            outln!("{}", terminal::json_pretty(&t).map_err(host_failure)?)?;
            Ok(0)
        }
        TaskCommand::Trace { id } => {
            let t = store.task(id).map_err(bad_input)?;
            print_trace(&t)?;
            Ok(0)
        }
        TaskCommand::Diff { id } => {
            let staging = proposed(ledger, id)?;
            let diff = staging.diff().map_err(host_failure)?;
            // Staged file names and contents are the agent's: a block, escaped.
            let rendered = diff.render(&staging);
            let text = terminal::block(&rendered);
            if !text.is_empty() {
                outln!("{}", text.strip_suffix('\n').unwrap_or(&text))?;
            }
            Ok(0)
        }
        TaskCommand::Apply {
            id,
            key,
            roles_file,
        } => {
            let roles = roles(roles_file.as_deref(), config)?;
            let who = person(&key, &roles, &format!("warden-apply-v1\n{id}\n"))?;
            if !roles.may_review(&who) {
                ledger
                    .record(
                        AuditEvent::new("apply-refused")
                            .task(id)
                            .detail(json!({"person": who.name, "why": "no review role"})),
                    )
                    .map_err(host_failure)?;
                return Err(bad_input(anyhow::anyhow!(
                    "{} holds no role with review = true; only a reviewer may apply a proposal",
                    line(&who.name)
                )));
            }
            let staging = proposed(ledger, id)?;
            ledger
                .record(
                    AuditEvent::new("staging-apply-approved")
                        .task(id)
                        .detail(json!({"reviewer": who.name})),
                )
                .map_err(host_failure)?;
            let changes = staging.apply().map_err(host_failure)?;
            store.set_staging(id, "applied").map_err(host_failure)?;
            ledger
                .record(AuditEvent::new("staging-applied").task(id).detail(json!({
                    "reviewer": who.name,
                    "written": changes.written,
                    "removed": changes.removed,
                })))
                .map_err(host_failure)?;
            outln!(
                "applied task {id}: {} written, {} removed (reviewed by {})",
                changes.written.len(),
                changes.removed.len(),
                line(&who.name)
            )?;
            Ok(0)
        }
        TaskCommand::Discard { id } => {
            let staging = proposed(ledger, id)?;
            staging.discard().map_err(host_failure)?;
            store.set_staging(id, "discarded").map_err(host_failure)?;
            ledger
                .record(AuditEvent::new("staging-discarded").task(id))
                .map_err(host_failure)?;
            outln!("discarded the changes of task {id}")?;
            Ok(0)
        }
    }
}

fn proposed(ledger: &Ledger, id: u64) -> Result<Staging, Failure> {
    let t = ledger.store().task(id).map_err(bad_input)?;
    if t.staging != "proposed" {
        return Err(bad_input(anyhow::anyhow!(
            "task {id} has no proposed changes (its staging is `{}`)",
            line(&t.staging)
        )));
    }
    Staging::open(&ledger.staging_root(id))
        .with_context(|| format!("cannot open the staging area of task {id}"))
        .map_err(host_failure)
}

/// A task's trace, one gate decision a line. The calls quote the agent's arguments (paths,
/// hosts, tool inputs) and the outcome its output or kill detail: all escaped.
fn print_trace(t: &TaskRecord) -> Result<(), Failure> {
    outln!(
        "task {} — agent {} for {} at level {}, {}",
        t.id,
        line(&t.agent),
        line(&t.user),
        t.level,
        line(&t.status)
    )?;
    let Some(trace) = &t.trace else {
        return outln!("(no trace: the task has not ended)");
    };
    for e in trace["events"].as_array().into_iter().flatten() {
        let number = |v: &serde_json::Value| line(&v.to_string()).into_owned();
        outln!(
            "{:>9}us  {:<8} {:<9} {:>6}us  {}",
            number(&e["at_us"]),
            line(e["capability"].as_str().unwrap_or("?")),
            line(e["decision"].as_str().unwrap_or("?")),
            number(&e["duration_us"]),
            line(e["call"].as_str().unwrap_or(""))
        )?;
    }
    if let Some(d) = trace["dropped"].as_u64().filter(|d| *d > 0) {
        outln!("({d} more events not kept)")?;
    }
    if let Some(o) = &t.outcome {
        outln!("outcome: {}", terminal::json_line(o).map_err(host_failure)?)?;
    }
    Ok(())
}

/// `warden trust …`
pub fn trust(ledger: &Ledger, config: &HostConfig, command: TrustCommand) -> Result<u8, Failure> {
    let store = ledger.store();
    match command {
        TrustCommand::List => {
            for r in store.trust_all().map_err(host_failure)? {
                let state = if r.held {
                    format!(
                        "HELD (demoted by task {}: {})",
                        r.demoted_by_task.unwrap_or(0),
                        line(r.demoted_reason.as_deref().unwrap_or("?"))
                    )
                } else {
                    format!("streak {}", r.streak)
                };
                outln!("{:<60} level {}  {}", line(&r.agent_id), r.level, state)?;
            }
            Ok(0)
        }
        TrustCommand::Review { agent } => {
            let r = find_trust(ledger, &agent)?;
            if !r.held {
                outln!("{} is at level {} and not held", line(&r.agent_id), r.level)?;
                return Ok(0);
            }
            let (trace, task) = demoting_trace(ledger, &r)?;
            outln!(
                "{} was demoted from level {}: {}",
                line(&r.agent_id),
                r.level_before,
                line(r.demoted_reason.as_deref().unwrap_or("?"))
            )?;
            if let Some(t) = &task {
                print_trace(t)?;
            }
            let code = Ladder::review_code(&r, &trace);
            ledger
                .record(
                    AuditEvent::new("trust-reviewed")
                        .agent(&r.agent_id)
                        .detail(json!({"task": r.demoted_by_task})),
                )
                .map_err(host_failure)?;
            outln!(
                "\nreview code: {code}\nto reinstate: warden trust reinstate {} --key <reviewer.key> --code {code}",
                line(&agent)
            )?;
            Ok(0)
        }
        TrustCommand::Reinstate {
            agent,
            key,
            code,
            roles_file,
        } => {
            let roles = roles(roles_file.as_deref(), config)?;
            let mut r = find_trust(ledger, &agent)?;
            let who = person(
                &key,
                &roles,
                &format!("warden-reinstate-v1\n{}\n", r.agent_id),
            )?;
            if !roles.may_review(&who) {
                return Err(bad_input(anyhow::anyhow!(
                    "{} holds no role with review = true; only a reviewer may reinstate an agent",
                    line(&who.name)
                )));
            }
            let (trace, _) = demoting_trace(ledger, &r)?;
            let change = Ladder::reinstate(&mut r, &trace, &code, &who.name).map_err(bad_input)?;
            ledger
                .record(
                    AuditEvent::new(change.kind())
                        .agent(&r.agent_id)
                        .detail(json!({"change": change})),
                )
                .map_err(host_failure)?;
            store.put_trust(&r).map_err(host_failure)?;
            outln!(
                "{} reinstated at level {} by {}",
                line(&r.agent_id),
                r.level,
                line(&who.name)
            )?;
            Ok(0)
        }
        TrustCommand::Report { task, why } => {
            let t = store.task(task).map_err(bad_input)?;
            let mut r = store
                .trust(&t.agent_id)
                .map_err(host_failure)?
                .unwrap_or_else(|| TrustRecord::new(&t.agent_id, &t.module_hash));
            let verdict = warden::trust::Verdict::Demote(format!("regression reported: {why}"));
            if let Some(change) = Ladder::after_task(&mut r, &verdict, u32::MAX, task) {
                ledger
                    .record(
                        AuditEvent::new(change.kind())
                            .task(task)
                            .agent(&t.agent)
                            .detail(json!({"agent_id": r.agent_id, "change": change})),
                    )
                    .map_err(host_failure)?;
            }
            store.put_trust(&r).map_err(host_failure)?;
            outln!(
                "{} demoted to level 1 and held for review",
                line(&r.agent_id)
            )?;
            Ok(0)
        }
    }
}

fn demoting_trace(
    ledger: &Ledger,
    r: &TrustRecord,
) -> Result<(serde_json::Value, Option<TaskRecord>), Failure> {
    match r.demoted_by_task.filter(|t| *t > 0) {
        Some(id) => {
            let t = ledger.store().task(id).map_err(host_failure)?;
            Ok((t.trace.clone().unwrap_or_default(), Some(t)))
        }
        // Demoted at load (an API that does not exist): the reason is the whole trace.
        None => Ok((json!(r.demoted_reason), None)),
    }
}

/// The arguments of `warden approve`.
pub struct ApproveArgs {
    /// The action.
    pub id: Option<u64>,
    /// The approver's key.
    pub key: Option<PathBuf>,
    /// Save instead of submitting.
    pub save: Option<PathBuf>,
    /// Submit a saved approval.
    pub submit: Option<PathBuf>,
    /// List actions.
    pub list: bool,
    /// The roles file.
    pub roles_file: Option<PathBuf>,
}

/// `warden approve …`
pub fn approve(ledger: &Ledger, config: &HostConfig, args: ApproveArgs) -> Result<u8, Failure> {
    let ApproveArgs {
        id,
        key,
        save,
        submit,
        list,
        roles_file,
    } = args;
    let store = ledger.store();
    if list {
        // The tool's input is the agent's; the rest comes from policies and tokens.
        for a in store.actions(100).map_err(host_failure)? {
            outln!(
                "{:>6}  {:<10} {:<12} task {:<6} by {:<14} for {:<10} {}",
                a.id,
                line(&a.status),
                line(&a.tool),
                a.task,
                line(&a.agent),
                line(&a.user),
                line(&a.params)
            )?;
        }
        return Ok(0);
    }
    let approval = match (id, submit) {
        (_, Some(file)) => {
            let text = bounded::read_to_string(&file, Limit::APPROVAL).map_err(bad_input)?;
            serde_json::from_str::<Approval>(&text)
                .with_context(|| format!("{} is not an approval", shown(&file)))
                .map_err(bad_input)?
        }
        (Some(id), None) => {
            let key = key.ok_or_else(|| {
                bad_input(anyhow::anyhow!("give --key with the approver's secret key"))
            })?;
            let roles = roles(roles_file.as_deref(), config)?;
            let secret = SecretKey::read(&key).map_err(bad_input)?;
            let who = roles.person_with_key(&secret.public()).ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "key {} belongs to no person in the roles file",
                    secret.public()
                ))
            })?;
            let action = store.action(id).map_err(bad_input)?;
            outln!(
                "action {id}: tool `{}` for task {} (agent {}, user {})\n  input: {}",
                line(&action.tool),
                action.task,
                line(&action.agent),
                line(&action.user),
                line(&action.params)
            )?;
            let approval = Approval::sign(&action, &who.name, &secret);
            if let Some(file) = &save {
                std::fs::write(
                    file,
                    serde_json::to_string_pretty(&approval).map_err(host_failure)?,
                )
                .with_context(|| format!("cannot write {}", shown(file)))
                .map_err(host_failure)?;
                outln!("approval saved to {}", shown(file))?;
                return Ok(0);
            }
            approval
        }
        (None, None) => {
            return Err(bad_input(anyhow::anyhow!(
                "give an action id, --submit FILE or --list"
            )));
        }
    };
    let roles = roles(roles_file.as_deref(), config)?;
    match ledger.approve(
        &approval,
        &roles,
        config,
        warden::capabilities::tools::perform,
    ) {
        Ok(result) => {
            // The tool's output: a block, escaped.
            outln!(
                "action {} performed:\n{}",
                approval.action,
                terminal::block(&result)
            )?;
            Ok(0)
        }
        Err(warden::ledger::ApproveError::Failed(why)) => Err(host_failure(anyhow::anyhow!(
            "action {} failed: {}",
            approval.action,
            line(&why)
        ))),
        Err(e) => Err(bad_input(e)),
    }
}

/// What `warden audit verify` found, including what it could not vouch for.
fn print_verified(report: &warden::ledger::DirReport) -> Result<(), Failure> {
    outln!(
        "ok: {} records, {} signed checkpoints, head {}",
        report.records,
        report.checkpoints,
        line(&report.head.to_string())
    )?;
    let vouched = report.store_vouches_to.map_or(String::new(), |seq| {
        format!(", whose task commits vouch for the log up to record {seq}")
    });
    outln!(
        "the log agrees with the state store: {} tasks, {} actions{vouched}",
        report.tasks,
        report.actions
    )?;
    if report.unsigned() > 0 {
        outln!(
            "note: the last {} records follow the newest signed checkpoint: a host is running, or one stopped without its closing checkpoint (the next `warden` command to open the data directory signs them)",
            report.unsigned()
        )?;
    }
    if !report.awaiting_recovery.is_empty() {
        outln!(
            "note: tasks {:?} were left running by a host that stopped; the next `warden` command to open the data directory marks them interrupted",
            report.awaiting_recovery
        )?;
    }
    if !report.running.is_empty() {
        outln!("note: tasks {:?} are running", report.running)?;
    }
    outln!("verify is read-only: it wrote nothing to the data directory")
}

/// `warden audit …`
pub fn audit(dir: &Path, command: AuditCommand) -> Result<u8, Failure> {
    match command {
        AuditCommand::Verify { key } => {
            let key = key
                .map(|k| warden::policy::keys::PublicKey::parse(&k))
                .transpose()
                .map_err(bad_input)?;
            // Read-only: no ledger is opened, so nothing is recovered, appended or signed.
            match warden::ledger::verify_dir(dir, key) {
                Ok(report) => {
                    print_verified(&report)?;
                    Ok(0)
                }
                Err(e) => {
                    errln!("audit log FAILED verification: {}", line(&e.to_string()));
                    errln!("(verify is read-only: it wrote nothing to the data directory)");
                    Ok(super::EXIT_AGENT_ERROR)
                }
            }
        }
        AuditCommand::Tail { lines, follow } => {
            let log = dir.join("audit.log");
            // Records quote agents, tools and people: JSON, escaped for the terminal.
            let records = warden::audit::read_tail(&log, lines).map_err(bad_input)?;
            for r in &records {
                outln!("{}", terminal::json_line(r).map_err(host_failure)?)?;
            }
            if follow && !terminal::stdout_closed() {
                let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
                warden::audit::follow(
                    &log,
                    from,
                    |r| {
                        terminal::json_line(r).ok().is_some_and(|text| {
                            outln!("{text}").is_ok() && !terminal::stdout_closed()
                        })
                    },
                    std::time::Duration::from_millis(200),
                )
                .map_err(host_failure)?;
            }
            Ok(0)
        }
    }
}
