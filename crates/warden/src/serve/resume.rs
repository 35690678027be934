//! `POST /v1/tasks/{id}/resume` and `POST /v1/tasks/{id}/stop`: a person's decision on an
//! escalated cascade over HTTP, as `warden task resume <id> [--note …]` and `warden task stop
//! <id>` take it — the very library calls ([`crate::Runtime::resume_cascade`],
//! [`crate::Runtime::stop_cascade`]), so the task is resumed, stopped and audited
//! (`task-resumed` with the waived trigger and the note; `task-ended` with `stopped_by`) the
//! CLI's way.
//!
//! Who may: the task's user, or a reviewer (the rule of `DELETE /v1/tasks/{id}`); another user's
//! task is `404 no-task`. A resume also needs a role that lists the agent `cascade`, as a new
//! cascade does (`403 agent-not-granted`, audited `task-refused`): its stages run for the person
//! who resumes.
//!
//! A resume is long work: it takes a place in the server's queue like `POST /v1/tasks` (`429`
//! past the queue's or the user's bound), runs on a worker in the fair order, is drained at
//! SIGTERM, cancelled by `DELETE /v1/tasks/{id}`, and followed by the events stream; meanwhile
//! the task reads `queued`, then `running` ([`ServerState::resuming`]). The task stays
//! `escalated` until the resumed cascade ends, so a resume cut short while it runs (cancelled,
//! or the server stopped) leaves it escalated, for a person to resume or stop again. A resume
//! that waits is stored before it is acknowledged, beside the task's row
//! ([`crate::store::QueueStore::queue_resume`]): a stop (even a kill) before it starts loses
//! nothing, and the next start takes it up ([`ServerState::resume_queued`]). It is taken back
//! from the store when it starts or is cancelled.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::offload::blocking;
use super::tasks::read_body;
use super::work::Work;
use super::{ApiError, Caller, ServerState};
use crate::cascade::{CASCADE_AGENT, CascadeError, MAX_REQUEST};
use crate::store::TaskRecord;
use crate::user::User;

/// The body of `POST /v1/tasks/{id}/resume` (optional): the note the next stage gets.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Resume {
    note: Option<String>,
}

/// `POST /v1/tasks/{id}/resume`: `202 {"task": ID}` once the resume is queued.
pub(crate) async fn resume(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = state.caller(&headers)?;
    let id = task_id(&id)?;
    let bytes = read_body(&headers, body).await?;
    let request = parse_resume(&bytes)?;
    let task = state.resume_task(&caller, id, request.note).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task": task}))))
}

/// `POST /v1/tasks/{id}/stop`: `200 {"task", "status": "stopped", "outcome"}`.
pub(crate) async fn stop(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let id = task_id(&id)?;
    let row = state.stop_task(&caller, id).await?;
    Ok(Json(json!({
        "task": row.id,
        "status": row.status,
        "outcome": row.outcome,
    })))
}

fn task_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad-task-id",
            "a task id is a number, as POST /v1/tasks answers it",
        )
    })
}

/// The resume's body: none (or blank) is no note; otherwise `{"note": "…"}` of at most
/// [`MAX_REQUEST`] bytes.
fn parse_resume(bytes: &[u8]) -> Result<Resume, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Resume::default());
    }
    let request: Resume = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "bad-body",
            format!(
                "the body is not a resume ({}); send nothing, or {{\"note\": \"what the next stage should know\"}}",
                crate::terminal::line(&e.to_string())
            ),
        )
    })?;
    if request.note.as_ref().is_some_and(|n| n.len() > MAX_REQUEST) {
        return Err(ApiError::bad_request(
            "bad-body",
            format!("the note is longer than {MAX_REQUEST} bytes; say it in fewer"),
        ));
    }
    Ok(request)
}

/// 409 `not-escalated` for `row`, which is not a paused cascade.
fn not_escalated(row: &TaskRecord) -> ApiError {
    let why = if row.agent != CASCADE_AGENT {
        format!(
            "task {} is a task of agent `{}`, not a cascade",
            row.id,
            crate::terminal::line(&row.agent)
        )
    } else {
        format!(
            "task {} is `{}`",
            row.id,
            crate::terminal::line(&row.status)
        )
    };
    ApiError::new(
        StatusCode::CONFLICT,
        "not-escalated",
        format!(
            "{why}: only an escalated cascade (status `escalated`) is resumed or stopped; GET /v1/tasks/{} shows its status",
            row.id
        ),
    )
}

/// The escalated cascades a resume or a stop is being decided for now, by data directory and
/// task: the check that a task is escalated and the act on it are one step for this process,
/// so a resume and a stop of one task never both pass the check.
static DECIDING: std::sync::Mutex<Vec<(std::path::PathBuf, u64)>> =
    std::sync::Mutex::new(Vec::new());

/// A decision on one task in progress ([`DECIDING`]), until dropped.
struct Deciding(std::path::PathBuf, u64);

