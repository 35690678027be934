//! `test_tool_with_progress`: Works for about a second (sleeping), so the server reports its progress while it runs. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_tool_with_progress",
            "Works for about a second (sleeping), so the server reports its progress while it runs.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        warden_guest::log::info("started");
        std::thread::sleep(std::time::Duration::from_millis(700));
        warden_guest::log::info("done");
        Ok(kit::content(&[kit::text(
            "test_tool_with_progress ran for 700 ms",
        )]))
    }
}

warden_guest::export_agent!(Fixture);
