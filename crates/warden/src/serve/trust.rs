//! `GET /v1/trust`, `GET /v1/trust/{agent}/review` and `POST /v1/trust/{agent}/reinstate`: the
//! trust ladder over HTTP, as `warden trust list | review | reinstate` (the shared steps are the
//! library's [`crate::review`]).
//!
//! Reinstating takes a [`Reinstatement`] signed by the reviewer (`warden trust reinstate AGENT
//! --key KEY --code CODE --save FILE` writes one); the token alone never reinstates. The checks,
//! in order: the token's user holds a role with `review = true` (else `403 not-a-reviewer`,
//! nothing written); the statement is theirs (`reviewer` = the token's subject, else
//! `403 not-the-reviewer`); then [`crate::review::reinstate`], the CLI's own check (signature,
//! the person's key and role in the roles file, the review code of the trace that demoted the
//! agent), which audits the change before storing it.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::audit::reviewer_only;
use super::body::read_statement;
use super::offload::{blocking, ledger};
use super::{ApiError, ServerState};
use crate::review::{Reinstatement, ReviewError};
use crate::store::TrustRecord;
use crate::trust::TrustError;

/// A record as `GET /v1/trust` shows it: the standing to everyone, why and by whom it was
/// demoted and reviewed to a reviewer only (the reason quotes a task that may be another
/// user's).
fn shown(r: &TrustRecord, reviewer: bool) -> Value {
    let mut v = json!({
        "agent_id": r.agent_id,
        "module_hash": r.module_hash,
        "level": r.level,
        "streak": r.streak,
        "held": r.held,
        "updated_ms": r.updated_ms,
    });
    if reviewer {
        v["level_before"] = json!(r.level_before);
        v["demoted_by_task"] = json!(r.demoted_by_task);
        v["demoted_reason"] = json!(r.demoted_reason);
        v["reviewed_by"] = json!(r.reviewed_by);
    }
    v
}

/// `GET /v1/trust`: every agent's level (`warden trust list`).
pub(crate) async fn list(
    State(state): State<ServerState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let ledger = ledger(&state)?;
    let all = blocking(move || {
        ledger
            .store()
            .trust_all()
            .map_err(|e| ApiError::internal(format!("the ledger cannot be read: {e}")))
    })
    .await?;
    let agents: Vec<Value> = all.iter().map(|r| shown(r, caller.reviewer)).collect();
    Ok(Json(json!({ "agents": agents })))
}

/// `GET /v1/trust/{agent}/review`: the trace that demoted the agent and the review code a
/// reinstatement must carry (`warden trust review`); audited `trust-reviewed`. Reviewers only.
pub(crate) async fn review(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(agent): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    reviewer_only(&caller, "review an agent's demotion")?;
    let ledger = ledger(&state)?;
    let review = blocking(move || crate::review::review(&ledger, &agent).map_err(refused)).await?;
    Ok(Json(json!({
        "agent": shown(&review.record, true),
        "task": review.task.as_ref().map(|t| t.id),
        "status": review.task.as_ref().map(|t| t.status.clone()),
        "trace": review.trace,
        "code": review.code,
    })))
}

/// `POST /v1/trust/{agent}/reinstate`: check the signed reinstatement in the body and restore
/// the agent's level (`warden trust reinstate`).
pub(crate) async fn reinstate(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(agent): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    reviewer_only(&caller, "reinstate an agent")?;
    let statement: Reinstatement = read_statement(
        &headers,
        body,
        "a reinstatement",
        "send the JSON `warden trust reinstate AGENT --key KEY --code CODE --save FILE` writes",
    )
    .await?;
    if statement.reviewer != caller.user.subject {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not-the-reviewer",
            format!(
                "the reinstatement is signed as `{}`, but the token is `{}`'s; each reviewer posts their own",
                crate::terminal::line(&statement.reviewer),
                crate::terminal::line(&caller.user.subject)
            ),
        ));
    }
    let ledger = ledger(&state)?;
    let roles = state.authority.roles().clone();
    let (record, change) = blocking(move || {
        crate::review::reinstate(&ledger, &agent, &statement, &roles).map_err(refused)
    })
    .await?;
    Ok(Json(json!({
        "agent": shown(&record, true),
        "change": change,
    })))
}

/// The answer to a refused review or reinstatement, a stable code per reason.
fn refused(e: ReviewError) -> ApiError {
    let message = crate::terminal::line(&e.to_string()).into_owned();
    let (status, code) = match &e {
        ReviewError::NoAgent(_) => (StatusCode::NOT_FOUND, "no-trust-record"),
        ReviewError::Ambiguous(_) => (StatusCode::BAD_REQUEST, "ambiguous-agent"),
        ReviewError::Forged => (StatusCode::FORBIDDEN, "bad-signature"),
        ReviewError::UnknownKey(_) => (StatusCode::FORBIDDEN, "unknown-key"),
        ReviewError::NotReviewer(_) => (StatusCode::FORBIDDEN, "not-a-reviewer"),
        ReviewError::WrongAgent { .. } => (StatusCode::BAD_REQUEST, "wrong-agent"),
        ReviewError::Trust(TrustError::NotHeld(_)) => (StatusCode::CONFLICT, "not-held"),
        ReviewError::Trust(TrustError::NotReviewed(_)) => (StatusCode::FORBIDDEN, "not-reviewed"),
        ReviewError::Store(_) | ReviewError::Ledger(_) => return ApiError::internal(message),
    };
    ApiError::new(status, code, message)
}
