//! Warden's agents as MCP tools (the official Rust SDK, `rmcp`), over stdio (`warden mcp`) and
//! streamable HTTP (`/mcp` on `warden serve`, see [`http`]). Each agent the caller may use is a
//! tool ([`tools`]); a call submits a task through the server's facade
//! ([`ServerState::submit`]), so it is admitted, bounded by the caller's roles and the agent's
//! policy, queued, run, recorded and audited exactly as a task of the HTTP API; its end becomes
//! a tool result ([`result`]). Nothing here changes a grant: the tools are the agents, and no
//! agent can widen a policy.
//!
//! While a call runs, a client that sent a progress token gets `notifications/progress` (the
//! task accepted, then a beat while it runs, then its end); `notifications/cancelled` (or a
//! closed HTTP stream) stops waiting and asks [`ServerState::cancel`] to stop the task. Agents
//! added to or removed from the agents folder are noticed by the server's one watcher (inotify,
//! backed by a poll; `mcp/watch.rs`) and announced with `notifications/tools/list_changed` (to a
//! session's client, or on a 2026-07-28 `subscriptions/listen` stream that asked for them).
//!
//! On MCP 2026-07-28 a run that asks its person or the client's model pauses, and the call
//! answers an input-required result; the client's next call with the answers resumes it
//! ([`mrtr`]).
//!
//! A client that declares MCP's tasks extension (`io.modelcontextprotocol/tasks`) gets a task
//! handle for each call instead of waiting, and follows it with `tasks/get` and `tasks/cancel`
//! ([`tasks`]): a run outlives the request, and the client may come back later.

pub mod client;
pub mod content;
pub mod elicit;
pub mod http;
pub mod logging;
pub mod mrtr;
pub mod result;
mod seen;
pub mod stdio;
pub mod tasks;
pub mod tools;
pub(crate) mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    GetTaskParams, GetTaskResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig, SubscriptionFilter,
    UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::serve::{ApiError, Caller, ServerState, Submission, Work};

/// How long a client may keep a `tools/list` answer before asking again (`ttlMs`, 2026-07-28).
pub const LIST_TTL: Duration = Duration::from_secs(5);

/// How often the agents folder is listed besides the inotify events that wake the server's
/// watcher (for folders inotify cannot watch, such as a network mount, and for a lost event),
/// and how often a session's watch asks whether its client is still there.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How often a running call sends a progress beat (to a client that asked for progress).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Who the calls of a connection act for.
#[derive(Debug, Clone)]
pub enum Identity {
    /// One caller for the whole connection (stdio: the token given to `warden mcp`, or the
    /// development identity).
    Fixed(Caller),
    /// The caller the HTTP layer put in each request's extensions ([`http`] verifies the bearer
    /// token of every request before it reaches MCP).
    PerRequest,
}

/// The MCP server of a [`ServerState`]: its agents as tools, for one [`Identity`].
#[derive(Debug, Clone)]
pub struct AgentTools {
    state: ServerState,
    identity: Identity,
    workspace: Option<PathBuf>,
    seen: std::sync::Arc<seen::Seen>,
    levels: std::sync::Arc<logging::SessionLevels>,
    pauses: std::sync::Arc<mrtr::Pauses>,
}

