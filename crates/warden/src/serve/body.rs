//! Reading a small signed statement from a request body (an approval, a reinstatement): at most
//! [`MAX_STATEMENT`] bytes, parsed into its type with unknown fields refused.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;

/// The largest signed statement the server reads (64 KiB; one is a few hundred bytes).
pub const MAX_STATEMENT: usize = 64 * 1024;

/// The body of a request, parsed as `T`; `what` names it in the error ("an approval").
///
/// # Errors
///
/// 413 `body-too-large` past [`MAX_STATEMENT`] bytes; 400 `bad-body` when it is not `T`.
pub(crate) async fn read_statement<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    what: &str,
    how: &str,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the request body is larger than {MAX_STATEMENT} bytes; {what} is far smaller"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_STATEMENT as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_STATEMENT)
        .await
        .map_err(|_| too_large())?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "bad-body",
            format!(
                "the body is not {what} ({}); {how}",
                crate::terminal::line(&e.to_string())
            ),
        )
    })
}
