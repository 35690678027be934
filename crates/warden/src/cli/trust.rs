//! `warden trust list | review | reinstate | report`: the trust ladder — levels, the trace that
//! demoted an agent, reinstatement by a reviewer, reported regressions. Every change is audited.

use std::path::PathBuf;

use clap::Subcommand;
use warden::ledger::Ledger;
use warden::policy::HostConfig;
use warden::terminal::line;

use super::ledger_cli::roles;
use super::task_cli::print_trace;
use super::{Failure, bad_input, host_failure, shown};
use warden::identity::SecretKey;
use warden::review::{Reinstatement, ReviewError, find_trust};

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
        /// Save the signed reinstatement to this file instead of applying it (for
        /// `POST /v1/trust/{agent}/reinstate` on a server).
        #[arg(long)]
        save: Option<PathBuf>,
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
            let review = warden::review::review(ledger, &agent).map_err(refusal)?;
            let r = &review.record;
            let Some(code) = review.code else {
                outln!("{} is at level {} and not held", line(&r.agent_id), r.level)?;
                return Ok(0);
            };
            outln!(
                "{} was demoted from level {}: {}",
                line(&r.agent_id),
                r.level_before,
                line(r.demoted_reason.as_deref().unwrap_or("?"))
            )?;
            if let Some(t) = &review.task {
                print_trace(t)?;
            }
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
            save,
        } => {
            let roles = roles(roles_file.as_deref(), config)?;
            let r = find_trust(ledger.store(), &agent).map_err(refusal)?;
            let secret = SecretKey::read(&key).map_err(bad_input)?;
            let who = roles.person_with_key(&secret.public()).ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "key {} belongs to no person in the roles file; add it as [person.<name>] key = \"{}\"",
                    secret.public(),
                    secret.public()
                ))
            })?;
            let statement = Reinstatement::sign(&r.agent_id, &code, &who.name, &secret);
            if let Some(file) = save {
                // For `POST /v1/trust/{agent}/reinstate`: the server checks it as this command does.
                let text = serde_json::to_string_pretty(&statement).map_err(host_failure)?;
                std::fs::write(&file, text).map_err(|e| {
                    host_failure(anyhow::anyhow!("cannot write {}: {e}", shown(&file)))
                })?;
                outln!(
                    "reinstatement signed by {} saved to {}",
                    line(&who.name),
                    shown(&file)
                )?;
                return Ok(0);
            }
            let (r, _) = warden::review::reinstate(ledger, &r.agent_id, &statement, &roles)
                .map_err(refusal)?;
            outln!(
                "{} reinstated at level {} by {}",
                line(&r.agent_id),
                r.level,
                line(&who.name)
            )?;
            Ok(0)
        }
        TrustCommand::Report { task, why } => {
            let (r, _) = warden::review::report(ledger, task, &why, None).map_err(refusal)?;
            outln!(
                "{} demoted to level 1 and held for review",
                line(&r.agent_id)
            )?;
            Ok(0)
        }
    }
}

/// A refusal of the ladder or the reviewer's checks is the user's to fix; the store's or the
/// audit log's failure is the host's.
fn refusal(e: ReviewError) -> Failure {
    match e {
        ReviewError::Store(_) | ReviewError::Ledger(_) => host_failure(e),
        e => bad_input(e),
    }
}
