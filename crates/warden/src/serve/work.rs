//! What every front end of the server submits through — the HTTP API (`tasks.rs`), MCP and A2A:
//! a [`Submission`] for a [`Caller`], a task's row as that caller may see it, waiting for its end,
//! cancelling it, and the agents the caller may use ([`AgentEntry`]). Each front end only
//! translates its protocol to these calls, so a task is admitted, stored, bounded, run, counted
//! and shown the same way whichever door it came in by.
//!
//! A task is acknowledged once the ledger holds its row: the run starts at once on a task of its
//! own and [`ServerState::submit`] returns when the row exists (or the run has ended, whichever
//! comes first). An agent's run tells it its id the moment its row is stored
//! (`RunOptions::on_begin`); the cascade creates its row itself, so for it the store is watched,
//! one user's cascades one at a time so that a row is never taken for another submission's.
//! Before anything starts, the submission takes a place in the server's bounded queue
//! (`queue.rs`), or is answered `429`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::queue::Ticket;
use super::{ApiError, Caller, RunEnd, ServerState};
use crate::RunOptions;
use crate::cascade::{CASCADE_AGENT, CascadeError};
use crate::ledger::Ledger;
use crate::store::TaskRecord;

/// How often a submission looks for its task's row while the run starts.
const ROW_POLL: Duration = Duration::from_millis(2);

/// How often [`ServerState::wait`] looks at a running task's row.
const END_POLL: Duration = Duration::from_millis(5);

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
}

/// A task to run for a caller.
#[derive(Debug, Clone)]
pub struct Submission {
    /// What to run.
    pub work: Work,
    /// The workspace folder on this host (required for the cascade).
    pub workspace: Option<PathBuf>,
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
}

/// One lock per (user, agent): the submissions in the window between starting a run and finding
/// its row in the store (the cascade's).
#[derive(Debug, Default)]
pub(crate) struct Submissions(Mutex<HashMap<SubmissionKey, Arc<tokio::sync::Mutex<()>>>>);

/// A user's subject and an agent's name.
type SubmissionKey = (String, String);

impl Submissions {
    fn lock_for(&self, user: &str, agent: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((user.to_owned(), agent.to_owned()))
            .or_default()
            .clone()
    }
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

    /// Admit, store and start `submission` for `caller`; returns the task id once its row is
    /// stored.
    ///
    /// # Errors
    ///
    /// 400 for a workspace that is not a folder, a bad agent name, an input that breaks the
    /// agent's contract, a cascade without a workspace; 404 for no such agent; 422 for an agent
    /// whose policy or component is refused; 429 when the queue or the user's share is full.
    pub async fn submit(&self, caller: &Caller, submission: Submission) -> Result<u64, ApiError> {
        if let Some(dir) = &submission.workspace
            && !dir.is_dir()
        {
            return Err(ApiError::bad_request(
                "bad-workspace",
                "the workspace is not a folder on this host; name an existing folder, or none",
            ));
        }
        match submission.work {
            Work::Agent { name, input } => {
                self.submit_agent(caller, name, input, submission.workspace)
                    .await
            }
            Work::Cascade { request } => {
                let workspace = submission.workspace.ok_or_else(|| {
                    ApiError::bad_request(
                        "bad-workspace",
                        "a cascade works on a workspace: name an existing folder as `workspace`",
                    )
                })?;
                self.submit_cascade(caller, request, workspace).await
            }
        }
    }

