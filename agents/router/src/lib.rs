//! `router`: judges a request's complexity and risk and picks the cascade's path — `fast` (one
//! implementer on a small model) or `team` (planner, skeptic, tester, implementer on a larger
//! model).
//!
//! Task: `{"request": "...", "files": ["calc.py", ...], "model": "small"}` (`files` is the host's
//! listing; without it the router lists the workspace itself). Returns
//! `{"route", "complexity", "risk", "confidence", "reason"}` (`docs/cascade.md`). The model judges;
//! plain code bounds the judgement and never lets a complex or risky request take the fast path.
//! A reply that cannot be read routes to the team with confidence 0, saying so.

use std::path::Path;

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::stages::{RouterInput, RouterOutput};
use roster_kit::{extract_json, list_files};
use warden_guest::{Agent, AgentError, Description, log};

/// Completion tokens for the judgement.
const MAX_TOKENS: u32 = 200;
/// Most files listed when the task gives none.
const MAX_FILES: usize = 200;

struct Router;

impl Agent for Router {
    fn describe() -> Description {
        Description::new(
            "router",
            env!("CARGO_PKG_VERSION"),
            "Judges a request's complexity and risk and picks the fast path or the team.",
        )
        .input::<RouterInput>()
        .output::<RouterOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let mut input: RouterInput =
            serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        if input.files.is_empty() {
            input.files = list_files(Path::new("/"), MAX_FILES).0;
        }
        let schema = warden_guest::schema_of::<RouterOutput>();
        let reply = ask(
            &input.model,
            MAX_TOKENS,
            &prompt::router(&input),
            Some(&schema),
        )?;
        let out = match extract_json::<RouterOutput>(&reply) {
            Some(judged) => judged.bounded(),
            None => {
                log::warn("the model's answer is not the judgement asked for; routing to the team");
                RouterOutput::unreadable()
            }
        };
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Router);
