//! `POST /v1/tasks`, `GET /v1/tasks/{id}` and `GET /v1/tasks/{id}/trace`: submit a task of an
//! agent, or a request to the cascade (`Runtime::run_cascade`), for the token's user, and read
//! its row and trace from the ledger. Each run is counted in the metrics when it ends.
//!
//! A task is acknowledged (`202 {"task": id}`) once the ledger holds its row: the run starts at
//! once on a task of its own and the handler answers when the row exists (or the run has ended,
//! whichever comes first). An agent's run tells the handler its id the moment its row is stored
//! (`RunOptions::on_begin`); the cascade creates its row itself, so for it the handler watches
//! the store, taking one user's cascades one at a time so that a row is never taken for another
//! submission's. Before anything starts, the submission takes a place in the server's bounded
//! queue (`queue.rs`), or is answered `429`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::queue::Ticket;
use super::{ApiError, MAX_BODY, RunEnd, ServerState};
use crate::RunOptions;
use crate::cascade::{CASCADE_AGENT, CascadeError};
use crate::ledger::Ledger;
use crate::store::TaskRecord;

/// How often a submission looks for its task's row while the run starts.
const ROW_POLL: Duration = Duration::from_millis(2);

/// One lock per (user, agent): the submissions in the window between starting a run and finding
/// its row in the store (the cascade's).
#[derive(Debug, Default)]
pub(crate) struct Submissions(Mutex<HashMap<SubmissionKey, Arc<tokio::sync::Mutex<()>>>>);

/// A user's subject and an agent's name.
type SubmissionKey = (String, String);

impl Submissions {
    fn lock_for(&self, user: &str, agent: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((user.to_owned(), agent.to_owned()))
            .or_default()
            .clone()
    }
}

/// The body of `POST /v1/tasks`: an agent's task (`agent`, `input`) or the cascade's
/// (`cascade`, the request), either with a `workspace`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    agent: Option<String>,
    cascade: Option<String>,
    #[serde(default)]
    input: Value,
    workspace: Option<PathBuf>,
}

/// Read a request body, at most [`MAX_BODY`] bytes.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the request body is larger than {MAX_BODY} bytes; send a smaller task input"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| too_large())
}

