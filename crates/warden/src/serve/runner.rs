//! The runners of the durable queue: each task the queue lets start ([`super::queue::Queue::next`])
//! runs on a tokio task of its own from its `queued` row (it keeps its id), racing the signal
//! that cancels it; at its end its place comes back and the next task starts. A cancelled run
//! is dropped where it stands — its instance goes with it, as at a wall-time kill — and its row,
//! and those of the tasks it called, end `cancelled` with an audit record naming who cancelled,
//! their staged writes discarded. At start ([`ServerState::resume_queued`]) the tasks a
//! previous process left queued are taken up again, each user's roles looked up anew.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::queue::Start;
use super::work::Work;
use super::{ApiError, RunEnd, ServerState};
use crate::RunOptions;
use crate::cascade::CASCADE_AGENT;
use crate::ledger::Ledger;
use crate::runtime::LoadedAgent;
use crate::store::{QueuedEnd, TaskEnd, TaskRecord};
use crate::user::User;

/// How deep [`close_cancelled`] follows the tasks a cancelled task called.
const MAX_TREE_DEPTH: usize = 16;

/// How many tasks a cancelled task called are closed with it, at most, per level.
const MAX_CHILDREN: usize = 1024;

/// The most queued tasks a restart takes up (the store's bound on the queue is the host's).
const MAX_RESUMED: usize = 1_000_000;

/// A queued task as it waits in memory.
#[derive(Debug)]
pub(crate) struct Job {
    pub user: Arc<User>,
    pub work: Work,
    pub workspace: Option<PathBuf>,
    /// The agent, as loaded at submission (a resumed task loads it when it starts).
    pub agent: Option<Arc<LoadedAgent>>,
    /// The MCP client that called the tool (a task taken up after a restart has none).
    pub client: Option<crate::mcp::client::ClientHandle>,
}

mod stored;
pub(crate) use stored::StoredWork;

impl ServerState {
    /// Start every task the queue lets start now, each on a tokio task of its own.
    pub(crate) fn pump(&self) {
        while let Some(start) = self.queue.next() {
            let state = self.clone();
            let guard = self.running.start();
            tokio::spawn(async move {
                let _running = guard;
                let id = start.id;
                state.run_or_cancel(start).await;
                // Read for a waiter only (one who comes later reads the store).
                let ended = match state.queue.watched(id) {
                    true => state.ended_row(id),
                    false => None,
                };
                state.queue.finish(id, ended, false);
                state.pump();
            });
        }
    }

    /// Take up the tasks left queued in the store (by a previous process, or a shutdown), in
    /// their order; a task whose user's roles the roles file no longer defines, whose stored
    /// work cannot be read, or whose workspace the server's workspace roots no longer allow,
    /// ends `refused` (audited) and never runs. A stored resume of an escalated cascade is
    /// taken up the same way; one that can no longer run (the same reasons, or its user's roles
    /// no longer list `cascade`) is dropped with a `resume-refused` record, and its task stays
    /// escalated for a person to resume or stop again. Returns how many were
    /// resumed and how many refused.
    ///
    /// # Errors
    ///
    /// 500 when the store cannot be read or written.
    pub fn resume_queued(&self) -> Result<(usize, usize), ApiError> {
        let ledger = self.ledger()?;
        let queued = ledger
            .store()
            .queued_tasks(MAX_RESUMED)
            .map_err(|e| ApiError::internal(format!("the queued tasks cannot be read: {e}")))?;
        let (mut resumed, mut refused) = (0, 0);
        for q in queued {
            let job = serde_json::from_str::<StoredWork>(&q.work)
                .map_err(|e| format!("its stored work cannot be read: {e}"))
                .and_then(|w| {
                    let roles = w.roles.clone();
                    let (work, workspace) = w.work()?;
                    // The roots may have narrowed since it was admitted.
                    let workspace = workspace
                        .map(|d| self.readmitted_workspace(&d))
                        .transpose()?;
                    let user = self.authority.user(&q.user, roles)?;
                    let is_resume = matches!(work, Work::Resume { task, .. } if task == q.id);
                    if q.resume != is_resume {
                        return Err("the stored work is not what its row says it is".into());
                    }
                    if q.resume && !user.grant.allows_agent(CASCADE_AGENT) {
                        return Err(format!(
                            "user `{}` may no longer use agent `{CASCADE_AGENT}`",
                            q.user
                        ));
                    }
                    Ok(Job {
                        user: Arc::new(user),
                        work,
                        workspace,
                        agent: None,
                        client: None,
                    })
                });
            match job {
                Ok(job) => {
                    self.queue.resume(&q.user, q.id, job);
                    resumed += 1;
                }
                Err(why) if q.resume => {
                    super::resume::drop_resume(&ledger, q.id, &q.user, &why)?;
                    refused += 1;
                }
                Err(why) => {
                    let row = ledger.store().task(q.id).map_err(|e| {
                        ApiError::internal(format!("task {} cannot be read: {e}", q.id))
                    })?;
                    refuse(&ledger, &row, &why)?;
                    refused += 1;
                }
            }
        }
        self.pump();
        Ok((resumed, refused))
    }

