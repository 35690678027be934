//! The MCP client that called a tool, as the run sees it ([`ClientHandle`], made per
//! `tools/call` and handed to the task's run): the model it serves (`provider = "mcp-client"`,
//! asked with `sampling/createMessage`), and what a call needs of it up front
//! ([`required_capabilities`]: a tool whose agent's policy grants a client-served model needs
//! the client's `sampling`, or the call is refused with -32021 before anything runs).
//!
//! On MCP 2025-11-25 a request to the client rides the originating `tools/call`'s stream (its SSE
//! stream on streamable HTTP), although the run is on a task of its own. On MCP 2026-07-28 a
//! server may not send the client a request at all: the run pauses and the call answers an
//! input-required result ([`super::mrtr`]); a call followed as a task (the tasks extension) has
//! no one waiting to carry the question, and the model fails with a typed error.

#![allow(deprecated)] // Sampling (SEP-2577): the 2025-11-25 era Warden serves still defines it.

use super::mrtr::{Pauser, Reply};
use rmcp::RoleServer;
use rmcp::model::{
    ClientCapabilities, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
    InputRequest, ProtocolVersion, RequestId, ServerRequest,
};
use rmcp::service::{OriginatingRequestId, Peer, RequestContext};
use warden_orchestra::model::{
    CallerModel, ClientAnswer, ClientModelError, ClientSampling, SampleFuture,
};

/// The calling client of one `tools/call`.
#[derive(Clone)]
pub struct ClientHandle {
    pub(super) peer: Peer<RoleServer>,
    /// The `tools/call` this run serves (requests to the client ride its stream).
    pub(super) request: RequestId,
    /// Whether the call came on MCP 2026-07-28 or later (no request on the stream).
    pub(super) stateless: bool,
    /// Whether the client declared `sampling`.
    sampling: bool,
    /// Whether the client declared `elicitation`.
    pub(super) elicitation: bool,
    /// On 2026-07-28, where the run's questions go (the call waiting for it), if anywhere.
    pub(super) pause: Option<Pauser>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("request", &self.request)
            .field("stateless", &self.stateless)
            .field("sampling", &self.sampling)
            .field("elicitation", &self.elicitation)
            .field("pausable", &self.pause.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientHandle {
    /// The client of the request `context` is for; on 2026-07-28, the run's questions go to
    /// `pause` (none: they cannot be asked).
    pub fn of(context: &RequestContext<RoleServer>, pause: Option<Pauser>) -> ClientHandle {
        let capabilities = context.client_capabilities().unwrap_or_default();
        ClientHandle {
            peer: context.peer.clone(),
            request: context.id.clone(),
            stateless: is_stateless(context),
            sampling: capabilities.sampling.is_some(),
            elicitation: capabilities.elicitation.is_some(),
            pause,
        }
    }
}

/// Whether the request of `context` came on MCP 2026-07-28 or later.
pub(crate) fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

/// The client capabilities a call of a tool needs that the client of `context` did not
/// declare (`None`: none missing). `client_model`: the agent's policy grants a model the
/// calling client serves, so the tool needs `sampling`.
pub fn required_capabilities(
    context: &RequestContext<RoleServer>,
    client_model: bool,
) -> Option<ClientCapabilities> {
    let declared = context.client_capabilities().unwrap_or_default();
    (client_model && declared.sampling.is_none())
        .then(|| ClientCapabilities::builder().enable_sampling().build())
}

fn params_of(request: ClientSampling) -> CreateMessageRequestParams {
    use rmcp::model::SamplingMessage;
    let messages = request
        .turns
        .into_iter()
        .map(|(user, text)| {
            if user {
                SamplingMessage::user_text(text)
            } else {
                SamplingMessage::assistant_text(text)
            }
        })
        .collect();
    let mut params = CreateMessageRequestParams::new(messages, request.max_tokens);
    if !request.system.is_empty() {
        params = params.with_system_prompt(request.system);
    }
    params.temperature = request.temperature;
    params
}

/// The text of a client's answer.
fn answer_of(result: rmcp::model::CreateMessageResult) -> Result<ClientAnswer, ClientModelError> {
    let mut text = String::new();
    for block in result.message.content.into_vec() {
        match block.as_text() {
            Some(t) => text.push_str(&t.text),
            None => {
                let kind = serde_json::to_value(&block)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_owned)))
                    .unwrap_or_else(|| "non-text".into());
                return Err(ClientModelError::NotText(kind.chars().take(32).collect()));
            }
        }
    }
    Ok(ClientAnswer {
        text,
        model: result.model,
        stop_reason: result.stop_reason.unwrap_or_default(),
    })
}

