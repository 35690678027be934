//! `test_sampling`: Asks the calling client's model (sampling) for the prompt and returns its answer. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::model::Chat;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe_with(
            "test_sampling",
            "Asks the calling client's model (sampling) for the prompt and returns its answer.",
            "prompt",
            "The prompt to send to the LLM",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        let prompt = kit::argument(&task, "prompt");
        let reply = Chat::new(kit::CALLER_MODEL, 100)
            .user(&prompt)
            .send()
            .map_err(|e| AgentError::failed(format!("sampling failed: {e:?}")))?;
        Ok(kit::content(&[kit::text(&format!(
            "LLM response: {}",
            reply.text
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
