//! The planner's dependency graph: its [`Step`]s, and [`Plan::checked`], which turns what a
//! model proposed into a bounded graph with unique ids, known dependencies and no cycle.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MAX_ITEMS, MAX_TEXT};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    /// Its id, unique in the plan.
    #[schemars(length(min = 1, max = 64))]
    pub id: String,
    /// What to do.
    #[serde(rename = "do")]
    pub action: String,
    /// The ids of the steps that must come first.
    #[serde(default)]
    pub after: Vec<String>,
}

/// The planner's output: a dependency graph of steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// The steps; `after` names only earlier-known ids and the graph has no cycle.
    pub steps: Vec<Step>,
}

/// Why a plan is not a usable dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No steps.
    #[error("the plan has no steps")]
    Empty,
    /// More than [`MAX_ITEMS`] steps.
    #[error("the plan has more than {MAX_ITEMS} steps")]
    TooLong,
    /// An id is empty, too long or repeated.
    #[error("step id `{0}` is empty, longer than 64 bytes or used twice")]
    BadId(String),
    /// `after` names an id that no step has.
    #[error("step `{step}` comes after `{missing}`, which no step is")]
    Dangling {
        /// The step.
        step: String,
        /// The unknown id.
        missing: String,
    },
    /// The steps wait on each other.
    #[error("the steps wait on each other in a cycle through `{0}`")]
    Cycle(String),
}

impl Plan {
    /// The plan with each step's text bounded, or why it is not a dependency graph.
    ///
    /// # Errors
    ///
    /// [`PlanError`]: empty, too long, a bad or repeated id, an unknown `after`, a cycle.
    pub fn checked(mut self) -> Result<Plan, PlanError> {
        if self.steps.is_empty() {
            return Err(PlanError::Empty);
        }
        if self.steps.len() > MAX_ITEMS {
            return Err(PlanError::TooLong);
        }
        let mut seen = std::collections::HashSet::new();
        for s in &mut self.steps {
            s.id = s.id.trim().to_string();
            if s.id.is_empty() || s.id.len() > 64 || !seen.insert(s.id.clone()) {
                return Err(PlanError::BadId(crate::clip(&s.id, 64)));
            }
            s.action = crate::clip(s.action.trim(), MAX_TEXT);
            s.after.truncate(MAX_ITEMS);
        }
        for s in &self.steps {
            if let Some(missing) = s.after.iter().find(|a| !seen.contains(a.as_str())) {
                return Err(PlanError::Dangling {
                    step: s.id.clone(),
                    missing: crate::clip(missing, 64),
                });
            }
        }
        // Kahn's algorithm: whatever cannot be ordered lies on a cycle.
        let mut done = std::collections::HashSet::new();
        while done.len() < self.steps.len() {
            let ready: Vec<&Step> = self
                .steps
                .iter()
                .filter(|s| !done.contains(&s.id) && s.after.iter().all(|a| done.contains(a)))
                .collect();
            if ready.is_empty() {
                let stuck = self.steps.iter().find(|s| !done.contains(&s.id));
                return Err(PlanError::Cycle(
                    stuck.map(|s| s.id.clone()).unwrap_or_default(),
                ));
            }
            let ids: Vec<String> = ready.iter().map(|s| s.id.clone()).collect();
            done.extend(ids);
        }
        Ok(self)
    }
}
