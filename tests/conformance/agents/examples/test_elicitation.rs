//! `test_elicitation`: Asks the calling client's person (elicitation) for a username and an email, and returns the answer. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::human::{self, Answer};
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

/// The form the suite's reference fixture asks for.
const FORM: &str = r#"{"type": "object", "properties": {"username": {"type": "string", "description": "User's response"}, "email": {"type": "string", "description": "User's email address"}}, "required": ["username", "email"]}"#;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe_with(
            "test_elicitation",
            "Asks the calling client's person (elicitation) for a username and an email, and returns the answer.",
            "message",
            "The message to show the user",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        let mut message = kit::argument(&task, "message");
        if message.is_empty() {
            message = "Please provide your information".into();
        }
        let said = match human::ask(&message, FORM) {
            Ok(Answer::Accepted(content)) => format!("action: accept, content: {content}"),
            Ok(Answer::Declined) => "action: decline".to_owned(),
            Ok(Answer::Cancelled) => "action: cancel".to_owned(),
            Err(e) => return Err(AgentError::failed(format!("elicitation failed: {e:?}"))),
        };
        Ok(kit::content(&[kit::text(&format!(
            "User response: <{said}>"
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
