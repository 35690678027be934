//! `ask`: answers a question with a language model, through the host.
//!
//! Task: `"What is 2+2?"` or `{"question": "What is 2+2?", "model": "small", "max_tokens": 128}`
//! (`model` defaults to `small`, `max_tokens` to 128). Returns
//! `{"answer": "...", "model": "small", "finish_reason": "stop", "usage": {...}}`.
//!
//! The agent never sees a key or a provider: it names a model, the host sends the call with its
//! own layers in front (constitution, the policy's rules, ...) and charges the task's budget. A
//! model its policy does not allow kills it at the call; a refused or failed call is returned as
//! `failed` with the host's reason (a budget refusal also ends the task escalated, by the host).

use serde::{Deserialize, Serialize};
use warden_guest::model::{Chat, ModelError};
use warden_guest::schemars::{self, JsonSchema};
use warden_guest::{Agent, AgentError, Description, log};

/// The model asked when the task names none.
const DEFAULT_MODEL: &str = "small";
/// Completion tokens asked for when the task says nothing.
const DEFAULT_MAX_TOKENS: u32 = 128;
/// The most completion tokens a task may ask for (the local model's context is 4096 tokens).
const MAX_TOKENS: u32 = 4096;

/// The object form of a task. Unknown keys are refused, so a misspelt `max_token` is not
/// silently ignored.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Question {
    /// The question.
    #[schemars(length(min = 1))]
    question: String,
    /// The model's name in the host configuration.
    #[serde(default = "default_model")]
    model: String,
    /// Most completion tokens.
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 1, max = 4096))]
    max_tokens: u32,
}

/// The contract's input: the question alone, or with its options.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used: `Question::parse` reads the task
enum Input {
    Question(String),
    Options(Question),
}

/// What a call used, as the result reports it.
#[derive(Serialize, JsonSchema)]
struct UsageOut {
    prompt_tokens: u32,
    cached_tokens: u32,
    completion_tokens: u32,
    cost_micro_usd: u64,
}

/// The contract's output.
#[derive(Serialize, JsonSchema)]
struct Answer {
    answer: String,
    model: String,
    finish_reason: String,
    usage: UsageOut,
}

fn default_model() -> String {
    DEFAULT_MODEL.to_string()
}

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

impl Question {
    /// A task as the caller passed it: a JSON string (the question) or an object.
    fn parse(task: &str) -> Result<Question, AgentError> {
        let value: serde_json::Value =
            serde_json::from_str(task).map_err(AgentError::invalid_input)?;
        let q = match value {
            serde_json::Value::String(question) => Question {
                question,
                model: default_model(),
                max_tokens: DEFAULT_MAX_TOKENS,
            },
            object @ serde_json::Value::Object(_) => {
                serde_json::from_value(object).map_err(AgentError::invalid_input)?
            }
            _ => {
                return Err(AgentError::invalid_input(
                    r#"expected "<question>" or {"question": "...", "model": "small", "max_tokens": 128}"#,
                ));
            }
        };
        if q.question.trim().is_empty() {
            return Err(AgentError::invalid_input(
                "expected a question, got an empty one",
            ));
        }
        if !(1..=MAX_TOKENS).contains(&q.max_tokens) {
            return Err(AgentError::invalid_input(format!(
                "max_tokens must be from 1 to {MAX_TOKENS}, got {}",
                q.max_tokens
            )));
        }
        Ok(q)
    }
}

/// The host's reason for a call that returned no answer, as the run's `failed` message.
fn reason(e: &ModelError) -> String {
    match e {
        ModelError::BudgetExceeded(why) => format!("model budget exceeded: {why}"),
        ModelError::InvalidRequest(why) => format!("model request refused: {why}"),
        ModelError::Provider(why) => format!("model provider failed: {why}"),
    }
}

struct Ask;

impl Agent for Ask {
    fn describe() -> Description {
        Description::new(
            "ask",
            env!("CARGO_PKG_VERSION"),
            "Answers a question with a language model.",
        )
        .input::<Input>()
        .output::<Answer>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let q = Question::parse(&task)?;
        let reply = Chat::new(&q.model, q.max_tokens)
            .user(q.question.trim())
            .send()
            .map_err(|e| AgentError::failed(reason(&e)))?;
        let usage = &reply.usage;
        log::info(&format!(
            "{}: {} prompt tokens ({} cached), {} completion tokens, finish {}",
            q.model,
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens,
            reply.finish_reason
        ));
        serde_json::to_string(&Answer {
            answer: reply.text.clone(),
            model: q.model,
            finish_reason: reply.finish_reason.clone(),
            usage: UsageOut {
                prompt_tokens: usage.prompt_tokens,
                cached_tokens: usage.cached_tokens,
                completion_tokens: usage.completion_tokens,
                cost_micro_usd: usage.cost_micro_usd,
            },
        })
        .map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Ask);
