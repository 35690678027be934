//! `test_elicitation_sep1330_enums`: Asks the calling client's person a form with every enum shape (SEP-1330). A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

/// The form the suite's reference fixture asks for.
const FORM: &str = r#"{"type": "object", "properties": {"untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]}, "titledSingle": {"type": "string", "oneOf": [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]}, "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]}, "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}}, "titledMulti": {"type": "array", "items": {"anyOf": [{"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}, {"const": "value3", "title": "Third Choice"}]}}}}"#;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_elicitation_sep1330_enums",
            "Asks the calling client's person a form with every enum shape (SEP-1330).",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        kit::ask_form(FORM)
    }
}

warden_guest::export_agent!(Fixture);
