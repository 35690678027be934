//! `test_elicitation_sep1034_defaults`: Asks the calling client's person a form with a default for every primitive type (SEP-1034). A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

/// The form the suite's reference fixture asks for.
const FORM: &str = r#"{"type": "object", "properties": {"name": {"type": "string", "default": "John Doe"}, "age": {"type": "integer", "default": 30}, "score": {"type": "number", "default": 95.5}, "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"}, "verified": {"type": "boolean", "default": true}}}"#;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_elicitation_sep1034_defaults",
            "Asks the calling client's person a form with a default for every primitive type (SEP-1034).",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        kit::ask_form(FORM)
    }
}

warden_guest::export_agent!(Fixture);