    async fn submit_agent(
        &self,
        caller: &Caller,
        name: String,
        input: Value,
        workspace: Option<PathBuf>,
    ) -> Result<u64, ApiError> {
        if !caller.user.grant.allows_agent(&name) {
            // A decision like any other: audited (as `warden run` audits it) before the answer.
            let ledger = self.ledger()?;
            let (agent, user) = (name.clone(), caller.user.subject.clone());
            tokio::task::spawn_blocking(move || {
                ledger.record(
                    crate::audit::AuditEvent::new("task-refused")
                        .agent(&agent)
                        .user(&user)
                        .detail(serde_json::json!({"why": "agent-not-granted"})),
                )
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("the refusal could not be audited: {e}")))?;
            return Err(not_granted(&caller.user.subject, &name));
        }
        let (runtime, agents) = (self.runtime.clone(), self.agents.clone());
        let agent = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || agents.find(&runtime, &name))
                .await
                .map_err(|e| ApiError::internal(format!("loading the agent failed: {e}")))??
        };
        let (told, begun) = tokio::sync::oneshot::channel();
        let told = Mutex::new(Some(told));
        let options = RunOptions {
            workspace,
            user: Some(caller.user.clone()),
            on_begin: Some(Arc::new(move |id| {
                let told = told.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(told) = told {
                    let _ = told.send(id);
                }
            })),
        };
        let input = input.to_string();
        let metrics = self.metrics.clone();
        let ticket = self.queue.admit(&caller.user.subject)?;
        self.start(ticket, Begun::Told(begun), async move {
            let started = std::time::Instant::now();
            let ended = agent.run(&input, &options).await;
            let end = match &ended {
                Ok(report) => RunEnd::Ended(&report.outcome),
                Err(_) => RunEnd::NotStarted,
            };
            metrics.record_run(&name, end, started.elapsed());
            match ended {
                Ok(report) => Ok(report.task),
                Err(crate::RunError::InputContract { detail, .. }) => Err(ApiError::bad_request(
                    "input-contract",
                    format!(
                        "the input breaks the agent's contract: {}",
                        crate::terminal::line(&detail)
                    ),
                )),
                Err(crate::RunError::NotGranted { agent, user }) => Err(not_granted(&user, &agent)),
                Err(e) => Err(ApiError::internal(format!("the task could not run: {e}"))),
            }
        })
        .await
    }

    async fn submit_cascade(
        &self,
        caller: &Caller,
        text: String,
        workspace: PathBuf,
    ) -> Result<u64, ApiError> {
        let runtime = self.runtime.clone();
        let metrics = self.metrics.clone();
        let user = caller.user.clone();
        let ticket = self.queue.admit(&caller.user.subject)?;
        let watch = Begun::Watch(caller.user.subject.clone());
        self.start(ticket, watch, async move {
            let started = std::time::Instant::now();
            let ended = runtime.run_cascade(&text, &workspace, Some(user)).await;
            match ended {
                Ok(report) => {
                    metrics.record_cascade(
                        &report.status,
                        report.trigger.as_deref(),
                        started.elapsed(),
                    );
                    Ok(report.task)
                }
                Err(e) => {
                    metrics.record_cascade("not-started", None, started.elapsed());
                    Err(match e {
                        CascadeError::Invalid(why) => ApiError::bad_request(
                            "bad-cascade",
                            format!("the cascade cannot run: {}", crate::terminal::line(&why)),
                        ),
                        CascadeError::NotGranted(user) => not_granted(&user, CASCADE_AGENT),
                        CascadeError::Host(why) => ApiError::internal(format!(
                            "the cascade could not be recorded: {}",
                            crate::terminal::line(&why)
                        )),
                    })
                }
            }
        })
        .await
    }

    /// Start `run` (which creates a top-level row and returns its id) on a task of its own,
    /// holding `ticket` until it ends, and answer once the ledger holds that row or the run has
    /// ended.
    async fn start(
        &self,
        ticket: Ticket,
        begun: Begun,
        run: impl std::future::Future<Output = Result<u64, ApiError>> + Send + 'static,
    ) -> Result<u64, ApiError> {
        let ended = |e: Result<Result<u64, ApiError>, tokio::task::JoinError>| match e {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal(format!("the task failed: {e}"))),
        };
        let spawn = |run| {
            let guard = self.running.start();
            tokio::spawn(async move {
                let (_running, _place) = (guard, ticket);
                run.await
            })
        };
        let subject = match begun {
            Begun::Told(told) => {
                let run = spawn(run);
                return match told.await {
                    Ok(id) => Ok(id),
                    // The run ended before its row existed (or without one): its own answer.
                    Err(_) => ended(run.await),
                };
            }
            Begun::Watch(subject) => subject,
        };
        let ledger = self.ledger()?;
        let lock = self.submissions.lock_for(&subject, CASCADE_AGENT);
        let _one_at_a_time = lock.lock().await;
        let before = newest(&ledger, 1).await?.first().map_or(0, |t| t.id);
        let mut run = spawn(run);
        loop {
            tokio::select! {
                e = &mut run => return ended(e),
                () = tokio::time::sleep(ROW_POLL) => {
                    let rows = newest(&ledger, 16).await?;
                    if let Some(row) = rows.iter().find(|t| {
                        t.id > before && t.user == subject && t.agent == CASCADE_AGENT && t.parent.is_none()
                    }) {
                        return Ok(row.id);
                    }
                }
            }
        }
    }

    fn ledger(&self) -> Result<Arc<Ledger>, ApiError> {
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
        let missing = || {
            ApiError::not_found(
                "no-task",
                "no such task for this user; the id is the `task` that POST /v1/tasks answered",
            )
        };
        let ledger = self.ledger()?;
        let row = tokio::task::spawn_blocking(move || ledger.store().task(id))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|_| missing())?;
        if row.user != caller.user.subject && !caller.reviewer {
            return Err(missing());
        }
        Ok(row)
    }

    /// The task `id`'s row once it has ended (its status no longer `queued` or `running`).
    /// Dropping the future stops waiting; the task runs on.
    ///
    /// # Errors
    ///
    /// As [`ServerState::task`].
    pub async fn wait(&self, caller: &Caller, id: u64) -> Result<TaskRecord, ApiError> {
        loop {
            let row = self.task(caller, id).await?;
            if !matches!(row.status.as_str(), "queued" | "running") {
                return Ok(row);
            }
            tokio::time::sleep(END_POLL).await;
        }
    }

    /// Stop the task `id` of `caller` (a reviewer may stop anyone's) at once: its instance is
    /// killed, its staged writes are discarded, it ends `cancelled`, recorded and audited; a
    /// queued task never starts. Returns its row as it ended. Cancelling an ended task changes
    /// nothing and returns its row.
    ///
    /// # Errors
    ///
    /// As [`ServerState::task`]; 409 `not-cancellable` while cancellation is not wired to the
    /// run (to be replaced by the durable queue's runner).
    pub async fn cancel(&self, caller: &Caller, id: u64) -> Result<TaskRecord, ApiError> {
        let row = self.task(caller, id).await?;
        if !matches!(row.status.as_str(), "queued" | "running") {
            return Ok(row);
        }
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not-cancellable",
            "this server cannot stop a running task yet; wait for its end",
        ))
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
        let (runtime, agents) = (self.runtime.clone(), self.agents.clone());
        let owned = name.to_owned();
        let agent = tokio::task::spawn_blocking(move || agents.find(&runtime, &owned))
            .await
            .ok()?
            .ok()?;
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
        })
    }
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

/// 403 `agent-not-granted`: the user's roles do not list the agent (said whether or not the
/// agent exists: its existence is not the caller's to learn).
fn not_granted(user: &str, agent: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "agent-not-granted",
        format!(
            "user `{user}` may not use agent `{agent}`: none of their roles lists it (`agents = [...]` in the host's roles file); ask its operator for a role that does"
        ),
    )
}

/// How a submission learns its task's id once the row exists.
enum Begun {
    /// The run tells it (`RunOptions::on_begin`); the sender is dropped with the run.
    Told(tokio::sync::oneshot::Receiver<u64>),
    /// The cascade of this user creates its row itself: found in the store.
    Watch(String),
}

/// The newest `limit` task rows, read off the async workers.
async fn newest(ledger: &Arc<Ledger>, limit: usize) -> Result<Vec<TaskRecord>, ApiError> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || ledger.store().tasks(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("the ledger cannot be read: {e}")))
}
