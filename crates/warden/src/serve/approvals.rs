//! `GET /v1/approvals` and `POST /v1/approvals/{id}`: irreversible actions held for a person,
//! and releasing one over HTTP with the same signed approval the CLI makes.
//!
//! A bearer token never stands in for the signature. The body of `POST` is an [`Approval`]
//! exactly as `warden approve ID --key KEY --save FILE` (or `warden approve --sign ACTION.json`,
//! from the listing) writes it: ed25519 by the approver's key over
//! `"warden/v1/approval\0" || SHA-256("warden-approval-v1\n{action}\n{hash}\n{approver}\n{expires_ms}\n")`.
//! The server then checks, in order: the token's user holds a role that may approve the tool
//! (`approve = [...]`, else `403 may-not-approve`, and nothing is written); the approval is the
//! caller's own (`approver` = the token's subject, else `403 not-the-approver`); and then
//! [`crate::ledger::Ledger::approve`], the very check `warden approve --submit` runs (signature,
//! key of that person in the roles file, their role, hash of the action as stored, expiry,
//! still pending — each refusal audited `approval-refused`), which performs the action once.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::body::read_statement;
use super::offload::{blocking, ledger};
use super::{ApiError, Caller, ServerState};
use crate::approval::{Approval, ApprovalError};
use crate::ledger::ApproveError;
use crate::policy::Roles;
use crate::store::{ActionRecord, now_ms};

/// How many of the newest actions `GET /v1/approvals` looks at.
pub const MAX_ACTIONS: usize = 1000;

/// Whether a user holding `roles` (a token's role names) may approve actions of `tool`: one of
/// those roles lists it in `approve = [...]` — the rule `warden approve` applies to a person.
pub fn may_approve(roles_file: &Roles, roles: &[String], tool: &str) -> bool {
    roles
        .iter()
        .filter_map(|r| roles_file.get(r))
        .any(|r| r.approve.iter().any(|t| t == tool))
}

/// An action as the listing shows it: the row, and the exact text the caller would sign.
fn shown(a: &ActionRecord, approver: &str) -> Value {
    let message = Approval::message(a.id, &a.hash, approver, a.expires_ms);
    json!({
        "id": a.id,
        "task": a.task,
        "agent": a.agent,
        "user": a.user,
        "tool": a.tool,
        "params": a.params,
        "hash": a.hash,
        "status": a.status,
        "created_ms": a.created_ms,
        "expires_ms": a.expires_ms,
        "to_sign": String::from_utf8_lossy(&message),
    })
}

/// `GET /v1/approvals`: the pending, unexpired actions the caller may approve, newest first.
pub(crate) async fn list(
    State(state): State<ServerState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let ledger = ledger(&state)?;
    let actions = blocking(move || {
        ledger
            .store()
            .actions(MAX_ACTIONS)
            .map_err(|e| ApiError::internal(format!("the ledger cannot be read: {e}")))
    })
    .await?;
    let now = now_ms();
    let roles = state.authority.roles();
    let list: Vec<Value> = actions
        .iter()
        .filter(|a| a.status == "pending" && a.expires_ms >= now)
        .filter(|a| may_approve(roles, &caller.user.roles, &a.tool))
        .map(|a| shown(a, &caller.user.subject))
        .collect();
    Ok(Json(json!({ "approvals": list })))
}

