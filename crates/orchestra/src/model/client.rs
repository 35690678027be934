//! A model served by the MCP client that called the tool a task serves (`provider =
//! "mcp-client"` in `[[model]]`): the request as the client gets it ([`ClientSampling`], which
//! the server side sends as `sampling/createMessage`), the answer ([`ClientAnswer`]), and why
//! there is none ([`ClientModelError`]). The per-run handle ([`CallerModel`]) comes with the run
//! (the MCP layer makes one per `tools/call`); a run without one has no client to ask.
//!
//! The client reports no token usage: a call's record says so (`usage_reported: false`, tokens
//! 0) and the task's budget is charged an estimate (4 bytes a token of what was sent and what
//! came back), never a count the client did not give.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use warden_policy::ModelProvider;
use warden_sandbox::capabilities::model::{
    ChatReply, ChatRequest, ChatRole, ModelFailure, ModelUsage,
};

use super::context::{WireMessage, content_bytes};
use super::session::{BUDGET_CAP, CallRecord, TaskModels, micros};

/// What the client is asked: the host's layers and the agent's system messages as one system
/// prompt, then the user and assistant turns, and the most tokens to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSampling {
    /// The system prompt (empty when there is none).
    pub system: String,
    /// `(is the user speaking, text)` of each turn, in order.
    pub turns: Vec<(bool, String)>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

impl ClientSampling {
    /// The request of `messages` (the assembled context stack) for `max_tokens`.
    pub(crate) fn of(
        messages: &[WireMessage<'_>],
        max_tokens: u32,
        temperature: Option<f32>,
    ) -> ClientSampling {
        let mut system = String::new();
        let mut turns = Vec::with_capacity(messages.len());
        for m in messages {
            match m.role {
                ChatRole::System => {
                    if !system.is_empty() {
                        system.push_str("\n\n");
                    }
                    system.push_str(&m.content);
                }
                ChatRole::User => turns.push((true, m.content.to_string())),
                ChatRole::Assistant => turns.push((false, m.content.to_string())),
            }
        }
        ClientSampling {
            system,
            turns,
            max_tokens,
            temperature,
        }
    }
}

/// The client's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAnswer {
    /// The text it generated.
    pub text: String,
    /// The model the client says generated it.
    pub model: String,
    /// Why it stopped (`endTurn`, `maxTokens`, …; empty when it did not say).
    pub stop_reason: String,
}

/// Why a client-served model gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientModelError {
    /// The run did not come from an MCP client (the CLI, the HTTP API, A2A, an agent call).
    #[error(
        "model `{model}` is served by the MCP client that calls the tool (provider = \"mcp-client\"), and this run has none (it came from the CLI, the HTTP API, A2A or another agent); call the agent as an MCP tool from a client that supports sampling, or grant it an HTTP model"
    )]
    NoClient {
        /// The model's name.
        model: String,
    },
    /// The client did not declare the `sampling` capability.
    #[error(
        "model `{model}` is served by the calling MCP client, which did not declare the `sampling` capability; use a client that does"
    )]
    NotDeclared {
        /// The model's name.
        model: String,
    },
    /// The call came on the stateless era (MCP 2026-07-28), where a server may not send the
    /// client a request, and no call waits for the run to carry the request in an
    /// input-required result (a call followed as a task).
    #[error(
        "model `{model}` is served by the calling MCP client, but on MCP 2026-07-28 a request to the client rides an input-required result of the call that waits for the run, and a call followed as a task (the tasks extension) has none; call the tool without the tasks extension"
    )]
    Stateless {
        /// The model's name.
        model: String,
    },
    /// The client answered with an error, or refused.
    #[error("the MCP client refused or failed the sampling request: {0}")]
    Client(String),
    /// The client's answer is not text.
    #[error("the MCP client answered with {0} content; Warden's agents take text only")]
    NotText(String),
    /// No answer within the model's timeout.
    #[error("the MCP client did not answer within the model's timeout ({0} s)")]
    Timeout(u64),
}

impl From<ClientModelError> for ModelFailure {
    fn from(e: ClientModelError) -> ModelFailure {
        ModelFailure::Provider(e.to_string())
    }
}