impl Deciding {
    /// The decision on task `id` of the ledger in `dir`, unless another is in progress.
    fn take(dir: &std::path::Path, id: u64) -> Result<Deciding, ApiError> {
        let mut held = DECIDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.iter().any(|(d, t)| *t == id && d == dir) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "task-deciding",
                format!(
                    "task {id} is being resumed or stopped by another request; GET /v1/tasks/{id} shows what became of it"
                ),
            ));
        }
        held.push((dir.to_path_buf(), id));
        Ok(Deciding(dir.to_path_buf(), id))
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        let mut held = DECIDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|(d, t)| !(*t == self.1 && *d == self.0));
    }
}

/// Whether `row` is a paused cascade's own task.
fn escalated(row: &TaskRecord) -> bool {
    row.agent == CASCADE_AGENT && row.status == "escalated" && row.parent.is_none()
}

impl ServerState {
    /// Queue a resume of the escalated cascade `id` for `caller`, `note` for its next stage;
    /// returns its id once queued.
    ///
    /// # Errors
    ///
    /// 404 `no-task` for a task that is not the caller's (unless a reviewer); 403
    /// `agent-not-granted` without a role listing `cascade`; 409 `not-escalated` for a task that
    /// is not an escalated cascade, `already-resuming` when a resume of it is queued or runs,
    /// `task-deciding` while another request resumes or stops it; 429 when the queue or the
    /// caller's share of it is full.
    pub async fn resume_task(
        &self,
        caller: &Caller,
        id: u64,
        note: Option<String>,
    ) -> Result<u64, ApiError> {
        let _deciding = Deciding::take(self.ledger()?.dir(), id)?;
        let row = self.task(caller, id).await?;
        if self.queue.holds(id).is_some() {
            return Err(already_resuming(id));
        }
        if !escalated(&row) {
            return Err(not_escalated(&row));
        }
        if !caller.user.grant.allows_agent(CASCADE_AGENT) {
            return Err(self.refuse_not_granted(caller, CASCADE_AGENT).await);
        }
        let place = self.queue.admit(&caller.user.subject)?;
        let job = super::runner::Job {
            user: caller.user.clone(),
            work: Work::Resume { task: id, note },
            workspace: None,
            agent: None,
            client: None,
        };
        let work = serde_json::to_string(&super::runner::StoredWork::of(&job))
            .map_err(|e| ApiError::internal(format!("the resume cannot be stored: {e}")))?;
        let (ledger, subject) = (self.ledger()?, caller.user.subject.clone());
        let store = ledger.clone();
        let stored = blocking(move || {
            store
                .store()
                .queue_resume(id, &subject, &work)
                .map_err(|e| ApiError::internal(format!("the resume could not be stored: {e}")))
        })
        .await?;
        if !stored {
            // Resumed by another host process, or no longer escalated: either way not this one's.
            return Err(already_resuming(id));
        }
        if !self.queue.push_unheld(place, id, job) {
            blocking(move || take_resume(&ledger, id)).await?;
            return Err(already_resuming(id));
        }
        self.pump();
        Ok(id)
    }

