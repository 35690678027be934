//! The A2A endpoint (A2A 1.0, JSON-RPC binding): Warden's agents as A2A agents. Agent Cards at
//! the well-known paths (`card.rs`), and JSON-RPC at `POST /a2a` (the agent named by a
//! message's `skill` metadata) and `POST /a2a/{agent}` (that agent): `SendMessage`,
//! `SendStreamingMessage` and `SubscribeToTask` (server-sent events, `stream.rs`), `GetTask`,
//! `ListTasks`, `CancelTask`, `GetExtendedAgentCard`. Every call is the facade's
//! ([`ServerState::submit`], [`ServerState::task`], [`ServerState::cancel`],
//! [`ServerState::agents`]) for the bearer token's caller, so a task sent by A2A is admitted,
//! bounded, run and recorded as one sent to `/v1/tasks`; this module only translates
//! (`wire.rs` the shapes, `task.rs` a ledger row as an A2A task). See `docs/a2a.md`.
//!
//! Why our own types and not the `a2a-rs` crates: its server crate brings a second HTTP client
//! stack (reqwest, for push notifications), protobuf and gRPC code generation (`a2a-pb`) and a
//! task store of its own beside the ledger; its types crate brings chrono, uuid and a second
//! base64 for a dozen plain structs.

mod card;
mod list;
mod rpc;
mod send;
mod stream;
mod task;
#[cfg(test)]
mod tests;
mod wire;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Caller, ServerState};
use crate::store::{ActionRecord, TaskRecord};
use rpc::{params_of, reply, request, task_id, version};
use wire::{Code, RpcError, SendParams, TaskIdParams};

/// How long `SendMessage` waits for its task to end (or stop for a person) before answering
/// with the task as it is; the task runs on.
const SEND_WAIT: Duration = Duration::from_secs(60);

/// The A2A routes, mounted beside the HTTP API's.
pub(super) fn routes() -> Router<ServerState> {
    Router::new()
        .route("/.well-known/agent-card.json", get(card::server_card))
        .route("/a2a", post(shared))
        .route("/a2a/{agent}", post(one_agent))
        .route(
            "/a2a/{agent}/.well-known/agent-card.json",
            get(card::agent_card),
        )
}

/// `POST /a2a`.
async fn shared(State(state): State<ServerState>, headers: HeaderMap, body: Body) -> Response {
    endpoint(state, headers, None, body).await
}

/// `POST /a2a/{agent}`.
async fn one_agent(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(agent): Path<String>,
    body: Body,
) -> Response {
    endpoint(state, headers, Some(agent), body).await
}

/// One JSON-RPC request: the caller (401 without a token, before the body is read), the body
/// (bounded), the request, the version, then the method.
async fn endpoint(
    state: ServerState,
    headers: HeaderMap,
    agent: Option<String>,
    body: Body,
) -> Response {
    let caller = match state.caller(&headers) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let bytes = match super::tasks::read_body(&headers, body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return reply(
                &Value::Null,
                Err(RpcError::new(Code::InvalidRequest, e.code, e.message)),
            );
        }
    };
    let (id, method, params) = match request(&bytes) {
        Ok(r) => r,
        Err((id, e)) => return reply(&id, Err(e)),
    };
    if let Err(e) = version(&headers) {
        return reply(&id, Err(e));
    }
    // Only the name is checked here: whether the caller may use the agent is the facade's
    // decision at submission (refused `agent-not-granted` and audited, as from any door).
    if agent
        .as_deref()
        .is_some_and(|a| !crate::calls::is_agent_name(a))
    {
        let e = RpcError::new(
            Code::InvalidParams,
            "bad-agent-name",
            "an agent name is 1 to 64 of a-z, 0-9 and -",
        );
        return reply(&id, Err(e));
    }
    let call = Call {
        state,
        caller,
        agent,
    };
    match method.as_str() {
        "SendStreamingMessage" => match params_of::<SendParams>(params) {
            Ok(p) => match call.submit(p, false).await {
                Ok((task, _)) => stream::follow(call, id, task),
                Err(e) => reply(&id, Err(e)),
            },
            Err(e) => reply(&id, Err(e)),
        },
        "SubscribeToTask" => match call.subscribable(params).await {
            Ok(task) => stream::follow(call, id, task),
            Err(e) => reply(&id, Err(e)),
        },
        _ => {
            let result = call.answer(&method, params, &headers).await;
            reply(&id, result)
        }
    }
}

/// A request's caller and endpoint.
#[derive(Clone)]
struct Call {
    state: ServerState,
    caller: Caller,
    /// The agent of `POST /a2a/{agent}`, a valid name (none on the shared endpoint).
    agent: Option<String>,
}