    /// The row of task `id` as it ended, for its waiters (read on this worker: one indexed
    /// read, as the run's own ledger writes are); `None` if it cannot be read.
    pub(super) fn ended_row(&self, id: u64) -> super::queue::Ended {
        let ledger = self.ledger().ok()?;
        let row = ledger.store().task(id).ok()?;
        (!matches!(row.status.as_str(), "queued" | "running")).then(|| Arc::new(row))
    }

    /// Run `start`, unless and until it is cancelled.
    async fn run_or_cancel(&self, start: Start<Job>) {
        let Start { id, job, cancel } = start;
        let counted = match &job.work {
            Work::Agent { name, .. } => Some(name.clone()),
            Work::Cascade { .. } | Work::Resume { .. } => None,
        };
        let started = Instant::now();
        let run = Box::pin(self.run(id, job));
        self.race_cancel(|| Some(id), run, cancel, counted, started)
            .await;
    }

    /// Drive the `run` of task `id` (of agent `counted`, or a cascade, started at `started`)
    /// until it ends or `cancel` says who stopped it: then the run is dropped where it stands —
    /// its instance with it, as a wall-time kill does — counted, and its row closed. (`id` is
    /// asked once cancelled: only a task whose row exists can be.)
    pub(super) async fn race_cancel(
        &self,
        id: impl Fn() -> Option<u64>,
        mut run: std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>,
        mut cancel: tokio::sync::watch::Receiver<Option<String>>,
        counted: Option<String>,
        started: Instant,
    ) {
        let cancelled = async move {
            let by = cancel
                .wait_for(Option::is_some)
                .await
                .map(|by| by.clone().unwrap_or_default());
            match by {
                Ok(by) => by,
                // The signal is held until the task ends: never cancelled.
                Err(_) => std::future::pending().await,
            }
        };
        let by = tokio::select! {
            biased;
            by = cancelled => by,
            () = &mut run => return,
        };
        // The tree stops whole: callees polled in place go with it (`calls::stopping`), and
        // their rows are closed below with the task's.
        crate::calls::stopping(|| drop(run));
        match &counted {
            Some(agent) => self
                .metrics
                .record_run(agent, RunEnd::Cancelled, started.elapsed()),
            None => self
                .metrics
                .record_cascade("cancelled", None, started.elapsed()),
        }
        let (Ok(ledger), Some(id)) = (self.ledger(), id()) else {
            return;
        };
        let closed =
            tokio::task::spawn_blocking(move || close_cancelled(&ledger, id, &by, 0)).await;
        let closed = closed
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.message));
        if let Err(e) = closed {
            tracing::error!(target: "warden::serve", task = id, error = %e, "a cancelled task could not be closed");
        }
    }

    /// Run the task `id` from its queued row; a run that could not start leaves its row
    /// `refused` (if it did not begin) with the reason.
    async fn run(&self, id: u64, job: Job) {
        let Ok(ledger) = self.ledger() else { return };
        let subject = job.user.subject.clone();
        let started = Instant::now();
        let failed = match job.work {
            Work::Agent { name, input } => {
                let agent = match job.agent {
                    Some(a) => Ok(a),
                    None => self.find_agent(&name).await.map_err(|e| e.message),
                };
                match agent {
                    Err(why) => Some(why),
                    Ok(agent) => {
                        let options = RunOptions {
                            workspace: job.workspace,
                            user: Some(job.user),
                            on_begin: None,
                            queued: Some(id),
                            client: job.client,
                        };
                        let ended = agent.run(&input.to_string(), &options).await;
                        let end = match &ended {
                            Ok(report) => {
                                self.logs.keep(id, &report.output.logs);
                                RunEnd::Ended(&report.outcome)
                            }
                            Err(_) => RunEnd::NotStarted,
                        };
                        self.metrics.record_run(&name, end, started.elapsed());
                        ended.err().map(|e| e.to_string())
                    }
                }
            }
            Work::Cascade { request } => {
                let Some(workspace) = job.workspace else {
                    return;
                };
                let ended = self
                    .runtime
                    .run_cascade_queued(&request, &workspace, Some(job.user), Some(id))
                    .await;
                match ended {
                    Ok(report) => {
                        self.metrics.record_cascade(
                            &report.status,
                            report.trigger.as_deref(),
                            started.elapsed(),
                        );
                        None
                    }
                    Err(e) => {
                        self.metrics
                            .record_cascade("not-started", None, started.elapsed());
                        Some(e.to_string())
                    }
                }
            }
            Work::Resume { task, note } => {
                self.run_resume(task, note.as_deref(), job.user, started)
                    .await;
                return;
            }
        };
        if let Some(why) = failed {
            let close = move || match ledger.store().task(id) {
                Ok(row) if row.status == "queued" => refuse(&ledger, &row, &why),
                _ => Ok(()),
            };
            if let Ok(Err(e)) = tokio::task::spawn_blocking(close).await {
                tracing::error!(target: "warden::serve", task = id, user = %crate::terminal::line(&subject), error = %e.message, "a task that could not start could not be closed");
            }
        }
    }

    /// The agent `name` of the server's agents: the one the agents directory keeps, if its
    /// files have not changed since it was loaded (two `stat`s, on this worker), or else loaded
    /// off the async workers.
    pub(crate) async fn find_agent(&self, name: &str) -> Result<Arc<LoadedAgent>, ApiError> {
        if let Some(agent) = self.agents.kept(&self.runtime, name) {
            return Ok(agent);
        }
        let (runtime, agents, name) = (self.runtime.clone(), self.agents.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || agents.find(&runtime, &name))
            .await
            .map_err(|e| ApiError::internal(format!("loading the agent failed: {e}")))?
    }
}

