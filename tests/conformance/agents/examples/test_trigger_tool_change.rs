//! `test_trigger_tool_change`: the suite's hook that changes the tool list. It calls the host tool
//! [`kit::TOGGLE_AGENT_TOOL`] (declared only by `scripts/conformance`'s host configuration, run in
//! the OS jail), which adds the agent `hello_toggled` to the agents folder or removes it; the
//! server then announces `notifications/tools/list_changed`. Returns what the tool did, or fails
//! with the tool's error. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description, tools};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_trigger_tool_change",
            "Adds the agent hello_toggled to the agents folder, or removes it (through a host tool), so that the tool list changes.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        let done = tools::call(kit::TOGGLE_AGENT_TOOL, "").map_err(|e| {
            AgentError::failed(format!(
                "the host tool `{}` failed: {e}",
                kit::TOGGLE_AGENT_TOOL
            ))
        })?;
        Ok(kit::content(&[kit::text(done.trim())]))
    }
}

warden_guest::export_agent!(Fixture);
