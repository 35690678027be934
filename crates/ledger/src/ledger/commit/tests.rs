//! The group commit's async callers: a dropped start taken back, a dropped end still written,
//! and many tasks on two worker threads sharing batches.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use serde_json::json;

use super::super::Ledger;
use crate::audit::AuditEvent;
use crate::store::{TaskEnd, TaskRecord};

fn row(agent: &str) -> TaskRecord {
    super::super::kill_tests::running_row(agent, json!({}))
}

fn end(id: u64) -> TaskEnd {
    TaskEnd {
        id,
        status: "completed".into(),
        outcome: json!({"status": "completed"}),
        trace: json!({"events": [], "dropped": 0}),
        staging: "none".into(),
        staging_path: None,
        ended_ms: crate::store::now_ms(),
        trust: None,
    }
}

/// The `task-ended` record that `end(id)` vouches for.
fn ended(id: u64, agent: &str) -> AuditEvent {
    use sha2::Digest;
    let trace = end(id).trace.to_string();
    let sha = crate::policy::keys::to_hex(&sha2::Sha256::digest(trace.as_bytes()));
    AuditEvent::new("task-ended")
        .task(id)
        .agent(agent)
        .detail(json!({"status": "completed", "trace_sha256": sha}))
}

/// Poll `f` once, with a leader pretended busy, and drop it.
fn poll_once_and_drop(ledger: &Ledger, f: impl Future) {
    ledger.committer.lock().leading = true;
    let mut f = pin!(f);
    let polled = f.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(polled.is_pending());
    assert_eq!(ledger.committer.lock().wakers.len(), 1);
}

#[test]
fn a_dropped_async_start_is_taken_back_and_a_dropped_end_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    poll_once_and_drop(
        &ledger,
        ledger.begin_task_async(row("a"), AuditEvent::new("task-started")),
    );
    {
        let queue = ledger.committer.lock();
        assert!(queue.waiting.is_empty() && queue.wakers.is_empty());
    }
    ledger.committer.lock().leading = false;
    let id = ledger
        .begin_task(row("b"), AuditEvent::new("task-started"))
        .unwrap();
    poll_once_and_drop(
        &ledger,
        ledger.end_task_async(vec![AuditEvent::new("task-ended").task(id)], end(id)),
    );
    assert_eq!(ledger.committer.lock().waiting.len(), 1);
    // The leader steps down; the next caller's batch carries the end nobody waits for.
    ledger.committer.lock().leading = false;
    ledger
        .begin_task(row("c"), AuditEvent::new("task-started"))
        .unwrap();
    let queue = ledger.committer.lock();
    assert!(queue.finished.is_empty() && queue.abandoned.is_empty());
    drop(queue);
    let tasks = ledger.store().tasks(10).unwrap();
    let agents: Vec<_> = tasks
        .iter()
        .map(|t| (t.agent.as_str(), t.status.as_str()))
        .collect();
    assert!(!agents.iter().any(|(a, _)| *a == "a"), "{agents:?}");
    assert!(agents.contains(&("b", "completed")), "{agents:?}");
}

#[test]
fn async_callers_share_batches_without_blocking_their_threads() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = std::sync::Arc::new(Ledger::open(dir.path(), 64).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let ledger = std::sync::Arc::clone(&ledger);
                tokio::spawn(async move {
                    for _ in 0..40 {
                        let agent = format!("agent{n}");
                        let id = ledger
                            .begin_task_async(row(&agent), AuditEvent::new("task-started"))
                            .await
                            .unwrap()
                            .id;
                        tokio::task::yield_now().await;
                        ledger
                            .end_task_async(vec![ended(id, &agent)], end(id))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let stats = ledger.commit_stats();
    assert_eq!(stats.jobs, 16 * 40 * 2, "{stats:?}");
    // Sixteen tasks on two threads: while one leads, the other queues jobs behind it.
    assert!(stats.batches < stats.jobs, "{stats:?}");
    let tasks = ledger.store().tasks(1000).unwrap();
    assert_eq!(tasks.len(), 640);
    assert!(tasks.iter().all(|t| t.status == "completed"));
    drop(ledger);
    let report = super::super::verify_dir(dir.path(), None).unwrap();
    assert_eq!(report.tasks, 640, "{report:?}");
}

#[test]
fn a_caller_lets_running_tasks_queue_first_a_bounded_number_of_times_and_a_lone_one_never() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    let cx = &mut Context::from_waker(Waker::noop());
    let begin = |agent: &str| {
        ledger
            .begin_task(row(agent), AuditEvent::new("task-started"))
            .unwrap()
    };
    // A lone task: its start and its end are written on their first poll.
    // One row, compared with what was stored (a second `row` could fall in the next millisecond).
    let a_row = row("a");
    let mut start = pin!(ledger.begin_task_async(a_row.clone(), AuditEvent::new("task-started")));
    let std::task::Poll::Ready(Ok(started)) = start.as_mut().poll(cx) else {
        panic!("a lone start waited");
    };
    let a = started.id;
    assert_eq!(started, TaskRecord { id: a, ..a_row }, "the row as stored");
    assert_eq!(ledger.committer.lock().running(), 1);
    let mut close = pin!(ledger.end_task_async(vec![ended(a, "a")], end(a)));
    assert!(close.as_mut().poll(cx).is_ready(), "a lone end waited");
    assert_eq!(ledger.committer.lock().running(), 0);

    // Two more tasks running beside the one ending: its end lets them go first, twice at
    // most, then leads.
    let (b, c, d) = (begin("b"), begin("c"), begin("d"));
    assert_eq!(ledger.committer.lock().running(), 3);
    let mut close = pin!(ledger.end_task_async(vec![ended(b, "b")], end(b)));
    assert!(close.as_mut().poll(cx).is_pending());
    assert!(close.as_mut().poll(cx).is_pending());
    assert_eq!(
        ledger.committer.lock().waiting.len(),
        1,
        "still queued, not dropped"
    );
    let std::task::Poll::Ready(Ok(written)) = close.as_mut().poll(cx) else {
        panic!("not written after two yields");
    };
    assert_eq!(written.id, b, "the end as written");
    // With as many jobs queued as tasks running, nobody is expected: it leads at once.
    assert_eq!(ledger.committer.lock().running(), 2);
    ledger.end_task(vec![ended(c, "c")], end(c)).unwrap();
    let mut close = pin!(ledger.end_task_async(vec![ended(d, "d")], end(d)));
    assert!(close.as_mut().poll(cx).is_ready());
    assert_eq!(ledger.committer.lock().running(), 0);
    let done = ledger.store().tasks(10).unwrap();
    assert!(done.iter().all(|t| t.status == "completed"), "{done:?}");
}