/// `POST /v1/tasks`.
pub(crate) async fn submit(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = state.authority.caller(&headers)?;
    let bytes = read_body(&headers, body).await?;
    let request: Submit = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "bad-body",
            format!(
                "the body is not a task ({}); send {{\"agent\": \"NAME\", \"input\": JSON, \"workspace\": \"DIR\"}} or {{\"cascade\": \"REQUEST\", \"workspace\": \"DIR\"}}",
                crate::terminal::line(&e.to_string())
            ),
        )
    })?;
    if let Some(dir) = &request.workspace
        && !dir.is_dir()
    {
        return Err(ApiError::bad_request(
            "bad-workspace",
            "the workspace is not a folder on this host; name an existing folder, or none",
        ));
    }
    match (request.agent, request.cascade) {
        (Some(name), None) => {
            let (runtime, agents) = (state.runtime.clone(), state.agents.clone());
            let agent = {
                let name = name.clone();
                tokio::task::spawn_blocking(move || agents.find(&runtime, &name))
                    .await
                    .map_err(|e| ApiError::internal(format!("loading the agent failed: {e}")))??
            };
            let (told, begun) = tokio::sync::oneshot::channel();
            let told = Mutex::new(Some(told));
            let options = RunOptions {
                workspace: request.workspace,
                user: Some(caller.user.clone()),
                on_begin: Some(Arc::new(move |id| {
                    let told = told.lock().unwrap_or_else(PoisonError::into_inner).take();
                    if let Some(told) = told {
                        let _ = told.send(id);
                    }
                })),
            };
            let input = request.input.to_string();
            let metrics = state.metrics.clone();
            let counted = name.clone();
            let ticket = state.queue.admit(&caller.user.subject)?;
            start(&state, ticket, Begun::Told(begun), async move {
                let started = std::time::Instant::now();
                let ended = agent.run(&input, &options).await;
                let end = match &ended {
                    Ok(report) => RunEnd::Ended(&report.outcome),
                    Err(_) => RunEnd::NotStarted,
                };
                metrics.record_run(&counted, end, started.elapsed());
                match ended {
                    Ok(report) => Ok(report.task),
                    Err(crate::RunError::InputContract { detail, .. }) => {
                        Err(ApiError::bad_request(
                            "input-contract",
                            format!(
                                "the input breaks the agent's contract: {}",
                                crate::terminal::line(&detail)
                            ),
                        ))
                    }
                    Err(e) => Err(ApiError::internal(format!("the task could not run: {e}"))),
                }
            })
            .await
        }
        (None, Some(text)) => {
            if !request.input.is_null() {
                return Err(ApiError::bad_request(
                    "bad-body",
                    "a cascade takes its request as `cascade`, not an `input`; leave `input` out",
                ));
            }
            let workspace = request.workspace.ok_or_else(|| {
                ApiError::bad_request(
                    "bad-workspace",
                    "a cascade works on a workspace: name an existing folder as `workspace`",
                )
            })?;
            let runtime = state.runtime.clone();
            let metrics = state.metrics.clone();
            let user = caller.user.clone();
            let ticket = state.queue.admit(&caller.user.subject)?;
            let watch = Begun::Watch(caller.user.subject.clone());
            start(&state, ticket, watch, async move {
                let started = std::time::Instant::now();
                let ended = runtime.run_cascade(&text, &workspace, Some(user)).await;
                match ended {
                    Ok(report) => {
                        metrics.record_cascade(
                            &report.status,
                            report.trigger.as_deref(),
                            started.elapsed(),
                        );
                        Ok(report.task)
                    }
                    Err(e) => {
                        metrics.record_cascade("not-started", None, started.elapsed());
                        Err(match e {
                            CascadeError::Invalid(why) => ApiError::bad_request(
                                "bad-cascade",
                                format!("the cascade cannot run: {}", crate::terminal::line(&why)),
                            ),
                            CascadeError::Host(why) => ApiError::internal(format!(
                                "the cascade could not be recorded: {}",
                                crate::terminal::line(&why)
                            )),
                        })
                    }
                }
            })
            .await
        }
        _ => Err(ApiError::bad_request(
            "bad-body",
            "a task names either an `agent` or a `cascade` request, not both and not neither",
        )),
    }
}

/// How a submission learns its task's id once the row exists.
enum Begun {
    /// The run tells it (`RunOptions::on_begin`); the sender is dropped with the run.
    Told(tokio::sync::oneshot::Receiver<u64>),
    /// The cascade of this user creates its row itself: found in the store.
    Watch(String),
}

/// Start `run` (which creates a top-level row and returns its id) on a task of its own, holding
/// `ticket` until it ends, and answer once the ledger holds that row or the run has ended.
async fn start(
    state: &ServerState,
    ticket: Ticket,
    begun: Begun,
    run: impl std::future::Future<Output = Result<u64, ApiError>> + Send + 'static,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ended = |e: Result<Result<u64, ApiError>, tokio::task::JoinError>| match e {
        Ok(Ok(task)) => Ok(accepted(task)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(ApiError::internal(format!("the task failed: {e}"))),
    };
    let spawn = |run| {
        let guard = state.running.start();
        tokio::spawn(async move {
            let (_running, _place) = (guard, ticket);
            run.await
        })
    };
    let subject = match begun {
        Begun::Told(told) => {
            let run = spawn(run);
            return match told.await {
                Ok(id) => Ok(accepted(id)),
                // The run ended before its row existed (or without one): its own answer.
                Err(_) => ended(run.await),
            };
        }
        Begun::Watch(subject) => subject,
    };
    let ledger = state
        .runtime
        .ledger()
        .cloned()
        .ok_or_else(|| ApiError::internal("the server keeps no ledger"))?;
    let lock = state.submissions.lock_for(&subject, CASCADE_AGENT);
    let _one_at_a_time = lock.lock().await;
    let before = newest(&ledger, 1)
        .await?
        .first()
        .map_or(0, |t: &TaskRecord| t.id);
    let mut run = spawn(run);
    loop {
        tokio::select! {
            e = &mut run => return ended(e),
            () = tokio::time::sleep(ROW_POLL) => {
                let rows = newest(&ledger, 16).await?;
                if let Some(row) = rows.iter().find(|t| {
                    t.id > before && t.user == subject && t.agent == CASCADE_AGENT && t.parent.is_none()
                }) {
                    return Ok(accepted(row.id));
                }
            }
        }
    }
}