impl AgentTools {
    /// The tools of `state` for `identity`; tasks run on `workspace` (a folder on this host,
    /// the root of the agents' `[fs]` grants), or on none.
    pub fn new(state: ServerState, identity: Identity, workspace: Option<PathBuf>) -> Self {
        AgentTools {
            state,
            identity,
            workspace,
            seen: Default::default(),
            levels: Default::default(),
            pauses: Default::default(),
        }
    }

    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<Caller, ErrorData> {
        match &self.identity {
            Identity::Fixed(caller) => Ok(caller.clone()),
            Identity::PerRequest => extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Caller>())
                .cloned()
                .ok_or_else(|| {
                    ErrorData::invalid_request(
                        "no identity token: send `Authorization: Bearer <token>`",
                        None,
                    )
                }),
        }
    }

    /// Wait for task `id`'s end, sending progress beats to `context`'s client if it asked, and
    /// asking the server to stop the task if the client cancels the call. A `waiting` call also
    /// takes the run's questions: one its answers hold is answered, any other ends the wait.
    async fn wait_for_end(
        &self,
        caller: &Caller,
        id: u64,
        context: &RequestContext<RoleServer>,
        mut waiting: Option<&mut mrtr::Waiting>,
    ) -> Result<Waited, ErrorData> {
        let progress = context.meta.get_progress_token();
        let notify = |step: f64, message: String| {
            let token = progress.clone();
            let peer = context.peer.clone();
            async move {
                if let Some(token) = token {
                    let param = ProgressNotificationParam::new(token, step).with_message(message);
                    // A client gone is found by the cancellation below, not here.
                    let _ = peer.notify_progress(param).await;
                }
            }
        };
        let resumed = waiting.as_ref().is_some_and(|w| w.continues.is_some());
        let state = if resumed { "answered" } else { "accepted" };
        notify(0.0, format!("task {id} {state}")).await;
        let started = Instant::now();
        let ended = self.state.wait(caller, id);
        tokio::pin!(ended);
        let mut beat =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        let mut step = 0.0;
        loop {
            let asked = async {
                match waiting.as_deref_mut() {
                    Some(w) => w.asks.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                row = &mut ended => {
                    let row = row.map_err(protocol_error)?;
                    notify(step + 1.0, format!("task {id} ended {}", row.status)).await;
                    return Ok(Waited::Ended(Box::new(row)));
                }
                ask = asked => match (ask, waiting.as_deref_mut()) {
                    (Some(ask), Some(w)) => {
                        if let Err(ask) = ask.answer_from(&mut w.responses) {
                            return Ok(Waited::Asked(ask));
                        }
                    }
                    // The run let go of its questions (it ended): only its end is left.
                    _ => waiting = None,
                },
                () = context.ct.cancelled() => {
                    if let Err(e) = self.state.cancel(caller, id).await {
                        tracing::warn!(task = id, error = %crate::terminal::line(&e.message), "the client cancelled a call whose task could not be stopped");
                    }
                    return Err(ErrorData::internal_error(
                        format!("the call was cancelled; task {id} was asked to stop"),
                        None,
                    ));
                }
                _ = beat.tick() => {
                    step += 1.0;
                    notify(step, format!("task {id} running for {} s", started.elapsed().as_secs())).await;
                }
            }
        }
    }

    /// The rest of a call of `tool` whose task `id` runs: wait ([`AgentTools::wait_for_end`]);
    /// the run's end is the tool's result, a question it asks a `waiting` call pauses it
    /// ([`mrtr`]) and is the result that asks the client. `held`: the ledger's count of held
    /// actions read before this call's task began, if it started at once
    /// ([`ServerState::run_now_counted`]).
    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        caller: &Caller,
        tool: &str,
        output_schema: Option<&serde_json::Value>,
        id: u64,
        held: Option<u64>,
        context: &RequestContext<RoleServer>,
        mut waiting: Option<mrtr::Waiting>,
    ) -> Result<CallToolResponse, ErrorData> {
        let row = loop {
            match self
                .wait_for_end(caller, id, context, waiting.as_mut())
                .await?
            {
                Waited::Ended(row) => break *row,
                Waited::Asked(ask) => {
                    let Some(w) = waiting.take() else {
                        unreachable!("only a waiting call is asked")
                    };
                    let subject = &caller.user.subject;
                    match self
                        .pauses
                        .pause(subject, tool, id, w.continues, ask, w.asks)
                    {
                        Ok(result) => return Ok(result.into()),
                        Err((ask, asks)) => {
                            ask.answer(Err(format!(
                                "too many runs wait for their clients' answers ({} on this server, {} a user); go on without the answer, or try later",
                                mrtr::MAX_PAUSED,
                                mrtr::MAX_PAUSED_PER_USER
                            )));
                            waiting = Some(mrtr::Waiting { asks, ..w });
                        }
                    }
                }
            }
        };
        if let Some(level) = self.levels.level_for(context)
            && matches!(
                row.status.as_str(),
                "completed" | "agent-error" | "killed" | "escalated"
            )
        {
            let logs = self.state.kept_logs().take_settled(id).await;
            logging::send(
                &context.peer,
                logging::messages(&logs, &row.agent, id, level),
            )
            .await;
        }
        let pending = if row.status == "completed" {
            self.state
                .pending_actions_after(caller, id, held)
                .await
                .map_err(protocol_error)?
        } else {
            Vec::new()
        };
        Ok(result::result_for(&row, &pending, output_schema).into())
    }
}

/// How a wait ended.
enum Waited {
    /// The task ended (its row).
    Ended(Box<crate::store::TaskRecord>),
    /// The run asked what the call's answers do not hold.
    Asked(mrtr::Ask),
}

