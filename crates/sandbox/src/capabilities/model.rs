//! The model capability (`[model]` in a policy, `warden:agent/model` in WIT,
//! `warden_guest::model`).
//!
//! The gate: a call names a model; unless the agent's `model.allow` **and** the user's roles name
//! it, the instance is killed at that call. A request the host will not send (no messages, no
//! `max-tokens`, over the size bound) is an error the guest sees. Everything else — which provider,
//! the API key, the context stack, the budget, retries and accounting — belongs to the host's
//! [`ModelSession`], implemented above the sandbox; the sandbox only knows this trait.
//!
//! A session that refused a call for the task's budget reports an escalation
//! ([`ModelSession::escalation`]): the run then ends `escalated` (not killed, not demoted),
//! whatever the guest did after the refusal.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::Serialize;

use crate::bindings::warden::agent::model as wit;
use crate::gate::{KillReason, Violation};
use crate::instance::InstanceState;

/// Most bytes of messages, knowledge and schema one request may carry.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Most messages in one request.
pub const MAX_MESSAGES: usize = 256;

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The task or a person's turn.
    User,
    /// The model's own earlier turn.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: ChatRole,
    /// What it says.
    pub content: String,
}

/// One request as the guest made it (after the gate).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model's name (granted).
    pub model: String,
    /// Task-scoped knowledge (layer 3 of the context stack).
    pub knowledge: Option<String>,
    /// The guest's messages (layer 5).
    pub messages: Vec<ChatMessage>,
    /// Most completion tokens.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// A JSON Schema the reply must match.
    pub json_schema: Option<String>,
}

/// What one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModelUsage {
    /// Prompt tokens, the host's layers included.
    pub prompt_tokens: u64,
    /// Of those, served from the provider's prefix cache.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in millionths of a US dollar.
    pub cost_micro_usd: u64,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    /// The text.
    pub text: String,
    /// Why it stopped.
    pub finish_reason: String,
    /// What the call used.
    pub usage: ModelUsage,
}

/// Why a call returned no answer (each reaches the guest as its `model-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelFailure {
    /// Over the task's budget: not sent; the task ends escalated.
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    /// Not a request the host sends.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The provider failed or timed out after the host's retries.
    #[error("provider: {0}")]
    Provider(String),
}

/// A boxed future of one call.
pub type ChatFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ChatReply, ModelFailure>> + Send + 'a>>;

/// The host's side of one task's model calls: its providers, its budget, its accounting.
pub trait ModelSession: Send + Sync {
    /// Send `request` (already past the gate) and account for it.
    fn chat(&self, request: ChatRequest) -> ChatFuture<'_>;

    /// Why the task must end escalated (`budget-cap`), once a call was refused for its budget.
    fn escalation(&self) -> Option<String>;
}

impl From<wit::Role> for ChatRole {
    fn from(r: wit::Role) -> Self {
        match r {
            wit::Role::System => ChatRole::System,
            wit::Role::User => ChatRole::User,
            wit::Role::Assistant => ChatRole::Assistant,
        }
    }
}

/// The checks of a request that do not depend on the grant: sizes and required fields.
fn check_shape(r: &wit::Request) -> Result<(), String> {
    if r.messages.is_empty() {
        return Err("a request needs at least one message".into());
    }
    if r.messages.len() > MAX_MESSAGES {
        return Err(format!(
            "a request may carry at most {MAX_MESSAGES} messages"
        ));
    }
    if r.max_tokens == 0 {
        return Err("max-tokens must be at least 1".into());
    }
    if r.temperature
        .is_some_and(|t| !t.is_finite() || !(0.0..=2.0).contains(&t))
    {
        return Err("temperature must be between 0 and 2".into());
    }
    let bytes: usize = r.messages.iter().map(|m| m.content.len()).sum::<usize>()
        + r.knowledge.as_ref().map_or(0, String::len)
        + r.json_schema.as_ref().map_or(0, String::len);
    if bytes > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request carries {bytes} bytes; at most {MAX_REQUEST_BYTES} are sent"
        ));
    }
    if let Some(schema) = &r.json_schema
        && serde_json::from_str::<serde_json::Value>(schema).is_err()
    {
        return Err("json-schema is not valid JSON".into());
    }
    Ok(())
}

