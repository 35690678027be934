//! The person behind the calling MCP client, as the agent's `human` capability: a question
//! becomes `elicitation/create` (a form: the message and the requested schema) — on 2025-11-25
//! sent on the `tools/call`'s stream, on 2026-07-28 an input request of the call's
//! input-required result ([`super::mrtr`]; the schema's `x-warden-input-key`, when given, is its
//! key) — and accept / decline / cancel come back as the agent's typed answer. Only an MCP call
//! whose client declared `elicitation` can ask; every other run (the CLI, the HTTP API, A2A,
//! another agent's call, a 2026-07-28 call followed as a task, a client without `elicitation`)
//! gets `unavailable` with the reason, and nothing is sent.
//!
//! Each question leaves a `human-ask` audit record with its outcome and the names of the fields
//! asked for — never the message or the answer, which may hold anything the person typed.

use std::sync::Arc;

use rmcp::model::{
    ClientResult, ElicitRequest, ElicitRequestParams, ElicitationAction, InputRequest,
    ServerRequest,
};
use rmcp::service::OriginatingRequestId;
use serde_json::json;
use warden_sandbox::capabilities::human::{Answer, AskFailure, AskFuture, HumanChannel, Question};

use super::client::ClientHandle;
use super::mrtr::{INPUT_KEY, Reply};
use crate::audit::AuditEvent;
use crate::ledger::Ledger;

/// The `human` channel of one run: its calling client (if any), audited.
pub(crate) struct RunPerson {
    client: Option<ClientHandle>,
    ledger: Option<Arc<Ledger>>,
    task: u64,
    agent: String,
    user: String,
}

impl RunPerson {
    /// The channel of task `task` of `agent` for `user`, asking `client` when there is one.
    pub(crate) fn new(
        client: Option<ClientHandle>,
        ledger: Option<Arc<Ledger>>,
        task: u64,
        agent: &str,
        user: &str,
    ) -> RunPerson {
        RunPerson {
            client,
            ledger,
            task,
            agent: agent.to_owned(),
            user: user.to_owned(),
        }
    }

    fn audit(&self, question: &Question, outcome: &str) {
        let Some(ledger) = &self.ledger else { return };
        let fields: Vec<&String> = question
            .schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().take(64).collect())
            .unwrap_or_default();
        let event = AuditEvent::new("human-ask")
            .task(self.task)
            .agent(&self.agent)
            .user(&self.user)
            .detail(json!({"outcome": outcome, "fields": fields}));
        if let Err(e) = ledger.record(event) {
            tracing::error!(target: "warden::mcp", task = self.task, error = %e, "cannot record a question to a person in the audit log");
        }
    }
}

impl HumanChannel for RunPerson {
    fn ask(&self, question: Question) -> AskFuture<'_> {
        Box::pin(async move {
            let answer = match &self.client {
                None => Err(AskFailure::Unavailable(
                    "this run did not come from an MCP client, so no one can be asked mid-run (the CLI, the HTTP API, A2A and agent calls have no person on the line); go on without the answer, or escalate".into(),
                )),
                Some(client) => elicit(client, &question).await,
            };
            let outcome = match &answer {
                Ok(Answer::Accepted(_)) => "accepted",
                Ok(Answer::Declined) => "declined",
                Ok(Answer::Cancelled) => "cancelled",
                Err(AskFailure::Unavailable(_)) => "unavailable",
                Err(AskFailure::Failed(_)) => "failed",
            };
            self.audit(&question, outcome);
            answer
        })
    }
}

/// Ask `client`'s person `question` with `elicitation/create`.
async fn elicit(client: &ClientHandle, question: &Question) -> Result<Answer, AskFailure> {
    if !client.elicitation {
        return Err(AskFailure::Unavailable(
            "the calling MCP client did not declare the `elicitation` capability, so its person cannot be asked".into(),
        ));
    }
    let mut schema = question.schema.clone();
    let pause = match (&client.pause, client.stateless) {
        (_, false) => None,
        (Some(pause), true) => Some(pause),
        (None, true) => {
            return Err(AskFailure::Unavailable(
                "on MCP 2026-07-28 a question waits in an input-required result for the call that waits for the run, and a call followed as a task (the tasks extension) has none; call the tool without the tasks extension".into(),
            ));
        }
    };
    let key = pause.map(|p| p.key("ask", Some(&mut schema)));
    schema.remove(INPUT_KEY);
    let schema = serde_json::from_value(serde_json::Value::Object(schema)).map_err(|e| {
        AskFailure::Failed(format!(
            "the requested schema is not one MCP elicitation takes (an object of flat string, number, boolean or enum properties): {}",
            bounded(&e.to_string())
        ))
    })?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: question.message.clone(),
        requested_schema: schema,
    };
    let mut request = ElicitRequest::new(params);
    let result = match (pause, key) {
        (Some(pause), Some(key)) => {
            match pause.ask(key, InputRequest::Elicitation(request)).await {
                Ok(Reply::Elicited(result)) => result,
                Ok(Reply::Sampled(_)) => {
                    return Err(AskFailure::Failed(
                        "the client answered the question with a sampling result".into(),
                    ));
                }
                Err(why) => return Err(AskFailure::Unavailable(why)),
            }
        }
        _ => {
            request
                .extensions
                .insert(OriginatingRequestId(client.request.clone()));
            let answer = client
                .peer
                .send_request(ServerRequest::ElicitRequest(request))
                .await
                .map_err(|e| AskFailure::Failed(bounded(&e.to_string())))?;
            let ClientResult::ElicitResult(result) = answer else {
                return Err(AskFailure::Failed(
                    "the client answered elicitation/create with another result".into(),
                ));
            };
            result
        }
    };
    Ok(match result.action {
        ElicitationAction::Accept => Answer::Accepted(result.content.unwrap_or(json!({}))),
        ElicitationAction::Decline => Answer::Declined,
        ElicitationAction::Cancel => Answer::Cancelled,
        // An action this host does not know: the person did not answer as asked.
        _ => Answer::Cancelled,
    })
}

/// At most 300 characters of a client's text, for an error.
fn bounded(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_without_a_client_cannot_ask_and_says_why() {
        let person = RunPerson::new(None, None, 1, "a", "-");
        let question = Question {
            message: "Your name?".into(),
            schema: serde_json::from_value(json!({"type": "object"})).unwrap(),
        };
        let Err(AskFailure::Unavailable(why)) = person.ask(question).await else {
            panic!("unavailable")
        };
        assert!(why.contains("did not come from an MCP client"), "{why}");
    }

    #[test]
    fn the_suites_form_is_one_mcp_takes() {
        let schema: rmcp::model::ElicitationSchema = serde_json::from_value(json!({
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}
            },
            "required": ["username", "email"]
        }))
        .unwrap();
        let wire = serde_json::to_value(&schema).unwrap();
        assert_eq!(wire["required"], json!(["username", "email"]));
    }
}
