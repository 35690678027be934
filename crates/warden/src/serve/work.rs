//! What every front end of the server submits through — the HTTP API (`tasks.rs`), MCP and A2A:
//! a [`Submission`] for a [`Caller`], a task's row as that caller may see it, waiting for its end,
//! cancelling it, and the agents the caller may use ([`AgentEntry`]). Each front end only
//! translates its protocol to these calls, so a task is admitted, stored, bounded, run, counted
//! and shown the same way whichever door it came in by.
//!
//! A task is acknowledged once the ledger holds its `queued` row, with everything needed to run
//! it later (its work, workspace, user and roles): [`ServerState::submit`] returns that row's id,
//! which the task keeps when it runs. Before that the submission takes a place in the server's
//! bounded queue (`queue.rs`), or is answered `429`; the runners (`runner.rs`) start queued
//! tasks in a fair order. Waiting for a task's end is woken by its runner, not by polling.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::queue::{Cancelled, Held, Place};
use super::runner::{Job, StoredWork, close_cancelled};
use super::{ApiError, Caller, ServerState};
use crate::cascade::CASCADE_AGENT;
use crate::ledger::Ledger;
use crate::store::TaskRecord;

/// How long [`ServerState::wait`] sleeps between looks at a task this server does not run (one
/// another process runs); a task it runs wakes it at its end.
const FOREIGN_POLL: Duration = Duration::from_millis(100);

/// The longest [`ServerState::wait`] trusts a wake-up alone before it reads the row again.
const WAKE_CHECK: Duration = Duration::from_secs(1);

/// What a caller asks the server to run.
#[derive(Debug, Clone)]
pub enum Work {
    /// A task of one agent, found by name in the server's agents (never a path).
    Agent {
        /// The agent's name.
        name: String,
        /// The task input (checked against the agent's contract before an instance starts).
        input: Value,
    },
    /// A request to the cascade (router, fast path, gate, team) on a workspace.
    Cascade {
        /// The request, in words.
        request: String,
    },
    /// An escalated cascade taken up again (`POST /v1/tasks/{id}/resume`, `resume.rs`): the
    /// task keeps its id; never a submission of its own ([`ServerState::submit`] refuses it).
    Resume {
        /// The escalated cascade's task.
        task: u64,
        /// What the person says to the next stage.
        note: Option<String>,
    },
}

/// A task to run for a caller.
#[derive(Debug, Clone)]
pub struct Submission {
    /// What to run.
    pub work: Work,
    /// The workspace folder on this host (required for the cascade).
    pub workspace: Option<PathBuf>,
    /// The MCP client that called the tool (for the models it serves); `None` elsewhere.
    pub client: Option<crate::mcp::client::ClientHandle>,
}

/// An agent a caller may use, as a protocol lists it (an MCP tool, an A2A skill).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentEntry {
    /// Its name (what a submission names).
    pub name: String,
    /// Its version, from its contract.
    pub version: String,
    /// One line saying what it does, from its contract.
    pub summary: String,
    /// The JSON Schema every task input must match (`{}` — any JSON — without a contract).
    pub input_schema: Value,
    /// The JSON Schema every result matches (`None` without a contract: nothing is promised).
    pub output_schema: Option<Value>,
    /// Whether its policy lets it write anything (files, memory).
    pub writes: bool,
    /// Whether its policy lets it ask for an irreversible tool.
    pub irreversible: bool,
    /// Whether its policy gives it any network (hosts or models).
    pub network: bool,
    /// Whether its policy grants a model the calling MCP client serves (`provider =
    /// "mcp-client"`): an MCP call then needs the client's `sampling` capability.
    pub client_model: bool,
}

impl ServerState {
    /// The caller a request's headers name (`Authorization: Bearer <identity token>`).
    ///
    /// # Errors
    ///
    /// 401 for a missing, malformed, forged or expired token; 403 for an unknown role.
    pub fn caller(&self, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        self.authority.caller(headers)
    }

    /// The caller an identity token names (the token given to `warden mcp`).
    ///
    /// # Errors
    ///
    /// As [`ServerState::caller`].
    pub fn caller_of_token(&self, token: &str) -> Result<Caller, ApiError> {
        self.authority.caller_of_token(token)
    }

