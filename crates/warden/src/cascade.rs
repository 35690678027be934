//! The cascade on a host (`docs/cascade.md`): `warden task run "<request>" --workspace <dir>`.
//!
//! The rules live in [`crate::orchestra::cascade`]; this module gives them a host. A cascade is a
//! task of its own in the ledger (agent `cascade`), whose children are its stages' tasks. It
//! copies the workspace into the data directory (`cascades/<task>/work`, the working copy), runs
//! the rules with a `crew::HostCrew` (stages as child tasks on the working copy, the gate in the
//! OS jail), saves its position after every step, and ends:
//!
//! - **verified**: the working copy's difference from the workspace is staged as the cascade
//!   task's change — applied when the implementer's trust level lets it commit, otherwise
//!   proposed (`warden task diff | apply | discard <task>`);
//! - **escalated** with its trigger: the task waits for a person (`warden task resume <task>
//!   [--note …]` goes on from the step that paused, the trigger waived once; `warden task stop
//!   <task>` ends it and deletes the working copy).
//!
//! Every stated confidence whose verdict is known is added to its agent's calibration history.

mod crew;
mod finish;
mod gate;
mod working;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

pub use crew::StageTask;
use finish::paused;

use crate::audit::AuditEvent;
use crate::calls::HostTree;
use crate::jail::Jail;
use crate::ledger::Ledger;
use crate::orchestra::cascade::{
    CascadeEnd, CascadeRules, CascadeState, StageNote, Trigger, Verification, bin_of, drive,
};
use crate::orchestra::model::Spend;
use crate::run::StagingDisposition;
use crate::runtime::Runtime;
use crate::staging::AppliedChanges;
use crate::store::{TaskRecord, now_ms};
use crate::user::User;

/// The agent name of a cascade's own task.
pub const CASCADE_AGENT: &str = "cascade";
/// Longest request accepted.
pub const MAX_REQUEST: usize = 16 * 1024;

/// Why a cascade could not run (a cascade that ran ends in a [`CascadeReport`]).
#[derive(Debug, thiserror::Error)]
pub enum CascadeError {
    /// A mistake of the caller's: a bad request, workspace or task id.
    #[error("{0}")]
    Invalid(String),
    /// The host could not record or stage the cascade (the ledger, the data directory).
    #[error("{0}")]
    Host(String),
    /// The user's roles do not list the agent `cascade` (a role's `agents`).
    #[error(
        "user `{0}` may not start a cascade: none of their roles lists the agent `cascade` (`agents = [...]` in the roles file); ask for a role that does"
    )]
    NotGranted(String),
}

fn host(e: impl std::fmt::Display) -> CascadeError {
    CascadeError::Host(e.to_string())
}

/// How a cascade run ended.
#[derive(Debug, Clone, Serialize)]
pub struct CascadeReport {
    /// The cascade's task.
    pub task: u64,
    /// `verified`, `escalated` or `stopped`.
    pub status: String,
    /// The trigger, when escalated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// What a person should know, when escalated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every stage run (this run and earlier ones of the same task), in order.
    pub stages: Vec<StageNote>,
    /// The stages' tasks in this run.
    pub tasks: Vec<StageTask>,
    /// The last verification.
    pub verification: Option<Verification>,
    /// The paths the change touches.
    pub changed: Vec<String>,
    /// What became of the change.
    pub staging: StagingDisposition,
    /// What was applied, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedChanges>,
    /// What this run's model calls used.
    pub model: Spend,
    /// CPU time of this run's stages (JSON: `cpu_us`).
    #[serde(rename = "cpu_us", serialize_with = "micros")]
    pub cpu: Duration,
    /// Wall time of this run (JSON: `elapsed_us`).
    #[serde(rename = "elapsed_us", serialize_with = "micros")]
    pub elapsed: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Save a cascade's position in the ledger's store.
pub(crate) fn save(ledger: &Ledger, task: u64, state: &CascadeState) -> Result<(), String> {
    let text = serde_json::to_string(state).map_err(|e| e.to_string())?;
    ledger
        .store()
        .put_cascade(task, &text)
        .map_err(|e| e.to_string())
}

/// The rules of `[cascade]`.
fn rules(runtime: &Runtime) -> CascadeRules {
    let c = &runtime.config.cascade;
    CascadeRules {
        fast_model: c.fast_model.clone(),
        team_model: c.team_model.clone(),
        skeptic_rejections: c.skeptic_rejections,
        team_attempts: c.team_attempts,
        confidence_floor: c.confidence_floor(),
        fast_path: c.fast_path,
    }
}

fn working_dir(ledger: &Ledger, task: u64) -> PathBuf {
    ledger
        .dir()
        .join("cascades")
        .join(task.to_string())
        .join("work")
}

impl Runtime {
    fn cascade_ledger(&self) -> Result<Arc<Ledger>, CascadeError> {
        self.ledger.clone().ok_or_else(|| {
            CascadeError::Invalid("a cascade needs a data directory (the ledger) to record its task and keep its working copy".into())
        })
    }

