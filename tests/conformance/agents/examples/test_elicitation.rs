//! `test_elicitation`: Asks the calling client's person (elicitation) for a username and an email, and returns the answer. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

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
        kit::ask_user(&task)
    }
}

warden_guest::export_agent!(Fixture);
