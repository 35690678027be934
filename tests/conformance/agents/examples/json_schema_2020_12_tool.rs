//! `json_schema_2020_12_tool`: a contact form whose contract's input schema uses JSON Schema 2020-12
//! (`$schema`, `$defs` with an `$anchor`, `allOf`/`anyOf`, `if`/`then`/`else`,
//! `additionalProperties: false`); the host checks every task against it, and MCP lists it
//! unchanged. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

/// The input schema the suite expects, keyword for keyword.
const INPUT: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "$defs": {
    "address": {
      "$anchor": "addressDef",
      "type": "object",
      "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
    }
  },
  "properties": {
    "name": {"type": "string"},
    "address": {"$ref": "#/$defs/address"},
    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
    "phone": {"type": "string"},
    "email": {"type": "string"}
  },
  "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
  "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
  "then": {"required": ["phone"]},
  "else": {"required": ["email"]},
  "additionalProperties": false
}"##;

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features: says how it would contact the person named.",
        )
        .input_schema(INPUT)
    }

    fn run(task: String) -> Result<String, AgentError> {
        let task: serde_json::Value =
            serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        let name = task["name"].as_str().unwrap_or("someone");
        let how = match task["contactMethod"].as_str() {
            Some("phone") => format!("by phone at {}", task["phone"].as_str().unwrap_or("?")),
            _ => format!("by email at {}", task["email"].as_str().unwrap_or("?")),
        };
        Ok(kit::content(&[kit::text(&format!(
            "Would contact {name} {how}."
        ))]))
    }
}

warden_guest::export_agent!(Fixture);