    /// Stop the escalated cascade `id` for `caller` (`warden task stop`): nothing is applied,
    /// its working copy is deleted, it ends `stopped` (audited, `stopped_by` the caller). Returns
    /// its row as it ended.
    ///
    /// # Errors
    ///
    /// 404 `no-task` as [`ServerState::resume_task`]; 409 `not-escalated`, `task-resuming`
    /// while a resume of it is queued or runs (`DELETE /v1/tasks/{id}` ends that first), or
    /// `task-deciding` while another request resumes or stops it.
    pub async fn stop_task(&self, caller: &Caller, id: u64) -> Result<TaskRecord, ApiError> {
        let deciding = Deciding::take(self.ledger()?.dir(), id)?;
        let row = self.task(caller, id).await?;
        if self.queue.holds(id).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "task-resuming",
                format!(
                    "a resume of task {id} is queued or running; DELETE /v1/tasks/{id} ends it (the task stays escalated), then stop it"
                ),
            ));
        }
        if !escalated(&row) {
            return Err(not_escalated(&row));
        }
        let (runtime, user) = (self.runtime.clone(), caller.user.clone());
        blocking(move || {
            runtime
                .stop_cascade(id, Some(user.as_ref()))
                .map_err(refused)
        })
        .await?;
        drop(deciding);
        self.task(caller, id).await
    }

    /// Run the queued resume of task `id` for `user` (a runner's part; `started` when it left
    /// the queue): the cascade goes on where it paused and is counted as a cascade. A resume
    /// that cannot go on (the task was stopped meanwhile, its working copy is gone) leaves the
    /// task as it was; the reason is logged with the task's id.
    pub(super) async fn run_resume(
        &self,
        id: u64,
        note: Option<&str>,
        user: std::sync::Arc<User>,
        started: std::time::Instant,
    ) {
        let subject = user.subject.clone();
        // Taken back from the store as it starts: a stop from here on cuts it short (the task
        // stays escalated), as one of a running task would.
        let taken = match self.ledger() {
            Ok(ledger) => blocking(move || take_resume(&ledger, id)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = taken {
            self.metrics
                .record_cascade("not-started", None, started.elapsed());
            tracing::error!(target: "warden::serve", task = id, user = %crate::terminal::line(&subject), error = %e.message, "a resume could not be taken from the store; it stays stored for the next start");
            return;
        }
        match self.runtime.resume_cascade(id, note, Some(user)).await {
            Ok(report) => self.metrics.record_cascade(
                &report.status,
                report.trigger.as_deref(),
                started.elapsed(),
            ),
            Err(e) => {
                self.metrics
                    .record_cascade("not-started", None, started.elapsed());
                tracing::warn!(target: "warden::serve", task = id, user = %crate::terminal::line(&subject), error = %crate::terminal::line(&e.to_string()), "an escalated cascade could not be resumed; it stays as it was");
            }
        }
    }

    /// `row` as the API shows it: an escalated cascade this server is resuming reads `queued`
    /// while its resume waits and `running` while it runs (its row stays `escalated` until the
    /// resumed cascade ends, so a resume cut short leaves it so).
    pub(super) fn resuming(&self, mut row: TaskRecord) -> TaskRecord {
        if row.status == "escalated"
            && let Some(waiting) = self.queue.holds(row.id)
        {
            row.status = if waiting { "queued" } else { "running" }.into();
        }
        row
    }
}

/// Close what a resume of the escalated cascade `id` left running when `by` cancelled it: its
/// stages end `cancelled` (as [`super::runner::close_cancelled`] closes them); the cascade
/// stays escalated, for a person to resume or stop again (as after the CLI's resume was
/// interrupted).
pub(super) fn close_cut_short(
    ledger: &crate::ledger::Ledger,
    id: u64,
    by: &str,
    max_children: usize,
) -> Result<(), ApiError> {
    // A resume cancelled while it waited is taken from the store, so no later start runs it.
    take_resume(ledger, id)?;
    let children = ledger
        .store()
        .children(id, max_children)
        .map_err(|e| ApiError::internal(format!("the stages of task {id} cannot be read: {e}")))?;
    for child in children.iter().filter(|c| c.status == "running") {
        super::runner::close_cancelled(ledger, child.id, by, 1)?;
    }
    Ok(())
}

/// Take the stored resume of task `id` back (none stored is fine).
fn take_resume(ledger: &crate::ledger::Ledger, id: u64) -> Result<(), ApiError> {
    ledger.store().take_resume(id).map(drop).map_err(|e| {
        ApiError::internal(format!("the resume of task {id} cannot be taken back: {e}"))
    })
}

/// Drop the stored resume of the escalated task `id` that can no longer run for `user`
/// (`why`), after its `resume-refused` record: the task stays escalated.
pub(super) fn drop_resume(
    ledger: &crate::ledger::Ledger,
    id: u64,
    user: &str,
    why: &str,
) -> Result<(), ApiError> {
    ledger
        .record(
            crate::audit::AuditEvent::new("resume-refused")
                .task(id)
                .agent(CASCADE_AGENT)
                .user(user)
                .detail(json!({"why": why})),
        )
        .map_err(|e| {
            ApiError::internal(format!(
                "the refused resume of task {id} cannot be recorded: {e}"
            ))
        })?;
    take_resume(ledger, id)
}

fn already_resuming(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already-resuming",
        format!(
            "a resume of task {id} is queued or running already; follow it with GET /v1/tasks/{id}/events"
        ),
    )
}

/// A refused stop: the task changed meanwhile (409) or the host failed (500).
fn refused(e: CascadeError) -> ApiError {
    let message = crate::terminal::line(&e.to_string()).into_owned();
    match e {
        CascadeError::Invalid(_) | CascadeError::NotGranted(_) => {
            ApiError::new(StatusCode::CONFLICT, "not-escalated", message)
        }
        CascadeError::Host(_) => ApiError::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decision_at_a_time_per_task_of_a_data_directory() {
        let (a, b) = (
            std::path::Path::new("/data/a"),
            std::path::Path::new("/data/b"),
        );
        let first = Deciding::take(a, 7).unwrap();
        let e = Deciding::take(a, 7)
            .err()
            .expect("a second decision is refused");
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "task-deciding"));
        // Another task, or the same id of another data directory: not held up.
        let _other_task = Deciding::take(a, 8).unwrap();
        let _other_dir = Deciding::take(b, 7).unwrap();
        drop(first);
        assert!(Deciding::take(a, 7).is_ok());
    }

    #[test]
    fn a_resume_body_is_nothing_or_a_bounded_note() {
        assert_eq!(parse_resume(b"").unwrap().note, None);
        assert_eq!(parse_resume(b" \n").unwrap().note, None);
        assert_eq!(parse_resume(b"{}").unwrap().note, None);
        assert_eq!(
            parse_resume(br#"{"note": "only calc.py"}"#).unwrap().note,
            Some("only calc.py".into())
        );
        let long = json!({"note": "x".repeat(MAX_REQUEST + 1)}).to_string();
        for bad in [
            br#"{"notes": "typo"}"#.as_slice(),
            br#"{"note": 7}"#,
            b"note=hi",
            long.as_bytes(),
        ] {
            let e = parse_resume(bad).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "bad-body"),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
