//! `warden approve`: sign an approval for an irreversible action held for a person, save it, or
//! submit one; the host then performs the action (audited before it happens).

use std::path::PathBuf;

use anyhow::Context;
use warden::approval::Approval;
use warden::bounded::{self, Limit};
use warden::identity::SecretKey;
use warden::ledger::Ledger;
use warden::policy::HostConfig;
use warden::terminal::{self, line};

use super::ledger_cli::roles;
use super::{Failure, bad_input, host_failure, shown};

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