/// A facade error as the JSON-RPC error of a request that cannot be served.
fn protocol_error(e: ApiError) -> ErrorData {
    match e.status.as_u16() {
        400..=499 => ErrorData::invalid_params(e.message, None),
        _ => ErrorData::internal_error(e.message, None),
    }
}

impl ServerHandler for AgentTools {
    #[allow(deprecated)] // `enable_logging`: MCP logging (SEP-2577), which both eras still define.
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_logging()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Each tool is a Warden agent, run in a WebAssembly sandbox under its policy and your roles; every call is a recorded, audited task (`warden task show ID`).",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let agents = self.state.agents(&caller).await.map_err(protocol_error)?;
        Ok(ListToolsResult {
            tools: agents.iter().map(tools::tool_of).collect(),
            ..Default::default()
        }
        .with_ttl_ms(LIST_TTL.as_millis() as u64))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let name = request.name.to_string();
        // The caller sees only the agents they may use: any other name is no tool at all.
        let Some(entry) = self.seen.entry(&self.state, &caller, &name).await else {
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool `{}` for you: `tools/list` names the ones you may call",
                    crate::terminal::line(&name.chars().take(64).collect::<String>())
                ),
                None,
            ));
        };
        // A tool that needs what the client did not declare is refused before anything runs.
        if let Some(required) = client::required_capabilities(&context, entry.client_model) {
            return Err(ErrorData::missing_required_client_capability(required));
        }
        if let Some(state) = request.request_state.as_deref() {
            let responses = request.input_responses.unwrap_or_default();
            let output = entry.output_schema.as_ref();
            return self
                .resume(&caller, &name, output, state, responses, &context)
                .await;
        }
        // A 2026-07-28 call that waits for its run may pause it for the client's answers.
        let (pauser, asks) = if client::is_stateless(&context) && !tasks::declared(&context) {
            let (pauser, asks) = self.pauses.pauser();
            (Some(pauser), Some(asks))
        } else {
            (None, None)
        };
        let input = tools::task_input(&entry.input_schema, request.arguments);
        let submission = Submission {
            work: Work::Agent {
                name: name.clone(),
                input,
            },
            workspace: self.workspace.clone(),
            client: Some(client::ClientHandle::of(&context, pauser)),
        };
        let (id, held) = match self.state.run_now_counted(&caller, submission).await {
            Ok(started) => started,
            // A request the tool refuses (bad input, a full queue, a refused agent) is the
            // tool's answer, which the model can read and act on; only a broken server is a
            // protocol error.
            Err(e) if e.status.is_client_error() => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "{} ({})",
                    e.message, e.code
                ))])
                .into());
            }
            Err(e) => return Err(protocol_error(e)),
        };
        if tasks::declared(&context) {
            let row = self.state.task(&caller, id).await.map_err(protocol_error)?;
            return Ok(CallToolResponse::Task(tasks::handle(&row)));
        }
        let waiting = asks.map(|asks| mrtr::Waiting {
            asks,
            responses: request.input_responses.unwrap_or_default(),
            continues: None,
        });
        let output = entry.output_schema.as_ref();
        self.answer(&caller, &name, output, id, held, &context, waiting)
            .await
    }

    #[allow(deprecated)] // MCP logging (SEP-2577): both eras Warden serves still define it.
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.levels.set(&context, request.level);
        Ok(())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        self.get_task_of(&caller, &request.task_id).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = self.caller(&context.extensions)?;
        self.cancel_task_of(&caller, &request.task_id).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = self.caller(&context.extensions)?;
        self.update_task_of(&caller, &request.task_id).await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        // A stream that did not ask for tool changes gets none: it waits for its end.
        if context.accepted().tools_list_changed == Some(true) {
            let sink = context.sink().clone();
            let changes = watch::announce_changes(
                self.state.agent_changes().await,
                || true,
                move || {
                    let sink = sink.clone();
                    async move { sink.notify_tool_list_changed().await.is_ok() }
                },
            );
            tokio::select! {
                () = context.cancelled() => {}
                () = changes => {}
            }
        } else {
            context.cancelled().await;
        }
        Ok(())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let peer = context.peer;
        let open = peer.clone();
        let alive = move || !open.is_transport_closed();
        let changes = self.state.agent_changes().await;
        tokio::spawn(watch::announce_changes(changes, alive, move || {
            let peer = peer.clone();
            async move { peer.notify_tool_list_changed().await.is_ok() }
        }));
    }
}
