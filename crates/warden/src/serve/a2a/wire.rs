//! A2A 1.0's JSON-RPC wire shapes, as the protocol's protobuf-JSON writes them (camelCase
//! fields, `TASK_STATE_*` and `ROLE_*` enum names): the requests this server reads, the tasks,
//! messages, artifacts and cards it answers with, and the JSON-RPC errors with A2A's codes.
//! Only what the endpoint uses is modelled; unknown request fields are ignored, as the
//! protocol's forward compatibility asks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::serve::ApiError;

/// The protocol version this endpoint speaks (the `A2A-Version` header's major.minor).
pub const PROTOCOL_VERSION: &str = "1.0";

/// The binding every interface of the card names.
pub const BINDING: &str = "JSONRPC";

/// A task's state, as A2A names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Accepted, not started.
    #[serde(rename = "TASK_STATE_SUBMITTED")]
    Submitted,
    /// Running.
    #[serde(rename = "TASK_STATE_WORKING")]
    Working,
    /// Ended with a result.
    #[serde(rename = "TASK_STATE_COMPLETED")]
    Completed,
    /// Ended without one.
    #[serde(rename = "TASK_STATE_FAILED")]
    Failed,
    /// Stopped on request.
    #[serde(rename = "TASK_STATE_CANCELED")]
    Canceled,
    /// Waiting for a person's decision (an escalation).
    #[serde(rename = "TASK_STATE_INPUT_REQUIRED")]
    InputRequired,
    /// Refused by the agent (never produced here: a refused submission is an error).
    #[serde(rename = "TASK_STATE_REJECTED")]
    Rejected,
    /// Waiting for a person's approval of an irreversible action.
    #[serde(rename = "TASK_STATE_AUTH_REQUIRED")]
    AuthRequired,
}

impl TaskState {
    /// Whether the task can change no more (A2A's terminal states).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Rejected
        )
    }

    /// Whether a person must act before the task moves on (A2A's interrupted states).
    pub fn is_interrupted(self) -> bool {
        matches!(self, Self::InputRequired | Self::AuthRequired)
    }
}

/// A content part of a message or artifact: one of `text`, `raw` (base64), `url`, `data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// A reference to content elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Structured JSON content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The content's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: Some(text.into()),
            media_type: Some("text/plain".into()),
            ..Part::default()
        }
    }

    /// A JSON part.
    pub fn data(data: Value) -> Self {
        Part {
            data: Some(data),
            media_type: Some("application/json".into()),
            ..Part::default()
        }
    }
}

/// A message: a client's request, or the agent's word in a task's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The sender's id for it.
    pub message_id: String,
    /// The context it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// The task it continues (refused on input: a task here takes one message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// `ROLE_USER` or `ROLE_AGENT`.
    pub role: String,
    /// Its content.
    pub parts: Vec<Part>,
    /// Extension data (`skill` names the agent on the shared endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// How a client wants `SendMessage` answered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendConfiguration {
    /// Answer at once with the task as it is, rather than when it ends or stops for a person.
    #[serde(default)]
    pub return_immediately: bool,
    /// Push notifications (not supported: refused when set).
    #[serde(default)]
    pub task_push_notification_config: Option<Value>,
}

/// `SendMessage` and `SendStreamingMessage` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendParams {
    /// The message.
    pub message: Message,
    /// How to answer.
    #[serde(default)]
    pub configuration: Option<SendConfiguration>,
    /// Request metadata (`skill`, `workspace`).
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// `GetTask`, `CancelTask` and `SubscribeToTask` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIdParams {
    /// The task's id.
    pub id: String,
}

/// `ListTasks` params.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// Only tasks of this context.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Only tasks in this state.
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many (1 to 100; 50 by default).
    #[serde(default)]
    pub page_size: Option<i64>,
    /// Where the previous page stopped.
    #[serde(default)]
    pub page_token: Option<String>,
    /// Only tasks whose status changed after this time (refused: not supported).
    #[serde(default)]
    pub status_timestamp_after: Option<Value>,
    /// Whether to include each task's artifacts (false by default).
    #[serde(default)]
    pub include_artifacts: Option<bool>,
}

/// A task's status: its state, a word from the agent, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The state.
    pub state: TaskState,
    /// What the client should know (why it failed, what a person must do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// When the task entered this state (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A result of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Its id within the task.
    pub artifact_id: String,
    /// Its name.
    pub name: String,
    /// Its content.
    pub parts: Vec<Part>,
}

