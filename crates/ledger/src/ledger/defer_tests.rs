//! Deferred task trees (`defer.rs`): written in one batch at their root's end, in the order
//! their writes came; written at once when a record names one of their tasks or a callee does
//! not complete; written when the ledger closes; lost with a killed process only while nothing
//! of them was written.

use serde_json::json;

use super::kill_tests::{ended, running_row};
use super::*;
use crate::store::TaskRecord;

fn defer(ledger: &Ledger, agent: &str, parent: Option<u64>) -> u64 {
    let row = TaskRecord {
        parent,
        ..running_row(agent, json!({}))
    };
    let started = AuditEvent::new("task-started")
        .agent(agent)
        .detail(json!({"parent": parent}));
    ledger.defer_task(row, started).unwrap().id
}

fn end(ledger: &Ledger, id: u64, status: &str) {
    let (records, end) = ended(id, "agent", status, None);
    ledger.end_task(records, end).unwrap();
}

/// The log's records as (kind, task).
fn records(dir: &Path) -> Vec<(String, Option<u64>)> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["kind"].as_str().unwrap().to_owned(), v["task"].as_u64())
        })
        .filter(|(kind, _)| kind != "checkpoint")
        .collect()
}

fn kind(kind: &str, task: u64) -> (String, Option<u64>) {
    (kind.to_owned(), Some(task))
}

#[test]
fn a_tree_is_written_in_one_batch_at_its_roots_end_in_the_order_its_writes_came() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    let root = defer(&ledger, "caller", None);
    let child = defer(&ledger, "callee", Some(root));
    assert!(ledger.is_deferred(root) && ledger.is_deferred(child));
    // The callee runs in its caller's tree (the root's wait for a long run covers it).
    assert_eq!(
        (ledger.deferred_root(root), ledger.deferred_root(child)),
        (Some(root), Some(root))
    );
    end(&ledger, child, "completed");
    assert_eq!(ledger.deferred_root(child), None, "ended: it runs no more");
    ledger
        .record_deferred(AuditEvent::new("agent-call").task(root))
        .unwrap();
    // Nothing of the tree is written before its root ends.
    assert!(records(dir.path()).is_empty());
    assert!(ledger.store().task(root).is_err() && ledger.store().task(child).is_err());
    let before = ledger.commit_stats();
    end(&ledger, root, "completed");
    assert_eq!(ledger.commit_stats().batches, before.batches + 1);
    assert!(!ledger.is_deferred(root));
    assert_eq!(
        records(dir.path()),
        [
            kind("task-started", root),
            kind("task-started", child),
            kind("task-ended", child),
            kind("agent-call", root),
            kind("task-ended", root),
        ]
    );
    let callee = ledger.store().task(child).unwrap();
    assert_eq!(
        (callee.status.as_str(), callee.parent),
        ("completed", Some(root))
    );
    assert_eq!(ledger.store().task(root).unwrap().status, "completed");
    drop(ledger);
    verify_dir(dir.path(), None).unwrap();
}

#[test]
fn a_record_naming_a_deferred_task_writes_its_tree_first() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    let root = defer(&ledger, "caller", None);
    let child = defer(&ledger, "callee", Some(root));
    ledger
        .record(AuditEvent::new("model-call").task(child))
        .unwrap();
    assert!(!ledger.is_deferred(root) && !ledger.is_deferred(child));
    assert_eq!(
        records(dir.path()),
        [
            kind("task-started", root),
            kind("task-started", child),
            kind("model-call", child),
        ]
    );
    assert_eq!(ledger.store().task(child).unwrap().status, "running");
    // A record naming a callee whose end waits in its tree writes the tree first too.
    let root2 = defer(&ledger, "caller", None);
    let child2 = defer(&ledger, "callee", Some(root2));
    end(&ledger, child2, "completed");
    assert!(!ledger.is_deferred(child2) && ledger.is_deferred(root2));
    ledger
        .record(AuditEvent::new("model-call").task(child2))
        .unwrap();
    assert!(!ledger.is_deferred(root2));
    assert_eq!(ledger.store().task(child2).unwrap().status, "completed");
    end(&ledger, root2, "completed");
    // Their ends, written as any end now.
    end(&ledger, child, "completed");
    end(&ledger, root, "completed");
    assert_eq!(ledger.store().task(root).unwrap().status, "completed");
    drop(ledger);
    verify_dir(dir.path(), None).unwrap();
}

#[test]
fn a_callee_that_did_not_complete_writes_its_tree_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    let root = defer(&ledger, "caller", None);
    let child = defer(&ledger, "callee", Some(root));
    end(&ledger, child, "killed");
    assert!(!ledger.is_deferred(root));
    assert_eq!(ledger.store().task(child).unwrap().status, "killed");
    assert_eq!(ledger.store().task(root).unwrap().status, "running");
    // A callee begun without deferral writes its caller's tree first, too.
    let root2 = defer(&ledger, "caller", None);
    let started = AuditEvent::new("task-started")
        .agent("callee")
        .detail(json!({"parent": root2}));
    let child2 = ledger
        .begin_task(
            TaskRecord {
                parent: Some(root2),
                ..running_row("callee", json!({}))
            },
            started,
        )
        .unwrap();
    assert!(!ledger.is_deferred(root2));
    let tail: Vec<_> = records(dir.path()).into_iter().rev().take(2).collect();
    assert_eq!(
        tail,
        [kind("task-started", child2), kind("task-started", root2)]
    );
    for (id, status) in [
        (root, "completed"),
        (child2, "completed"),
        (root2, "completed"),
    ] {
        end(&ledger, id, status);
    }
    drop(ledger);
    verify_dir(dir.path(), None).unwrap();
}

#[test]
fn a_closing_ledger_writes_its_trees_and_a_killed_one_loses_only_unwritten_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    let closing = defer(&ledger, "caller", None);
    drop(ledger);
    // Written as the ledger closed, running: the next open interrupts it.
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    assert_eq!(ledger.store().task(closing).unwrap().status, "interrupted");
    let written = defer(&ledger, "caller", None);
    ledger.write_deferred(written).unwrap();
    let lost = defer(&ledger, "caller", None);
    // Killed (owner lock gone, nothing else runs): the written task is interrupted at the
    // next open; the unwritten one left nothing, and the directory verifies.
    let mut ledger = ledger;
    ledger.anchorer.settle();
    ledger.owner_lock.take();
    std::mem::forget(ledger);
    verify_dir(dir.path(), None).unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    assert_eq!(ledger.store().task(written).unwrap().status, "interrupted");
    assert!(ledger.store().task(lost).is_err());
    assert!(!records(dir.path()).iter().any(|(_, t)| *t == Some(lost)));
    drop(ledger);
    verify_dir(dir.path(), None).unwrap();
}

#[test]
fn the_next_task_of_an_agent_whose_end_waits_in_a_tree_reads_the_trust_that_end_brings() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    let root = defer(&ledger, "caller", None);
    let child = defer(&ledger, "callee", Some(root));
    let mut trust = crate::store::TrustRecord::new("unsigned/callee", "h");
    trust.streak = 7;
    let (records, end) = ended(child, "callee", "completed", Some(trust));
    ledger.end_task(records, end).unwrap();
    // Another agent's trust leaves the tree deferred; the callee's writes it first.
    assert_eq!(ledger.trust("unsigned/caller").unwrap(), None);
    assert!(ledger.is_deferred(root));
    assert_eq!(ledger.trust("unsigned/callee").unwrap().unwrap().streak, 7);
    assert!(!ledger.is_deferred(root));
    assert_eq!(ledger.store().task(child).unwrap().status, "completed");
}
