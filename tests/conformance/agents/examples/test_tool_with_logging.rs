//! `test_tool_with_logging`: Logs three lines at info level, then returns text. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_tool_with_logging",
            "Logs three lines at info level, then returns text.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        kit::log_three();
        Ok(kit::content(&[kit::text(
            "test_tool_with_logging logged three lines",
        )]))
    }
}

warden_guest::export_agent!(Fixture);
