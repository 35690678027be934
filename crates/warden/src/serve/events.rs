//! `GET /v1/tasks/{id}/events`: a task's events as they happen, as server-sent events. The live
//! source is the audit log: every record of the task and of the tasks under it (an agent's
//! calls, a cascade's stages: rows whose `parent` chain reaches it) is one event, `event:` its
//! kind and `id:` its seq; then one `end` event with the task's status, outcome and cost, and the
//! stream closes. A task already ended sends its records and `end` at once.
//!
//! Bounded: the log is read in batches of at most [`BATCH`] records, and a client is sent one
//! batch before the next is read (nothing piles up for a slow client); a stream sends at most
//! [`MAX_EVENTS`] records, then a `capped` event and closes (resume with `Last-Event-ID`); at most
//! [`MAX_STREAMS`] streams are open at once (`429 too-many-streams` past that); a comment every
//! [`KEEP_ALIVE`] keeps proxies from closing a quiet stream; a client that goes away drops the
//! stream. A client resuming sends `Last-Event-ID: SEQ` and gets the records after it. Without it,
//! the stream starts at the records written from [`LEAD_MS`] before the task's start (found by
//! bisecting the log on time; records of other tasks are left out, so the lead only costs reads).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;

use super::offload::{blocking, ledger};
use super::{ApiError, Caller, ServerState};
use crate::audit::{AuditRecord, LogCursor};
use crate::store::{StateStore, TaskRecord};

/// Records read from the log at a time.
pub const BATCH: usize = 256;
/// Records one stream sends at most.
pub const MAX_EVENTS: usize = 10_000;
/// Streams open at once, all clients together.
pub const MAX_STREAMS: usize = 256;
/// How often a quiet stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How far before a task's start the stream looks for its records (a record may be stamped a
/// little before the row's `started_ms`).
pub const LEAD_MS: u64 = 5_000;
/// How often a running task's log is looked at for new records.
const POLL: Duration = Duration::from_millis(50);
/// How deep a task tree is followed up its `parent` links.
const MAX_DEPTH: usize = 64;
/// How many task ids a stream remembers as not in its tree before it forgets them.
const MAX_REMEMBERED: usize = 10_000;

static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// One open stream, counted until dropped.
struct Slot;

impl Slot {
    fn take() -> Result<Slot, ApiError> {
        let taken = STREAMS.fetch_add(1, Ordering::SeqCst);
        if taken >= MAX_STREAMS {
            STREAMS.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::busy(
                "too-many-streams",
                format!("the server has {MAX_STREAMS} event streams open; try again shortly"),
            ));
        }
        Ok(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which tasks belong to the stream's tree.
#[derive(Default)]
struct Tree {
    members: HashSet<u64>,
    others: HashSet<u64>,
}

impl Tree {
    /// Whether `task` is the root or under it, looked up the `parent` chain once and remembered.
    fn contains(&mut self, store: &dyn StateStore, task: u64) -> bool {
        if self.members.contains(&task) {
            return true;
        }
        if self.others.contains(&task) {
            return false;
        }
        let mut chain = vec![task];
        let mut at = task;
        let member = loop {
            if chain.len() > MAX_DEPTH {
                break false;
            }
            let parent = match store.task(at) {
                Ok(row) => row.parent,
                // A record may come before its row is committed: ask again at its next record.
                Err(_) => return false,
            };
            let Some(parent) = parent else {
                break false;
            };
            if self.members.contains(&parent) {
                break true;
            }
            if self.others.contains(&parent) {
                break false;
            }
            chain.push(parent);
            at = parent;
        };
        if member {
            self.members.extend(chain);
        } else {
            if self.others.len() + chain.len() > MAX_REMEMBERED {
                self.others.clear();
            }
            self.others.extend(chain);
        }
        member
    }
}

/// A stream's progress.
struct Follow {
    state: ServerState,
    caller: Caller,
    root: u64,
    reader: Option<(LogCursor, Tree)>,
    queue: VecDeque<Event>,
    sent: usize,
    /// The root was seen ended: one more read of the log, then `end`.
    ending: bool,
    done: bool,
    _slot: Slot,
}

/// `GET /v1/tasks/{id}/events`.
pub(crate) async fn events(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let caller = state.caller(&headers)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad-task-id",
            "a task id is a number, as POST /v1/tasks answers it",
        )
    })?;
    let row = state.task(&caller, id).await?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "bad-last-event-id",
                        "Last-Event-ID is the seq of the last event received (a whole number)",
                    )
                })?,
        ),
    };
    let slot = Slot::take()?;
    let ledger = ledger(&state)?;
    let started = row.started_ms.saturating_sub(LEAD_MS);
    let cursor = blocking(move || {
        let log = ledger.audit_path();
        match resume {
            Some(seq) => LogCursor::after_seq(log, seq),
            None => LogCursor::from_time(log, started),
        }
        .map_err(|e| ApiError::internal(crate::terminal::line(&e.to_string()).into_owned()))
    })
    .await?;
    let mut tree = Tree::default();
    tree.members.insert(id);
    let follow = Follow {
        state,
        caller,
        root: id,
        reader: Some((cursor, tree)),
        queue: VecDeque::new(),
        sent: 0,
        ending: false,
        done: false,
        _slot: slot,
    };
    let stream = stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

