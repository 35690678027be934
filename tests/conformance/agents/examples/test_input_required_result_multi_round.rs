//! `test_input_required_result_multi_round`: Asks the calling client's person two questions in turn (elicitation: `step1` their name, then `step2` their favorite color) and answers both. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_input_required_result_multi_round",
            "Asks the calling client's person two questions in turn (elicitation: `step1` their name, then `step2` their favorite color) and answers both.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        let name = kit::ask_for("step1", "Step 1: What is your name?", "name", "string")?;
        let color = kit::ask_for(
            "step2",
            "Step 2: What is your favorite color?",
            "color",
            "string",
        )?;
        Ok(kit::content(&[kit::text(&format!(
            "Hello, {}! Your favorite color is {}.",
            kit::said(name.as_ref()),
            kit::said(color.as_ref())
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
