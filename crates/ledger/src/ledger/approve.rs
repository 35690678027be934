//! Performing a held action once a person approved it: the approval checked against the
//! pending action and the approver's roles, every step audited before it happens, the action
//! settled once.

use serde_json::json;

use super::{Ledger, LedgerError};
use crate::approval::{Approval, ApprovalError};
use crate::audit::AuditEvent;
use crate::policy::{HostConfig, HostTool, Roles};
use crate::store::{StateStore, now_ms};

impl Ledger {
    /// Check `approval` and, if it holds, perform the action with the host tool declared in
    /// `config`, through `perform` (the sandbox's `capabilities::tools::perform`). Every step is audited before it happens; an approval works once.
    ///
    /// # Errors
    ///
    /// [`ApproveError`]: the refusal (audited too), or the tool's failure.
    pub fn approve(
        &self,
        approval: &Approval,
        roles: &Roles,
        config: &HostConfig,
        perform: impl FnOnce(&HostTool, &str) -> Result<String, String>,
    ) -> Result<String, ApproveError> {
        let action = self
            .store
            .action(approval.action)
            .map_err(LedgerError::from)?;
        let approver = match crate::approval::check(approval, &action, roles, now_ms()) {
            Ok(name) => name,
            Err(refusal) => {
                self.record(
                    AuditEvent::new("approval-refused")
                        .task(action.task)
                        .agent(&action.agent)
                        .user(&action.user)
                        .detail(json!({
                            "action": action.id,
                            "approver": approval.approver,
                            "key": approval.key,
                            "why": refusal.to_string(),
                        })),
                )?;
                return Err(ApproveError::Refused(refusal));
            }
        };
        let tool = config
            .tool(&action.tool)
            .ok_or_else(|| ApproveError::NoTool(action.tool.clone()))?;
        // Audited before anything happens; no record, no action.
        self.record(
            AuditEvent::new("action-approved")
                .task(action.task)
                .agent(&action.agent)
                .user(&action.user)
                .detail(json!({"action": action.id, "approver": approver, "hash": action.hash})),
        )?;
        if !self
            .store
            .settle_action(action.id, "pending", "performing", &approver, "")
            .map_err(LedgerError::from)?
        {
            return Err(ApproveError::Refused(ApprovalError::NotPending(
                action.id,
                "already taken".into(),
            )));
        }
        let result = perform(tool, &action.params);
        let (status, text) = match &result {
            Ok(out) => ("performed", out.clone()),
            Err(why) => ("failed", why.clone()),
        };
        // Audited before the store says so: a crash in between leaves it `performing` (done,
        // outcome in the log), never `performed` without its record.
        self.record(
            AuditEvent::new(format!("action-{status}"))
                .task(action.task)
                .agent(&action.agent)
                .user(&action.user)
                .detail(json!({"action": action.id, "approver": approver, "result": text})),
        )?;
        self.store
            .settle_action(action.id, "performing", status, &approver, &text)
            .map_err(LedgerError::from)?;
        result.map_err(ApproveError::Failed)
    }
}

/// Why `warden approve` did not perform an action.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// The approval was refused.
    #[error("approval refused: {0}")]
    Refused(ApprovalError),
    /// The host config no longer declares the tool.
    #[error(
        "the host configuration declares no tool `{0}`; add it under [[tools]] to perform this action"
    )]
    NoTool(String),
    /// The tool ran and failed.
    #[error("the action was approved but the tool failed: {0}")]
    Failed(String),
    /// The ledger failed (nothing was performed unless audited).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}
