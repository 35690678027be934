//! `test_image_content`: Returns a PNG image (one red pixel). A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe("test_image_content", "Returns a PNG image (one red pixel).")
    }

    fn run(_task: String) -> Result<String, AgentError> {
        Ok(kit::content(&[kit::image(kit::RED_PIXEL_PNG, "image/png")]))
    }
}

warden_guest::export_agent!(Fixture);