    /// Run the cascade on `request` for `user` in `workspace`.
    ///
    /// # Errors
    ///
    /// [`CascadeError`] when it could not start (an empty or oversized request, a workspace
    /// that is not a folder or too large, a malformed `warden.task.toml`, no ledger) or could
    /// not be recorded.
    pub async fn run_cascade(
        &self,
        request: &str,
        workspace: &Path,
        user: Option<Arc<User>>,
    ) -> Result<CascadeReport, CascadeError> {
        self.run_cascade_queued(request, workspace, user, None)
            .await
    }

    /// [`Runtime::run_cascade`], started from the `queued` task row a server's durable queue
    /// holds (the task keeps that id), or from a new row when `None`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run_cascade`].
    pub async fn run_cascade_queued(
        &self,
        request: &str,
        workspace: &Path,
        user: Option<Arc<User>>,
        queued: Option<u64>,
    ) -> Result<CascadeReport, CascadeError> {
        let ledger = self.cascade_ledger()?;
        if self.agents.is_none() {
            return Err(CascadeError::Invalid(
                "this host has no agents directory (`[agents] dir` in warden.toml): the cascade finds its stages there (scripts/setup assembles target/agents.d; see docs/examples/warden-cascade.toml)".into(),
            ));
        }
        if request.trim().is_empty() || request.len() > MAX_REQUEST {
            return Err(CascadeError::Invalid(format!(
                "the request must be 1 to {MAX_REQUEST} bytes of text"
            )));
        }
        let workspace = workspace.canonicalize().map_err(|e| {
            CascadeError::Invalid(format!("the workspace {}: {e}", workspace.display()))
        })?;
        if !workspace.is_dir() {
            return Err(CascadeError::Invalid(format!(
                "the workspace {} is not a folder",
                workspace.display()
            )));
        }
        if let Some(user) = user
            .as_ref()
            .filter(|u| !u.grant.allows_agent(CASCADE_AGENT))
        {
            ledger
                .record(
                    crate::audit::AuditEvent::new("task-refused")
                        .agent(CASCADE_AGENT)
                        .user(&user.subject)
                        .detail(json!({"why": "agent-not-granted"})),
                )
                .map_err(host)?;
            return Err(CascadeError::NotGranted(user.subject.clone()));
        }
        gate::TaskFile::read(&workspace).map_err(CascadeError::Invalid)?;
        let subject = user.as_ref().map_or("-", |u| u.subject.as_str()).to_owned();
        let grant = json!({
            "request": request,
            "workspace": workspace.display().to_string(),
            "user": user.as_ref().map(|u| u.subject.clone()),
            "roles": user.as_ref().map(|u| u.roles.clone()),
        });
        let store = ledger.store();
        let row = TaskRecord {
            id: 0,
            agent: CASCADE_AGENT.into(),
            agent_id: "host/cascade".into(),
            module_hash: "-".into(),
            user: subject.clone(),
            level: 0,
            grant: grant.clone(),
            status: "running".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: now_ms(),
            ended_ms: None,
            parent: None,
        };
        let id = match queued {
            Some(id) => store
                .start_queued_task(&TaskRecord { id, ..row }, ledger.owner())
                .map(|()| id),
            None => store.begin_task(&row, ledger.owner()),
        }
        .map_err(host)?;
        ledger
            .record(
                AuditEvent::new("task-started")
                    .task(id)
                    .agent(CASCADE_AGENT)
                    .user(&subject)
                    .detail(json!({"grant": grant})),
            )
            .map_err(host)?;
        let state = CascadeState::new(request);
        save(&ledger, id, &state).map_err(host)?;
        let working = working::WorkingCopy::create(&workspace, &working_dir(&ledger, id));
        let working = match working {
            Ok(w) => w,
            Err(e) => {
                let why = format!("cannot copy the workspace: {e}");
                self.close(&ledger, id, "failed-to-start", json!({"why": why}), None)?;
                return Err(CascadeError::Invalid(why));
            }
        };
        let copy = working.clone();
        match self
            .drive_cascade(ledger.clone(), id, state, working, user)
            .await
        {
            // Refused before any stage ran (the task file changed, no jail, …): the task ends
            // failed-to-start, its working copy gone.
            Err(CascadeError::Invalid(why)) => {
                let _ = copy.remove();
                self.close(&ledger, id, "failed-to-start", json!({"why": why}), None)?;
                Err(CascadeError::Invalid(why))
            }
            other => other,
        }
    }

