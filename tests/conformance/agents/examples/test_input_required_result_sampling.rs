//! `test_input_required_result_sampling`: Asks the calling client's model (sampling) for the capital of France and returns its answer. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_input_required_result_sampling",
            "Asks the calling client's model (sampling) for the capital of France and returns its answer.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        let answer = kit::sample("What is the capital of France?", 100)?;
        Ok(kit::content(&[kit::text(&format!(
            "LLM response: {answer}"
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
