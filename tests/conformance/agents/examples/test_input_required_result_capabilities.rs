//! `test_input_required_result_capabilities`: Asks the calling client's person their name when the client can ask them (elicitation), then its model (sampling) for a greeting; a client without elicitation is asked only for the greeting. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::human::{self, Answer, AskError};
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_input_required_result_capabilities",
            "Asks the calling client's person their name when the client can ask them (elicitation), then its model (sampling) for a greeting; a client without elicitation is asked only for the greeting.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        // Without the client's `elicitation` the host answers `unavailable` and sends nothing.
        let form = kit::one_field_form("user_name", "name", "string");
        let name = match human::ask("What is your name?", &form) {
            Ok(Answer::Accepted(content)) => serde_json::from_str::<serde_json::Value>(&content)
                .ok()
                .and_then(|v| v.get("name").cloned()),
            Ok(_) | Err(AskError::Unavailable(_)) => None,
            Err(e) => return Err(AgentError::failed(format!("elicitation failed: {e:?}"))),
        };
        let greeting = kit::sample("Generate a greeting", 50)?;
        Ok(kit::content(&[kit::text(&format!(
            "{greeting} (name: {})",
            kit::said(name.as_ref())
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
