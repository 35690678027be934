//! The group commit's promise under a real SIGKILL: many threads run tasks through
//! [`Ledger::begin_task`] and [`Ledger::end_task`] in a child process (this test binary run
//! again), which prints each task's id the moment a call returns; the parent kills it mid-load
//! and checks that every acknowledged task is in the store or in the journal the child left,
//! that the data directory verifies (the chain intact, the log and the store with the journal
//! agreeing), and that after the next open every one is in the store with that status.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;
use crate::store::{TaskEnd, TaskRecord, TrustRecord};

/// Where the child writes: set only in the child.
const CHILD_DIR: &str = "WARDEN_LEDGER_KILL_CHILD_DIR";
const THREADS: usize = 8;
/// Acknowledged ends after which the parent kills the child.
const KILL_AFTER: usize = 600;

/// The child's body: tasks on `THREADS` threads until it is killed. Run by
/// `a_sigkill_mid_load_loses_no_acknowledged_task_or_record` in a child process; on its own
/// (the variable unset) it has nothing to do.
#[test]
fn kill_child_runs_tasks_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let ledger = Arc::new(Ledger::open(Path::new(&dir), 64).unwrap());
    let threads: Vec<_> = (0..THREADS)
        .map(|n| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                for i in 0.. {
                    // Half the threads run deferred trees (`defer.rs`) instead.
                    match n % 2 {
                        0 => run_task(&ledger, n, i, acknowledge),
                        _ => run_tree(&ledger, n, i, acknowledge),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// One task as the run path writes it, each acknowledgement told to `ack` as it happens.
/// A new task row of `agent`, running, as the group commit tests begin them.
pub(super) fn running_row(agent: &str, grant: serde_json::Value) -> TaskRecord {
    TaskRecord {
        id: 0,
        agent: agent.into(),
        agent_id: format!("unsigned/{agent}"),
        module_hash: "h".into(),
        user: "-".into(),
        level: 1,
        grant,
        status: "running".into(),
        outcome: None,
        trace: None,
        staging: "none".into(),
        staging_path: None,
        started_ms: now_ms(),
        ended_ms: None,
        parent: None,
    }
}

/// Task `id`'s closing `task-ended` record (binding its empty trace by its hash) and its end,
/// with `status`.
pub(super) fn ended(
    id: u64,
    agent: &str,
    status: &str,
    trust: Option<TrustRecord>,
) -> (Vec<AuditEvent>, TaskEnd) {
    let trace = json!({"events": [], "dropped": 0});
    let sha = crate::policy::keys::to_hex(&Sha256::digest(trace.to_string().as_bytes()));
    let records = vec![
        AuditEvent::new("task-ended")
            .task(id)
            .agent(agent)
            .detail(json!({"status": status, "trace_sha256": sha})),
    ];
    let end = TaskEnd {
        id,
        status: status.into(),
        outcome: json!({"status": status}),
        trace,
        staging: "none".into(),
        staging_path: None,
        ended_ms: crate::store::now_ms(),
        trust,
    };
    (records, end)
}

pub(super) fn run_task(ledger: &Ledger, thread: usize, i: u64, ack: fn(&str, u64)) {
    let agent = format!("agent{thread}");
    let id = ledger
        .begin_task(
            running_row(&agent, json!({"n": i})),
            AuditEvent::new("task-started").agent(&agent),
        )
        .unwrap();
    ack("begun", id);
    let mut trust = TrustRecord::new(&format!("unsigned/{agent}"), "h");
    trust.streak = u32::try_from(i).unwrap_or(u32::MAX);
    let (records, end) = ended(id, &agent, "completed", Some(trust));
    ledger.end_task(records, end).unwrap();
    ack("ended", id);
}

/// A caller and its callee begun deferred, the call recorded with them, both ended: the
/// tree is written with the caller's end, and only then are both acknowledged (as ended:
/// nothing of a deferred task is told before it is written).
pub(super) fn run_tree(ledger: &Ledger, thread: usize, i: u64, ack: fn(&str, u64)) {
    let agent = format!("agent{thread}");
    let root = ledger
        .defer_task(
            running_row(&agent, json!({"n": i})),
            AuditEvent::new("task-started").agent(&agent),
        )
        .unwrap()
        .id;
    let child = ledger
        .defer_task(
            TaskRecord {
                parent: Some(root),
                ..running_row(&agent, json!({"n": i, "callee": true}))
            },
            AuditEvent::new("task-started")
                .agent(&agent)
                .detail(json!({"parent": root})),
        )
        .unwrap()
        .id;
    let (records, end) = ended(child, &agent, "completed", None);
    ledger.end_task(records, end).unwrap();
    ledger
        .record_deferred(
            AuditEvent::new("agent-call")
                .task(root)
                .agent(&agent)
                .detail(json!({"callee_task": child})),
        )
        .unwrap();
    let (records, end) = ended(root, &agent, "completed", None);
    ledger.end_task(records, end).unwrap();
    ack("ended", child);
    ack("ended", root);
}

fn acknowledge(what: &str, id: u64) {
    // One line per write, so the parent never reads half an acknowledgement.
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{what} {id}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}

#[test]
fn a_sigkill_mid_load_loses_no_acknowledged_task_or_record() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "ledger::kill_tests::kill_child_runs_tasks_until_killed",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // task id -> the furthest acknowledgement: "begun" or "ended".
    let mut acked: BTreeMap<u64, &str> = BTreeMap::new();
    let mut ended = 0;
    let see = |line: &str, acked: &mut BTreeMap<u64, &str>| -> bool {
        let Some((what, id)) = line.split_once(' ') else {
            return false;
        };
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        match what {
            "begun" => {
                acked.entry(id).or_insert("begun");
            }
            "ended" => {
                acked.insert(id, "ended");
                return true;
            }
            _ => {}
        }
        false
    };
    for line in lines.by_ref() {
        if see(&line.unwrap(), &mut acked) {
            ended += 1;
            if ended == KILL_AFTER {
                break;
            }
        }
    }
    assert_eq!(ended, KILL_AFTER, "the child stopped before the kill");
    child.kill().unwrap(); // SIGKILL
    // What the child acknowledged before it died is still in the pipe.
    for line in lines {
        see(&line.unwrap(), &mut acked);
    }
    child.wait().unwrap();
    let in_flight = acked.values().filter(|w| **w == "begun").count();

    // Before any recovery: every acknowledged task is in the store, or in the journal the
    // child left (its rows are written behind it), with its end.
    {
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        for (id, what) in &acked {
            match store.task(*id) {
                Ok(task) if *what == "ended" && task.status == "completed" => {}
                // Its end may be in the journal still, or committed unacknowledged.
                Ok(task) => assert!(
                    ["running", "completed"].contains(&task.status.as_str()),
                    "task {id} is {}",
                    task.status
                ),
                Err(_) => assert!(
                    super::behind::journaled(dir.path(), *id, &store.journal_marks().unwrap()),
                    "task {id} was acknowledged as {what} but is neither in the store nor in a journal"
                ),
            }
        }
    }
    // The log and the store agree, read-only, as `warden audit verify` checks them.
    // (Tasks whose rows are still in the journal count as present.)
    verify_dir(dir.path(), None).unwrap();
    // The next open writes the journal into the store, recovers the tasks in flight and signs
    // the log; it verifies again, and no journal is left.
    drop(Ledger::open(dir.path(), 64).unwrap());
    let journals: Vec<_> = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "replay.lock")
        .collect();
    assert!(journals.is_empty(), "{journals:?}");
    let report = verify_dir(dir.path(), None).unwrap();
    assert!(report.awaiting_recovery.is_empty(), "{report:?}");
    assert!(report.tasks >= acked.len() as u64, "{report:?}");
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    for (id, what) in &acked {
        let status = store.task(*id).unwrap().status;
        let allowed: &[&str] = match *what {
            "ended" => &["completed"],
            _ => &["completed", "interrupted"],
        };
        assert!(allowed.contains(&status.as_str()), "task {id} is {status}");
    }
    eprintln!(
        "killed after {ended} acknowledged ends; {} tasks acknowledged, {in_flight} in flight",
        acked.len()
    );
}
