//! A synchronous caller's task started at once ([`ServerState::run_now`]): MCP's `tools/call`
//! and A2A's blocking `SendMessage` hold their request open until the task ends, so no one
//! relies on a `queued` row as an acknowledgement — the row the run's begin stores, before its
//! instance starts, is the task's record. When the queue lets it start now (a worker free, the
//! user under their running cap, nobody who could start waiting: `Queue::start_now`) the task
//! skips the stored waiting line and runs on a tokio task of its own, admitted, bounded,
//! cancellable, audited and counted as a queued one is; otherwise it is queued as
//! [`ServerState::submit`] queues it. Its ended row is handed to the waiter in memory.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::{oneshot, watch};

use super::work::{Submission, Work};
use super::{ApiError, Caller, RunEnd, ServerState};
use crate::RunOptions;

/// Where the run tells its caller the task's id once its row is stored, or why it could not
/// begin (taken once).
type Told = Arc<Mutex<Option<oneshot::Sender<Result<u64, ApiError>>>>>;

impl ServerState {
    /// Admit `submission` for `caller` and start it at once if the queue's bounds and fair order
    /// let it start now; returns its id once its row is stored (the run goes on; wait for its
    /// end with [`ServerState::wait`], stop it with [`ServerState::cancel`]). Otherwise — a
    /// cascade, a busy server or user, someone waiting who could start, a shutdown begun — it is
    /// queued and acknowledged as [`ServerState::submit`] does. For a caller that waits for the
    /// task's end in the same request; a `202` acknowledgement is `submit`'s.
    ///
    /// # Errors
    ///
    /// As [`ServerState::submit`]; and 422 `not-started` for a run that could not begin (the
    /// host could not set up its instance or record it: nothing of it is stored).
    pub async fn run_now(&self, caller: &Caller, submission: Submission) -> Result<u64, ApiError> {
        self.run_now_counted(caller, submission)
            .await
            .map(|(id, _)| id)
    }

    /// [`ServerState::run_now`], and the ledger's count of held actions read before the task
    /// began ([`ServerState::actions_held`]) if it started at once: its row then is one this
    /// process began and runs (never in the store's queue, where another server starting on the
    /// same data directory could take it up), so its tree's actions are held here, and an
    /// unchanged count once it ended means it holds none
    /// ([`ServerState::pending_actions_after`]). `None` for a task that was queued.
    ///
    /// # Errors
    ///
    /// As [`ServerState::run_now`].
    pub async fn run_now_counted(
        &self,
        caller: &Caller,
        submission: Submission,
    ) -> Result<(u64, Option<u64>), ApiError> {
        let held = self.actions_held();
        let (row, job) = self.prepare(caller, submission).await?;
        let place = self.queue.admit(&caller.user.subject)?;
        let (Work::Agent { name, input }, Some(agent)) = (&job.work, &job.agent) else {
            return self.enqueue(place, row, job).await.map(|id| (id, None));
        };
        let slot = match self.queue.start_now(place) {
            Ok(slot) => Arc::new(slot),
            Err(place) => return self.enqueue(place, row, job).await.map(|id| (id, None)),
        };
        let running = self.running.start();
        let (told, began) = oneshot::channel();
        let told: Told = Arc::new(Mutex::new(Some(told)));
        let (cancel, cancelled) = watch::channel(None);
        let cancel = Mutex::new(Some(cancel));
        let on_begin = {
            let (slot, told) = (slot.clone(), told.clone());
            move |id| {
                if let Some(cancel) = take(&cancel) {
                    slot.began(id, cancel);
                }
                if let Some(told) = take(&told) {
                    let _ = told.send(Ok(id));
                }
            }
        };
        let options = RunOptions {
            workspace: job.workspace.clone(),
            user: Some(job.user.clone()),
            on_begin: Some(Arc::new(on_begin)),
            queued: None,
            client: job.client.clone(),
        };
        let (agent, input, name) = (agent.clone(), input.to_string(), name.clone());
        let state = self.clone();
        // The ended row as the run's ledger wrote it, handed on without reading it back.
        let stored: Arc<Mutex<super::queue::Ended>> = Arc::default();
        tokio::spawn(async move {
            let _running = running;
            let started = Instant::now();
            let run = {
                let (state, name, stored) = (state.clone(), name.clone(), stored.clone());
                async move {
                    let ended = agent.run(&input, &options).await;
                    let end = match &ended {
                        Ok(report) => {
                            *stored.lock().unwrap_or_else(PoisonError::into_inner) =
                                report.row.clone();
                            // For an MCP caller that asked for the agent's log lines.
                            state.logs.keep(report.task, &report.output.logs);
                            RunEnd::Ended(&report.outcome)
                        }
                        Err(_) => RunEnd::NotStarted,
                    };
                    state.metrics.record_run(&name, end, started.elapsed());
                    // An error after the row was stored is in the row; before, it is the answer.
                    if let (Err(e), Some(told)) = (ended, take(&told)) {
                        let _ = told.send(Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "not-started",
                            format!(
                                "the task could not start: {}",
                                crate::terminal::line(&e.to_string())
                            ),
                        )));
                    }
                }
            };
            let id = || slot.id();
            state
                .race_cancel(id, Box::pin(run), cancelled, Some(name), started)
                .await;
            if let Some(id) = slot.id() {
                // A run stopped before its end (cancelled) has its row read back.
                let ended = take(&stored).or_else(|| state.ended_row(id));
                state.queue.finish(id, ended, true);
            }
            drop(slot);
            state.pump();
        });
        began
            .await
            .map_err(|_| ApiError::internal("the task's run stopped before it began"))?
            .map(|id| (id, held))
    }
}

/// What `cell` holds, taken (a poisoned lock still yields it).
fn take<T>(cell: &Mutex<Option<T>>) -> Option<T> {
    cell.lock().unwrap_or_else(PoisonError::into_inner).take()
}
