//! What the conformance fixture agents share: their contracts (no input; an output of MCP content,
//! declared with `"x-warden-output": "mcp-content"`, see `crates/warden/src/mcp/content.rs`), the
//! content blocks they return, and two tiny media files. Each fixture is an example of this package
//! (`examples/<tool name>.rs`), built as a component and served, under `policies/<tool name>.toml`,
//! only by `scripts/conformance`: the tools the official MCP conformance suite calls by name.

use serde_json::{Value, json};
use warden_guest::human::{self, Answer};
use warden_guest::{AgentError, Description};

/// A 1×1 red PNG, base64.
pub const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

/// A WAV file of 1 ms of silence (8 kHz, mono, 8-bit), base64.
pub const SILENCE_WAV: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

/// The input schema of a fixture: an object (the suite sends `{}` or no arguments).
pub const NO_INPUT: &str = r#"{"type": "object"}"#;

/// The output schema of an agent whose output is MCP content blocks.
pub fn content_schema() -> String {
    json!({
        "type": "object",
        "x-warden-output": "mcp-content",
        "properties": {
            "content": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["text", "image", "audio", "resource", "resource_link"]}
                    },
                    "required": ["type"]
                }
            }
        },
        "required": ["content"]
    })
    .to_string()
}

/// The description of fixture `name`: no input, content out.
pub fn describe(name: &str, summary: &str) -> Description {
    Description::new(name, env!("CARGO_PKG_VERSION"), summary)
        .input_schema(NO_INPUT)
        .output_schema(&content_schema())
}

/// The model the calling MCP client serves (`provider = "mcp-client"` in the conformance
/// host's `warden.toml`), which the sampling fixtures' policies grant.
pub const CALLER_MODEL: &str = "caller";

/// The host tool `test_trigger_tool_change` calls: declared only by `scripts/conformance`'s
/// host configuration, it adds the agent `hello_toggled` to the agents folder or removes it
/// (`tests/conformance/toggle-agent`).
pub const TOGGLE_AGENT_TOOL: &str = "conformance.toggle_agent";

/// The description of fixture `name` taking one required string argument `arg`, content out.
pub fn describe_with(name: &str, summary: &str, arg: &str, about: &str) -> Description {
    let input = json!({
        "type": "object",
        "properties": {arg: {"type": "string", "description": about}},
        "required": [arg]
    })
    .to_string();
    Description::new(name, env!("CARGO_PKG_VERSION"), summary)
        .input_schema(&input)
        .output_schema(&content_schema())
}