    /// Resume the escalated cascade `task`, the trigger that paused it waived once; `note`
    /// becomes the next stage's feedback.
    ///
    /// # Errors
    ///
    /// [`CascadeError::Invalid`] when `task` is not an escalated cascade.
    pub async fn resume_cascade(
        &self,
        task: u64,
        note: Option<&str>,
        user: Option<Arc<User>>,
    ) -> Result<CascadeReport, CascadeError> {
        let ledger = self.cascade_ledger()?;
        let (record, mut state) = paused(&ledger, task)?;
        let trigger = record
            .outcome
            .as_ref()
            .and_then(|o| o.get("trigger"))
            .and_then(|t| serde_json::from_value::<Trigger>(t.clone()).ok())
            .ok_or_else(|| CascadeError::Host(format!("task {task} has no recorded trigger")))?;
        state.resume(trigger, note);
        let workspace = PathBuf::from(
            record.grant["workspace"]
                .as_str()
                .ok_or_else(|| CascadeError::Host(format!("task {task} has no workspace")))?,
        );
        let working = working::WorkingCopy::open(&workspace, &working_dir(&ledger, task));
        if !working.path().is_dir() {
            return Err(CascadeError::Host(format!(
                "the working copy of task {task} is gone ({})",
                working.path().display()
            )));
        }
        let subject = user.as_ref().map_or("-", |u| u.subject.as_str());
        ledger
            .record(
                AuditEvent::new("task-resumed")
                    .task(task)
                    .agent(CASCADE_AGENT)
                    .user(subject)
                    .detail(json!({"waived": trigger.as_str(), "note": note})),
            )
            .map_err(host)?;
        self.drive_cascade(ledger, task, state, working, user).await
    }

    /// Stop the escalated cascade `task`: its working copy is deleted, nothing is applied.
    ///
    /// # Errors
    ///
    /// [`CascadeError::Invalid`] when `task` is not an escalated cascade.
    pub fn stop_cascade(&self, task: u64, user: Option<&User>) -> Result<(), CascadeError> {
        let ledger = self.cascade_ledger()?;
        let (record, _) = paused(&ledger, task)?;
        let workspace = PathBuf::from(record.grant["workspace"].as_str().unwrap_or_default());
        working::WorkingCopy::open(&workspace, &working_dir(&ledger, task))
            .remove()
            .map_err(host)?;
        let mut outcome = record.outcome.unwrap_or_else(|| json!({}));
        outcome["status"] = json!("stopped");
        outcome["stopped_by"] = json!(user.map(|u| u.subject.clone()));
        self.close(&ledger, task, "stopped", outcome, None)
    }

