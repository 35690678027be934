//! Tests of the ledger: recovery after a host stops, and verifying a data directory read-only
//! against the state store.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::store::{TaskRecord, TrustRecord};

fn running_task(ledger: &Ledger) -> u64 {
    let task = TaskRecord {
        id: 0,
        agent: "hello".into(),
        agent_id: "unsigned/hello".into(),
        module_hash: "h".into(),
        user: "-".into(),
        level: 1,
        grant: serde_json::json!({}),
        status: "running".into(),
        outcome: None,
        trace: None,
        staging: "none".into(),
        staging_path: None,
        started_ms: now_ms(),
        ended_ms: None,
        parent: None,
    };
    ledger.store().begin_task(&task, ledger.owner()).unwrap()
}

#[test]
fn only_the_tasks_of_a_host_that_is_gone_are_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let host = Ledger::open(dir.path(), 1024).unwrap();
    let id = running_task(&host);
    // A CLI opening the same data directory while the host runs leaves its task alone.
    let cli = Ledger::open(dir.path(), 1024).unwrap();
    assert_eq!(cli.store().task(id).unwrap().status, "running");
    drop(cli);
    // Once the host is gone (its owner lock released), the task is interrupted and audited.
    drop(host);
    let after = Ledger::open(dir.path(), 1024).unwrap();
    assert_eq!(after.store().task(id).unwrap().status, "interrupted");
    drop(after);
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(log.matches("\"task-interrupted\"").count(), 1);
    verify_dir(dir.path(), None).unwrap();
    // No owner lock files are left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("owners"))
            .unwrap()
            .count(),
        0
    );
}

/// Runs a task the way the runtime does: row, start record, end record (binding the trace by
/// its hash), then the end-of-task commit.
fn finished_task(ledger: &Ledger, status: &str) -> u64 {
    let id = running_task(ledger);
    ledger
        .record(AuditEvent::new("task-started").task(id))
        .unwrap();
    let trust = TrustRecord::new("unsigned/hello", "h");
    let (records, end) = super::kill_tests::ended(id, "hello", status, Some(trust));
    for record in records {
        ledger.record(record).unwrap();
    }
    ledger.store().end_task(&end).unwrap();
    id
}

/// Stops `ledger` the way SIGKILL does: its owner lock goes, nothing else runs (no closing
/// checkpoint).
fn kill(mut ledger: Ledger) {
    // Deterministic: the checkpoints signed so far are anchored (a real kill may cut that short).
    ledger.anchorer.settle();
    ledger.owner_lock.take();
    std::mem::forget(ledger);
}

/// A data directory whose host was killed after 5 tasks (checkpoints every 4 records), with a
/// 6th in flight; and the anchor as it stood after the first checkpoint.
fn killed_host() -> (tempfile::TempDir, Vec<u8>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let host = Ledger::open(dir.path(), 4).unwrap();
    finished_task(&host, "completed");
    finished_task(&host, "completed");
    host.anchorer.settle();
    let first_anchor = std::fs::read(dir.path().join("audit.anchor")).unwrap();
    for status in ["agent-error", "killed", "completed"] {
        finished_task(&host, status);
    }
    let running = running_task(&host);
    host.record(AuditEvent::new("task-started").task(running))
        .unwrap();
    kill(host);
    (dir, first_anchor, running)
}

/// The files whose bytes hold the log and the store.
fn data_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    ["audit.log", "audit.anchor", "state.db", "state.db-wal"]
        .into_iter()
        .filter_map(|f| Some((f.to_string(), std::fs::read(dir.join(f)).ok()?)))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_killed_hosts_data_verifies_read_only_and_the_next_open_signs_it() {
    let (dir, _, running) = killed_host();
    let before = data_files(dir.path());
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!(report.tasks, 6);
    assert_eq!(report.awaiting_recovery, vec![running]);
    assert!(report.unsigned() > 0, "{report:?}");
    assert_eq!(
        report.store_vouches_to,
        Some(report.records - 1),
        "the last end commit vouches for all but the in-flight start record"
    );
    assert_eq!(
        data_files(dir.path()),
        before,
        "verify wrote to the data directory"
    );

    // The next open interrupts the task and signs what the killed host left unsigned.
    let after = Ledger::open(dir.path(), 4).unwrap();
    assert_eq!(after.store().task(running).unwrap().status, "interrupted");
    drop(after);
    let kinds: Vec<String> = crate::audit::read_tail(&dir.path().join("audit.log"), 3)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["task-interrupted", "audit-recovered", "checkpoint"]);
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!((report.unsigned(), report.awaiting_recovery.len()), (0, 0));
    // A clean stop leaves nothing to recover: reopening appends nothing.
    let before = data_files(dir.path())["audit.log"].clone();
    drop(Ledger::open(dir.path(), 4).unwrap());
    assert_eq!(data_files(dir.path())["audit.log"], before);
}

