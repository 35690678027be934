//! The request cascade (`docs/cascade.md`): router → fast path → verification gate → the team
//! (planner → skeptic → tester → implementer → gate) → documenter → validator → memory-curator,
//! and a person exactly when a trigger fires.
//!
//! This module owns the cascade's *decisions*: which stage runs next, on what input, and when the
//! task pauses for a person ([`Trigger`]). Running a stage (an agent in the sandbox, as a child
//! task), running the gate (the workspace's checks in the OS jail) and remembering agents'
//! histories are the host's, behind [`Crew`], so the rules are tested here with a scripted crew
//! and the host implements nothing but plumbing. The whole position of a cascade is a
//! [`CascadeState`] (serde), so a paused task resumes where it stopped, in another process.

mod calibrate;
mod drive;
#[cfg(test)]
mod tests;

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use calibrate::{Bin, bin_of, calibrated};
pub use drive::drive;

/// One stage of the cascade: the roster agent that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Judges complexity and risk, picks the fast path or the team.
    Router,
    /// Decomposes the request into a dependency graph of steps.
    Planner,
    /// Challenges the plan; may reject it with reasons.
    Skeptic,
    /// Writes tests before the implementation.
    Tester,
    /// Writes the change.
    Implementer,
    /// Keeps the docs in step with the change.
    Documenter,
    /// Checks the result from a user's side.
    Validator,
    /// Turns the finished task into generic lessons.
    MemoryCurator,
}

impl Stage {
    /// The agent's name in the agents directory.
    pub fn agent(self) -> &'static str {
        match self {
            Stage::Router => "router",
            Stage::Planner => "planner",
            Stage::Skeptic => "skeptic",
            Stage::Tester => "tester",
            Stage::Implementer => "implementer",
            Stage::Documenter => "documenter",
            Stage::Validator => "validator",
            Stage::MemoryCurator => "memory-curator",
        }
    }

    /// Every stage, in the order the full cascade may run them.
    pub const ALL: [Stage; 8] = [
        Stage::Router,
        Stage::Planner,
        Stage::Skeptic,
        Stage::Tester,
        Stage::Implementer,
        Stage::Documenter,
        Stage::Validator,
        Stage::MemoryCurator,
    ];
}

/// How one stage's run ended, as the cascade sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// It completed with this output (already checked against its contract by the host).
    Done(Value),
    /// It ended with an error of its own (or its output could not be used).
    Failed(String),
    /// It was killed for a breach (recorded and demoted by the host).
    Killed(String),
    /// It ended escalated by the host (its model budget, a sensitive tool): `reason`, `detail`.
    Escalated(String, String),
    /// The host could not run it (no such agent, no slot, no time left).
    Refused(String),
}

/// One command the gate ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRun {
    /// The command, as `warden.task.toml` names it.
    pub command: Vec<String>,
    /// Its exit status (`None` when it was killed).
    pub status: Option<i32>,
    /// The limit it reached, if it was stopped (`wall`, `cpu`, `memory`, `output`, …).
    pub limit: Option<String>,
    /// The tail of its stdout and stderr (bounded).
    pub output: String,
}

/// What the verification gate found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Every command exited 0 within its limits.
    pub passed: bool,
    /// The commands, in order.
    pub commands: Vec<CommandRun>,
}

impl Verification {
    /// A report of a failed verification, as feedback for the next attempt.
    pub fn feedback(&self) -> String {
        let mut text = String::new();
        for c in self.commands.iter().filter(|c| c.status != Some(0)) {
            let how = match (&c.limit, c.status) {
                (Some(limit), _) => format!("stopped at its {limit} limit"),
                (None, Some(s)) => format!("exited {s}"),
                (None, None) => "was killed".to_string(),
            };
            text.push_str(&format!("`{}` {how}:\n{}\n", c.command.join(" "), c.output));
        }
        text
    }
}