/// End the queued task of `row` `refused` for `why` (audited), unless it started meanwhile.
fn refuse(ledger: &Ledger, row: &TaskRecord, why: &str) -> Result<(), ApiError> {
    let end = QueuedEnd {
        id: row.id,
        status: "refused".into(),
        outcome: json!({"status": "refused", "why": why}),
    };
    ledger
        .end_queued(&end, &row.agent, &row.user, json!({"why": why}))
        .map(|_| ())
        .map_err(|e| ApiError::internal(format!("task {} cannot be closed: {e}", row.id)))
}

/// Close the cancelled task `id` (by `by`): a queued one ends without running; a running one —
/// its run already dropped — ends `cancelled`, its staged writes (or a cascade's working copy)
/// discarded, and so do the tasks it called that were still running. An escalated cascade
/// whose resume was cancelled stays escalated, its running stages closed.
pub(crate) fn close_cancelled(
    ledger: &Ledger,
    id: u64,
    by: &str,
    depth: usize,
) -> Result<(), ApiError> {
    let failed = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("task {id} cannot be closed as cancelled: {e}"))
    };
    let row = ledger.store().task(id).map_err(|e| failed(&e))?;
    match row.status.as_str() {
        "queued" => {
            let end = QueuedEnd {
                id,
                status: "cancelled".into(),
                outcome: json!({"status": "cancelled", "by": by}),
            };
            ledger
                .end_queued(&end, &row.agent, &row.user, json!({"by": by}))
                .map_err(|e| failed(&e))?;
            return Ok(());
        }
        "running" => {}
        "escalated" if row.agent == CASCADE_AGENT && depth == 0 => {
            return super::resume::close_cut_short(ledger, id, by, MAX_CHILDREN);
        }
        _ => return Ok(()),
    }
    if depth < MAX_TREE_DEPTH {
        let children = ledger
            .store()
            .children(id, MAX_CHILDREN)
            .map_err(|e| failed(&e))?;
        for child in children.iter().filter(|c| c.status == "running") {
            close_cancelled(ledger, child.id, by, depth + 1)?;
        }
    }
    let staging = ledger.staging_root(id);
    let mut discarded = staging.exists() && std::fs::remove_dir_all(&staging).is_ok();
    if row.agent == CASCADE_AGENT && row.parent.is_none() {
        let working = ledger.dir().join("cascades").join(id.to_string());
        discarded |= working.exists() && std::fs::remove_dir_all(&working).is_ok();
    }
    ledger
        .record(
            crate::audit::AuditEvent::new("task-ended")
                .task(id)
                .agent(&row.agent)
                .user(&row.user)
                .detail(json!({"status": "cancelled", "by": by, "staging_discarded": discarded})),
        )
        .map_err(|e| failed(&e))?;
    ledger
        .store()
        .end_task(&TaskEnd {
            id,
            status: "cancelled".into(),
            outcome: json!({"status": "cancelled", "by": by}),
            trace: json!({"events": [], "dropped": 0}),
            staging: if discarded { "discarded" } else { "none" }.into(),
            staging_path: None,
            ended_ms: crate::store::now_ms(),
            trust: None,
        })
        .map_err(|e| failed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use crate::store::now_ms;

    fn begin(ledger: &Ledger, agent: &str, parent: Option<u64>) -> u64 {
        let id = ledger
            .store()
            .begin_task(
                &TaskRecord {
                    id: 0,
                    agent: agent.into(),
                    agent_id: format!("unsigned/{agent}"),
                    module_hash: "h".into(),
                    user: "dev".into(),
                    level: 1,
                    grant: json!({}),
                    status: "running".into(),
                    outcome: None,
                    trace: None,
                    staging: "none".into(),
                    staging_path: None,
                    started_ms: now_ms(),
                    ended_ms: None,
                    parent,
                },
                ledger.owner(),
            )
            .unwrap();
        ledger
            .record(
                AuditEvent::new("task-started")
                    .task(id)
                    .agent(agent)
                    .detail(json!({"parent": parent})),
            )
            .unwrap();
        id
    }

    #[test]
    fn a_cancelled_task_and_the_tasks_it_called_end_cancelled_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), 1024).unwrap();
        let front = begin(&ledger, "front", None);
        let callee = begin(&ledger, "spinner", Some(front));
        // The callee had staged writes: they are discarded.
        let staging = ledger.staging_root(callee);
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("f"), "x").unwrap();
        let other = begin(&ledger, "hello", None);
        close_cancelled(&ledger, front, "alice", 0).unwrap();
        for (id, staged) in [(front, "none"), (callee, "discarded")] {
            let row = ledger.store().task(id).unwrap();
            assert_eq!(
                (row.status.as_str(), row.staging.as_str()),
                ("cancelled", staged),
                "{row:?}"
            );
            assert_eq!(row.outcome.unwrap()["by"], "alice");
        }
        assert!(!staging.exists());
        // Its deny twin: a task outside the tree runs on; an ended one is not closed again.
        assert_eq!(ledger.store().task(other).unwrap().status, "running");
        close_cancelled(&ledger, front, "bob", 0).unwrap();
        assert_eq!(
            ledger.store().task(front).unwrap().outcome.unwrap()["by"],
            "alice"
        );
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(log.matches("\"task-ended\"").count(), 2);
        drop(ledger);
        crate::ledger::verify_dir(dir.path(), None).unwrap();
    }
}
