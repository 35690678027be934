//! The human capability (`[human] ask = true` in a policy, `warden:agent/human` in WIT,
//! `warden_guest::human`): an agent asks the person it works for a question mid-run.
//!
//! The gate checks the grant and the question's shape (a message of 1 to [`MAX_MESSAGE_BYTES`],
//! a requested schema that is a JSON object schema of at most [`MAX_SCHEMA_BYTES`]); the host's
//! [`HumanChannel`] (given per run: the calling MCP client's `elicitation/create`, or none) asks.
//! Each question is one trace event (`human`, its outcome), never its text or the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use crate::bindings::warden::agent::human as wit;
use crate::gate::{KillReason, Violation};
use crate::instance::InstanceState;

/// Longest question.
pub const MAX_MESSAGE_BYTES: usize = 4 << 10;
/// Longest requested schema.
pub const MAX_SCHEMA_BYTES: usize = 16 << 10;
/// Longest answer handed to the guest.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// One question, past the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// What the person is asked.
    pub message: String,
    /// The JSON Schema of the answer (an object schema).
    pub schema: serde_json::Map<String, serde_json::Value>,
}

/// How the person answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The form's content.
    Accepted(serde_json::Value),
    /// They declined.
    Declined,
    /// They dismissed the question.
    Cancelled,
}

/// Why there is no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskFailure {
    /// No one can be asked on this channel.
    #[error("no one to ask: {0}")]
    Unavailable(String),
    /// The person's side failed or timed out.
    #[error("the question failed: {0}")]
    Failed(String),
}

/// A boxed future of one question.
pub type AskFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, AskFailure>> + Send + 'a>>;

/// Whom a run's questions go to.
pub trait HumanChannel: Send + Sync {
    /// Ask `question` (already past the gate).
    fn ask(&self, question: Question) -> AskFuture<'_>;
}

/// The question of `message` and `schema`, or why the host does not send it.
fn question(message: String, schema: &str) -> Result<Question, String> {
    if message.trim().is_empty() || message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the message must be 1 to {MAX_MESSAGE_BYTES} bytes of text"
        ));
    }
    if schema.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the requested schema is over {MAX_SCHEMA_BYTES} bytes"
        ));
    }
    let schema = match serde_json::from_str::<serde_json::Value>(schema) {
        Ok(serde_json::Value::Object(map))
            if map.get("type").and_then(|t| t.as_str()) == Some("object") =>
        {
            map
        }
        _ => {
            return Err(
                "the requested schema must be a JSON object schema (`{\"type\": \"object\", \"properties\": {...}}`)"
                    .into(),
            );
        }
    };
    Ok(Question { message, schema })
}

impl wit::Host for InstanceState {
    async fn ask(
        &mut self,
        message: String,
        requested_schema: String,
    ) -> wasmtime::Result<Result<wit::Answer, wit::AskError>> {
        let started = Instant::now();
        if !self.policy.human.ask {
            return Err(self.kill.kill(Violation::new(
                KillReason::NotGranted,
                "human",
                "asked a person but the policy does not grant `human.ask`".to_owned(),
            )));
        }
        let question = match question(message, &requested_schema) {
            Ok(q) => q,
            Err(why) => {
                self.kill
                    .record("human", "ask", "invalid", started.elapsed());
                return Ok(Err(wit::AskError::Invalid(why)));
            }
        };
        let Some(channel) = self.human.clone() else {
            self.kill
                .record("human", "ask", "unavailable", started.elapsed());
            return Ok(Err(wit::AskError::Unavailable(
                "this run has no one to ask (the host gave it no channel to a person)".into(),
            )));
        };
        let answered = ask_on(&channel, question).await;
        let decision = match &answered {
            Ok(wit::Answer::Accepted(_)) => "accepted",
            Ok(wit::Answer::Declined) => "declined",
            Ok(wit::Answer::Cancelled) => "cancelled",
            Err(wit::AskError::Unavailable(_)) => "unavailable",
            Err(wit::AskError::Invalid(_)) => "invalid",
            Err(wit::AskError::Failed(_)) => "failed",
        };
        self.kill
            .record("human", "ask", decision, started.elapsed());
        Ok(answered)
    }
}

/// Ask on `channel`; the answer as the guest sees it.
async fn ask_on(
    channel: &Arc<dyn HumanChannel>,
    question: Question,
) -> Result<wit::Answer, wit::AskError> {
    match channel.ask(question).await {
        Ok(Answer::Accepted(content)) => {
            let text = content.to_string();
            if text.len() > MAX_ANSWER_BYTES {
                return Err(wit::AskError::Failed(format!(
                    "the answer is over {MAX_ANSWER_BYTES} bytes"
                )));
            }
            Ok(wit::Answer::Accepted(text))
        }
        Ok(Answer::Declined) => Ok(wit::Answer::Declined),
        Ok(Answer::Cancelled) => Ok(wit::Answer::Cancelled),
        Err(AskFailure::Unavailable(why)) => Err(wit::AskError::Unavailable(why)),
        Err(AskFailure::Failed(why)) => Err(wit::AskError::Failed(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<Answer, AskFailure>);

    impl HumanChannel for Fixed {
        fn ask(&self, _question: Question) -> AskFuture<'_> {
            let answer = self.0.clone();
            Box::pin(async move { answer })
        }
    }

    #[test]
    fn questions_the_host_will_not_send() {
        let object = r#"{"type": "object", "properties": {"name": {"type": "string"}}}"#;
        assert!(question("Your name?".into(), object).is_ok());
        assert!(question(" ".into(), object).is_err());
        assert!(question("x".repeat(MAX_MESSAGE_BYTES + 1), object).is_err());
        assert!(question("q".into(), r#"{"type": "string"}"#).is_err());
        assert!(question("q".into(), "{not json").is_err());
        let big = format!(
            r#"{{"type": "object", "description": "{}"}}"#,
            "d".repeat(MAX_SCHEMA_BYTES)
        );
        assert!(question("q".into(), &big).is_err());
    }

    #[tokio::test]
    async fn answers_reach_the_guest_as_typed_results() {
        let q = || question("q".into(), r#"{"type": "object"}"#).unwrap();
        let ask = |r| async move {
            let channel: Arc<dyn HumanChannel> = Arc::new(Fixed(r));
            ask_on(&channel, q()).await
        };
        assert!(matches!(
            ask(Ok(Answer::Accepted(serde_json::json!({"name": "Ada"})))).await,
            Ok(wit::Answer::Accepted(text)) if text == r#"{"name":"Ada"}"#
        ));
        assert!(matches!(
            ask(Ok(Answer::Declined)).await,
            Ok(wit::Answer::Declined)
        ));
        assert!(matches!(
            ask(Ok(Answer::Cancelled)).await,
            Ok(wit::Answer::Cancelled)
        ));
        assert!(matches!(
            ask(Err(AskFailure::Unavailable("x".into()))).await,
            Err(wit::AskError::Unavailable(_))
        ));
        let huge = serde_json::json!({"a": "x".repeat(MAX_ANSWER_BYTES)});
        assert!(matches!(
            ask(Ok(Answer::Accepted(huge))).await,
            Err(wit::AskError::Failed(_))
        ));
    }
}
