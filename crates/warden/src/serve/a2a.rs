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
mod stream;
mod task;
#[cfg(test)]
mod tests;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::work::{AgentEntry, Submission, Work};
use super::{Caller, ServerState};
use crate::store::TaskRecord;
use wire::{Code, ListParams, Part, RpcError, SendParams, TaskIdParams, TaskState};

/// How long `SendMessage` waits for its task to end (or stop for a person) before answering
/// with the task as it is; the task runs on.
const SEND_WAIT: Duration = Duration::from_secs(60);

/// How many of the host's newest tasks `ListTasks` looks through for the caller's.
const LIST_SCANNED: usize = 2000;

/// `ListTasks`' page size when none is asked for, and the largest it takes.
const PAGE: (i64, i64) = (50, 100);

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
    let agent = match agent {
        Some(name) => match card::visible_agent(&state, &caller, &name).await {
            Ok(entry) => Some(entry),
            Err(e) => return reply(&id, Err(e.into())),
        },
        None => None,
    };
    let call = Call {
        state,
        caller,
        agent,
    };
    match method.as_str() {
        "SendStreamingMessage" => match params_of::<SendParams>(params) {
            Ok(p) => match call.submit(p).await {
                Ok(task) => stream::follow(call, id, task),
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

/// A JSON-RPC answer: `200` with the result or the error; a full queue is said as `429` with
/// `Retry-After: 1` as well.
fn reply(id: &Value, result: Result<Value, RpcError>) -> Response {
    match result {
        Ok(v) => axum::Json(wire::success(id, v)).into_response(),
        Err(e) if e.busy => (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "1")],
            axum::Json(wire::failure(id, &e)),
        )
            .into_response(),
        Err(e) => axum::Json(wire::failure(id, &e)).into_response(),
    }
}

/// The request's id, method and params; or the error and whatever id could be read.
fn request(bytes: &[u8]) -> Result<(Value, String, Option<Value>), (Value, RpcError)> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let message = format!(
            "the body is not JSON ({}); send a JSON-RPC 2.0 request",
            crate::terminal::line(&e.to_string())
        );
        (Value::Null, RpcError::new(Code::Parse, "bad-json", message))
    })?;
    let invalid = |id: Value, what: &str| {
        let message = format!(
            "{what}: send {{\"jsonrpc\": \"2.0\", \"id\": ID, \"method\": METHOD, \"params\": {{…}}}}"
        );
        Err((
            id,
            RpcError::new(Code::InvalidRequest, "bad-request", message),
        ))
    };
    let Value::Object(mut object) = value else {
        return invalid(
            Value::Null,
            "the request is not a JSON object (batches are not supported)",
        );
    };
    let id = match object.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(Value::Null) | None => {
            return invalid(
                Value::Null,
                "the request has no id (notifications are not supported)",
            );
        }
        Some(_) => return invalid(Value::Null, "the id is neither a string nor a number"),
    };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid(id, "`jsonrpc` must be \"2.0\"");
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return invalid(id, "the request names no method");
    };
    Ok((id, method, object.remove("params")))
}

/// `A2A-Version` must name 1.0 (a patch number aside); none means 0.3, which is not spoken here.
fn version(headers: &HeaderMap) -> Result<(), RpcError> {
    let asked = headers
        .get("a2a-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("0.3");
    let mut parts = asked.split('.');
    let ok = parts.next() == Some("1")
        && parts.next() == Some("0")
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        return Ok(());
    }
    Err(RpcError::new(
        Code::VersionNotSupported,
        "bad-version",
        format!(
            "A2A version {} is not supported: this endpoint speaks A2A {} (send `A2A-Version: 1.0`)",
            crate::terminal::line(asked),
            wire::PROTOCOL_VERSION
        ),
    ))
}

/// A method's params as `T` (`{}` when there are none).
fn params_of<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
    serde_json::from_value(params.unwrap_or_else(|| json!({}))).map_err(|e| {
        RpcError::new(
            Code::InvalidParams,
            "bad-params",
            format!(
                "the params are wrong: {}",
                crate::terminal::line(&e.to_string())
            ),
        )
    })
}

/// A task id as A2A carries it (the ledger's id in decimal); anything else names no task.
fn task_id(id: &str) -> Result<u64, RpcError> {
    id.parse().map_err(|_| {
        RpcError::new(
            Code::TaskNotFound,
            "no-task",
            "no such task: a task id is the `id` SendMessage answered",
        )
    })
}