/// A task as A2A shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The ledger's task id, in decimal.
    pub id: String,
    /// The task's context (each task is its own).
    pub context_id: String,
    /// Its status.
    pub status: TaskStatus,
    /// Its results.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The agent that runs it (`agent`), and Warden's own status word (`status`).
    pub metadata: Map<String, Value>,
}

/// A JSON-RPC error with an A2A code: what `error` holds in the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The code (A2A's `-320xx`, or JSON-RPC's own).
    pub code: Code,
    /// What went wrong and what to do.
    pub message: String,
    /// Warden's own error code (the HTTP API's `error.code`), in the error's details.
    pub warden_code: &'static str,
    /// Set for an error the HTTP layer should also say as `429` with `Retry-After`.
    pub busy: bool,
}

/// A2A's and JSON-RPC's error codes, with the reason A2A's error details name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `-32700`: the body is not JSON.
    Parse,
    /// `-32600`: not a JSON-RPC request.
    InvalidRequest,
    /// `-32601`: no such method.
    MethodNotFound,
    /// `-32602`: the params are wrong.
    InvalidParams,
    /// `-32603`: the host failed.
    Internal,
    /// `-32001`: no such task for this caller.
    TaskNotFound,
    /// `-32002`: the task cannot be cancelled.
    TaskNotCancelable,
    /// `-32003`: push notifications are not supported.
    PushNotSupported,
    /// `-32004`: the operation is not supported.
    Unsupported,
    /// `-32005`: a part's content type is not accepted.
    ContentType,
    /// `-32009`: the `A2A-Version` is not 1.0.
    VersionNotSupported,
}

impl Code {
    /// The number and A2A's reason.
    pub fn parts(self) -> (i64, &'static str) {
        match self {
            Code::Parse => (-32700, "JSON_PARSE"),
            Code::InvalidRequest => (-32600, "INVALID_REQUEST"),
            Code::MethodNotFound => (-32601, "METHOD_NOT_FOUND"),
            Code::InvalidParams => (-32602, "INVALID_PARAMS"),
            Code::Internal => (-32603, "INTERNAL"),
            Code::TaskNotFound => (-32001, "TASK_NOT_FOUND"),
            Code::TaskNotCancelable => (-32002, "TASK_NOT_CANCELABLE"),
            Code::PushNotSupported => (-32003, "PUSH_NOTIFICATION_NOT_SUPPORTED"),
            Code::Unsupported => (-32004, "UNSUPPORTED_OPERATION"),
            Code::ContentType => (-32005, "CONTENT_TYPE_NOT_SUPPORTED"),
            Code::VersionNotSupported => (-32009, "VERSION_NOT_SUPPORTED"),
        }
    }
}

impl RpcError {
    /// An error `code` with Warden's `warden_code` and `message`.
    pub fn new(code: Code, warden_code: &'static str, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            warden_code,
            busy: false,
        }
    }

    /// The `error` member: code, message and a `google.rpc.ErrorInfo` detail naming A2A's
    /// reason and Warden's code, as the official SDKs read it.
    pub fn to_json(&self) -> Value {
        let (code, reason) = self.code.parts();
        json!({
            "code": code,
            "message": self.message,
            "data": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "a2a-protocol.org",
                "metadata": {"warden": self.warden_code},
            }],
        })
    }
}

impl From<ApiError> for RpcError {
    /// The facade's errors in A2A's terms: a missing task is `TaskNotFound`, a task that cannot
    /// be stopped `TaskNotCancelable`, any other refusal of the request `InvalidParams`, a full
    /// queue `Internal` said as busy (HTTP `429`), a host failure `Internal`.
    fn from(e: ApiError) -> Self {
        use axum::http::StatusCode;
        let code = match (e.status, e.code) {
            (_, "no-task") => Code::TaskNotFound,
            (StatusCode::CONFLICT, _) => Code::TaskNotCancelable,
            (StatusCode::TOO_MANY_REQUESTS, _) => Code::Internal,
            (s, _) if s.is_client_error() => Code::InvalidParams,
            _ => Code::Internal,
        };
        // The facade names the HTTP API's answer; here a task's id is what SendMessage answered.
        let message = if code == Code::TaskNotFound {
            "no such task for this user: a task id is the `id` of the task SendMessage answered"
                .to_owned()
        } else {
            e.message
        };
        RpcError {
            busy: e.status == StatusCode::TOO_MANY_REQUESTS,
            ..RpcError::new(code, e.code, message)
        }
    }
}

/// A JSON-RPC success answer to request `id`.
pub fn success(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC error answer to request `id` (`null` when the request's id could not be read).
pub fn failure(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (`2026-01-02T03:04:05.678Z`), as protobuf
/// JSON writes a timestamp.
pub fn rfc3339(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