#[test]
fn a_host_killed_mid_write_leaves_a_torn_line_that_verify_reports_and_the_next_open_cuts() {
    use std::io::Write;
    let (dir, _, running) = killed_host();
    // The kill landed between two pages of a batch's write: part of a record is in the log.
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("audit.log"))
        .unwrap()
        .write_all(br#"{"seq":99,"time_ms":1,"kind":"task-ended","task":"#)
        .unwrap();
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!(report.torn_tail, Some(49), "{report:?}");
    assert_eq!(report.awaiting_recovery, vec![running]);

    let after = Ledger::open(dir.path(), 4).unwrap();
    assert_eq!(after.store().task(running).unwrap().status, "interrupted");
    drop(after);
    let kinds: Vec<String> = crate::audit::read_tail(&dir.path().join("audit.log"), 4)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            crate::audit::TORN_TAIL_KIND,
            "task-interrupted",
            "audit-recovered",
            "checkpoint"
        ]
    );
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!(
        (report.torn_tail, report.unsigned()),
        (None, 0),
        "{report:?}"
    );
}

#[test]
fn a_newline_taken_off_a_record_the_store_vouches_for_is_refused_not_cut() {
    let (dir, _, _) = killed_host();
    let log = dir.path().join("audit.log");
    let text = std::fs::read(&log).unwrap();
    // Drop the last line (the unvouched start record), then the newline of the record before
    // it, which the last end commit vouches for: it now looks like a write cut short.
    let body = &text[..text.len() - 1];
    let cut = body.iter().rposition(|&b| b == b'\n').unwrap();
    let attacked = &text[..cut];
    std::fs::write(&log, attacked).unwrap();
    let e = Ledger::open(dir.path(), 4).unwrap_err();
    assert!(matches!(e, LedgerError::LogBehindStore { .. }), "{e}");
    // Refused before the log was opened for writing: nothing cut, nothing saved aside.
    assert_eq!(std::fs::read(&log).unwrap(), attacked);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("audit.torn")
    }),);
}

#[test]
fn cutting_what_a_killed_host_left_unsigned_is_caught() {
    let (dir, first_anchor, _) = killed_host();
    let anchor = crate::audit::read_anchor(dir.path()).unwrap().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    type Attack = fn(&Path, usize, &[u8]);
    let attacks: [(&str, Attack, &str); 4] = [
        (
            "the log cut after its last checkpoint",
            |d, signed, _| {
                let l = log_lines(d);
                std::fs::write(d.join("audit.log"), l[..signed].join("\n") + "\n").unwrap();
            },
            "has no task-started record",
        ),
        (
            "the log and its anchor rolled back to the first checkpoint",
            |d, _, first| {
                std::fs::write(d.join("audit.anchor"), first).unwrap();
                let size = serde_json::from_slice::<Checkpoint>(first).unwrap().size as usize;
                let l = log_lines(d);
                std::fs::write(d.join("audit.log"), l[..=size].join("\n") + "\n").unwrap();
            },
            "the state store holds a checkpoint at record",
        ),
        (
            "a task's row deleted",
            |d, _, _| {
                let db = rusqlite::Connection::open(d.join("state.db")).unwrap();
                db.execute("DELETE FROM tasks WHERE id = 3", []).unwrap();
            },
            "is about task 3, but the state store has no task 3",
        ),
        (
            "a task's outcome changed",
            |d, _, _| {
                let db = rusqlite::Connection::open(d.join("state.db")).unwrap();
                db.execute("UPDATE tasks SET status = 'completed' WHERE id = 4", [])
                    .unwrap();
            },
            "task 4 is `completed` in the state store, but its task-ended record",
        ),
    ];
    for (i, (name, attack, says)) in attacks.into_iter().enumerate() {
        let copy = scratch.path().join(i.to_string());
        copy_dir(dir.path(), &copy);
        attack(&copy, anchor.size as usize + 1, &first_anchor);
        let e = verify_dir(&copy, None).expect_err(name);
        assert!(e.to_string().contains(says), "{name}: {e}");
    }
    // Its twin: the untouched copy verifies.
    let copy = scratch.path().join("clean");
    copy_dir(dir.path(), &copy);
    verify_dir(&copy, None).unwrap();
}

