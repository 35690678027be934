//! `planner`: decomposes a request into a dependency graph of steps for the team.
//!
//! Task: `{"request": "...", "files": [...], "feedback": <the skeptic's reasons or a failed
//! verification>, "model": "small"}`. Returns `{"steps": [{"id", "do", "after": [id]}]}`. The
//! model proposes the steps; plain code checks that they form a graph (unique ids, known
//! dependencies, no cycle, at most 12 steps, bounded text). A reply that is not such a plan is the
//! agent's error, saying why: the cascade never works from a plan it could not read.

use roster_kit::ask::ask;
use roster_kit::extract_json;
use roster_kit::prompt;
use roster_kit::stages::{Plan, PlannerInput};
use warden_guest::{Agent, AgentError, Description};

/// Completion tokens for the plan.
const MAX_TOKENS: u32 = 400;

struct Planner;

impl Agent for Planner {
    fn describe() -> Description {
        Description::new(
            "planner",
            env!("CARGO_PKG_VERSION"),
            "Decomposes a request into a dependency graph of steps.",
        )
        .input::<PlannerInput>()
        .output::<Plan>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let input: PlannerInput = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let schema = warden_guest::schema_of::<Plan>();
        let reply = ask(
            &input.model,
            MAX_TOKENS,
            &prompt::planner(&input),
            Some(&schema),
        )?;
        let plan = extract_json::<Plan>(&reply)
            .ok_or_else(|| AgentError::failed("the model's answer could not be read as a plan"))?
            .checked()
            .map_err(|e| AgentError::failed(format!("the model's plan is not usable: {e}")))?;
        serde_json::to_string(&plan).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Planner);