/// A request's caller and endpoint.
#[derive(Clone)]
struct Call {
    state: ServerState,
    caller: Caller,
    /// The agent of `POST /a2a/{agent}` (none on the shared endpoint).
    agent: Option<AgentEntry>,
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
                let id = self.submit(p).await?;
                let row = if immediately {
                    self.state.task(&self.caller, id).await?
                } else {
                    match tokio::time::timeout(SEND_WAIT, self.state.wait(&self.caller, id)).await {
                        Ok(row) => row?,
                        Err(_) => self.state.task(&self.caller, id).await?,
                    }
                };
                Ok(json!({"task": self.shown(row, true).await?}))
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
                    Some(a) => card::card(
                        &format!("{base}/a2a/{}", a.name),
                        Some(a),
                        std::slice::from_ref(a),
                    ),
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
        if self.agent.as_ref().is_some_and(|a| a.name != row.agent) {
            return Err(no_task());
        }
        Ok(row)
    }

    /// Admit, store and start the task `p` asks for; its id.
    async fn submit(&self, p: SendParams) -> Result<u64, RpcError> {
        if p.configuration
            .as_ref()
            .is_some_and(|c| c.task_push_notification_config.is_some())
        {
            return Err(push_refused());
        }
        let message = &p.message;
        if message.task_id.is_some() {
            return Err(RpcError::new(
                Code::Unsupported,
                "one-message",
                "a task here takes one message and cannot be continued: send a new message without `taskId` (an escalated task is resumed with `warden task resume`)",
            ));
        }
        if message.role != "ROLE_USER" {
            return Err(RpcError::new(
                Code::InvalidParams,
                "bad-role",
                "a message sent to an agent has the role ROLE_USER",
            ));
        }
        let name = self.agent_named(&p)?;
        let input = input_of(&message.parts)?;
        let workspace = match metadata(&p, "workspace") {
            None => None,
            Some(Value::String(dir)) => Some(PathBuf::from(dir)),
            Some(_) => {
                return Err(RpcError::new(
                    Code::InvalidParams,
                    "bad-workspace",
                    "the `workspace` metadata is a folder's path, as a string",
                ));
            }
        };
        if self.agent.is_none() {
            card::visible_agent(&self.state, &self.caller, &name).await?;
        }
        let work = Work::Agent { name, input };
        Ok(self
            .state
            .submit(&self.caller, Submission { work, workspace })
            .await?)
    }

    /// The agent a message is for: the endpoint's, or its `skill` metadata's (both must agree).
    fn agent_named(&self, p: &SendParams) -> Result<String, RpcError> {
        let skill = match metadata(p, "skill") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(RpcError::new(
                    Code::InvalidParams,
                    "bad-skill",
                    "the `skill` metadata is an agent's name, as a string",
                ));
            }
        };
        match (&self.agent, skill) {
            (Some(a), Some(s)) if a.name != s => Err(RpcError::new(
                Code::InvalidParams,
                "bad-skill",
                format!(
                    "this endpoint is the agent `{}`; the message names the skill `{}`",
                    a.name,
                    crate::terminal::line(&s)
                ),
            )),
            (Some(a), _) => Ok(a.name.clone()),
            (None, Some(s)) => Ok(s),
            (None, None) => Err(RpcError::new(
                Code::InvalidParams,
                "no-skill",
                "name the agent: put {\"skill\": NAME} in the message's (or the request's) metadata, or send to /a2a/NAME; the card's skills are the agents you may use",
            )),
        }
    }

    /// `row` as an A2A task, with its pending approvals when it has completed.
    async fn shown(&self, row: TaskRecord, artifacts: bool) -> Result<wire::Task, RpcError> {
        let pending = if row.status == "completed" {
            let mut all = self.pending().await?;
            all.remove(&row.id).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(task::task(&row, &pending, artifacts))
    }

    /// Every task tree's actions waiting for a person's approval.
    async fn pending(
        &self,
    ) -> Result<std::collections::HashMap<u64, Vec<crate::store::ActionRecord>>, RpcError> {
        let ledger = self.ledger()?;
        tokio::task::spawn_blocking(move || {
            task::pending_approvals(ledger.store(), crate::store::now_ms())
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

    /// `ListTasks`: the caller's own top-level tasks (on `/a2a/{agent}`, that agent's), newest
    /// first, among the host's newest [`LIST_SCANNED`].
    async fn list(&self, p: ListParams) -> Result<Value, RpcError> {
        let bad = |what: &str| {
            Err(RpcError::new(
                Code::InvalidParams,
                "bad-params",
                what.to_owned(),
            ))
        };
        if p.status_timestamp_after.is_some() {
            return Err(RpcError::new(
                Code::Unsupported,
                "unsupported-filter",
                "`statusTimestampAfter` is not supported: page through the tasks instead",
            ));
        }
        let size = p.page_size.unwrap_or(PAGE.0);
        if !(1..=PAGE.1).contains(&size) {
            return bad("`pageSize` is 1 to 100");
        }
        let before = match p.page_token.as_deref() {
            None | Some("") => u64::MAX,
            Some(t) => match t.parse() {
                Ok(id) => id,
                Err(_) => return bad("`pageToken` is the `nextPageToken` of the previous page"),
            },
        };
        let state = match p.status.as_deref() {
            None | Some("" | "TASK_STATE_UNSPECIFIED") => None,
            Some(s) => match serde_json::from_value::<TaskState>(json!(s)) {
                Ok(state) => Some(state),
                Err(_) => return bad("`status` is a TASK_STATE_* name"),
            },
        };
        let ledger = self.ledger()?;
        let rows = tokio::task::spawn_blocking(move || ledger.store().tasks(LIST_SCANNED))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| internal(format!("the ledger cannot be read: {e}")))?;
        let subject = &self.caller.user.subject;
        let mut pending = self.pending().await?;
        let artifacts = p.include_artifacts.unwrap_or(false);
        let tasks: Vec<wire::Task> = rows
            .into_iter()
            .filter(|r| r.parent.is_none() && &r.user == subject)
            .filter(|r| self.agent.as_ref().is_none_or(|a| a.name == r.agent))
            .filter(|r| {
                p.context_id
                    .as_deref()
                    .is_none_or(|c| c.is_empty() || c == r.id.to_string())
            })
            .map(|r| {
                let waiting = if r.status == "completed" {
                    pending.remove(&r.id).unwrap_or_default()
                } else {
                    Vec::new()
                };
                task::task(&r, &waiting, artifacts)
            })
            .filter(|t| state.is_none_or(|s| s == t.status.state))
            .collect();
        let total = tasks.len();
        let page: Vec<&wire::Task> = tasks
            .iter()
            .filter(|t| t.id.parse::<u64>().is_ok_and(|id| id < before))
            .take(size as usize + 1)
            .collect();
        let next = if page.len() > size as usize {
            page[size as usize - 1].id.clone()
        } else {
            String::new()
        };
        let page = &page[..page.len().min(size as usize)];
        Ok(json!({"tasks": page, "nextPageToken": next, "pageSize": size, "totalSize": total}))
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

/// The request's or the message's metadata `key` (the request's first).
fn metadata<'a>(p: &'a SendParams, key: &str) -> Option<&'a Value> {
    let of = |m: &'a Option<Map<String, Value>>| m.as_ref().and_then(|m| m.get(key));
    of(&p.metadata).or_else(|| of(&p.message.metadata))
}

/// A message's parts as a task input: one `data` part is its JSON; text parts are their text
/// (joined by newlines) as a JSON string. Files (`raw`, `url`) are not accepted.
fn input_of(parts: &[Part]) -> Result<Value, RpcError> {
    if parts.iter().any(|p| p.raw.is_some() || p.url.is_some()) {
        return Err(RpcError::new(
            Code::ContentType,
            "bad-part",
            "file parts (`raw`, `url`) are not accepted: send the input as text, or as one data part",
        ));
    }
    let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
    let data: Vec<&Value> = parts.iter().filter_map(|p| p.data.as_ref()).collect();
    match (texts.as_slice(), data.as_slice()) {
        ([], [one]) => Ok((*one).clone()),
        (texts, []) if !texts.is_empty() => Ok(Value::String(texts.join("\n"))),
        _ => Err(RpcError::new(
            Code::InvalidParams,
            "bad-parts",
            "a message holds the task input as text parts, or as exactly one data part (not both, not none)",
        )),
    }
}
