//! How a cascade's task ends: a verified change staged as the task's own (applied or proposed by
//! the implementer's level), the task row closed or paused with its audit record, and the saved
//! position of a paused cascade read back for `resume` and `stop`.

use serde_json::json;

use super::{CASCADE_AGENT, CascadeError, host, working};
use crate::audit::AuditEvent;
use crate::ledger::Ledger;
use crate::orchestra::cascade::CascadeState;
use crate::run::StagingDisposition;
use crate::runtime::Runtime;
use crate::staging::{AppliedChanges, Staging};
use crate::store::{TaskEnd, TaskRecord};
use crate::user::User;

impl Runtime {
    /// Stage a verified change as the cascade task's: applied when the implementer's level
    /// lets it commit, proposed otherwise.
    pub(super) async fn conclude(
        &self,
        ledger: &Ledger,
        id: u64,
        working: &working::WorkingCopy,
        user: Option<&User>,
    ) -> Result<(StagingDisposition, Option<AppliedChanges>), CascadeError> {
        let changed = working.changed().map_err(host)?;
        if changed.is_empty() {
            return Ok((StagingDisposition::None, None));
        }
        let staging = Staging::create(
            &ledger.staging_root(id),
            &[(working.workspace().to_path_buf(), String::new())],
        )
        .map_err(host)?;
        for rel in &changed {
            let from = working.path().join(rel);
            if from.is_file() {
                let bytes = std::fs::read(&from).map_err(host)?;
                staging.put_file(rel, &bytes).map_err(host)?;
            } else {
                staging.remove_file(rel).map_err(host)?;
            }
        }
        staging.seal().map_err(host)?;
        let commits = self.implementer_commits(user).await;
        let subject = user.map_or("-", |u| u.subject.as_str());
        let event = |kind: &str| {
            AuditEvent::new(kind)
                .task(id)
                .agent(CASCADE_AGENT)
                .user(subject)
        };
        if commits {
            let applied = staging.apply().map_err(host)?;
            ledger
                .record(event("staging-applied").detail(json!({"changes": applied})))
                .map_err(host)?;
            Ok((StagingDisposition::Applied, Some(applied)))
        } else {
            ledger
                .record(event("staging-proposed").detail(json!({"paths": changed})))
                .map_err(host)?;
            Ok((StagingDisposition::Proposed, None))
        }
    }

    /// Whether the implementer's trust level lets its change be applied without a reviewer.
    async fn implementer_commits(&self, _user: Option<&User>) -> bool {
        let (Some(dir), Some(ledger)) = (self.agents.clone(), self.ledger.clone()) else {
            return false;
        };
        let runtime = self.clone();
        let agent = tokio::task::spawn_blocking(move || match dir.kept("implementer") {
            Ok(Some(a)) => Ok(a),
            _ => dir.load(&runtime, "implementer"),
        })
        .await;
        let Ok(Ok(agent)) = agent else { return false };
        let level = ledger
            .store()
            .trust(&agent.identity.agent_id)
            .ok()
            .flatten()
            .map_or(0, |t| t.level);
        level >= agent.policy().trust.write_level()
    }

    /// End (or pause) the cascade's task row with its audit record.
    pub(super) fn close(
        &self,
        ledger: &Ledger,
        id: u64,
        status: &str,
        outcome: serde_json::Value,
        staging: Option<StagingDisposition>,
    ) -> Result<(), CascadeError> {
        let disposition = staging.unwrap_or(StagingDisposition::None);
        if status == "escalated" {
            // The pause itself, with its trigger (what `warden stats` counts), before the
            // lifecycle record every ended or paused task has.
            ledger
                .record(
                    AuditEvent::new("task-escalated")
                        .task(id)
                        .agent(CASCADE_AGENT)
                        .detail(json!({"status": status, "outcome": outcome})),
                )
                .map_err(host)?;
        }
        // The lifecycle record the audit cross-check expects for the row's status.
        let kind = if status == "failed-to-start" {
            "task-failed-to-start"
        } else {
            "task-ended"
        };
        ledger
            .record(
                AuditEvent::new(kind)
                    .task(id)
                    .agent(CASCADE_AGENT)
                    .detail(json!({"status": status, "outcome": outcome})),
            )
            .map_err(host)?;
        ledger
            .store()
            .end_task(&TaskEnd {
                id,
                status: status.into(),
                outcome,
                trace: json!({"events": [], "dropped": 0}),
                staging: disposition.as_str().into(),
                staging_path: (disposition == StagingDisposition::Proposed)
                    .then(|| ledger.staging_root(id).display().to_string()),
                ended_ms: crate::store::now_ms(),
                // The host's own task: no agent's trust moves.
                trust: None,
            })
            .map_err(host)
    }
}

/// The task row and saved position of an escalated cascade.
pub(super) fn paused(
    ledger: &Ledger,
    task: u64,
) -> Result<(TaskRecord, CascadeState), CascadeError> {
    let record = ledger
        .store()
        .task(task)
        .map_err(|e| CascadeError::Invalid(e.to_string()))?;
    if record.agent != CASCADE_AGENT {
        return Err(CascadeError::Invalid(format!(
            "task {task} is not a cascade (its agent is `{}`)",
            record.agent
        )));
    }
    if record.status != "escalated" {
        return Err(CascadeError::Invalid(format!(
            "task {task} is `{}`, not escalated: only a paused cascade can be resumed or stopped",
            record.status
        )));
    }
    let text = ledger
        .store()
        .cascade(task)
        .map_err(host)?
        .ok_or_else(|| CascadeError::Host(format!("task {task} has no saved position")))?;
    let state = serde_json::from_str(&text)
        .map_err(|e| CascadeError::Host(format!("task {task}'s saved position: {e}")))?;
    Ok((record, state))
}
