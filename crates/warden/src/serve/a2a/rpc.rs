//! The JSON-RPC envelope: a request's id, method and params read from its body (or the
//! JSON-RPC error that says what is wrong with it), the `A2A-Version` it names, and the answer.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::wire::{self, Code, RpcError};

/// A JSON-RPC answer: `200` with the result or the error; a full queue is said as `429` with
/// `Retry-After: 1` as well.
pub(super) fn reply(id: &Value, result: Result<Value, RpcError>) -> Response {
    match result {
        Ok(v) => axum::Json(wire::success(id, v)).into_response(),
        Err(e) if e.busy => (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "1")],
            // Its code, for the 429 count of /metrics.
            axum::Extension(crate::serve::error::ErrorCode(e.warden_code)),
            axum::Json(wire::failure(id, &e)),
        )
            .into_response(),
        Err(e) => axum::Json(wire::failure(id, &e)).into_response(),
    }
}

/// The request's id, method and params; or the error and whatever id could be read.
pub(super) fn request(bytes: &[u8]) -> Result<(Value, String, Option<Value>), (Value, RpcError)> {
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
pub(super) fn version(headers: &HeaderMap) -> Result<(), RpcError> {
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
pub(super) fn params_of<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
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
pub(super) fn task_id(id: &str) -> Result<u64, RpcError> {
    id.parse().map_err(|_| {
        RpcError::new(
            Code::TaskNotFound,
            "no-task",
            "no such task: a task id is the `id` SendMessage answered",
        )
    })
}
