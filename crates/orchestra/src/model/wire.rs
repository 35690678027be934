//! The OpenAI chat-completions wire format as the host speaks it: the JSON body of a request
//! and the parsing of a reply (`choices[0].message.content`, `choices[0].finish_reason`,
//! `usage.prompt_tokens`, `usage.completion_tokens`, `usage.prompt_tokens_details.cached_tokens`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warden_policy::ModelProvider;
use warden_sandbox::capabilities::model::{ChatRequest, ModelFailure};

use super::context::WireMessage;

/// What a call got back, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) text: String,
    pub(crate) finish_reason: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) completion_tokens: u64,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [WireMessage<'a>],
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    stream: bool,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: NamedSchema<'a>,
}

#[derive(Serialize)]
struct NamedSchema<'a> {
    name: &'static str,
    schema: &'a serde_json::Value,
    strict: bool,
}

#[derive(Deserialize)]
struct WireReply {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireAnswer>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireAnswer {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_tokens_details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    cached_tokens: Option<u64>,
}

/// The JSON body of one request: `messages` is the assembled context stack.
///
/// # Errors
///
/// [`ModelFailure::InvalidRequest`] when the request asks for a schema this provider cannot
/// honour, or the schema is not JSON.
pub(crate) fn request_body(
    config: &ModelProvider,
    messages: &[WireMessage<'_>],
    request: &ChatRequest,
) -> Result<Bytes, ModelFailure> {
    let schema = match &request.json_schema {
        None => None,
        Some(_) if !config.json_schema => {
            return Err(ModelFailure::InvalidRequest(format!(
                "model `{}` cannot honour a JSON schema (json_schema = false in warden.toml); \
                 send the request without one",
                config.name
            )));
        }
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                ModelFailure::InvalidRequest(format!("json-schema is not valid JSON: {e}"))
            })?,
        ),
    };
    let body = Body {
        model: &config.id,
        messages,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        response_format: schema.as_ref().map(|schema| ResponseFormat {
            kind: "json_schema",
            json_schema: NamedSchema {
                name: "reply",
                schema,
                strict: true,
            },
        }),
        stream: false,
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| ModelFailure::InvalidRequest(format!("the request cannot be encoded: {e}")))
}

/// Parse a successful reply.
pub(crate) fn parse_reply(name: &str, bytes: &[u8]) -> Result<Completion, String> {
    let malformed = |what: String| format!("model `{name}` sent a malformed reply: {what}");
    let reply: WireReply = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("not the JSON of a chat completion ({e})")))?;
    let usage = reply
        .usage
        .ok_or_else(|| malformed("no usage (prompt and completion tokens)".into()))?;
    let choice = reply
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| malformed("no choices".into()))?;
    Ok(Completion {
        text: choice.message.and_then(|m| m.content).unwrap_or_default(),
        finish_reason: choice.finish_reason.unwrap_or_else(|| "unknown".into()),
        prompt_tokens: usage.prompt_tokens,
        cached_tokens: usage
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            .min(usage.prompt_tokens),
        completion_tokens: usage.completion_tokens,
    })
}

/// The text of a provider's error body: its `error.message` when it is OpenAI-shaped JSON, else
/// the body as text.
pub(crate) fn error_text(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_as_providers_write_them() {
        let c = parse_reply(
            "m",
            br#"{"choices":[{"message":{"content":null},"finish_reason":null}],
                "usage":{"prompt_tokens":3,"completion_tokens":0,
                         "prompt_tokens_details":{"cached_tokens":9}}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish_reason.as_str(), c.cached_tokens),
            ("", "unknown", 3),
            "no content is empty text; cached never exceeds the prompt"
        );
        let e = parse_reply("m", br#"{"choices":[{}],"usage":{"prompt_tokens":"x"}}"#).unwrap_err();
        assert!(e.starts_with("model `m` sent a malformed reply"), "{e}");
    }

    #[test]
    fn error_text_prefers_the_message() {
        assert_eq!(error_text(br#"{"error":{"message":"quota"}}"#), "quota");
        assert_eq!(error_text(b"Bad Gateway"), "Bad Gateway");
    }
}
