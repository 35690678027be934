//! `GET /v1/audit?after=SEQ&limit=N` and `GET /v1/audit/verify`: the audit log over HTTP, for
//! reviewers only (records name every user's tasks, tools and approvers). A page is a bounded
//! read from a place in the log found by bisection ([`crate::audit::read_after`]); verifying is
//! `warden audit verify`'s read-only check ([`crate::ledger::verify_dir`]), one at a time.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::offload::{blocking, ledger};
use super::{ApiError, Caller, ServerState};

/// The records of a page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The most records a page holds.
pub const MAX_PAGE: usize = 1000;

/// Only one verification runs at a time: it reads the whole log and store.
static VERIFYING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The query of `GET /v1/audit`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    /// Records with a seq above this one (default 0: from the start).
    after: Option<u64>,
    /// How many at most (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    limit: Option<usize>,
}

pub(crate) fn reviewer_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.reviewer {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "not-a-reviewer",
        format!(
            "{} holds no role with review = true; only a reviewer may {what}",
            crate::terminal::line(&caller.user.subject)
        ),
    ))
}

/// `GET /v1/audit`: `{"records": [...], "next": SEQ}`; ask again with `after=next` for more.
pub(crate) async fn page(
    State(state): State<ServerState>,
    headers: HeaderMap,
    query: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    reviewer_only(&caller, "read the audit log")?;
    let Query(page) = query.map_err(|e| {
        ApiError::bad_request(
            "bad-query",
            format!(
                "the query is not a page ({}); send ?after=SEQ&limit=N (whole numbers)",
                crate::terminal::line(&e.body_text())
            ),
        )
    })?;
    let after = page.after.unwrap_or(0);
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "bad-query",
            format!("limit is 1 to {MAX_PAGE}"),
        ));
    }
    let ledger = ledger(&state)?;
    let records = blocking(move || {
        crate::audit::read_after(ledger.audit_path(), after, limit)
            .map_err(|e| ApiError::internal(crate::terminal::line(&e.to_string()).into_owned()))
    })
    .await?;
    let next = records.last().map_or(after, |r| r.seq);
    Ok(Json(json!({ "records": records, "next": next })))
}

/// `GET /v1/audit/verify`: `{"ok": true, "report": {...}}` as `warden audit verify` reports a
/// sound log, or `{"ok": false, "error": "..."}` naming the first bad record or disagreement.
/// `409 verify-busy` while another verification runs.
pub(crate) async fn verify(
    State(state): State<ServerState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    reviewer_only(&caller, "verify the audit log")?;
    let ledger = ledger(&state)?;
    blocking(move || {
        let Ok(_one) = VERIFYING.try_lock() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "verify-busy",
                "another verification of the audit log is running; ask again when it ends",
            ));
        };
        Ok(
            match crate::ledger::verify_dir(ledger.dir(), Some(ledger.host_key())) {
                Ok(report) => json!({"ok": true, "report": report, "unsigned": report.unsigned()}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
        )
    })
    .await
    .map(Json)
}
