//! `test_simple_text`: Returns one text block. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe("test_simple_text", "Returns one text block.")
    }

    fn run(_task: String) -> Result<String, AgentError> {
        Ok(kit::content(&[kit::text(
            "This is a simple text response for testing.",
        )]))
    }
}

warden_guest::export_agent!(Fixture);
