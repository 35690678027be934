//! `GET /v1/agents` and `GET /v1/agents/{name}`: the agents the caller may use
//! ([`ServerState::agents`]) — each with its contract (version, summary, input and output JSON
//! Schemas) and what its policy lets it do (`writes`, `irreversible`, `network`). An agent the
//! caller's roles do not list is absent, exactly as a missing one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{ApiError, ServerState};

/// `GET /v1/agents`: `{"agents": [...]}`, by name.
pub(crate) async fn list(
    State(state): State<ServerState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let agents = state.agents(&caller).await?;
    Ok(Json(json!({ "agents": agents })))
}

/// `GET /v1/agents/{name}`: one agent as the listing gives it, or 404 `no-agent`.
pub(crate) async fn one(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    match state.agent(&caller, &name).await {
        Some(entry) => Ok(Json(
            serde_json::to_value(entry).map_err(|e| ApiError::internal(e.to_string()))?,
        )),
        None => Err(ApiError::not_found(
            "no-agent",
            "this host serves no agent of that name that this user may use; GET /v1/agents lists those they may",
        )),
    }
}