#[test]
fn a_log_cut_behind_the_store_is_refused_at_open_and_left_as_it_is() {
    let (dir, _, _) = killed_host();
    let anchor = crate::audit::read_anchor(dir.path()).unwrap().unwrap();
    let l = log_lines(dir.path());
    let cut = l[..=anchor.size as usize].join("\n") + "\n";
    std::fs::write(dir.path().join("audit.log"), &cut).unwrap();
    let e = Ledger::open(dir.path(), 4).unwrap_err();
    assert!(
        matches!(&e, LedgerError::LogBehindStore { found, .. } if found == &format!("ends at record {}", anchor.size + 1)),
        "{e}"
    );
    assert!(e.to_string().contains("warden audit verify"), "{e}");
    // Nothing was signed or appended over the cut log.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("audit.log")).unwrap(),
        cut
    );
    // A record rewritten in place (same length, chain recomputed) is refused the same way.
    let (dir, _, _) = killed_host();
    let mut l = log_lines(dir.path());
    let last = l.len() - 2;
    let mut record: crate::audit::AuditRecord = serde_json::from_str(&l[last]).unwrap();
    record.hash = "0".repeat(64);
    l[last] = serde_json::to_string(&record).unwrap();
    std::fs::write(dir.path().join("audit.log"), l.join("\n") + "\n").unwrap();
    let e = Ledger::open(dir.path(), 4).unwrap_err();
    assert!(
        matches!(&e, LedgerError::LogBehindStore { found, .. } if found.starts_with("holds another")),
        "{e}"
    );
}

#[test]
fn a_checkpoint_due_in_a_commit_is_anchored_off_the_run_path() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 4).unwrap();
    for i in 0..6 {
        super::kill_tests::run_task(&ledger, 0, i, |_, _| {});
    }
    ledger.anchorer.settle();
    let anchor = crate::audit::read_anchor(dir.path())
        .unwrap()
        .expect("an anchor");
    let stored = ledger
        .store()
        .latest_checkpoint()
        .unwrap()
        .expect("a stored checkpoint");
    assert_eq!(anchor.size, stored.size);
    assert!(anchor.size >= 4, "{anchor:?}");
    drop(ledger);
    let report = verify_dir(dir.path(), None).unwrap();
    assert!(report.awaiting_recovery.is_empty(), "{report:?}");
}

/// A tree's pending actions are read without waiting for the journal's writer: an action held
/// by a grandchild of a queued root (whose id is above its children's) is found from the root,
/// while another connection holds the store's write lock (the writer cannot write) and the
/// tree's newer rows are still in the journal; a tree that held none has none.
#[test]
fn a_trees_actions_are_read_without_waiting_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 1024).unwrap();
    let row = |parent| TaskRecord {
        parent,
        ..super::kill_tests::running_row("probe", json!({}))
    };
    // As the run path begins a task: its id from the block this ledger reserved.
    let begin = |parent| {
        ledger
            .begin_task(row(parent), AuditEvent::new("task-started"))
            .unwrap()
    };
    let other = begin(None);
    // A queued task's id is above every reserved one.
    let root = ledger
        .store()
        .enqueue_task(
            &TaskRecord {
                status: "queued".into(),
                ..row(None)
            },
            "{}",
        )
        .unwrap();
    let child = begin(Some(root));
    let grandchild = begin(Some(child));
    assert!(grandchild < root, "the children's ids are below the root's");
    let held = ledger.actions_held();
    ledger
        .hold_action(
            grandchild,
            "probe",
            "alice",
            "deploy",
            "{}",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    // The count an MCP answer compares to skip the read (`pending_actions_after`).
    assert_eq!(ledger.actions_held(), held + 1);
    let blocker = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let sibling = begin(Some(child));
    let later = begin(None);
    let pending = |id| {
        ledger
            .store()
            .tree_actions(id, "pending", None, None, 10)
            .unwrap()
            .len()
    };
    assert_eq!(
        (
            pending(root),
            pending(other),
            pending(later),
            pending(sibling)
        ),
        (1, 0, 0, 0)
    );
    blocker.execute_batch("COMMIT").unwrap();
}