/// The string argument `arg` of a task's input (empty when absent).
pub fn argument(task: &str, arg: &str) -> String {
    serde_json::from_str::<Value>(task)
        .ok()
        .and_then(|v| v.get(arg).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The output `{"content": blocks}`.
pub fn content(blocks: &[Value]) -> String {
    json!({ "content": blocks }).to_string()
}

/// A text block.
pub fn text(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// An image block.
pub fn image(base64: &str, mime_type: &str) -> Value {
    json!({"type": "image", "data": base64, "mimeType": mime_type})
}

/// An audio block.
pub fn audio(base64: &str, mime_type: &str) -> Value {
    json!({"type": "audio", "data": base64, "mimeType": mime_type})
}

/// An embedded text resource block.
pub fn resource(uri: &str, mime_type: &str, text: &str) -> Value {
    json!({"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "text": text}})
}

/// The form the suite's `test_elicitation` fixtures ask for: a username and an email.
pub const USER_FORM: &str = r#"{"type": "object", "properties": {"username": {"type": "string", "description": "User's response"}, "email": {"type": "string", "description": "User's email address"}}, "required": ["username", "email"]}"#;

/// Ask the calling client's person for `USER_FORM` with the task's `message` (a default when
/// none), and answer what they said, as the suite's `test_elicitation` fixtures do.
///
/// # Errors
///
/// When no one can be asked (the error says why).
pub fn ask_user(task: &str) -> Result<String, AgentError> {
    let mut message = argument(task, "message");
    if message.is_empty() {
        message = "Please provide your information".into();
    }
    let said = match human::ask(&message, USER_FORM) {
        Ok(Answer::Accepted(content)) => format!("action: accept, content: {content}"),
        Ok(Answer::Declined) => "action: decline".to_owned(),
        Ok(Answer::Cancelled) => "action: cancel".to_owned(),
        Err(e) => return Err(AgentError::failed(format!("elicitation failed: {e:?}"))),
    };
    Ok(content(&[text(&format!("User response: <{said}>"))]))
}

/// Ask the calling client's person to review `form`, and answer what they said, as the suite's
/// SEP-1034 and SEP-1330 elicitation fixtures do.
///
/// # Errors
///
/// When no one can be asked (the error says why).
pub fn ask_form(form: &str) -> Result<String, AgentError> {
    let said = match human::ask("Please review and update the form fields", form) {
        Ok(Answer::Accepted(content)) => format!("action=accept, content={content}"),
        Ok(Answer::Declined) => "action=decline, content={}".to_owned(),
        Ok(Answer::Cancelled) => "action=cancel, content={}".to_owned(),
        Err(e) => return Err(AgentError::failed(format!("elicitation failed: {e:?}"))),
    };
    Ok(content(&[text(&format!("Elicitation completed: {said}"))]))
}

/// The schema of a one-field form (`field` of JSON type `kind`, required), whose input request is
/// named `key` on MCP 2026-07-28 (`x-warden-input-key`, see `crates/warden/src/mcp/mrtr.rs`).
pub fn one_field_form(key: &str, field: &str, kind: &str) -> String {
    json!({
        "type": "object",
        "x-warden-input-key": key,
        "properties": {field: {"type": kind}},
        "required": [field]
    })
    .to_string()
}

/// Ask the calling client's person `message` for `field` (of JSON type `kind`), the question
/// named `key`; the value they gave, or `None` when they declined or dismissed it.
///
/// # Errors
///
/// When no one can be asked (the error says why).
pub fn ask_for(
    key: &str,
    message: &str,
    field: &str,
    kind: &str,
) -> Result<Option<Value>, AgentError> {
    match human::ask(message, &one_field_form(key, field, kind)) {
        Ok(Answer::Accepted(content)) => Ok(serde_json::from_str::<Value>(&content)
            .ok()
            .and_then(|v| v.get(field).cloned())),
        Ok(Answer::Declined | Answer::Cancelled) => Ok(None),
        Err(e) => Err(AgentError::failed(format!("elicitation failed: {e:?}"))),
    }
}

/// A value the person gave, as text (`(none)` when they gave none).
pub fn said(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(none)".to_owned(),
    }
}

/// Ask the calling client's model (sampling) `prompt`, at most `max_tokens`; its text.
///
/// # Errors
///
/// When the model cannot answer (the error says why).
pub fn sample(prompt: &str, max_tokens: u32) -> Result<String, AgentError> {
    warden_guest::model::Chat::new(CALLER_MODEL, max_tokens)
        .user(prompt)
        .send()
        .map(|reply| reply.text)
        .map_err(|e| AgentError::failed(format!("sampling failed: {e:?}")))
}

/// Log the three lines of the suite's logging fixtures, at info level.
pub fn log_three() {
    for line in [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ] {
        warden_guest::log::info(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_declares_content_and_the_blocks_are_mcp_shaped() {
        let schema: Value = serde_json::from_str(&content_schema()).unwrap();
        assert_eq!(schema["x-warden-output"], "mcp-content");
        let out: Value = serde_json::from_str(&content(&[
            text("t"),
            image(RED_PIXEL_PNG, "image/png"),
            audio(SILENCE_WAV, "audio/wav"),
            resource("test://r", "text/plain", "r"),
        ]))
        .unwrap();
        let kinds: Vec<&str> = out["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["text", "image", "audio", "resource"]);
        assert_eq!(out["content"][1]["mimeType"], "image/png");
    }
}
