//! `test_error_handling`: Always fails: its error becomes a tool error (isError). A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_error_handling",
            "Always fails: its error becomes a tool error (isError).",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        Err(AgentError::failed(
            "This tool intentionally returns an error for testing",
        ))
    }
}

warden_guest::export_agent!(Fixture);