/// What [`CallerModel::sample`] returns.
pub type SampleFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ClientAnswer, ClientModelError>> + Send + 'a>>;

/// The MCP client that called the tool this run serves, as a model. Made by the MCP layer for
/// one `tools/call` and handed to the run ([`super::SessionScope::client`]).
pub trait CallerModel: Send + Sync + std::fmt::Debug {
    /// Ask the client to generate for `request` on behalf of model `model` (its name, for
    /// errors). The checks (a client that declared `sampling`, an era that allows a request on
    /// the stream) are the implementation's, before anything is sent.
    fn sample<'a>(&'a self, model: &'a str, request: ClientSampling) -> SampleFuture<'a>;
}

impl TaskModels {
    /// Send `request` to the calling MCP client as model `served` (see the module's docs):
    /// the budget holds an estimate first, as for any model; the record's tokens stay 0.
    pub(crate) async fn send_to_client(
        &self,
        served: &ModelProvider,
        request: &ChatRequest,
        record: &mut CallRecord,
    ) -> Result<ChatReply, ModelFailure> {
        record.provider_model = served.id.clone();
        record.usage_reported = false;
        let Some(client) = &self.client else {
            return Err(ClientModelError::NoClient {
                model: request.model.clone(),
            }
            .into());
        };
        if request.json_schema.is_some() {
            return Err(ModelFailure::InvalidRequest(format!(
                "model `{}` is served by the calling MCP client, which takes no JSON Schema for its reply; ask for JSON in the prompt and check it",
                request.model
            )));
        }
        let messages = self
            .stack
            .messages(request.knowledge.as_deref(), &request.messages);
        let sent = (content_bytes(&messages) as u64).div_ceil(4);
        let hold = self
            .budget
            .hold(sent + u64::from(request.max_tokens), 0)
            .map_err(|why| {
                let _ = self.escalation.set(BUDGET_CAP);
                ModelFailure::BudgetExceeded(why)
            })?;
        let sampling = ClientSampling::of(&messages, request.max_tokens, request.temperature);
        drop(messages);
        record.attempts = 1;
        let started = Instant::now();
        let answer = tokio::time::timeout(served.timeout, client.sample(&request.model, sampling))
            .await
            .unwrap_or(Err(ClientModelError::Timeout(served.timeout.as_secs())));
        record.provider_us = micros(started.elapsed());
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                // Nothing was generated that the host knows of; a refusal before sending
                // (no client, no capability, the stateless era) sent nothing at all.
                if matches!(
                    e,
                    ClientModelError::NotDeclared { .. } | ClientModelError::Stateless { .. }
                ) {
                    record.attempts = 0;
                }
                hold.settle(0, 0);
                return Err(e.into());
            }
        };
        hold.settle(sent + (answer.text.len() as u64).div_ceil(4), 0);
        record.finish_reason.clone_from(&answer.stop_reason);
        if !answer.model.is_empty() {
            let model: String = answer.model.chars().take(128).collect();
            record.provider_model = format!("{}:{model}", served.id);
        }
        Ok(ChatReply {
            text: answer.text,
            finish_reason: answer.stop_reason,
            usage: ModelUsage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn system_layers_become_one_system_prompt_and_turns_keep_their_order() {
        let m = |role, text: &'static str| WireMessage {
            role,
            content: Cow::Borrowed(text),
        };
        let request = ClientSampling::of(
            &[
                m(ChatRole::System, "host layers"),
                m(ChatRole::User, "q1"),
                m(ChatRole::Assistant, "a1"),
                m(ChatRole::System, "agent's own"),
                m(ChatRole::User, "q2"),
            ],
            100,
            Some(0.5),
        );
        assert_eq!(request.system, "host layers\n\nagent's own");
        assert_eq!(
            request.turns,
            [
                (true, "q1".to_owned()),
                (false, "a1".to_owned()),
                (true, "q2".to_owned())
            ]
        );
        assert_eq!((request.max_tokens, request.temperature), (100, Some(0.5)));
    }

    #[test]
    fn each_refusal_says_what_to_do() {
        let model = "caller".to_owned();
        for e in [
            ClientModelError::NoClient {
                model: model.clone(),
            },
            ClientModelError::NotDeclared {
                model: model.clone(),
            },
            ClientModelError::Stateless { model },
        ] {
            let ModelFailure::Provider(text) = ModelFailure::from(e) else {
                panic!("a provider failure")
            };
            assert!(text.contains("`caller`"), "{text}");
        }
    }

    /// A client that answers `echo: <last turn>` and keeps what it was asked.
    #[derive(Debug, Default)]
    struct Echo {
        asked: std::sync::Mutex<Vec<ClientSampling>>,
    }

    impl CallerModel for Echo {
        fn sample<'a>(&'a self, _model: &'a str, request: ClientSampling) -> SampleFuture<'a> {
            Box::pin(async move {
                let last = request
                    .turns
                    .last()
                    .map(|t| t.1.clone())
                    .unwrap_or_default();
                self.asked.lock().unwrap().push(request);
                Ok(ClientAnswer {
                    text: format!("echo: {last}"),
                    model: "client-model".into(),
                    stop_reason: "endTurn".into(),
                })
            })
        }
    }

    fn session(client: Option<std::sync::Arc<dyn CallerModel>>) -> std::sync::Arc<TaskModels> {
        let config = warden_policy::HostConfig::parse(
            "w.toml",
            "[[model]]\nname = \"caller\"\nprovider = \"mcp-client\"\n[prompt]\nconstitution = \"Be good.\"\n",
        )
        .unwrap();
        let models =
            crate::model::Models::from_config(&config, crate::model::testing::tls()).unwrap();
        assert!(models.is_client_served("caller") && !models.is_client_served("small"));
        assert_eq!(models.names(), ["caller"]);
        models.session(crate::model::SessionScope {
            agent: "ask".into(),
            rules: String::new(),
            memory: String::new(),
            tools: Vec::new(),
            tokens: 10_000,
            micro_usd: 0,
            observer: None,
            client,
        })
    }

    fn ask(text: &str) -> ChatRequest {
        let mut request = crate::model::testing::request(text, 100);
        request.model = "caller".into();
        request
    }

    #[tokio::test]
    async fn the_calling_client_answers_and_reports_no_usage() {
        let echo = std::sync::Arc::new(Echo::default());
        let session = session(Some(echo.clone()));
        let reply = session.call(ask("hi")).await.unwrap();
        assert_eq!(
            (reply.text.as_str(), reply.finish_reason.as_str()),
            ("echo: hi", "endTurn")
        );
        assert_eq!(reply.usage, ModelUsage::default());
        let asked = echo.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        assert!(
            asked[0].system.starts_with("Be good."),
            "{:?}",
            asked[0].system
        );
        assert_eq!(
            (asked[0].turns.clone(), asked[0].max_tokens),
            (vec![(true, "hi".to_owned())], 100)
        );
        let calls = session.calls();
        assert_eq!(calls.len(), 1);
        let record = &calls[0];
        assert!(!record.usage_reported);
        assert_eq!((record.prompt_tokens, record.completion_tokens), (0, 0));
        assert_eq!(record.provider_model, "mcp-client:client-model");
        assert_eq!(record.outcome, super::super::CallOutcome::Ok);
        // The budget was charged an estimate of what was sent and what came back.
        assert!(session.budget().spent().tokens > 0);
    }

    #[tokio::test]
    async fn without_a_client_the_call_fails_and_sends_nothing() {
        let session = session(None);
        let Err(ModelFailure::Provider(why)) = session.call(ask("hi")).await else {
            panic!("a provider failure")
        };
        assert!(why.contains("this run has none"), "{why}");
        assert_eq!(session.calls()[0].attempts, 0);
        assert_eq!(session.budget().spent().tokens, 0);
    }

    #[tokio::test]
    async fn a_schema_is_refused_as_invalid() {
        let session = session(Some(std::sync::Arc::new(Echo::default())));
        let mut request = ask("hi");
        request.json_schema = Some("{}".into());
        assert!(matches!(
            session.call(request).await,
            Err(ModelFailure::InvalidRequest(_))
        ));
    }
}
