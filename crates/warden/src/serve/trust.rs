//! `GET /v1/trust`, `GET /v1/trust/{agent}/review`, `POST /v1/trust/{agent}/reinstate` and
//! `POST /v1/trust/{agent}/report`: the trust ladder over HTTP, as `warden trust list | review |
//! reinstate | report` (the shared steps are the library's [`crate::review`]).
//!
//! A reported regression (`{"task": ID, "why": "…"}`) demotes the task's agent to level 1 and
//! holds it for a reviewer, for every user of that agent; so it takes a reviewer's role
//! (`403 not-a-reviewer` otherwise, nothing written), the agent in the path must be the task's
//! (`400 wrong-agent`), and [`crate::review::report`] — what `warden trust report` runs — audits
//! the demotion with the reporter's name before storing it.
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

/// The body of `POST /v1/trust/{agent}/report`: `warden trust report TASK --why WHY`'s fields.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    task: u64,
    why: String,
}

/// `POST /v1/trust/{agent}/report`: demote the agent of `task` for the regression `why`
/// (`warden trust report`). Reviewers only.
pub(crate) async fn report(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(agent): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    reviewer_only(
        &caller,
        "report a regression (it demotes the agent for every user)",
    )?;
    let report: Report = read_statement(
        &headers,
        body,
        "a regression report",
        "send {\"task\": ID, \"why\": \"what regressed\"}, as `warden trust report ID --why …` takes them",
    )
    .await?;
    let ledger = ledger(&state)?;
    let by = caller.user.subject.clone();
    let (record, change) = blocking(move || {
        let task = ledger
            .store()
            .task(report.task)
            .map_err(|_| super::work::no_task())?;
        if agent != task.agent && agent != task.agent_id {
            return Err(ApiError::bad_request(
                "wrong-agent",
                format!(
                    "task {} is agent `{}`'s ({}), not `{}`'s; name the task's agent in the path",
                    task.id,
                    crate::terminal::line(&task.agent),
                    crate::terminal::line(&task.agent_id),
                    crate::terminal::line(&agent)
                ),
            ));
        }
        crate::review::report(&ledger, task.id, &report.why, Some(by.as_str())).map_err(refused)
    })
    .await?;
    Ok(Json(json!({
        "agent": shown(&record, true),
        "change": change,
    })))
}

/// The answer to a refused review, reinstatement or report, a stable code per reason.
fn refused(e: ReviewError) -> ApiError {
    let message = crate::terminal::line(&e.to_string()).into_owned();
    let (status, code) = match &e {
        ReviewError::NoAgent(_) => (StatusCode::NOT_FOUND, "no-trust-record"),
        ReviewError::Ambiguous(_) => (StatusCode::BAD_REQUEST, "ambiguous-agent"),
        ReviewError::Forged => (StatusCode::FORBIDDEN, "bad-signature"),
        ReviewError::UnknownKey(_) => (StatusCode::FORBIDDEN, "unknown-key"),
        ReviewError::NotReviewer(_) => (StatusCode::FORBIDDEN, "not-a-reviewer"),
        ReviewError::WrongAgent { .. } => (StatusCode::BAD_REQUEST, "wrong-agent"),
        ReviewError::NoTask(_) => return super::work::no_task(),
        ReviewError::BadReason(_) => (StatusCode::BAD_REQUEST, "bad-reason"),
        ReviewError::Trust(TrustError::NotHeld(_)) => (StatusCode::CONFLICT, "not-held"),
        ReviewError::Trust(TrustError::NotReviewed(_)) => (StatusCode::FORBIDDEN, "not-reviewed"),
        ReviewError::Store(_) | ReviewError::Ledger(_) => return ApiError::internal(message),
    };
    ApiError::new(status, code, message)
}
