//! `POST /v1/tasks`, `GET /v1/tasks/{id}`, `DELETE /v1/tasks/{id}` and
//! `GET /v1/tasks/{id}/trace`: the HTTP face of [`ServerState::submit`], [`ServerState::task`]
//! and [`ServerState::cancel`] (`work.rs`): submit a task of an agent, or a request to the
//! cascade, for the token's user, read its row and trace from the ledger, and cancel it.

use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::work::{Submission, Work};
use super::{ApiError, MAX_BODY, ServerState};
use crate::store::TaskRecord;

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
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, ApiError> {
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
    let caller = state.caller(&headers)?;
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
    let work = match (request.agent, request.cascade) {
        (Some(name), None) => Work::Agent {
            name,
            input: request.input,
        },
        (None, Some(request_text)) => {
            if !request.input.is_null() {
                return Err(ApiError::bad_request(
                    "bad-body",
                    "a cascade takes its request as `cascade`, not an `input`; leave `input` out",
                ));
            }
            Work::Cascade {
                request: request_text,
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "bad-body",
                "a task names either an `agent` or a `cascade` request, not both and not neither",
            ));
        }
    };
    let task = state
        .submit(
            &caller,
            Submission {
                work,
                workspace: request.workspace,
                client: None,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task": task}))))
}

/// The task `id` (a path segment) if the caller of `headers` may see it.
async fn visible(
    state: &ServerState,
    headers: &HeaderMap,
    id: &str,
) -> Result<TaskRecord, ApiError> {
    let caller = state.caller(headers)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad-task-id",
            "a task id is a number, as POST /v1/tasks answers it",
        )
    })?;
    state.task(&caller, id).await
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

/// `DELETE /v1/tasks/{id}`: cancel the task (a reviewer may cancel anyone's); the row as it
/// ended (`cancelled`, or its end if it had ended already).
pub(crate) async fn cancel(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = visible(&state, &headers, &id).await?;
    let caller = state.caller(&headers)?;
    let row = state.cancel(&caller, row.id).await?;
    Ok(Json(json!({
        "task": row.id,
        "status": row.status,
        "outcome": row.outcome,
    })))
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
