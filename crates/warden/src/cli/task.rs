//! `warden task list | show | trace | diff | apply | discard`: the tasks in the ledger, their
//! traces, and the proposed changes of agents whose level does not let them commit. A task whose
//! agent called others is the root of a tree: `show` nests every hop below it (agent, user,
//! grant, outcome, cost) and `trace` prints each hop's trace after its caller's.
//!
//! What it prints came from agents (trace calls, kill details, tool inputs, staged file names and
//! contents), tokens (subjects) and policies: every such field is escaped by `warden::terminal`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use warden::audit::AuditEvent;
use warden::ledger::{Ledger, TasksNow};
use warden::policy::HostConfig;
use warden::staging::Staging;
use warden::store::TaskRecord;
use warden::terminal::{self, line};

use super::ledger_cli::{person, roles};
use super::{Failure, bad_input, host_failure};

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
    /// One task: agent, user, grant, outcome, staging, and the tasks its agent called (JSON).
    Show {
        /// The task id.
        id: u64,
    },
    /// The task's trace: every gate decision, with its duration; then each task it called.
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
    /// Run the cascade on a request: router, fast path, verification, the team, a person when
    /// the rules say so (see docs/cascade.md). Ends verified (its change applied or proposed) or
    /// escalated (exit 4).
    Run {
        /// The request, e.g. "fix the failing test in calc.py".
        request: String,
        /// The workspace the request is about (its `warden.task.toml` names its checks).
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Print the cascade's report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The user's identity token, as for `warden run`.
        #[arg(long, env = "WARDEN_TOKEN")]
        token: Option<String>,
    },
    /// Resume an escalated cascade from the step that paused it (its trigger waived once).
    Resume {
        /// The cascade's task id.
        id: u64,
        /// A note for the next stage (redirect the work), e.g. "only touch calc.py".
        #[arg(long)]
        note: Option<String>,
        /// Print the cascade's report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The user's identity token, as for `warden run`.
        #[arg(long, env = "WARDEN_TOKEN")]
        token: Option<String>,
    },
    /// Stop an escalated cascade: nothing is applied, its working copy is deleted.
    Stop {
        /// The cascade's task id.
        id: u64,
        /// The user's identity token, as for `warden run`.
        #[arg(long, env = "WARDEN_TOKEN")]
        token: Option<String>,
    },
}

impl TaskCommand {
    /// Whether this is one of the cascade's commands (they need a whole host, not only the
    /// ledger).
    pub fn is_cascade(&self) -> bool {
        matches!(
            self,
            TaskCommand::Run { .. } | TaskCommand::Resume { .. } | TaskCommand::Stop { .. }
        )
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
            Some("escalated") => format!("escalated: {}", o["reason"].as_str().unwrap_or("?")),
            Some(s) => s.to_string(),
            None => t.status.clone(),
        },
        None => t.status.clone(),
    };
    let cost = super::stats_cli::task_model(t)
        .map(|m| super::stats_cli::dollars(m["cost_micro_usd"].as_u64().unwrap_or(0)))
        .unwrap_or_else(|| "-".to_string());
    format!(
        "{:>6}  {:<16} {:<12} level {}  staging {:<9}  cost {:<10}  {}",
        t.id,
        line(&t.agent),
        line(&t.user),
        t.level,
        line(&t.staging),
        cost,
        line(&detail)
    )
}

/// `warden task …`
pub fn task(ledger: &Ledger, config: &HostConfig, command: TaskCommand) -> Result<u8, Failure> {
    let store = ledger.store();
    match command {
        TaskCommand::List { limit, json } => {
            let now = ledger.tasks_now().map_err(host_failure)?;
            for t in now.tasks(limit).map_err(host_failure)? {
                if json {
                    outln!("{}", terminal::json_line(&t).map_err(host_failure)?)?;
                } else {
                    outln!("{}", task_line(&t))?;
                }
            }
            Ok(0)
        }
        // Beside a live host too: its rows still in its journal are read as they will stand.
        TaskCommand::Show { id } => {
            let now = ledger.tasks_now().map_err(host_failure)?;
            let mut t = now.task(id).map_err(bad_input)?;
            let events = t
                .trace
                .as_ref()
                .and_then(|tr| tr["events"].as_array().map(Vec::len));
            t.trace = events.map(|n| json!(format!("{n} events: `warden task trace {id}`")));
            let mut shown = serde_json::to_value(&t).map_err(host_failure)?;
            let mut left = MAX_HOPS;
            shown["children"] = json!(hops(&now, id, 1, &mut left)?);
            outln!("{}", terminal::json_pretty(&shown).map_err(host_failure)?)?;
            Ok(0)
        }
        TaskCommand::Trace { id } => {
            let now = ledger.tasks_now().map_err(host_failure)?;
            let t = now.task(id).map_err(bad_input)?;
            print_trace(&t)?;
            let mut left = MAX_HOPS;
            trace_hops(&now, &t, 1, &mut left)?;
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
        TaskCommand::Run { .. } | TaskCommand::Resume { .. } | TaskCommand::Stop { .. } => {
            unreachable!("the cascade's commands are run by cli/cascade.rs")
        }
    }
}

/// Most hops `show` and `trace` print below one task; deeper or wider trees say how much more.
const MAX_HOPS: usize = 10_000;

/// Deepest level `show` and `trace` descend to (a host allows at most 64).
const MAX_DEPTH: u32 = 64;

/// The tasks task `id` called, each with its own: agent, user, grant, outcome and cost.
fn hops(
    store: &TasksNow<'_>,
    id: u64,
    depth: u32,
    left: &mut usize,
) -> Result<Vec<serde_json::Value>, Failure> {
    if depth > MAX_DEPTH || *left == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in store.children(id, *left).map_err(host_failure)? {
        *left = left.saturating_sub(1);
        let cost = super::stats_cli::task_model(&c).and_then(|m| m["cost_micro_usd"].as_u64());
        let below = hops(store, c.id, depth + 1, left)?;
        out.push(json!({
            "task": c.id,
            "agent": c.agent,
            "user": c.user,
            "level": c.level,
            "grant": c.grant,
            "status": c.status,
            "outcome": c.outcome,
            "cost_micro_usd": cost,
            "children": below,
        }));
    }
    Ok(out)
}

/// Each task `t` called, its trace after a line naming its caller, depth first.
fn trace_hops(
    store: &TasksNow<'_>,
    t: &TaskRecord,
    depth: u32,
    left: &mut usize,
) -> Result<(), Failure> {
    if depth > MAX_DEPTH || *left == 0 {
        return Ok(());
    }
    for c in store.children(t.id, *left).map_err(host_failure)? {
        *left = left.saturating_sub(1);
        outln!("\n── called by task {} (depth {depth})", t.id)?;
        print_trace(&c)?;
        trace_hops(store, &c, depth + 1, left)?;
    }
    if depth == 1 && *left == 0 {
        outln!("({MAX_HOPS} hops printed; the tree may have more)")?;
    }
    Ok(())
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
pub fn print_trace(t: &TaskRecord) -> Result<(), Failure> {
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