    /// Drive the cascade `id` inside its task span (its stages' spans nest in it).
    async fn drive_cascade(
        &self,
        ledger: Arc<Ledger>,
        id: u64,
        state: CascadeState,
        working: working::WorkingCopy,
        user: Option<Arc<User>>,
    ) -> Result<CascadeReport, CascadeError> {
        let subject = user.as_ref().map(|u| u.subject.clone());
        let span = crate::telemetry::task_span(CASCADE_AGENT, subject.as_deref(), Some(id));
        let drive = self.drive_spanned(ledger, id, state, working, user);
        tracing::Instrument::instrument(drive, span).await
    }

    async fn drive_spanned(
        &self,
        ledger: Arc<Ledger>,
        id: u64,
        mut state: CascadeState,
        working: working::WorkingCopy,
        user: Option<Arc<User>>,
    ) -> Result<CascadeReport, CascadeError> {
        let started = Instant::now();
        let settings = &self.config.cascade;
        let task_file = gate::TaskFile::read(working.workspace()).map_err(CascadeError::Invalid)?;
        // The task's budget spans its runs: what earlier runs spent is gone (a person resuming
        // past a budget pause has reset it).
        let budget = (
            settings.tokens.saturating_sub(state.spent_tokens),
            settings.micro_usd.saturating_sub(state.spent_micro_usd),
        );
        let tree = HostTree::new(self, id, settings.wall, budget).map_err(CascadeError::Invalid)?;
        let limits = gate::jail_limits(&settings.gate);
        let jail = tokio::task::spawn_blocking(move || Jail::locate(limits))
            .await
            .map_err(host)?
            .map_err(|e| e.to_string());
        let mut crew = crew::HostCrew {
            tree,
            root: id,
            user: user.clone(),
            working,
            task_file,
            jail,
            ledger: ledger.clone(),
            spend: Spend::default(),
            cpu: Duration::ZERO,
            cpu_budget: settings.cpu,
            tasks: Vec::new(),
            labels: Vec::new(),
        };
        let end = drive(&mut crew, &rules(self), &mut state).await;
        state.spent_tokens += crew.spend.prompt_tokens + crew.spend.completion_tokens;
        state.spent_micro_usd += crew.spend.cost_micro_usd;
        // The verdicts known now join their agents' histories, once.
        for s in state.stated.iter_mut().filter(|s| !s.recorded) {
            if let Some(verified) = s.verdict {
                ledger
                    .store()
                    .add_calibration(&s.agent, bin_of(s.confidence), verified)
                    .map_err(host)?;
                s.recorded = true;
            }
        }
        save(&ledger, id, &state).map_err(host)?;
        let mut report = CascadeReport {
            task: id,
            status: String::new(),
            trigger: None,
            detail: None,
            stages: state.stages.clone(),
            tasks: crew.tasks.clone(),
            verification: state.verification.clone(),
            changed: state.changed.clone(),
            staging: StagingDisposition::None,
            applied: None,
            model: crew.spend.clone(),
            cpu: crew.cpu,
            elapsed: started.elapsed(),
        };
        let usage = json!({
            "elapsed_us": report.elapsed.as_micros() as u64,
            "cpu_us": report.cpu.as_micros() as u64,
            "model": report.model,
        });
        match end {
            CascadeEnd::Escalated { trigger, detail } => {
                report.status = "escalated".into();
                report.trigger = Some(trigger.as_str().into());
                report.detail = Some(detail.clone());
                let outcome = json!({
                    "status": "escalated",
                    "reason": trigger.as_str(),
                    "trigger": trigger,
                    "detail": detail,
                    "usage": usage,
                });
                self.close(&ledger, id, "escalated", outcome, None)?;
            }
            CascadeEnd::Verified => {
                report.status = "verified".into();
                let (disposition, applied) = self
                    .conclude(&ledger, id, &crew.working, user.as_deref())
                    .await?;
                report.staging = disposition;
                report.applied = applied;
                let outcome = json!({
                    "status": "completed",
                    "output": json!({"verified": true, "changed": state.changed}).to_string(),
                    "usage": usage,
                });
                self.close(&ledger, id, "completed", outcome, Some(disposition))?;
                if let Err(e) = crew.working.remove() {
                    tracing::warn!(target: "warden::cascade", task = id, error = %e, "cannot remove the working copy");
                }
            }
        }
        Ok(report)
    }
}