impl Follow {
    /// The next event to send, `None` once the stream is over.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            let read = self.read().await;
            let records = match read {
                Ok(records) => records,
                Err(e) => {
                    self.done = true;
                    return Some(error_event(&e.message));
                }
            };
            for r in &records {
                if self.sent == MAX_EVENTS {
                    self.queue.push_back(capped(r.seq.saturating_sub(1)));
                    self.done = true;
                    break;
                }
                self.sent += 1;
                self.queue.push_back(record_event(r));
            }
            if self.done || !self.queue.is_empty() {
                continue;
            }
            // Nothing new in the log: has the task ended?
            if self.ending {
                self.done = true;
                match self.state.task(&self.caller, self.root).await {
                    Ok(row) => return Some(end_event(&row)),
                    Err(e) => return Some(error_event(&e.message)),
                }
            }
            match self.state.task(&self.caller, self.root).await {
                Ok(row) if !matches!(row.status.as_str(), "queued" | "running") => {
                    // Its last records may be appended as its row closes: read once more.
                    self.ending = true;
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    self.done = true;
                    return Some(error_event(&e.message));
                }
            }
        }
    }

    /// The tree's records in the next batch of the log.
    async fn read(&mut self) -> Result<Vec<AuditRecord>, ApiError> {
        let (mut cursor, mut tree) = self
            .reader
            .take()
            .ok_or_else(|| ApiError::internal("the event stream lost its reader"))?;
        let ledger = ledger(&self.state)?;
        let (cursor, tree, records) = blocking(move || {
            let batch = cursor.next_batch(BATCH).map_err(|e| {
                ApiError::internal(crate::terminal::line(&e.to_string()).into_owned())
            })?;
            let store = ledger.store();
            let mine: Vec<AuditRecord> = batch
                .into_iter()
                .filter(|r| r.task.is_some_and(|t| tree.contains(store, t)))
                .collect();
            Ok((cursor, tree, mine))
        })
        .await?;
        self.reader = Some((cursor, tree));
        Ok(records)
    }
}

/// A record's kind as an SSE event name: the host's kebab-case names pass, anything else (a
/// tampered log) is sent as `record`, since a line break there would end the event.
fn event_name(kind: &str) -> &str {
    let plain = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if plain { kind } else { "record" }
}

fn record_event(r: &AuditRecord) -> Event {
    let data = serde_json::to_string(r).unwrap_or_else(|_| "null".into());
    Event::default()
        .event(event_name(&r.kind))
        .id(r.seq.to_string())
        .data(data)
}

/// The last event: how the task ended.
fn end_event(row: &TaskRecord) -> Event {
    let cost = row
        .outcome
        .as_ref()
        .map_or(serde_json::Value::Null, |o| o["usage"]["model"].clone());
    let data = json!({
        "task": row.id,
        "status": row.status,
        "outcome": row.outcome,
        "cost": cost,
    });
    Event::default().event("end").data(data.to_string())
}

fn capped(last: u64) -> Event {
    let data = json!({
        "events": MAX_EVENTS,
        "message": format!("this stream sent {MAX_EVENTS} events; reconnect with Last-Event-ID: {last} for the rest"),
    });
    Event::default().event("capped").data(data.to_string())
}

fn error_event(message: &str) -> Event {
    let data = json!({"message": crate::terminal::line(message)});
    Event::default().event("error").data(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_kinds_name_an_event() {
        assert_eq!(event_name("task-started"), "task-started");
        assert_eq!(event_name("model-call"), "model-call");
        for hostile in ["", "a\nb", "data: x", "Task", &"x".repeat(65)] {
            assert_eq!(event_name(hostile), "record", "{hostile:?}");
        }
    }

    fn row(parent: Option<u64>) -> TaskRecord {
        TaskRecord {
            id: 0,
            agent: "probe".into(),
            agent_id: "unsigned/probe".into(),
            module_hash: "ab".into(),
            user: "dev".into(),
            level: 1,
            grant: json!({}),
            status: "running".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: crate::store::now_ms(),
            ended_ms: None,
            parent,
        }
    }

    #[test]
    fn the_tree_holds_the_root_and_every_task_under_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::SqliteStore::open(dir.path(), crate::store::Durability::Process).unwrap();
        let root = store.begin_task(&row(None), "me").unwrap();
        let child = store.begin_task(&row(Some(root)), "me").unwrap();
        let grandchild = store.begin_task(&row(Some(child)), "me").unwrap();
        let other = store.begin_task(&row(None), "me").unwrap();
        let others_child = store.begin_task(&row(Some(other)), "me").unwrap();
        let mut tree = Tree::default();
        tree.members.insert(root);
        assert!(tree.contains(&store, root));
        assert!(tree.contains(&store, grandchild));
        assert!(tree.contains(&store, child));
        assert!(!tree.contains(&store, other));
        assert!(!tree.contains(&store, others_child));
        // A task whose row is not stored yet is not remembered as outside: asked again later.
        assert!(!tree.contains(&store, 999));
        assert!(!tree.others.contains(&999));
        assert!(tree.others.contains(&others_child));
    }

    #[test]
    fn streams_past_the_bound_are_refused_and_a_dropped_one_frees_its_place() {
        let held: Vec<Slot> = (0..MAX_STREAMS).map_while(|_| Slot::take().ok()).collect();
        // Other tests may hold a few; the bound is what matters.
        let e = Slot::take().err().expect("refused past the bound");
        assert_eq!(e.code, "too-many-streams");
        drop(held);
        assert!(Slot::take().is_ok());
    }
}
