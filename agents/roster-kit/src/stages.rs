//! The stages' contracts (`docs/cascade.md`, "Stages and their contracts"): each agent's input
//! and output, with their JSON Schemas derived (the agents publish them through `describe`, and
//! the host checks every task and result against them).
//!
//! Inputs accept unknown keys (the host may add context a stage ignores); every input may name the
//! `model` its stage calls (`small` unless said; the implementer's is required). The judgements a
//! model returns are read into the same types and then [`bounded`](RouterOutput::bounded): a model
//! cannot make a stage return megabytes or a confidence of 7.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod plan;

pub use plan::{Plan, PlanError, Step};

/// Most reasons (skeptic, validator) or steps (planner) kept from a model.
pub const MAX_ITEMS: usize = 12;
/// Longest reason, step or summary kept from a model, in bytes.
pub const MAX_TEXT: usize = 600;

fn small() -> String {
    "small".to_string()
}

/// Where the router sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// One implementer on a small model, then the gate.
    Fast,
    /// The team: planner, skeptic, tester, implementer on a larger model.
    Team,
}

/// A judged level of complexity or risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Low.
    Low,
    /// High.
    High,
}

/// The router's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RouterInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The host's listing of the workspace.
    #[serde(default)]
    pub files: Vec<String>,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// The router's output (and the judgement it asks its model for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouterOutput {
    /// Fast path or team.
    pub route: Route,
    /// How complex the change is.
    pub complexity: Level,
    /// How risky it is (security, data, breadth).
    pub risk: Level,
    /// How sure the router is, 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    /// Why, in a sentence.
    pub reason: String,
}

impl RouterOutput {
    /// The output when the model's answer cannot be used: the team, with no confidence.
    pub fn unreadable() -> RouterOutput {
        RouterOutput {
            route: Route::Team,
            complexity: Level::High,
            risk: Level::High,
            confidence: 0.0,
            reason: "the model's answer could not be read".into(),
        }
    }

    /// The judgement bounded: a confidence in 0..1, a short reason, and never the fast path for
    /// a request judged complex or risky (the rule, not the model, decides that).
    pub fn bounded(mut self) -> RouterOutput {
        self.confidence = unit(self.confidence);
        self.reason = crate::clip(self.reason.trim(), MAX_TEXT);
        if self.route == Route::Fast && (self.complexity == Level::High || self.risk == Level::High)
        {
            self.route = Route::Team;
            self.reason = format!("{} (complex or risky: the team)", self.reason);
        }
        self
    }
}

/// The planner's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlannerInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The host's listing of the workspace.
    #[serde(default)]
    pub files: Vec<String>,
    /// Why an earlier plan or change failed: the skeptic's reasons or a failed verification
    /// (text or JSON).
    #[serde(default)]
    pub feedback: Option<serde_json::Value>,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// The skeptic's verdict on a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Go ahead.
    Accept,
    /// Plan again, for the reasons given.
    Reject,
}

/// The skeptic's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SkepticInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The planner's steps.
    pub plan: Vec<Step>,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// The skeptic's output (and the judgement it asks its model for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkepticOutput {
    /// Accept or reject.
    pub verdict: Verdict,
    /// Why (required when rejecting).
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// The tester's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TesterInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The host's listing of the workspace.
    #[serde(default)]
    pub files: Vec<String>,
    /// The planner's steps.
    #[serde(default)]
    pub plan: Vec<Step>,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// A file block a writing stage did not write, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Refused {
    /// The path the model named (cut to 512 bytes).
    pub path: String,
    /// Why it was not written.
    pub reason: String,
}

/// The tester's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TesterOutput {
    /// The test files written.
    pub tests: Vec<String>,
    /// What the tests check.
    pub summary: String,
    /// Blocks not written.
    #[serde(default)]
    pub refused: Vec<Refused>,
}

