//! `test_input_required_result_elicitation`: Asks the calling client's person their name (elicitation, input key `user_name`) and greets them. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_input_required_result_elicitation",
            "Asks the calling client's person their name (elicitation, input key `user_name`) and greets them.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        let name = kit::ask_for("user_name", "What is your name?", "name", "string")?;
        Ok(kit::content(&[kit::text(&format!(
            "Hello, {}!",
            kit::said(name.as_ref())
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
