//! Language-model calls through the host (`warden:agent/model`, policy `[model]`).
//!
//! The agent names a model the host configures and its policy allows; the host holds the API key,
//! puts its stable layers (constitution, curated memory, the agent's tool schemas) in front of the
//! agent's messages, charges the task's budget and records the usage. Calling a model the policy
//! (or the user's roles) does not allow kills the instance.
//!
//! ```ignore
//! use warden_guest::model::{self, Chat};
//!
//! let reply = Chat::new("small", 64)
//!     .user("What is the capital of France? One word.")
//!     .send()?;
//! warden_guest::log::info(&format!("{} ({} tokens)", reply.text, reply.usage.completion_tokens));
//! ```
//!
//! A call that would exceed the task's budget returns [`ModelError::BudgetExceeded`] and is not
//! sent; the task then ends `escalated` for a person, whatever the agent returns.

use crate::bindings::warden::agent::model as raw;

pub use raw::{ModelError, Reply, Usage};

/// A chat request being built.
#[derive(Debug, Clone)]
pub struct Chat {
    request: raw::Request,
}

impl Chat {
    /// A request to the model `model` for at most `max_tokens` completion tokens.
    pub fn new(model: &str, max_tokens: u32) -> Self {
        Chat {
            request: raw::Request {
                model: model.to_string(),
                knowledge: None,
                messages: Vec::new(),
                max_tokens,
                temperature: None,
                json_schema: None,
            },
        }
    }

    fn message(mut self, role: raw::Role, content: &str) -> Self {
        self.request.messages.push(raw::Message {
            role,
            content: content.to_string(),
        });
        self
    }

    /// Add a system message of the agent's own (after the host's layers).
    pub fn system(self, content: &str) -> Self {
        self.message(raw::Role::System, content)
    }

    /// Add a user message (the task).
    pub fn user(self, content: &str) -> Self {
        self.message(raw::Role::User, content)
    }

    /// Add an earlier answer of the model.
    pub fn assistant(self, content: &str) -> Self {
        self.message(raw::Role::Assistant, content)
    }

    /// Task-scoped knowledge the agent retrieved (layer 3 of the context stack).
    pub fn knowledge(mut self, text: &str) -> Self {
        self.request.knowledge = Some(text.to_string());
        self
    }

    /// Sampling temperature, 0 to 2.
    pub fn temperature(mut self, t: f32) -> Self {
        self.request.temperature = Some(t);
        self
    }

    /// Ask for a reply matching this JSON Schema (where the provider supports it).
    pub fn json_schema(mut self, schema: &str) -> Self {
        self.request.json_schema = Some(schema.to_string());
        self
    }

    /// Send the request.
    ///
    /// # Errors
    ///
    /// [`ModelError`]: over the budget (not sent; the task will end escalated), an invalid
    /// request, or the provider's failure after the host's retries.
    pub fn send(self) -> Result<Reply, ModelError> {
        raw::chat(&self.request)
    }
}