    /// Admit and store `submission` for `caller` as a queued task; returns its id once its row
    /// is stored (it runs when the queue's fair order reaches it, keeping that id).
    ///
    /// # Errors
    ///
    /// 403 for a workspace outside the server's workspace roots or of its own folders (audited);
    /// 400 for a workspace that is not a folder, a bad agent name, an input that breaks the
    /// agent's contract, a cascade without a workspace; 404 for no such agent; 422 for an agent
    /// whose policy or component is refused; 429 when the queue or the user's share is full.
    pub async fn submit(&self, caller: &Caller, submission: Submission) -> Result<u64, ApiError> {
        let (row, job) = self.prepare(caller, submission).await?;
        let place = self.queue.admit(&caller.user.subject)?;
        self.enqueue(place, row, job).await
    }

    /// Store the admitted task `row` (its `job` beside it) as queued in `place`, and start what
    /// the queue lets start; its id.
    pub(super) async fn enqueue(
        &self,
        place: Place<Job>,
        row: TaskRecord,
        job: Job,
    ) -> Result<u64, ApiError> {
        let work = serde_json::to_string(&StoredWork::of(&job))
            .map_err(|e| ApiError::internal(format!("the task cannot be stored: {e}")))?;
        let ledger = self.ledger()?;
        let id = tokio::task::spawn_blocking(move || ledger.enqueue(&row, &work))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("the task could not be stored: {e}")))?;
        self.queue.push(place, id, job);
        self.pump();
        Ok(id)
    }

    /// The checks of a submission that need no run (workspace, grant, agent, input, cascade
    /// request), each refusal answered and audited as [`ServerState::submit`] says; the task's
    /// row to store and its job.
    pub(super) async fn prepare(
        &self,
        caller: &Caller,
        submission: Submission,
    ) -> Result<(TaskRecord, Job), ApiError> {
        let mut submission = submission;
        let subject = caller.user.subject.as_str();
        let named = match &submission.work {
            Work::Agent { name, .. } => super::agents::checked_name(name)?,
            Work::Cascade { .. } => CASCADE_AGENT,
            Work::Resume { .. } => {
                return Err(ApiError::bad_request(
                    "bad-body",
                    "an escalated cascade is resumed with POST /v1/tasks/{id}/resume, not submitted",
                ));
            }
        };
        if let Some(dir) = &submission.workspace {
            submission.workspace = Some(self.checked_workspace(caller, named, dir).await?);
        }
        if !caller.user.grant.allows_agent(named) {
            return Err(self.refuse_not_granted(caller, named).await);
        }
        let mut row = TaskRecord {
            id: 0,
            agent: CASCADE_AGENT.into(),
            agent_id: "host/cascade".into(),
            module_hash: "-".into(),
            user: subject.to_owned(),
            level: 0,
            grant: json!({
                "user": subject,
                "roles": caller.user.roles,
                "workspace": submission.workspace.as_ref().map(|w| w.display().to_string()),
            }),
            status: "queued".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: 0,
            ended_ms: None,
            parent: None,
        };
        let agent = match &submission.work {
            Work::Agent { name, input } => {
                let agent = self.find_agent(name).await?;
                self.check_input(&agent, caller, input).await?;
                row.agent = agent.policy().agent.name.clone();
                row.agent_id = agent.identity.agent_id.clone();
                row.module_hash = agent.identity.module_hash.clone();
                Some(agent)
            }
            Work::Cascade { request } => {
                if submission.workspace.is_none() {
                    return Err(ApiError::bad_request(
                        "bad-workspace",
                        "a cascade works on a workspace: name an existing folder as `workspace`",
                    ));
                }
                // What the cascade would refuse at its start is refused before it is queued.
                if request.trim().is_empty() || request.len() > crate::cascade::MAX_REQUEST {
                    return Err(ApiError::bad_request(
                        "bad-cascade",
                        format!(
                            "the cascade cannot run: the request must be 1 to {} bytes of text",
                            crate::cascade::MAX_REQUEST
                        ),
                    ));
                }
                row.grant["request"] = json!(request);
                None
            }
            Work::Resume { .. } => None,
        };
        let job = Job {
            user: caller.user.clone(),
            work: submission.work,
            workspace: submission.workspace,
            agent,
            client: submission.client,
        };
        Ok((row, job))
    }

    /// 403 `agent-not-granted` for `caller`, whose roles do not list `agent` (said whether or not
    /// the agent exists: its existence is not the caller's to learn), after its `task-refused`
    /// audit record — a decision like any other, audited as `warden run` audits it.
    pub(super) async fn refuse_not_granted(&self, caller: &Caller, agent: &str) -> ApiError {
        let user = caller.user.subject.clone();
        let answer = ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "agent-not-granted",
            format!(
                "user `{user}` may not use agent `{agent}`: none of their roles lists it (`agents = [...]` in the host's roles file); ask its operator for a role that does"
            ),
        );
        match self
            .audit_refusal(agent, &user, json!({"why": "agent-not-granted"}))
            .await
        {
            Ok(()) => answer,
            Err(e) => e,
        }
    }

    /// The `task-refused` audit record of a submission refused before it was stored (as the run
    /// path records one), for `agent` and `user`, with `detail`.
    pub(super) async fn audit_refusal(
        &self,
        agent: &str,
        user: &str,
        detail: Value,
    ) -> Result<(), ApiError> {
        let ledger = self.ledger()?;
        let event = crate::audit::AuditEvent::new("task-refused")
            .agent(agent)
            .user(user)
            .detail(detail);
        super::offload::blocking(move || {
            ledger
                .record(event)
                .map_err(|e| ApiError::internal(format!("the refusal could not be recorded: {e}")))
        })
        .await
        .map(drop)
    }

    /// Refuse an input that breaks `agent`'s contract before it is queued (audited as the run
    /// path does: `task-refused`).
    async fn check_input(
        &self,
        agent: &crate::runtime::LoadedAgent,
        caller: &Caller,
        input: &Value,
    ) -> Result<(), ApiError> {
        let contract = agent
            .contract()
            .await
            .map_err(|e| ApiError::internal(format!("the agent cannot describe itself: {e}")))?;
        let Some(Err(detail)) = contract.map(|c| c.check_input(&input.to_string())) else {
            return Ok(());
        };
        self.audit_refusal(
            &agent.policy().agent.name,
            &caller.user.subject,
            json!({"why": "input-contract", "detail": detail}),
        )
        .await?;
        Err(ApiError::bad_request(
            "input-contract",
            format!(
                "the input breaks the agent's contract: {}",
                crate::terminal::line(&detail)
            ),
        ))
    }

    /// The server's ledger (a server always keeps one; 500 if not).
    pub(crate) fn ledger(&self) -> Result<Arc<Ledger>, ApiError> {
        self.runtime
            .ledger()
            .cloned()
            .ok_or_else(|| ApiError::internal("the server keeps no ledger"))
    }

    /// The task `id` if `caller` may see it: their own, or any for a reviewer. Another user's
    /// task is answered as a missing one (its existence is not the caller's to learn).
    ///
    /// # Errors
    ///
    /// 404 `no-task` for a task that does not exist or is not the caller's.
    pub async fn task(&self, caller: &Caller, id: u64) -> Result<TaskRecord, ApiError> {
        let missing = no_task;
        // Read on this worker, as the run's ended row is (`ended_row`): one indexed read, which
        // no longer waits for the ledger's writer (`Ledger::store`'s `task`), costs less than
        // the two thread hand-offs of the blocking pool.
        let row = self.ledger()?.store().task(id).map_err(|_| missing())?;
        if row.user != caller.user.subject && !caller.reviewer {
            return Err(missing());
        }
        Ok(self.resuming(row))
    }

    /// The task `id`'s row once it has ended (its status no longer `queued` or `running`).
    /// Dropping the future stops waiting; the task runs on.
    ///
    /// # Errors
    ///
    /// As [`ServerState::task`].
    pub async fn wait(&self, caller: &Caller, id: u64) -> Result<TaskRecord, ApiError> {
        let sees = |user: &str| caller.reviewer || user == caller.user.subject;
        loop {
            // Watched before the row is read, so an end in between is not missed. A task this
            // server runs hands its ended row over in memory; the store is read only when it
            // did not (a cancelled queued task, a row that could not be read) or was slow to.
            let watch = match self.queue.watch(id) {
                Held::Ended(row) if sees(&row.user) => return Ok(Arc::unwrap_or_clone(row)),
                Held::Tracked(mut ended, user) if sees(&user) => {
                    let woke = tokio::time::timeout(WAKE_CHECK, ended.wait_for(Option::is_some));
                    if let Ok(Ok(row)) = woke.await
                        && let Some(row) = row.clone()
                    {
                        return Ok(Arc::unwrap_or_clone(row));
                    }
                    true
                }
                Held::Tracked(..) | Held::Ended(_) => true,
                Held::Unknown => false,
            };
            let row = self.task(caller, id).await?;
            if !matches!(row.status.as_str(), "queued" | "running") {
                return Ok(row);
            }
            if !watch {
                tokio::time::sleep(FOREIGN_POLL).await;
            }
        }
    }

    /// Stop the task `id` of `caller` (a reviewer may stop anyone's) at once: its instance is
    /// killed, its staged writes are discarded, it ends `cancelled`, recorded and audited with
    /// who cancelled it; a queued task never starts. Returns its row as it ended. Cancelling an
    /// ended task changes nothing and returns its row.
    ///
    /// # Errors
    ///
    /// As [`ServerState::task`]; 409 `not-cancellable` for a task another host process runs.
    pub async fn cancel(&self, caller: &Caller, id: u64) -> Result<TaskRecord, ApiError> {
        let row = self.task(caller, id).await?;
        if !matches!(row.status.as_str(), "queued" | "running") {
            return Ok(row);
        }
        let by = caller.user.subject.clone();
        match self.queue.cancel(id, &by) {
            Cancelled::Running => return self.wait(caller, id).await,
            Cancelled::Unknown if row.status == "running" => {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "not-cancellable",
                    "another host process runs this task; cancel it there, or wait for its end",
                ));
            }
            // Waiting here, or queued by a process that is gone: it ends without running.
            Cancelled::Waiting(_) | Cancelled::Unknown => {
                let ledger = self.ledger()?;
                let closed =
                    tokio::task::spawn_blocking(move || close_cancelled(&ledger, id, &by, 0))
                        .await
                        .map_err(|e| ApiError::internal(e.to_string()));
                self.queue.forget(id);
                closed??;
            }
        }
        self.task(caller, id).await
    }

    /// Start no more queued tasks (a graceful shutdown): those waiting stay queued in the store
    /// and the next start resumes them ([`ServerState::resume_queued`]).
    pub fn stop_starting(&self) {
        self.queue.close();
    }

    /// The agents `caller` may use, by name (deterministic order), each with its contract and
    /// what its policy lets it do. An agent whose component or policy is refused is left out.
    ///
    /// # Errors
    ///
    /// 500 when the agents' folder cannot be read.
    pub async fn agents(&self, caller: &Caller) -> Result<Vec<AgentEntry>, ApiError> {
        let (runtime, agents) = (self.runtime.clone(), self.agents.clone());
        let names = tokio::task::spawn_blocking(move || agents.names(&runtime))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            if let Some(entry) = self.entry(caller, &name).await {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// The agent `name` as [`ServerState::agents`] lists it, if `caller` may use it and it loads.
    pub async fn agent(&self, caller: &Caller, name: &str) -> Option<AgentEntry> {
        self.entry(caller, name).await
    }

    async fn entry(&self, caller: &Caller, name: &str) -> Option<AgentEntry> {
        if !caller.user.grant.allows_agent(name) {
            return None;
        }
        let agent = self.find_agent(name).await.ok()?;
        let contract = agent.contract().await.ok()?;
        let policy = agent.policy();
        let (version, summary, input_schema, output_schema) = match &contract {
            Some(c) => (
                c.description.version.clone(),
                c.description.summary.clone(),
                serde_json::from_str(&c.description.input_schema).unwrap_or(Value::Null),
                serde_json::from_str(&c.description.output_schema).ok(),
            ),
            None => (String::new(), String::new(), serde_json::json!({}), None),
        };
        Some(AgentEntry {
            name: name.to_owned(),
            version,
            summary,
            input_schema,
            output_schema,
            // Conservative: a tool or a callee may change something too.
            writes: !policy.fs.write.is_empty()
                || !policy.memory.write.is_empty()
                || !policy.tools.allow.is_empty()
                || !policy.agents.call.is_empty(),
            irreversible: policy
                .tools
                .allow
                .iter()
                .any(|t| tool_irreversible(&self.runtime, t)),
            network: !policy.net.allow.is_empty() || !policy.model.allow.is_empty(),
            client_model: self.runtime.models().is_some_and(|models| {
                policy
                    .model
                    .allow
                    .iter()
                    .any(|m| models.is_client_served(m))
            }),
        })
    }
}

/// 404 `no-task`: a task that does not exist, or is not the caller's to see.
pub(super) fn no_task() -> ApiError {
    ApiError::not_found(
        "no-task",
        "no such task for this user; the id is the `task` that POST /v1/tasks answered",
    )
}

/// Whether the host tool `name` is irreversible on this host (unknown tools are taken as such).
fn tool_irreversible(runtime: &crate::Runtime, name: &str) -> bool {
    runtime
        .host_config()
        .tools
        .iter()
        .find(|t| t.name == name)
        .is_none_or(|t| t.irreversible)
}
