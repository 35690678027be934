//! `test_multiple_content_types`: Returns text, an image and an embedded JSON resource. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_multiple_content_types",
            "Returns text, an image and an embedded JSON resource.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        Ok(kit::content(&[
            kit::text("Multiple content types test:"),
            kit::image(kit::RED_PIXEL_PNG, "image/png"),
            kit::resource(
                "test://mixed-content-resource",
                "application/json",
                r#"{"test":"data","value":123}"#,
            ),
        ]))
    }
}

warden_guest::export_agent!(Fixture);
