//! `test_input_required_result_request_state`: Asks the calling client's person to confirm (elicitation, input key `confirm`); on 2026-07-28 the answer reaches it through the paused run's checked `requestState`. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_input_required_result_request_state",
            "Asks the calling client's person to confirm (elicitation, input key `confirm`); on 2026-07-28 the answer reaches it through the paused run's checked `requestState`.",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        let ok = kit::ask_for("confirm", "Please confirm", "ok", "boolean")?;
        Ok(kit::content(&[kit::text(&format!(
            "state-ok: confirmed = {}",
            kit::said(ok.as_ref())
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
