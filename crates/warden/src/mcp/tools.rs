//! An agent as an MCP tool: its name, description and annotations, the arguments a client sends
//! and the task input they become, and the output schema a result's `structuredContent` matches.
//!
//! **Arguments.** MCP sends a tool's arguments as a JSON object. An agent whose contract's input
//! schema is an object schema (`"type": "object"`) takes that schema as the tool's `inputSchema`,
//! and the arguments *are* the task input. Any other input (a string, an array, or any JSON for
//! an agent without a contract) is wrapped: the tool's schema is
//! `{"type": "object", "properties": {"input": <the contract's schema>}}` and the task input is
//! the value of `input` (`null` when absent; the contract then decides).
//!
//! **Results.** A tool declares an `outputSchema` only when the agent's contract promises an
//! output schema, and then every result that is not an error carries a `structuredContent` of
//! Warden's envelope, which that schema describes: `{"task": <id>, "status": "completed" |
//! "escalated", "output": <what the agent returned>, "approvals": [...], "escalation": {...}}`
//! (see `result.rs`). The contract's schema sits under `output`, its `$defs` lifted to the root
//! so that its references still resolve.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::serve::AgentEntry;

/// The name of the one argument of a tool whose agent does not take a JSON object.
pub const WRAPPED_INPUT: &str = "input";

/// Whether a JSON Schema describes only objects.
fn is_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
}

/// The MCP tool of an agent.
pub fn tool_of(entry: &AgentEntry) -> Tool {
    let description = match (entry.summary.trim(), entry.version.trim()) {
        ("", _) => format!("The Warden agent `{}`.", entry.name),
        (summary, "") => summary.to_owned(),
        (summary, version) => format!("{summary} ({} {version})", entry.name),
    };
    let annotations = ToolAnnotations::new()
        .read_only(!entry.writes)
        .destructive(entry.irreversible)
        .open_world(entry.network);
    let mut tool = Tool::new(
        entry.name.clone(),
        description,
        Arc::new(input_schema(&entry.input_schema)),
    )
    .with_annotations(annotations);
    if let Some(output) = &entry.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(output_envelope_schema(output)));
    }
    tool
}

/// The tool's `inputSchema` for a contract's input schema.
pub fn input_schema(contract: &Value) -> JsonObject {
    match contract {
        Value::Object(map) if is_object_schema(contract) => map.clone(),
        other => {
            let (inner, defs) = lift_defs(other);
            let mut root = Map::new();
            root.insert("type".into(), json!("object"));
            root.insert("properties".into(), json!({ WRAPPED_INPUT: inner }));
            merge_defs(&mut root, defs);
            root
        }
    }
}

/// The task input the arguments of a call become (see the module's docs).
pub fn task_input(contract: &Value, arguments: Option<JsonObject>) -> Value {
    let arguments = arguments.unwrap_or_default();
    if is_object_schema(contract) {
        Value::Object(arguments)
    } else {
        arguments.get(WRAPPED_INPUT).cloned().unwrap_or(Value::Null)
    }
}

/// The schema of the envelope every non-error result of a tool with an output schema carries.
pub fn output_envelope_schema(contract_output: &Value) -> JsonObject {
    let (inner, defs) = lift_defs(contract_output);
    let mut root = json!({
        "type": "object",
        "properties": {
            "task": {"type": "integer", "description": "The Warden task id (`warden task show ID`)."},
            "status": {"enum": ["completed", "escalated"]},
            "output": inner,
            "approvals": {
                "type": "array",
                "description": "Irreversible actions the task asked for, each waiting for a person's approval.",
                "items": {
                    "type": "object",
                    "properties": {
                        "action": {"type": "integer"},
                        "tool": {"type": "string"},
                        "approve": {"type": "string"}
                    },
                    "required": ["action", "tool", "approve"]
                }
            },
            "escalation": {
                "type": "object",
                "description": "Why the task stopped for a person to decide, and how they do.",
                "properties": {
                    "reason": {"type": "string"},
                    "detail": {"type": "string"},
                    "review": {"type": "string"}
                },
                "required": ["reason", "detail", "review"]
            }
        },
        "required": ["task", "status"]
    });
    let Value::Object(map) = &mut root else {
        unreachable!("a literal object")
    };
    merge_defs(map, defs);
    map.clone()
}

