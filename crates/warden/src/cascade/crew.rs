//! The host's side of a cascade ([`Crew`]): each stage run as a child task of the cascade's task
//! on the working copy, the gate run in the OS jail on a throwaway copy, sensitive paths from
//! the workspace's task file, the tree's budget, and calibration from the ledger's histories.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::gate::{self, TaskFile};
use super::working::WorkingCopy;
use crate::calls::{HostTree, StageRun};
use crate::jail::Jail;
use crate::ledger::Ledger;
use crate::orchestra::cascade::{Bin, Crew, Stage, StageOutcome, Verification, bin_of, calibrated};
use crate::orchestra::model::Spend;
use crate::user::User;
use warden_sandbox::{Outcome, RunError};

/// One stage's task, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageTask {
    /// The agent.
    pub agent: String,
    /// Its child task (none when it could not start).
    pub task: Option<u64>,
    /// `completed`, `agent-error`, `killed`, `escalated` or `refused`.
    pub outcome: String,
}

/// The host's crew for one cascade run.
pub(crate) struct HostCrew {
    pub(crate) tree: HostTree,
    pub(crate) root: u64,
    pub(crate) user: Option<Arc<User>>,
    pub(crate) working: WorkingCopy,
    pub(crate) task_file: TaskFile,
    /// The gate's jail, or why there is none.
    pub(crate) jail: Result<Jail, String>,
    pub(crate) ledger: Arc<Ledger>,
    /// What the stages' model calls used.
    pub(crate) spend: Spend,
    /// CPU time of the stages.
    pub(crate) cpu: Duration,
    /// The most CPU time the stages may use (`[cascade] cpu`).
    pub(crate) cpu_budget: Duration,
    pub(crate) tasks: Vec<StageTask>,
    /// The sensitive labels of the last stage's policy (`fs.sensitive`).
    pub(crate) labels: Vec<crate::policy::PathPattern>,
}

impl HostCrew {
    fn subject(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "-".to_owned(), |u| u.subject.clone())
    }

    fn add_spend(&mut self, run: &StageRun) {
        if let Some(s) = run.spend() {
            self.spend.add(s);
        }
        if let Ok(r) = &run.report {
            self.cpu += r.cpu;
        }
    }
}

/// What the cascade sees of a stage's run.
fn outcome_of(run: &StageRun) -> StageOutcome {
    match &run.report {
        Ok(report) => match &report.outcome {
            Outcome::Completed { output } => match serde_json::from_str::<Value>(output) {
                Ok(v) => StageOutcome::Done(v),
                Err(e) => StageOutcome::Failed(format!("its output is not JSON: {e}")),
            },
            Outcome::AgentError { kind, message } => {
                StageOutcome::Failed(format!("{kind}: {message}"))
            }
            Outcome::Killed {
                reason,
                capability,
                detail,
            } => StageOutcome::Killed(format!(
                "{reason} ({capability}) in task {}: {detail}",
                report.task
            )),
            Outcome::Escalated { reason, detail } => {
                StageOutcome::Escalated(reason.to_string(), detail.clone())
            }
        },
        Err(RunError::InputContract { detail, .. }) => {
            StageOutcome::Failed(format!("its contract refused the input: {detail}"))
        }
        Err(e) => StageOutcome::Refused(e.to_string()),
    }
}

fn outcome_name(o: &StageOutcome) -> &'static str {
    match o {
        StageOutcome::Done(_) => "completed",
        StageOutcome::Failed(_) => "agent-error",
        StageOutcome::Killed(_) => "killed",
        StageOutcome::Escalated(..) => "escalated",
        StageOutcome::Refused(_) => "refused",
    }
}

impl Crew for HostCrew {
    async fn stage(&mut self, stage: Stage, input: Value) -> StageOutcome {
        let run = self
            .tree
            .run(
                stage.agent(),
                &input.to_string(),
                self.user.clone(),
                self.working.path(),
            )
            .await;
        self.add_spend(&run);
        self.labels = run.sensitive.clone();
        let outcome = outcome_of(&run);
        tracing::info!(target: "warden::cascade", task = self.root, stage = stage.agent(), child = ?run.task, outcome = outcome_name(&outcome), "stage finished");
        self.tasks.push(StageTask {
            agent: stage.agent().to_owned(),
            task: run.task,
            outcome: outcome_name(&outcome).to_owned(),
        });
        outcome
    }

    async fn verify(&mut self) -> Result<Verification, String> {
        let jail = self.jail.clone()?;
        let dir = self
            .working
            .throwaway()
            .map_err(|e| format!("cannot copy the working copy for the gate: {e}"))?;
        let checks = self.task_file.checks.clone();
        let ledger = self.ledger.clone();
        let (root, user) = (self.root, self.subject());
        tokio::task::spawn_blocking(move || {
            let result = gate::verify(
                &jail,
                &checks,
                &dir.path().join("w"),
                Some(&ledger),
                root,
                &user,
            );
            drop(dir);
            result
        })
        .await
        .map_err(|e| format!("the gate failed: {e}"))?
    }

    fn files(&self) -> Vec<String> {
        self.working.files()
    }

    fn changed(&self) -> Vec<String> {
        self.working.changed().unwrap_or_else(|e| {
            tracing::warn!(target: "warden::cascade", task = self.root, error = %e, "cannot diff the working copy");
            Vec::new()
        })
    }

    fn reset(&mut self) -> Result<(), String> {
        self.working.reset().map_err(|e| e.to_string())
    }

    fn sensitive(&self, paths: &[String]) -> Option<String> {
        paths.iter().find_map(|p| {
            let label = |list: &[crate::policy::PathPattern], by: &str| {
                list.iter().find(|pat| pat.allows(p)).map(|pat| {
                    format!(
                        "the change touches `{p}`, labelled sensitive by {by} (`{}`)",
                        pat.as_str()
                    )
                })
            };
            label(&self.task_file.sensitive, gate::TASK_FILE)
                .or_else(|| label(&self.labels, "the stage's policy (fs.sensitive)"))
        })
    }

    fn budget_left(&self) -> Result<(), String> {
        let (tokens, usd, wall) = self.tree.left();
        if tokens == 0 {
            return Err("the task's model tokens (`[cascade] tokens`) are spent".into());
        }
        if usd == 0 {
            return Err("the task's model money (`[cascade] usd`) is spent".into());
        }
        if wall.is_zero() {
            return Err("the task's wall time (`[cascade] wall`) has run out".into());
        }
        if self.cpu >= self.cpu_budget {
            return Err(format!(
                "the task's stages used {} ms of CPU, its budget (`[cascade] cpu`)",
                self.cpu.as_millis()
            ));
        }
        Ok(())
    }

    fn calibrate(&self, agent: &str, stated: f64) -> f64 {
        let history = self
            .ledger
            .store()
            .calibration(agent)
            .map(|bins| bins[usize::from(bin_of(stated))])
            .unwrap_or_default();
        calibrated(
            stated,
            Bin {
                stated: history.0,
                verified: history.1,
            },
        )
    }

    fn checkpoint(&mut self, state: &crate::orchestra::cascade::CascadeState) {
        if let Err(e) = super::save(&self.ledger, self.root, state) {
            tracing::error!(target: "warden::cascade", task = self.root, error = %e, "cannot save the cascade's position");
        }
    }
}

impl std::fmt::Debug for HostCrew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCrew")
            .field("root", &self.root)
            .finish()
    }
}
