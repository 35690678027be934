//! `warden approve`: sign an approval for an irreversible action held for a person, save it, or
//! submit one; the host then performs the action (audited before it happens). `--sign` signs an
//! action as a server lists it (`GET /v1/approvals`), away from the data directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use warden::approval::{Approval, action_hash};
use warden::bounded::{self, Limit};
use warden::identity::SecretKey;
use warden::ledger::Ledger;
use warden::policy::HostConfig;
use warden::store::ActionRecord;
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

/// `warden approve --sign ACTION.json --key KEY --save FILE [--approver NAME]`: sign an action as
/// `GET /v1/approvals` lists it, without the data directory. Its hash is recomputed from the
/// fields shown before anything is signed, so what is signed is what was shown.
pub fn sign_listed(
    config: &HostConfig,
    action: &Path,
    key: Option<&Path>,
    save: Option<&Path>,
    approver: Option<String>,
    roles_file: Option<&Path>,
) -> Result<u8, Failure> {
    let (Some(key), Some(save)) = (key, save) else {
        return Err(bad_input(anyhow::anyhow!("--sign needs --key and --save")));
    };
    let text = bounded::read_to_string(action, Limit::APPROVAL).map_err(bad_input)?;
    let action: ActionRecord = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{} is not an action as GET /v1/approvals lists it",
                shown(action)
            )
        })
        .map_err(bad_input)?;
    if action_hash(&action) != action.hash {
        return Err(bad_input(anyhow::anyhow!(
            "action {}'s hash does not match its fields: what was listed is not what would be approved; do not sign it",
            action.id
        )));
    }
    let secret = SecretKey::read(key).map_err(bad_input)?;
    let name = match approver {
        Some(name) => name,
        None => {
            let roles = roles(roles_file, config)?;
            roles
                .person_with_key(&secret.public())
                .map(|p| p.name.clone())
                .ok_or_else(|| {
                    bad_input(anyhow::anyhow!(
                        "key {} belongs to no person in the roles file; give --approver NAME",
                        secret.public()
                    ))
                })?
        }
    };
    outln!(
        "action {}: tool `{}` for task {} (agent {}, user {})\n  input: {}",
        action.id,
        line(&action.tool),
        action.task,
        line(&action.agent),
        line(&action.user),
        line(&action.params)
    )?;
    let approval = Approval::sign(&action, &name, &secret);
    std::fs::write(
        save,
        serde_json::to_string_pretty(&approval).map_err(host_failure)?,
    )
    .with_context(|| format!("cannot write {}", shown(save)))
    .map_err(host_failure)?;
    outln!(
        "approval by {} saved to {}; POST it to /v1/approvals/{}",
        line(&name),
        shown(save),
        action.id
    )?;
    Ok(0)
}