impl wit::Host for InstanceState {
    async fn chat(
        &mut self,
        request: wit::Request,
    ) -> wasmtime::Result<Result<wit::Reply, wit::ModelError>> {
        let started = Instant::now();
        let name = request.model.clone();
        let deny = |detail: String| Violation::new(KillReason::OutOfScope, "model", detail);
        if !self.policy.model.allows(&name) {
            return Err(self.kill.kill(deny(format!(
                "model `{name}` is not in the agent's model.allow"
            ))));
        }
        if self.user.as_ref().is_some_and(|u| !u.allows_model(&name)) {
            return Err(self.kill.kill(deny(format!(
                "model `{name}` is not allowed to the user the agent acts for"
            ))));
        }
        if let Err(why) = check_shape(&request) {
            self.kill
                .record("model", &name, "invalid", started.elapsed());
            return Ok(Err(wit::ModelError::InvalidRequest(why)));
        }
        let Some(session) = self.model.clone() else {
            self.kill
                .record("model", &name, "unavailable", started.elapsed());
            return Ok(Err(wit::ModelError::Provider(
                "this host has no model providers configured ([[model]] in warden.toml)".into(),
            )));
        };
        let call = ChatRequest {
            model: name.clone(),
            knowledge: request.knowledge,
            messages: request
                .messages
                .into_iter()
                .map(|m| ChatMessage {
                    role: m.role.into(),
                    content: m.content,
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            json_schema: request.json_schema,
        };
        let result = session.chat(call).await;
        let (decision, result) = match result {
            Ok(reply) => {
                let u = reply.usage;
                self.kill.record(
                    "model",
                    &format!(
                        "{name}: {} prompt ({} cached) + {} completion tokens, {} µUSD",
                        u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.cost_micro_usd
                    ),
                    "allowed",
                    started.elapsed(),
                );
                let usage = wit::Usage {
                    prompt_tokens: clamp(u.prompt_tokens),
                    cached_tokens: clamp(u.cached_tokens),
                    completion_tokens: clamp(u.completion_tokens),
                    cost_micro_usd: u.cost_micro_usd,
                };
                return Ok(Ok(wit::Reply {
                    text: reply.text,
                    finish_reason: reply.finish_reason,
                    usage,
                }));
            }
            Err(ModelFailure::BudgetExceeded(m)) => {
                ("budget-exceeded", wit::ModelError::BudgetExceeded(m))
            }
            Err(ModelFailure::InvalidRequest(m)) => ("invalid", wit::ModelError::InvalidRequest(m)),
            Err(ModelFailure::Provider(m)) => ("provider-error", wit::ModelError::Provider(m)),
        };
        self.kill
            .record("model", &name, decision, started.elapsed());
        Ok(Err(result))
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> wit::Request {
        wit::Request {
            model: "small".into(),
            knowledge: None,
            messages: vec![wit::Message {
                role: wit::Role::User,
                content: "hi".into(),
            }],
            max_tokens: 8,
            temperature: None,
            json_schema: None,
        }
    }

    #[test]
    fn shapes_the_host_will_not_send() {
        assert_eq!(check_shape(&request()), Ok(()));
        let mut r = request();
        r.messages.clear();
        assert!(check_shape(&r).is_err());
        let mut r = request();
        r.max_tokens = 0;
        assert!(check_shape(&r).is_err());
        let mut r = request();
        r.temperature = Some(f32::NAN);
        assert!(check_shape(&r).is_err());
        let mut r = request();
        r.json_schema = Some("{not json".into());
        assert!(check_shape(&r).is_err());
        let mut r = request();
        r.knowledge = Some("x".repeat(MAX_REQUEST_BYTES + 1));
        assert!(check_shape(&r).is_err());
        let mut r = request();
        r.messages = vec![r.messages[0].clone(); MAX_MESSAGES + 1];
        assert!(check_shape(&r).is_err());
    }
}
