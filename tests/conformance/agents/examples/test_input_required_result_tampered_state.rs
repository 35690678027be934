//! `test_input_required_result_tampered_state`: Asks the calling client's person to confirm (elicitation, input key `confirm`), for the suite's tampered-`requestState` check. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_input_required_result_tampered_state",
            "Asks the calling client's person to confirm (elicitation, input key `confirm`), for the suite's tampered-`requestState` check.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        let ok = kit::ask_for("confirm", "Please confirm", "ok", "boolean")?;
        Ok(kit::content(&[kit::text(&format!(
            "confirmed = {}",
            kit::said(ok.as_ref())
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