impl Call {
    /// The answer to a method that is not a stream.
    async fn answer(
        &self,
        method: &str,
        params: Option<Value>,
        headers: &HeaderMap,
    ) -> Result<Value, RpcError> {
        match method {
            "SendMessage" => {
                let p: SendParams = params_of(params)?;
                let immediately = p
                    .configuration
                    .as_ref()
                    .is_some_and(|c| c.return_immediately);
                let (id, held) = self.submit(p, !immediately).await?;
                let row = if immediately {
                    self.state.task(&self.caller, id).await?
                } else {
                    match tokio::time::timeout(SEND_WAIT, self.state.wait(&self.caller, id)).await {
                        Ok(row) => row?,
                        Err(_) => self.state.task(&self.caller, id).await?,
                    }
                };
                let pending = self.pending(&row, held).await?;
                Ok(json!({"task": task::task(&row, &pending, true)}))
            }
            "GetTask" => {
                let p: TaskIdParams = params_of(params)?;
                let row = self.row(&p.id).await?;
                Ok(json!(self.shown(row, true).await?))
            }
            "ListTasks" => self.list(params_of(params)?).await,
            "CancelTask" => {
                let p: TaskIdParams = params_of(params)?;
                let id = task_id(&p.id)?;
                self.row(&p.id).await?;
                let row = self.state.cancel(&self.caller, id).await?;
                if row.status != "cancelled" {
                    return Err(RpcError::new(
                        Code::TaskNotCancelable,
                        "not-cancellable",
                        format!(
                            "task {id} has already ended ({}); there is nothing to cancel",
                            crate::terminal::line(&row.status)
                        ),
                    ));
                }
                Ok(json!(self.shown(row, true).await?))
            }
            "GetExtendedAgentCard" => {
                let base = card::base_url(headers)?;
                Ok(match &self.agent {
                    Some(name) => {
                        let a = card::visible_agent(&self.state, &self.caller, name).await?;
                        card::card(
                            &format!("{base}/a2a/{name}"),
                            Some(&a),
                            std::slice::from_ref(&a),
                        )
                    }
                    None => card::card(
                        &format!("{base}/a2a"),
                        None,
                        &self.state.agents(&self.caller).await?,
                    ),
                })
            }
            "CreateTaskPushNotificationConfig"
            | "GetTaskPushNotificationConfig"
            | "ListTaskPushNotificationConfigs"
            | "DeleteTaskPushNotificationConfig" => Err(push_refused()),
            other => Err(RpcError::new(
                Code::MethodNotFound,
                "no-method",
                format!(
                    "no method `{}`: this endpoint answers SendMessage, SendStreamingMessage, SubscribeToTask, GetTask, ListTasks, CancelTask and GetExtendedAgentCard",
                    crate::terminal::line(other)
                ),
            )),
        }
    }

    /// The row of the task `id` if the caller may see it.
    async fn row(&self, id: &str) -> Result<TaskRecord, RpcError> {
        let row = self.state.task(&self.caller, task_id(id)?).await?;
        if self.agent.as_ref().is_some_and(|a| *a != row.agent) {
            return Err(no_task());
        }
        Ok(row)
    }

    /// `row` as an A2A task, with its pending approvals when it has completed.
    async fn shown(&self, row: TaskRecord, artifacts: bool) -> Result<wire::Task, RpcError> {
        let pending = self.pending(&row, None).await?;
        Ok(task::task(&row, &pending, artifacts))
    }

    /// The actions of `row`'s tree waiting for a person's approval if it has completed (none
    /// otherwise: only a completed task waits for them): one indexed read. The caller may see
    /// `row` (whoever fetched it checked), and so its tree. `held`: the ledger's count of held
    /// actions read before this request's task began, if it started at once — an unchanged
    /// count means none of its tree, and nothing is read
    /// ([`ServerState::pending_actions_after`](crate::serve::ServerState::pending_actions_after)).
    async fn pending(
        &self,
        row: &TaskRecord,
        held: Option<u64>,
    ) -> Result<Vec<ActionRecord>, RpcError> {
        if row.status != "completed" || self.state.none_held_since(held) {
            return Ok(Vec::new());
        }
        let (ledger, id) = (self.ledger()?, row.id);
        tokio::task::spawn_blocking(move || {
            task::pending_approvals(ledger.store(), id, crate::store::now_ms())
        })
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(internal)
    }

    fn ledger(&self) -> Result<std::sync::Arc<crate::ledger::Ledger>, RpcError> {
        self.state
            .runtime
            .ledger()
            .cloned()
            .ok_or_else(|| internal("the server keeps no ledger".into()))
    }

    /// The task `SubscribeToTask` names, if it may still change.
    async fn subscribable(&self, params: Option<Value>) -> Result<u64, RpcError> {
        let p: TaskIdParams = params_of(params)?;
        let row = self.row(&p.id).await?;
        let shown = self.shown(row, false).await?;
        if shown.status.state.is_terminal() {
            return Err(RpcError::new(
                Code::Unsupported,
                "task-ended",
                format!("task {} has ended: read it with GetTask", shown.id),
            ));
        }
        task_id(&p.id)
    }
}

/// A task of another agent asked for at an agent's own endpoint: missing, as the facade says
/// another user's task.
fn no_task() -> RpcError {
    RpcError::new(
        Code::TaskNotFound,
        "no-task",
        "no such task for this user at this endpoint",
    )
}

fn internal(message: String) -> RpcError {
    RpcError::new(Code::Internal, "host-failure", message)
}

fn push_refused() -> RpcError {
    RpcError::new(
        Code::PushNotSupported,
        "no-push",
        "push notifications are not supported: poll with GetTask, or stream with SendStreamingMessage",
    )
}
