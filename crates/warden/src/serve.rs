//! `warden serve`'s HTTP API, as a library: the router, its handlers, bearer-token
//! authentication and JSON errors. The command (`cli/serve.rs`) binds a socket, builds the
//! [`Runtime`] and hands both to [`serve`].
//!
//! Why a module and not a `warden-server` crate: the server needs the `warden` library (the
//! runtime, the ledger, the agents directory) and the `warden` binary needs the server, and the
//! binary lives in the `warden` package; a `warden-server` crate would make a cycle that cargo
//! refuses. Once the command-line binary moves into a package of its own (say `warden-cli`),
//! this module can become the `warden-server` crate unchanged but for its imports.
//!
//! Routes (see `docs/server.md`): `GET /health` (no token), and, each with
//! `Authorization: Bearer <identity token>`, `GET /metrics` (Prometheus) and under `/v1`:
//! `GET /v1/agents`, `GET /v1/agents/{name}`, `POST /v1/tasks`, `GET /v1/tasks/{id}`,
//! `DELETE /v1/tasks/{id}` (cancel), `GET /v1/tasks/{id}/trace`. Every body is read with a
//! bound ([`MAX_BODY`]); every error is `{"error": {"code", "message"}}`.
//! Also `GET /v1/tasks/{id}/events` (`events.rs`), `POST /v1/tasks/{id}/resume | stop` (an
//! escalated cascade, `resume.rs`), `/v1/approvals` (`approvals.rs`), `/v1/trust` (`trust.rs`),
//! `/v1/audit` (`audit.rs`), and `GET /openapi.json` (no token,
//! `openapi.rs`), the document every route is checked against. Beside it, the A2A endpoint
//! (`a2a.rs`, `docs/a2a.md`): `GET /.well-known/agent-card.json`, `POST /a2a`,
//! `POST /a2a/{agent}` (JSON-RPC errors there). And MCP at `/mcp` with its protected resource
//! metadata under `/.well-known/` ([`crate::mcp::http`], `docs/mcp.md`).

mod a2a;
mod agents;
mod approvals;
mod audit;
mod auth;
mod body;
mod error;
mod events;
mod listing;
mod metrics;
mod now;
mod offload;
mod openapi;
mod queue;
mod resume;
mod runner;
mod tasks;
mod trust;
mod work;
mod work_mcp;
mod workspace;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::Runtime;

pub use agents::{AgentSource, BuiltAgents};
pub use agents::{MAX_LISTED, MAX_WARMED};
pub use auth::{Authority, Caller, DevIssuer};
pub use error::ApiError;
pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, DURATION_BUCKETS, Metrics, RunEnd};
pub use work::{AgentEntry, Submission, Work};

/// The largest request body the server reads (1 MiB); a longer one is refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// What every handler shares: the runtime (with its ledger), who may call, where agents are
/// found, the tasks still running, the queue's bounds (the runtime's host config `[server]`),
/// and the metrics.
#[derive(Clone)]
pub struct ServerState {
    runtime: Runtime,
    authority: Arc<Authority>,
    agents: Arc<AgentSource>,
    running: Arc<Running>,
    queue: Arc<queue::Queue<runner::Job>>,
    metrics: Arc<Metrics>,
    logs: Arc<crate::mcp::logging::KeptLogs>,
    /// Notices agents added to or removed from the agents folder (for MCP's `list_changed`).
    agent_watch: Arc<crate::mcp::watch::AgentsWatch>,
    /// The folders clients may name a task's workspace in (`[server] workspaces`).
    workspace_roots: Arc<workspace::Roots>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("running", &self.running.count())
            .finish_non_exhaustive()
    }
}

/// The tasks a server has started and not yet seen end.
#[derive(Debug, Default)]
pub struct Running {
    count: AtomicUsize,
    ended: tokio::sync::Notify,
}

impl Running {
    /// How many tasks are running now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn start(self: &Arc<Self>) -> RunningGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        RunningGuard(self.clone())
    }

    /// Wait until no task runs, or `grace` has passed; returns how many still run.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let ended = self.ended.notified();
            if self.count() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.count();
            }
        }
    }
}