/// `POST /v1/approvals/{id}`: check the signed approval in the body and perform the action.
pub(crate) async fn approve(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad-action-id",
            "an action id is a number, as GET /v1/approvals lists it",
        )
    })?;
    let approval: Approval = read_statement(
        &headers,
        body,
        "an approval",
        "send the JSON `warden approve ID --key KEY --save FILE` writes",
    )
    .await?;
    if approval.action != id {
        return Err(ApiError::bad_request(
            "wrong-action",
            format!(
                "the approval is for action {}, not action {id}; post it to /v1/approvals/{}",
                approval.action, approval.action
            ),
        ));
    }
    let ledger = ledger(&state)?;
    let action = {
        let ledger = ledger.clone();
        blocking(move || {
            ledger.store().action(id).map_err(|_| {
                ApiError::not_found(
                    "no-action",
                    "no such action; GET /v1/approvals lists the ones you may approve",
                )
            })
        })
        .await?
    };
    authorised(&state, &caller, &approval, &action)?;
    let roles = state.authority.roles().clone();
    let config = state.runtime.host_config().clone();
    let performed = blocking(move || {
        Ok(ledger.approve(
            &approval,
            &roles,
            &config,
            crate::capabilities::tools::perform,
        ))
    })
    .await?;
    match performed {
        Ok(result) => Ok(Json(json!({
            "action": id,
            "status": "performed",
            "approver": caller.user.subject,
            "result": result,
        }))),
        Err(e) => Err(refused(id, e)),
    }
}

/// The checks of the token's user, before the signature's: the role (as the CLI's rule for a
/// person) and that the approval is their own.
fn authorised(
    state: &ServerState,
    caller: &Caller,
    approval: &Approval,
    action: &ActionRecord,
) -> Result<(), ApiError> {
    if !may_approve(state.authority.roles(), &caller.user.roles, &action.tool) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "may-not-approve",
            crate::terminal::line(
                &ApprovalError::NotAuthorised {
                    person: caller.user.subject.clone(),
                    tool: action.tool.clone(),
                }
                .to_string(),
            )
            .into_owned(),
        ));
    }
    if approval.approver != caller.user.subject {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not-the-approver",
            format!(
                "the approval is signed as `{}`, but the token is `{}`'s; each approver posts their own approval",
                crate::terminal::line(&approval.approver),
                crate::terminal::line(&caller.user.subject)
            ),
        ));
    }
    Ok(())
}

/// The answer to a refused or failed approval, with a stable code per reason.
fn refused(id: u64, e: ApproveError) -> ApiError {
    let message = crate::terminal::line(&e.to_string()).into_owned();
    let (status, code) = match &e {
        ApproveError::Refused(r) => match r {
            ApprovalError::Forged => (StatusCode::FORBIDDEN, "bad-signature"),
            ApprovalError::UnknownKey(_) => (StatusCode::FORBIDDEN, "unknown-key"),
            ApprovalError::NotAuthorised { .. } => (StatusCode::FORBIDDEN, "may-not-approve"),
            ApprovalError::NotPending(..) => (StatusCode::CONFLICT, "not-pending"),
            ApprovalError::Changed(_) => (StatusCode::CONFLICT, "action-changed"),
            ApprovalError::Expired(_) => (StatusCode::GONE, "approval-expired"),
            ApprovalError::WrongAction { .. } => (StatusCode::BAD_REQUEST, "wrong-action"),
        },
        ApproveError::NoTool(_) => (StatusCode::CONFLICT, "no-tool"),
        ApproveError::Failed(_) => (StatusCode::BAD_GATEWAY, "action-failed"),
        ApproveError::Ledger(_) => {
            return ApiError::internal(format!("action {id}: {message}"));
        }
    };
    ApiError::new(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_may_approve_only_the_tools_it_lists() {
        let roles = Roles::parse(
            "roles.toml",
            "[role.release]\napprove = [\"deploy\"]\n[role.dev]\nfs.read = [\"**\"]\n",
        )
        .unwrap();
        let release = vec!["release".to_string()];
        let dev = vec!["dev".to_string()];
        assert!(may_approve(&roles, &release, "deploy"));
        assert!(!may_approve(&roles, &release, "wipe"));
        assert!(!may_approve(&roles, &dev, "deploy"));
        assert!(!may_approve(&roles, &[], "deploy"));
        // A role the file does not define grants nothing.
        assert!(!may_approve(&roles, &["admin".to_string()], "deploy"));
    }
}