/// Why a cascade paused for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The skeptic rejected the plan `skeptic_rejections` times.
    SkepticRejected,
    /// The team's change failed verification `team_attempts` times.
    VerificationFailed,
    /// A change touched a sensitive path, or a stage a sensitive tool.
    Sensitive,
    /// The task's budget ran out.
    Budget,
    /// A calibrated confidence under the floor.
    Confidence,
    /// A stage was killed.
    Killed,
}

impl Trigger {
    /// Its name as records and the CLI give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::SkepticRejected => "skeptic-rejected",
            Trigger::VerificationFailed => "verification-failed",
            Trigger::Sensitive => "sensitive",
            Trigger::Budget => "budget",
            Trigger::Confidence => "confidence",
            Trigger::Killed => "killed",
        }
    }
}

/// The cascade's rules (`[cascade]` in `warden.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeRules {
    /// The model of the fast path.
    pub fast_model: String,
    /// The model of the team's implementer.
    pub team_model: String,
    /// Skeptic rejections before a person is called.
    pub skeptic_rejections: u32,
    /// Failed team verifications before a person is called.
    pub team_attempts: u32,
    /// Calibrated confidence under which a person is called.
    pub confidence_floor: f64,
    /// Whether the router and the fast path run; without them every request goes to the team
    /// (the baseline the cascade is measured against).
    pub fast_path: bool,
}

impl Default for CascadeRules {
    /// `small` and `large`, 2 rejections, 2 attempts, floor 0.3, the fast path on.
    fn default() -> Self {
        CascadeRules {
            fast_model: "small".into(),
            team_model: "large".into(),
            skeptic_rejections: 2,
            team_attempts: 2,
            confidence_floor: 0.3,
            fast_path: true,
        }
    }
}

/// Where a cascade stands: the next step and what earlier stages produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The router.
    Route,
    /// The fast path's implementer.
    Fast,
    /// The gate on the fast path's change.
    FastGate,
    /// The planner.
    Plan,
    /// The skeptic on the plan.
    Review,
    /// The tester.
    Test,
    /// The team's implementer.
    Implement,
    /// The gate on the team's change.
    TeamGate,
    /// The documenter.
    Document,
    /// The validator.
    Validate,
    /// The memory-curator.
    Curate,
    /// Finished.
    Done,
}

/// One stage's run, as the cascade's record of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageNote {
    /// The agent.
    pub agent: String,
    /// `completed`, `failed`, `killed`, `escalated`, `refused`, or `passed`/`failed` for the gate.
    pub outcome: String,
    /// A short reason, when it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A stated confidence waiting for the verdict that calibrates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stated {
    /// The agent.
    pub agent: String,
    /// What it said (0..=1).
    pub confidence: f64,
    /// Whether what it was confident about was verified, once known.
    pub verdict: Option<bool>,
    /// Whether the host has added it to the agent's history (so a resumed task never counts it
    /// twice).
    #[serde(default)]
    pub recorded: bool,
}

/// The whole position of a cascade (kept by the host between runs, so it can resume).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeState {
    /// The request, as the user wrote it.
    pub request: String,
    /// The next step.
    pub phase: Phase,
    /// `fast` or `team`, once the router chose (or the fast path failed).
    pub route: Option<String>,
    /// The current plan (the planner's `steps`).
    pub plan: Option<Value>,
    /// Feedback for the next plan or implementation (a failed verification, the skeptic's
    /// reasons, a person's note).
    pub feedback: Option<String>,
    /// The skeptic's rejections so far.
    pub rejections: u32,
    /// The team's failed verifications so far.
    pub attempts: u32,
    /// The last verification.
    pub verification: Option<Verification>,
    /// The paths the change touches (the host's diff of the working copy), once known.
    pub changed: Vec<String>,
    /// A budget pause a person resumed past: the budget check it stopped at lets the step run
    /// once (the host gives the resumed run a fresh budget).
    pub waived: Option<Trigger>,
    /// Sensitive paths a person approved by resuming: a change to them does not pause again.
    #[serde(default)]
    pub approved: Vec<String>,
    /// Model tokens the task's earlier runs spent (the task's budget spans its resumes, until a
    /// person resumes it past a budget pause).
    #[serde(default)]
    pub spent_tokens: u64,
    /// Model cost, in micro-USD, the task's earlier runs spent.
    #[serde(default)]
    pub spent_micro_usd: u64,
    /// Confidences stated so far, calibrated once the task's verdict is known.
    pub stated: Vec<Stated>,
    /// Every stage run, in order.
    pub stages: Vec<StageNote>,
}