fn accepted(id: u64) -> (StatusCode, Json<Value>) {
    (StatusCode::ACCEPTED, Json(json!({"task": id})))
}

/// The newest `limit` task rows, read off the async workers.
async fn newest(ledger: &Arc<Ledger>, limit: usize) -> Result<Vec<TaskRecord>, ApiError> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || ledger.store().tasks(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("the ledger cannot be read: {e}")))
}

/// The task `id` if the caller may see it: their own, or any for a reviewer. Another user's task
/// is answered as a missing one (its existence is not the caller's to learn).
async fn visible(
    state: &ServerState,
    headers: &HeaderMap,
    id: &str,
) -> Result<TaskRecord, ApiError> {
    let caller = state.authority.caller(headers)?;
    let missing = || {
        ApiError::not_found(
            "no-task",
            "no such task for this user; the id is the `task` that POST /v1/tasks answered",
        )
    };
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad-task-id",
            "a task id is a number, as POST /v1/tasks answers it",
        )
    })?;
    let ledger = state
        .runtime
        .ledger()
        .cloned()
        .ok_or_else(|| ApiError::internal("the server keeps no ledger"))?;
    let row = tokio::task::spawn_blocking(move || ledger.store().task(id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|_| missing())?;
    if row.user != caller.user.subject && !caller.reviewer {
        return Err(missing());
    }
    Ok(row)
}

/// `GET /v1/tasks/{id}`: the row as `warden task show` gives it (the trace summarised), with its
/// model cost (`cost`, from the outcome's usage; `null` without model calls).
pub(crate) async fn show(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut row = visible(&state, &headers, &id).await?;
    let events = row
        .trace
        .as_ref()
        .and_then(|t| t["events"].as_array().map(Vec::len));
    row.trace = events.map(|n| json!(format!("{n} events: GET /v1/tasks/{}/trace", row.id)));
    let cost = row
        .outcome
        .as_ref()
        .map_or(Value::Null, |o| o["usage"]["model"].clone());
    let mut shown = serde_json::to_value(&row).map_err(|e| ApiError::internal(e.to_string()))?;
    shown["cost"] = cost;
    Ok(Json(shown))
}

/// `GET /v1/tasks/{id}/trace`: the task's status and its trace (`null` while it runs).
pub(crate) async fn trace(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = visible(&state, &headers, &id).await?;
    Ok(Json(json!({
        "task": row.id,
        "status": row.status,
        "trace": row.trace,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_is_read_up_to_its_bound() {
        let none = HeaderMap::new();
        let fits = read_body(&none, Body::from(vec![b'x'; MAX_BODY])).await;
        assert_eq!(fits.unwrap().len(), MAX_BODY);
        // Past the bound without a declared length (a chunked body): refused once read that far.
        let e = read_body(&none, Body::from(vec![b'x'; MAX_BODY + 1]))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large")
        );
        // A declared length past the bound: refused before anything is read.
        let mut declared = HeaderMap::new();
        declared.insert(
            axum::http::header::CONTENT_LENGTH,
            (MAX_BODY + 1).to_string().parse().unwrap(),
        );
        let e = read_body(&declared, Body::empty()).await.unwrap_err();
        assert_eq!(e.code, "body-too-large");
    }
}
