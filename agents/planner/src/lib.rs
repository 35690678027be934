//! `planner`: decomposes a request into a dependency graph of steps for the team.
//!
//! Task: `{"request": "...", "files": [...], "feedback": <the skeptic's reasons or a failed
//! verification>, "model": "small"}`. Returns `{"steps": [{"id", "do", "after": [id]}]}`. The
//! model proposes the steps; plain code checks that they form a graph (unique ids, known
//! dependencies, no cycle, at most 12 steps, bounded text). A reply that is not such a plan is the
//! agent's error, saying why: the cascade never works from a plan it could not read.

use roster_kit::extract_json;
use roster_kit::prompt::{self, Prompt};
use roster_kit::stages::{Plan, PlannerInput};
use warden_guest::model::{Chat, ModelError};
use warden_guest::{Agent, AgentError, Description, log};

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

/// One call: the prompt's two messages to `model`, asking for `schema`'s JSON when given. A host
/// whose model cannot take a schema refuses such a request as invalid: it is asked once more
/// without one (the reply is read leniently either way).
fn ask(
    model: &str,
    max_tokens: u32,
    prompt: &Prompt,
    schema: Option<&str>,
) -> Result<String, AgentError> {
    let chat = Chat::new(model, max_tokens)
        .system(&prompt.system)
        .user(&prompt.user);
    let sent = match schema {
        Some(s) => chat.clone().json_schema(s).send().or_else(|e| match e {
            ModelError::InvalidRequest(_) => chat.send(),
            other => Err(other),
        }),
        None => chat.send(),
    };
    let reply = sent.map_err(|e| {
        AgentError::failed(match e {
            ModelError::BudgetExceeded(why) => format!("model budget exceeded: {why}"),
            ModelError::InvalidRequest(why) => format!("model request refused: {why}"),
            ModelError::Provider(why) => format!("model provider failed: {why}"),
        })
    })?;
    log::info(&format!(
        "{model}: {} prompt tokens, {} completion tokens, finish {}",
        reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.finish_reason
    ));
    Ok(reply.text)
}

warden_guest::export_agent!(Planner);
