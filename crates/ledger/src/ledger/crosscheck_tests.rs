//! The cross-check's rules, one table: a consistent log and store, then each way one of them
//! can lose or change a record, with the mismatch it must be reported as.

use serde_json::{Value, json};

use super::*;
use crate::store::{ActionWitness, LogHead, StoredCheckpoint};

struct World {
    gone_rows: bool,
}

impl Now for World {
    fn alive(&self, owner: &str) -> bool {
        owner == "live"
    }
    fn task_exists(&self, _: u64) -> bool {
        self.gone_rows
    }
    fn action_exists(&self, _: u64) -> bool {
        self.gone_rows
    }
}

/// Record `seq`'s hash in these logs.
fn h(seq: u64) -> String {
    format!("{seq:064}")
}

fn task(id: u64, status: &str, owner: &str, head: u64) -> TaskWitness {
    TaskWitness {
        id,
        status: status.into(),
        owner: owner.into(),
        staging: "none".into(),
        trace_sha256: Some(format!("trace{id}")),
        log_head: Some(LogHead {
            seq: head,
            hash: h(head)[..LogHead::KEPT_DIGITS].to_string(),
        }),
        parent: None,
    }
}

fn action(id: u64, task: u64, status: &str) -> ActionWitness {
    ActionWitness {
        id,
        task,
        hash: format!("a{id}"),
        status: status.into(),
    }
}

