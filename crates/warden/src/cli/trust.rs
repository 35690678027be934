//! `warden trust list | review | reinstate | report`: the trust ladder — levels, the trace that
//! demoted an agent, reinstatement by a reviewer, reported regressions. Every change is audited.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use warden::audit::AuditEvent;
use warden::ledger::Ledger;
use warden::policy::HostConfig;
use warden::store::{TaskRecord, TrustRecord};
use warden::terminal::line;
use warden::trust::Ladder;

use super::ledger_cli::{find_trust, person, roles};
use super::task_cli::print_trace;
use super::{Failure, bad_input, host_failure};

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