impl CallerModel for ClientHandle {
    fn sample<'a>(&'a self, model: &'a str, request: ClientSampling) -> SampleFuture<'a> {
        Box::pin(async move {
            if !self.sampling {
                return Err(ClientModelError::NotDeclared {
                    model: model.to_owned(),
                });
            }
            if self.stateless {
                let Some(pause) = &self.pause else {
                    return Err(ClientModelError::Stateless {
                        model: model.to_owned(),
                    });
                };
                let request =
                    InputRequest::CreateMessage(CreateMessageRequest::new(params_of(request)));
                return match pause.ask(pause.key("sample", None), request).await {
                    Ok(Reply::Sampled(result)) => answer_of(*result),
                    Ok(Reply::Elicited(_)) => Err(ClientModelError::Client(
                        "the client answered sampling with an elicitation result".into(),
                    )),
                    Err(why) => Err(ClientModelError::Client(why)),
                };
            }
            let mut message = CreateMessageRequest::new(params_of(request));
            message
                .extensions
                .insert(OriginatingRequestId(self.request.clone()));
            let answer = self
                .peer
                .send_request(ServerRequest::CreateMessageRequest(message))
                .await
                .map_err(|e| ClientModelError::Client(bounded(&e.to_string())))?;
            match answer {
                ClientResult::CreateMessageResult(result) => answer_of(*result),
                _ => Err(ClientModelError::Client(
                    "the client answered sampling/createMessage with another result".into(),
                )),
            }
        })
    }
}

/// At most 300 characters of a client's text, for an error.
fn bounded(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn a_request_maps_to_sampling_and_back() {
        let params = params_of(ClientSampling {
            system: "Be good.".into(),
            turns: vec![(true, "q".into()), (false, "a".into()), (true, "q2".into())],
            max_tokens: 100,
            temperature: Some(0.2),
        });
        let wire = serde_json::to_value(&params).unwrap();
        assert_eq!(wire["systemPrompt"], "Be good.");
        assert_eq!(wire["maxTokens"], 100);
        assert_eq!(wire["messages"][0]["role"], "user");
        assert_eq!(wire["messages"][0]["content"]["text"], "q");
        assert_eq!(wire["messages"][1]["role"], "assistant");
        assert_eq!(wire["messages"].as_array().unwrap().len(), 3);

        let result: rmcp::model::CreateMessageResult = serde_json::from_value(serde_json::json!({
            "role": "assistant",
            "content": {"type": "text", "text": "hello"},
            "model": "m",
            "stopReason": "endTurn"
        }))
        .unwrap();
        let answer = answer_of(result).unwrap();
        assert_eq!(
            (
                answer.text.as_str(),
                answer.model.as_str(),
                answer.stop_reason.as_str()
            ),
            ("hello", "m", "endTurn")
        );
        let image: rmcp::model::CreateMessageResult = serde_json::from_value(serde_json::json!({
            "role": "assistant",
            "content": {"type": "image", "data": "AA==", "mimeType": "image/png"},
            "model": "m"
        }))
        .unwrap();
        assert_eq!(
            answer_of(image),
            Err(ClientModelError::NotText("image".into()))
        );
    }
}