/// A log as (kind, task, detail) per record; record n's hash is `h(n)`.
type Log = Vec<(&'static str, Option<u64>, Value)>;

/// A store and the log that agrees with it.
fn world() -> (StoreWitness, Log) {
    // Task 6 was started by task 1's agent calling another agent.
    let mut applied = task(6, "completed", "gone", 16);
    applied.staging = "applied".into();
    applied.parent = Some(1);
    let witness = StoreWitness {
        tasks: vec![
            task(1, "completed", "gone", 3),
            task(2, "interrupted", "gone", 5),
            task(3, "running", "live", 5),
            task(4, "running", "gone", 5),
            task(5, "failed-to-start", "gone", 9),
            applied,
        ],
        actions: vec![action(1, 1, "performed"), action(2, 1, "pending")],
        journal_marks: Default::default(),
        checkpoint: Some(StoredCheckpoint {
            size: 9,
            head: h(9),
            key: "k".into(),
            signature: "s".into(),
        }),
    };
    let ended =
        |status: &str, task: u64| json!({"status": status, "trace_sha256": format!("trace{task}")});
    let log = vec![
        ("task-started", Some(1), Value::Null),
        (
            "action-pending",
            Some(1),
            json!({"action": 1, "hash": "a1"}),
        ),
        ("task-ended", Some(1), ended("completed", 1)),
        ("task-started", Some(2), Value::Null),
        ("task-interrupted", Some(2), json!({})),
        ("task-started", Some(3), Value::Null),
        ("task-started", Some(5), Value::Null),
        ("task-failed-to-start", Some(5), json!({"why": "x"})),
        ("checkpoint", None, Value::Null),
        ("action-approved", Some(1), json!({"action": 1})),
        ("action-performed", Some(1), json!({"action": 1})),
        (
            "action-pending",
            Some(1),
            json!({"action": 2, "hash": "a2"}),
        ),
        ("task-started", Some(6), json!({"parent": 1})),
        ("staging-applied", Some(6), Value::Null),
        ("task-ended", Some(6), ended("completed", 6)),
        ("task-ended", Some(4), ended("completed", 4)),
    ];
    (witness, log)
}

fn run(
    witness: &StoreWitness,
    log: &[(&str, Option<u64>, Value)],
    store: bool,
    gone_rows: bool,
) -> Result<Findings, Mismatch> {
    let mut facts = LogFacts::for_witness(witness);
    for (i, (kind, task, detail)) in log.iter().enumerate() {
        let seq = i as u64 + 1;
        facts.see(&AuditRecord {
            seq,
            time_ms: 0,
            kind: (*kind).into(),
            task: *task,
            agent: None,
            user: None,
            detail: detail.clone(),
            prev: h(seq - 1),
            hash: h(seq),
        });
    }
    compare(
        witness,
        &facts,
        log.len() as u64,
        store,
        &World { gone_rows },
    )
}

#[test]
fn a_log_and_store_that_agree_pass_and_say_what_awaits_recovery() {
    let (witness, log) = world();
    let found = run(&witness, &log, true, false).unwrap();
    assert_eq!(
        found,
        Findings {
            awaiting_recovery: vec![4],
            running: vec![3],
            vouched_to: Some(16),
        }
    );
}

type Edit = fn(&mut StoreWitness, &mut Log);

#[test]
fn each_disagreement_is_named_with_its_task_or_action() {
    let cases: [(&str, Edit, &str); 21] = [
        (
            "a called task made a task of its own in the store",
            |w, _| w.tasks[5].parent = None,
            "task 6 was called by no task according to the state store, but its task-started record 13 says task 1",
        ),
        (
            "a task moved under another caller in the store",
            |w, _| w.tasks[0].parent = Some(6),
            "task 1 was called by task 6 according to the state store, but its task-started record 1 says no task",
        ),
        (
            "a called task's caller erased from the log",
            |_, l| l[12].2 = Value::Null,
            "task 6 was called by task 1 according to the state store, but its task-started record 13 says no task",
        ),
        (
            "an end record cut out",
            |_, l| {
                l.remove(2);
            },
            "task 1 is `completed` in the state store, but the audit log (ending at record 15) has no task-ended record",
        ),
        (
            "the log's tail cut after a crash",
            |_, l| l.truncate(12),
            "task 6 is `completed` in the state store, but the audit log (ending at record 12) has no task-started record for it; its row was committed when the log had reached record 16, so the log was cut after record 12 (the store's task commits vouch for it up to record 16)",
        ),
        (
            "only records after the last task commit cut",
            |w, _| {
                w.tasks[5].log_head = Some(LogHead {
                    seq: 17,
                    hash: h(17),
                })
            },
            "task 6's row in the state store was committed when the audit log reached record 17 (hash 0000000000000000000000000000000000000000000000000000000000000017), but the log ends at record 16",
        ),
        (
            "a status edited in the store",
            |w, _| w.tasks[0].status = "killed".into(),
            "task 1 is `killed` in the state store, but its task-ended record 3 says `completed`",
        ),
        (
            "a trace swapped in the store",
            |w, _| w.tasks[0].trace_sha256 = Some("other".into()),
            "its trace hashes to trace1, but the stored trace hashes to other",
        ),
        (
            "a row the log's head moved under",
            |w, _| w.tasks[0].log_head.as_mut().unwrap().hash = "1".repeat(16),
            "task 1's row in the state store was committed when the audit log reached record 3 (hash 1111111111111111), but the log's record 3 is another",
        ),
        (
            "an interrupted task without its record",
            |_, l| l[4].0 = "note",
            "task 2 is `interrupted` in the state store, but the audit log (ending at record 16) has no task-interrupted record",
        ),
        (
            "a start record cut out",
            |_, l| l[6].0 = "note",
            "task 5 is `failed-to-start` in the state store, but the audit log (ending at record 16) has no task-started record",
        ),
        (
            "a write applied without its record",
            |_, l| l[13].0 = "note",
            "no staging-applied record for it",
        ),
        (
            "a task row deleted from the store",
            |w, _| {
                w.tasks.remove(4);
            },
            "record 7 (task-started) of the audit log is about task 5, but the state store has no task 5",
        ),
        (
            "an action without its pending record",
            |_, l| l[1].0 = "note",
            "action 1 (task 1) is `performed` in the state store, but the audit log has no action-pending record",
        ),
        (
            "an action whose parameters changed",
            |w, _| w.actions[1].hash = "changed".into(),
            "records it (record 12) with hash a2, not the stored changed",
        ),
        (
            "an action performed without its record",
            |_, l| l[10].0 = "note",
            "action 1 (task 1) is `performed` in the state store, but the audit log does not record how it ended",
        ),
        (
            "an action settled in the log but still pending in the store",
            |w, _| w.actions[0].status = "pending".into(),
            "action 1 (task 1) is `pending` in the state store, but the audit log records it performed",
        ),
        (
            "an action failed closed by an older host, never audited",
            |w, _| w.actions.push(action(3, 1, "failed")),
            "",
        ),
        (
            "an action performed that the log never saw",
            |w, _| w.actions.push(action(3, 1, "performed")),
            "action 3 (task 1) is `performed` in the state store, but the audit log has no action-pending record",
        ),
        (
            "an action row deleted",
            |w, _| {
                w.actions.remove(1);
            },
            "record 12 (action-pending) of the audit log is about action 2, but the state store has no action 2",
        ),
        (
            "a task that ended in the log but whose row is running under a live host",
            |w, _| w.tasks[3].owner = "live".into(),
            "",
        ),
    ];
    for (name, edit, says) in cases {
        let (mut witness, mut log) = world();
        edit(&mut witness, &mut log);
        match run(&witness, &log, true, false) {
            Err(e) => assert!(
                !says.is_empty() && e.to_string().contains(says),
                "{name}: {e}"
            ),
            Ok(found) => assert!(says.is_empty(), "{name}: not detected ({found:?})"),
        }
    }
}

#[test]
fn a_row_committed_after_the_snapshot_is_not_a_deleted_one() {
    let (mut witness, log) = world();
    witness.tasks.remove(4);
    witness.actions.remove(1);
    // The row exists by the time the log was read: a task that began during verification.
    assert!(run(&witness, &log, true, true).is_ok());
    // Its twin, the row still missing, is the deleted-row case above.
    assert!(matches!(
        run(&witness, &log, true, false),
        Err(Mismatch::TaskNotInStore { task: 5, .. })
    ));
}

#[test]
fn a_log_of_tasks_without_a_store_is_refused() {
    let (_, log) = world();
    let e = run(&StoreWitness::default(), &log, false, false).unwrap_err();
    assert!(
        matches!(
            e,
            Mismatch::NoStore {
                task: 1,
                seq: 1,
                ..
            }
        ),
        "{e}"
    );
    // A log with no task records needs no store.
    let plain = [("agent-loaded", None, Value::Null)];
    assert!(run(&StoreWitness::default(), &plain, false, false).is_ok());
}