/// The implementer's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ImplementerInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The host's listing of the workspace.
    #[serde(default)]
    pub files: Vec<String>,
    /// The model to ask (`small` on the fast path, a larger one in the team).
    #[schemars(length(min = 1))]
    pub model: String,
    /// The planner's steps, in the team.
    #[serde(default)]
    pub plan: Option<Vec<Step>>,
    /// Why the last attempt failed (a verification report, text or JSON).
    #[serde(default)]
    pub feedback: Option<serde_json::Value>,
}

/// The implementer's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImplementerOutput {
    /// The files written.
    pub changed: Vec<String>,
    /// What changed, in the model's words.
    pub summary: String,
    /// The model's stated confidence, 0 to 1 (0 when nothing usable came back).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    /// Blocks not written.
    #[serde(default)]
    pub refused: Vec<Refused>,
}

/// The documenter's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DocumenterInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The files the implementer changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// The implementer's summary.
    #[serde(default)]
    pub summary: String,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// The documenter's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DocumenterOutput {
    /// The documentation files written (none when the docs already agree).
    pub docs: Vec<String>,
    /// Blocks not written.
    #[serde(default)]
    pub refused: Vec<Refused>,
}

/// One command the gate ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandRun {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Its exit status (`null`: killed by a signal or a limit).
    pub status: Option<i32>,
    /// Whether it outlived its wall time.
    #[serde(default)]
    pub timed_out: bool,
    /// The tail of its output.
    #[serde(default)]
    pub output: String,
}

/// The verification gate's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    /// Whether every check passed.
    pub passed: bool,
    /// The commands run.
    #[serde(default)]
    pub commands: Vec<CommandRun>,
}

/// The validator's input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ValidatorInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// The files changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// The gate's report on the change.
    pub verification: Verification,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// Pass or fail, from a user's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// The result does what the docs promise.
    Pass,
    /// It does not.
    Fail,
}

/// The validator's output (and the judgement it asks its model for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ValidatorOutput {
    /// Pass or fail.
    pub verdict: Check,
    /// Why.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// One stage of a finished task, as the curator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StageRecord {
    /// The stage's agent.
    pub agent: String,
    /// How it ended.
    pub outcome: String,
}

/// The memory-curator's input: a finished task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CuratorInput {
    /// The user's request.
    #[schemars(length(min = 1))]
    pub request: String,
    /// How the task ended.
    pub outcome: String,
    /// Whether its result passed verification.
    pub verified: bool,
    /// Its stages.
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    /// The model to ask.
    #[serde(default = "small")]
    pub model: String,
}

/// One lesson the curator's model proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lesson {
    /// A short key (`a-z`, `0-9`, `-`).
    pub key: String,
    /// The lesson, generic: no names, paths of the user's, or secrets.
    pub text: String,
    /// A few tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What the curator asks its model for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lessons {
    /// One or two lessons.
    pub lessons: Vec<Lesson>,
}

/// A lesson the memory refused, and the host's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedLesson {
    /// The lesson's key.
    pub key: String,
    /// Why the host refused it (the filter's rule, a bound).
    pub reason: String,
}

/// The memory-curator's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CuratorOutput {
    /// The keys written to `lessons`.
    pub lessons: Vec<String>,
    /// The lessons the memory refused.
    #[serde(default)]
    pub refused: Vec<RefusedLesson>,
}

/// At most [`MAX_ITEMS`] non-empty reasons of at most [`MAX_TEXT`] bytes.
pub fn bounded_reasons(reasons: Vec<String>) -> Vec<String> {
    reasons
        .iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .take(MAX_ITEMS)
        .map(|r| crate::clip(r, MAX_TEXT))
        .collect()
}

/// `v` clamped to 0..1, and 0 for NaN.
pub fn unit(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

/// A lesson key as the memory takes it: lowercase `a-z`, `0-9` and `-`, at most 64 bytes; `None`
/// when nothing is left.
pub fn lesson_key(raw: &str) -> Option<String> {
    let mut key = String::new();
    for c in raw.trim().chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (key.is_empty() || key.ends_with('-'))) {
            key.push(c);
        }
        if key.len() >= 64 {
            break;
        }
    }
    let key = key.trim_end_matches('-').to_string();
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests;
