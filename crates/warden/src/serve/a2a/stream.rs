//! `SendStreamingMessage` and `SubscribeToTask`: a task followed as server-sent events, each a
//! JSON-RPC answer to the request. First the task as it is; then, each time its state changes,
//! its output (`artifactUpdate`) when it has one and its status (`statusUpdate`); the stream
//! ends once the task has ended or waits for a person, or after [`STREAM_LIMIT`]. The task's row
//! is read every [`POLL`]; a client that goes away stops the reading, never the task.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Call;
use super::wire::{self, RpcError, TaskState};

/// How often a followed task's row is read.
const POLL: Duration = Duration::from_millis(50);

/// The longest a stream follows one task; a client that wants more subscribes again.
const STREAM_LIMIT: Duration = Duration::from_secs(3600);

/// Where a followed task stands.
struct Follow {
    call: Call,
    /// The JSON-RPC request's id, which every event answers.
    rpc: Value,
    task: u64,
    /// The state and Warden status last sent (none before the first event).
    last: Option<(TaskState, Value)>,
    queue: VecDeque<Value>,
    done: bool,
    deadline: tokio::time::Instant,
}

/// The events of the task `task`, answering the request `rpc`.
pub(super) fn follow(call: Call, rpc: Value, task: u64) -> Response {
    let follow = Follow {
        call,
        rpc,
        task,
        last: None,
        queue: VecDeque::new(),
        done: false,
        deadline: tokio::time::Instant::now() + STREAM_LIMIT,
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(answer) = f.queue.pop_front() {
                let event = Event::default().data(answer.to_string());
                return Some((Ok::<_, Infallible>(event), f));
            }
            if f.done {
                return None;
            }
            if f.last.is_some() {
                tokio::time::sleep(POLL).await;
            }
            f.step().await;
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

impl Follow {
    /// Read the task once and queue what changed.
    async fn step(&mut self) {
        let shown = match self.read().await {
            Ok(shown) => shown,
            Err(e) => {
                self.queue.push_back(wire::failure(&self.rpc, &e));
                self.done = true;
                return;
            }
        };
        let state = shown.status.state;
        let now = (state, shown.metadata["status"].clone());
        match &self.last {
            None => self
                .queue
                .push_back(wire::success(&self.rpc, json!({"task": shown}))),
            Some(last) if *last == now => {}
            Some(_) => {
                for artifact in &shown.artifacts {
                    self.queue.push_back(wire::success(
                        &self.rpc,
                        json!({"artifactUpdate": {
                            "taskId": shown.id,
                            "contextId": shown.context_id,
                            "artifact": artifact,
                            "lastChunk": true,
                        }}),
                    ));
                }
                self.queue.push_back(wire::success(
                    &self.rpc,
                    json!({"statusUpdate": {
                        "taskId": shown.id,
                        "contextId": shown.context_id,
                        "status": shown.status,
                    }}),
                ));
            }
        }
        self.last = Some(now);
        if state.is_terminal()
            || state.is_interrupted()
            || tokio::time::Instant::now() >= self.deadline
        {
            self.done = true;
        }
    }

    async fn read(&self) -> Result<wire::Task, RpcError> {
        let row = self.call.state.task(&self.call.caller, self.task).await?;
        self.call.shown(row, true).await
    }
}
