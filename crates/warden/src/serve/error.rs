//! The API's errors: an HTTP status, a stable code a client can branch on, and a message that
//! says what to do, sent as `{"error": {"code": "…", "message": "…"}}`. The code also rides on
//! the response as an [`ErrorCode`] extension, so a layer (the `429` count of `/metrics`) reads
//! it without parsing the body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The stable code of an error answer, as a response extension (never sent to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// An error the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, kebab-case code (`unauthorized`, `bad-agent-name`, `body-too-large`, …).
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is wrong; `message` says how.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no valid identity token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: nothing there (or nothing this user may see, which is answered the same way).
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 429: the server holds as many tasks as it may (`code` says which bound); sent with
    /// `Retry-After: 1`.
    pub fn busy(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
    }

    /// 500: the host failed; the message names what.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "host-failure", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({
                "error": {"code": self.code, "message": self.message}
            })),
        )
            .into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        // Refused before the body was read: hyper will not keep a connection whose request body
        // is left unread, so the client is told to open a new one (otherwise its next request
        // on this connection meets a close without an answer).
        if matches!(
            self.status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::TOO_MANY_REQUESTS
        ) {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_is_json_with_its_code() {
        let response = ApiError::bad_request("bad-body", "send JSON").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["code"], "bad-body");
        assert_eq!(value["error"]["message"], "send JSON");
    }

    #[test]
    fn only_a_401_asks_for_a_bearer_token() {
        let r = ApiError::unauthorized("give a token").into_response();
        assert_eq!(r.headers()[axum::http::header::WWW_AUTHENTICATE], "Bearer");
        let r = ApiError::busy("queue-full", "wait").into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
        assert_eq!(
            r.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("queue-full"))
        );
        let r = ApiError::internal("disk").into_response();
        assert!(
            !r.headers()
                .contains_key(axum::http::header::WWW_AUTHENTICATE)
        );
    }
}
