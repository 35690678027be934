//! One model call of a roster stage, through the host (`warden_guest::model`): built only with
//! the `guest` feature, which the roster's components enable (the rest of this crate stays free
//! of the guest SDK, so its tests run on the host).

use warden_guest::model::{Chat, ModelError};
use warden_guest::{AgentError, log};

use crate::prompt::Prompt;

/// One call: the prompt's two messages to `model`, asking for `schema`'s JSON when given. A host
/// whose model cannot take a schema refuses such a request as invalid: it is asked once more
/// without one (the reply is read leniently either way).
///
/// # Errors
///
/// The host's reason, as the stage's `failed` error, when no answer came.
pub fn ask(
    model: &str,
    max_tokens: u32,
    prompt: &Prompt,
    schema: Option<&str>,
) -> Result<String, AgentError> {
    let chat = Chat::new(model, max_tokens)
        .system(&prompt.system)
        .user(&prompt.user);
    let sent = match schema {
        Some(s) => chat.clone().json_schema(s).send().or_else(|e| match e {
            ModelError::InvalidRequest(_) => chat.send(),
            other => Err(other),
        }),
        None => chat.send(),
    };
    let reply = sent.map_err(|e| {
        AgentError::failed(match e {
            ModelError::BudgetExceeded(why) => format!("model budget exceeded: {why}"),
            ModelError::InvalidRequest(why) => format!("model request refused: {why}"),
            ModelError::Provider(why) => format!("model provider failed: {why}"),
        })
    })?;
    log::info(&format!(
        "{model}: {} prompt tokens, {} completion tokens, finish {}",
        reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.finish_reason
    ));
    Ok(reply.text)
}
