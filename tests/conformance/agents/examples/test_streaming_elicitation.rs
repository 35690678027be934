//! `test_streaming_elicitation`: Asks the calling client's person (elicitation) mid-call; on MCP 2026-07-28 no request goes on the stream, so it answers with why. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_streaming_elicitation",
            "Asks the calling client's person (elicitation) mid-call; on MCP 2026-07-28 no request goes on the stream, so it answers with why.",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        kit::ask_user(&task)
    }
}

warden_guest::export_agent!(Fixture);
