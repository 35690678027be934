//! `test_embedded_resource`: Returns an embedded text resource. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_embedded_resource",
            "Returns an embedded text resource.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        Ok(kit::content(&[kit::resource(
            "test://embedded-resource",
            "text/plain",
            "This is an embedded resource content.",
        )]))
    }
}

warden_guest::export_agent!(Fixture);