/// A schema without its `$schema`, `$defs` and `definitions`, and those definitions (to be put
/// at the root of the schema it is nested in, where its `#/$defs/…` references point).
fn lift_defs(schema: &Value) -> (Value, Map<String, Value>) {
    let mut defs = Map::new();
    let inner = match schema {
        Value::Object(map) => {
            let mut map = map.clone();
            map.remove("$schema");
            for key in ["$defs", "definitions"] {
                if let Some(Value::Object(d)) = map.remove(key) {
                    defs.insert(key.to_owned(), Value::Object(d));
                }
            }
            Value::Object(map)
        }
        // `null` is what an unreadable contract schema became: nothing is known, any JSON.
        Value::Null => json!({}),
        other => other.clone(),
    };
    (inner, defs)
}

fn merge_defs(root: &mut Map<String, Value>, defs: Map<String, Value>) {
    for (key, value) in defs {
        root.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(input: Value, output: Option<Value>) -> AgentEntry {
        AgentEntry {
            name: "echo".into(),
            version: "1.0.0".into(),
            summary: "Says it back.".into(),
            input_schema: input,
            output_schema: output,
            writes: false,
            irreversible: false,
            network: true,
            client_model: false,
        }
    }

    #[test]
    fn an_object_input_is_the_arguments_and_anything_else_is_wrapped() {
        let object = json!({"type": "object", "properties": {"text": {"type": "string"}}});
        let tool = tool_of(&entry(object.clone(), None));
        assert_eq!(Value::Object((*tool.input_schema).clone()), object);
        let args: JsonObject = serde_json::from_value(json!({"text": "hi"})).unwrap();
        assert_eq!(task_input(&object, Some(args)), json!({"text": "hi"}));
        assert_eq!(task_input(&object, None), json!({}));

        for contract in [json!({"type": "string"}), json!({}), Value::Null] {
            let schema = input_schema(&contract);
            assert_eq!(schema["type"], "object", "{contract}");
            assert!(schema["properties"].get(WRAPPED_INPUT).is_some());
            let args: JsonObject = serde_json::from_value(json!({"input": "hi"})).unwrap();
            assert_eq!(task_input(&contract, Some(args)), json!("hi"));
            assert_eq!(task_input(&contract, None), Value::Null);
        }
    }

    #[test]
    fn annotations_follow_the_policy() {
        let mut e = entry(json!({}), None);
        let a = tool_of(&e).annotations.unwrap();
        assert_eq!(
            (a.read_only_hint, a.destructive_hint, a.open_world_hint),
            (Some(true), Some(false), Some(true))
        );
        e.writes = true;
        e.irreversible = true;
        e.network = false;
        let a = tool_of(&e).annotations.unwrap();
        assert_eq!(
            (a.read_only_hint, a.destructive_hint, a.open_world_hint),
            (Some(false), Some(true), Some(false))
        );
    }

    #[test]
    fn an_output_schema_only_where_the_contract_promises_one() {
        assert!(tool_of(&entry(json!({}), None)).output_schema.is_none());
        let output = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"n": {"$ref": "#/$defs/N"}},
            "$defs": {"N": {"type": "integer"}}
        });
        let tool = tool_of(&entry(json!({}), Some(output)));
        let schema = Value::Object((*tool.output_schema.unwrap()).clone());
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]["output"]["properties"]["n"]["$ref"],
            "#/$defs/N"
        );
        assert_eq!(schema["$defs"]["N"]["type"], "integer");
        assert!(schema["properties"]["output"].get("$defs").is_none());
        assert!(schema["properties"]["output"].get("$schema").is_none());
    }

    #[test]
    fn a_tool_without_a_summary_still_has_a_description() {
        let mut e = entry(json!({}), None);
        e.summary = String::new();
        assert_eq!(
            tool_of(&e).description.as_deref(),
            Some("The Warden agent `echo`.")
        );
    }
}