impl CascadeState {
    /// A new cascade for `request`.
    pub fn new(request: &str) -> Self {
        CascadeState {
            request: request.to_owned(),
            phase: Phase::Route,
            route: None,
            plan: None,
            feedback: None,
            rejections: 0,
            attempts: 0,
            verification: None,
            changed: Vec::new(),
            waived: None,
            approved: Vec::new(),
            spent_tokens: 0,
            spent_micro_usd: 0,
            stated: Vec::new(),
            stages: Vec::new(),
        }
    }

    /// A person resumed the cascade after `trigger`, with an optional note (added to the next
    /// stage's feedback). The cascade goes on where the pause put it (see `drive`); the resume
    /// also approves: a sensitive change (its paths do not pause again), new attempts for the
    /// team, a fresh budget after a budget pause.
    pub fn resume(&mut self, trigger: Trigger, note: Option<&str>) {
        match trigger {
            Trigger::Budget => {
                self.waived = Some(Trigger::Budget);
                self.spent_tokens = 0;
                self.spent_micro_usd = 0;
            }
            Trigger::VerificationFailed => self.attempts = 0,
            Trigger::Sensitive => {
                for p in &self.changed {
                    if !self.approved.contains(p) {
                        self.approved.push(p.clone());
                    }
                }
            }
            Trigger::SkepticRejected | Trigger::Confidence | Trigger::Killed => {}
        }
        if let Some(note) = note.filter(|n| !n.trim().is_empty()) {
            self.feedback = Some(match self.feedback.take() {
                Some(before) => format!("{before}\nA reviewer says: {note}"),
                None => format!("A reviewer says: {note}"),
            });
        }
    }
}

/// How a cascade run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CascadeEnd {
    /// Verified: the change passed the gate (and the validator).
    Verified,
    /// Paused for a person.
    Escalated {
        /// Why.
        trigger: Trigger,
        /// The details, for the person.
        detail: String,
    },
}

/// The host's side of a cascade: running stages and the gate, and what it knows of the working
/// copy and of agents' histories.
pub trait Crew {
    /// Run `stage`'s agent on `input` as a child task of the cascade.
    fn stage(&mut self, stage: Stage, input: Value) -> impl Future<Output = StageOutcome>;
    /// Run the workspace's checks on the working copy, in the OS jail. `Err` when the gate
    /// could not run at all (no check command, no jail): the cascade pauses on it.
    fn verify(&mut self) -> impl Future<Output = Result<Verification, String>>;
    /// The workspace's files, for the stages' inputs.
    fn files(&self) -> Vec<String>;
    /// The paths the working copy changes, relative to the workspace.
    fn changed(&self) -> Vec<String>;
    /// Put the working copy back to the workspace (the team starts from the original, not from
    /// the fast path's failed change).
    fn reset(&mut self) -> Result<(), String>;
    /// The first of `paths` labelled sensitive, with the label's source.
    fn sensitive(&self, paths: &[String]) -> Option<String>;
    /// Whether the task tree has budget left (tokens, money, CPU, wall), or why not.
    fn budget_left(&self) -> Result<(), String>;
    /// `agent`'s calibrated confidence for a stated one, from its history.
    fn calibrate(&self, agent: &str, stated: f64) -> f64;
    /// Keep the cascade's position after a step (so a host that stops mid-task resumes there).
    fn checkpoint(&mut self, state: &CascadeState);
}
