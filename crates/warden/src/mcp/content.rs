//! Agents whose output is MCP content. An agent's contract may declare that what it returns is
//! not data for a model to parse but content for the client to show: text, an image, audio, an
//! embedded resource, or several. It says so in its output schema, at the root:
//! `"x-warden-output": "mcp-content"`, and then its output is `{"content": [<block>, ...]}`,
//! each block an MCP `ContentBlock` (`{"type": "text", "text": ...}`, `{"type": "image",
//! "data": <base64>, "mimeType": ...}`, `{"type": "audio", ...}`, `{"type": "resource",
//! "resource": {"uri", "mimeType", "text" | "blob"}}`, `{"type": "resource_link", ...}`).
//!
//! The host bounds the output (the policy's `limits.output`) and checks it against the contract
//! before it is stored; here the stored output becomes the tool result's `content`. An output that
//! declares content but is none (not an object, no `content` array, an empty one, a block of an
//! unknown type) is the agent's mistake, reported as a tool error that says what was wrong.

use rmcp::model::ContentBlock;
use serde_json::Value;

/// The output-schema keyword that says what kind of output a contract promises.
pub const OUTPUT_KIND: &str = "x-warden-output";

/// The value of [`OUTPUT_KIND`] for an output of MCP content blocks.
pub const MCP_CONTENT: &str = "mcp-content";

/// Most blocks one result may carry.
pub const MAX_BLOCKS: usize = 64;

/// Whether a contract's output schema declares MCP content.
pub fn declares_content(output_schema: Option<&Value>) -> bool {
    output_schema
        .and_then(|s| s.get(OUTPUT_KIND))
        .and_then(Value::as_str)
        == Some(MCP_CONTENT)
}

/// The content blocks of an output `{"content": [...]}`, or what is wrong with it.
///
/// # Errors
///
/// A sentence naming the mistake: not an object with a `content` array, an empty or too long
/// array, or a block MCP does not define (with its index).
pub fn blocks_of(output: &Value) -> Result<Vec<ContentBlock>, String> {
    let Some(items) = output.get("content").and_then(Value::as_array) else {
        return Err("its output has no `content` array".to_owned());
    };
    if items.is_empty() {
        return Err("its `content` array is empty".to_owned());
    }
    if items.len() > MAX_BLOCKS {
        return Err(format!(
            "its `content` array has {} blocks, more than {MAX_BLOCKS}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<ContentBlock>(item.clone())
                .map_err(|e| format!("`content[{i}]` is not an MCP content block ({e})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_marker_declares_content() {
        assert!(declares_content(Some(
            &json!({"type": "object", "x-warden-output": "mcp-content"})
        )));
        assert!(!declares_content(Some(&json!({"type": "object"}))));
        assert!(!declares_content(Some(&json!({"x-warden-output": "json"}))));
        assert!(!declares_content(None));
    }

    #[test]
    fn every_kind_of_block_is_read() {
        let output = json!({"content": [
            {"type": "text", "text": "hi"},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
            {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
            {"type": "resource", "resource": {"uri": "test://r", "mimeType": "text/plain", "text": "r"}}
        ]});
        let blocks = blocks_of(&output).unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0].as_text().unwrap().text, "hi");
        // What goes back to the client is what the agent wrote, field for field.
        assert_eq!(serde_json::to_value(&blocks).unwrap(), output["content"]);
    }

    #[test]
    fn a_mistake_is_named() {
        for (output, says) in [
            (json!("hi"), "no `content` array"),
            (json!({"content": []}), "empty"),
            (
                json!({"content": [{"type": "video", "data": "x"}]}),
                "`content[0]`",
            ),
            (
                json!({"content": [{"type": "image", "data": "x"}]}),
                "`content[0]`",
            ),
            (
                json!({"content": vec![json!({"type": "text", "text": "a"}); MAX_BLOCKS + 1]}),
                "more than",
            ),
        ] {
            let e = blocks_of(&output).unwrap_err();
            assert!(e.contains(says), "{output}: {e}");
        }
    }
}