/// Counts a task as running until it is dropped (the task's end, even by a panic).
struct RunningGuard(Arc<Running>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

impl ServerState {
    /// The state of a server running tasks on `runtime` (which must keep a ledger: a task is
    /// stored before it is acknowledged), for the users `authority` admits, with the agents of
    /// `agents`.
    ///
    /// # Errors
    ///
    /// [`ApiError`] (as a start-up error) when `runtime` has no ledger.
    pub fn new(
        runtime: Runtime,
        authority: Authority,
        agents: AgentSource,
    ) -> Result<Self, ApiError> {
        if runtime.ledger().is_none() {
            return Err(ApiError::internal(
                "the server needs a runtime with a ledger (Runtime::with_ledger)",
            ));
        }
        let queue = Arc::new(queue::Queue::new(runtime.host_config().server.clone()));
        let agent_watch = Arc::new(work_mcp::agent_watch(&runtime, &agents));
        let current = std::env::current_dir().ok();
        let workspace_roots = Arc::new(workspace::Roots::of(
            &runtime.host_config().server,
            current.as_deref(),
        ));
        Ok(ServerState {
            workspace_roots,
            agent_watch,
            queue,
            runtime,
            authority: Arc::new(authority),
            agents: Arc::new(agents),
            running: Arc::default(),
            metrics: Arc::default(),
            logs: Arc::default(),
        })
    }

    /// This state with `dir` a workspace root besides `[server] workspaces` (or the default): a
    /// folder the operator named on the command line (`warden mcp --workspace DIR`), never a
    /// client's. A relative `dir` is against the current folder.
    #[must_use]
    pub fn with_workspace_root(mut self, dir: &std::path::Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.workspace_roots = Arc::new(self.workspace_roots.and_named(dir));
        self
    }

    /// The tasks started and not yet ended (for a graceful shutdown's grace period).
    pub fn running(&self) -> Arc<Running> {
        self.running.clone()
    }

    /// The log lines of recently ended runs, kept for the MCP calls waiting on them.
    pub fn kept_logs(&self) -> &crate::mcp::logging::KeptLogs {
        &self.logs
    }

    /// The server's metrics (what `GET /metrics` answers).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
}

/// The API's routes over `state`.
pub fn router(state: ServerState) -> Router {
    let v1 = Router::new()
        .route("/agents", get(listing::list))
        .route("/agents/{name}", get(listing::one))
        .route("/tasks", post(tasks::submit))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}", delete(tasks::cancel))
        .route("/tasks/{id}/trace", get(tasks::trace))
        .route("/tasks/{id}/events", get(events::events))
        .route("/tasks/{id}/resume", post(resume::resume))
        .route("/tasks/{id}/stop", post(resume::stop))
        .route("/approvals", get(approvals::list))
        .route("/approvals/{id}", post(approvals::approve))
        .route("/trust", get(trust::list))
        .route("/trust/{agent}/review", get(trust::review))
        .route("/trust/{agent}/reinstate", post(trust::reinstate))
        .route("/trust/{agent}/report", post(trust::report))
        .route("/audit", get(audit::page))
        .route("/audit/verify", get(audit::verify))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::document))
        .nest("/v1", v1)
        .method_not_allowed_fallback(method_not_allowed)
        .merge(a2a::routes())
        .route_layer(axum::middleware::from_fn(crate::telemetry::name_route))
        .fallback(not_found)
        .with_state(state.clone())
        .merge(crate::mcp::http::routes(
            state.clone(),
            crate::mcp::http::HttpOptions::from_settings(&state.runtime.host_config().server),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics(),
            metrics::count_busy,
        ))
        .layer(axum::middleware::from_fn(crate::telemetry::trace_requests))
}

/// Serve `state`'s API on `listener` until `shutdown` resolves; then stop accepting and finish
/// the requests in flight. Tasks the server started keep running: wait for them with
/// [`Running::drain`].
///
/// # Errors
///
/// The I/O error that stopped the server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers (an MCP event stream above all) are written in several pieces: without
    // TCP_NODELAY, Nagle's algorithm holds the last one until the client's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method; GET /openapi.json lists each route's methods",
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no-route",
        "no such route: GET /openapi.json lists the API's routes (see docs/server.md); A2A is at /a2a (docs/a2a.md), MCP at /mcp (docs/mcp.md)",
    )
}
