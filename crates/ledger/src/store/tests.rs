//! Tests of the SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::policy::keys::to_hex;

/// A log head that moves when told to, standing in for the ledger's audit log.
struct FakeLog(AtomicU64);

impl LogHeadSource for FakeLog {
    fn log_head(&self) -> LogHead {
        let seq = self.0.load(Ordering::SeqCst);
        LogHead {
            seq,
            hash: hash(seq),
        }
    }
}

/// A record hash (hex) whose first digits are `seq`'s.
fn hash(seq: u64) -> String {
    format!("{seq:016x}{}", "ab".repeat(24))
}

fn end(id: u64, status: &str) -> TaskEnd {
    TaskEnd {
        id,
        status: status.into(),
        outcome: serde_json::json!({"status": status}),
        trace: serde_json::json!({"events": [], "dropped": 0}),
        staging: "none".into(),
        staging_path: None,
        ended_ms: crate::store::now_ms(),
        trust: Some(TrustRecord::new("unsigned/hello", "ab")),
    }
}

fn action(task: u64) -> ActionRecord {
    ActionRecord {
        id: 0,
        task,
        agent: "deployer".into(),
        user: "alice".into(),
        tool: "deploy".into(),
        params: "{}".into(),
        hash: String::new(),
        status: "pending".into(),
        created_ms: 1,
        expires_ms: 2,
        approver: None,
        result: None,
    }
}

fn task(agent: &str) -> TaskRecord {
    TaskRecord {
        id: 0,
        agent: agent.into(),
        agent_id: format!("unsigned/{agent}"),
        module_hash: "ab".into(),
        user: "alice".into(),
        level: 1,
        grant: serde_json::json!({"fs": {"write": ["docs/**"]}}),
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

#[test]
fn tasks_trust_and_recovery_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let a = store.begin_task(&task("hello"), "gone").unwrap();
    let b = store.begin_task(&task("scribe"), "gone").unwrap();
    let c = store.begin_task(&task("fetch"), "live").unwrap();
    assert!(b > a);
    let mut trust = TrustRecord::new("unsigned/hello", "ab");
    trust.streak = 1;
    store
        .end_task(&TaskEnd {
            id: a,
            status: "completed".into(),
            outcome: serde_json::json!({"status": "completed"}),
            trace: serde_json::json!([]),
            staging: "proposed".into(),
            staging_path: Some("/x".into()),
            ended_ms: crate::store::now_ms(),
            trust: Some(trust.clone()),
        })
        .unwrap();
    drop(store);

    let store = SqliteStore::open(dir.path(), Durability::Full).unwrap();
    assert_eq!(
        store
            .recover(&|owner| owner == "live", &|_| Ok(()))
            .unwrap(),
        vec![b]
    );
    assert_eq!(
        store.task(c).unwrap().status,
        "running",
        "a live host's task is left alone"
    );
    let done = store.task(a).unwrap();
    assert_eq!(
        (done.status.as_str(), done.staging.as_str()),
        ("completed", "proposed")
    );
    assert_eq!(done.grant["fs"]["write"][0], "docs/**");
    assert_eq!(store.task(b).unwrap().status, "interrupted");
    assert_eq!(store.trust("unsigned/hello").unwrap(), Some(trust));
    assert_eq!(store.tasks(10).unwrap().len(), 3);
    assert!(matches!(store.task(99), Err(StoreError::NotFound(_))));
}

#[test]
fn an_action_settles_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let record = ActionRecord {
        id: 0,
        task: 1,
        agent: "deployer".into(),
        user: "alice".into(),
        tool: "deploy".into(),
        params: "{\"env\":\"prod\"}".into(),
        hash: "h".into(),
        status: "pending".into(),
        created_ms: 1,
        expires_ms: 2,
        approver: None,
        result: None,
    };
    let action = store
        .add_action(&record, &|a| format!("hash-of-{}", a.id), &|_| Ok(()))
        .unwrap();
    let id = action.id;
    assert_eq!(action.hash, format!("hash-of-{id}"));
    assert_eq!(store.action(id).unwrap().hash, action.hash);
    assert!(
        store
            .settle_action(id, "pending", "performing", "bob", "")
            .unwrap()
    );
    assert!(
        !store
            .settle_action(id, "pending", "performing", "eve", "")
            .unwrap()
    );
    assert!(
        store
            .settle_action(id, "performing", "performed", "bob", "ok")
            .unwrap()
    );
    let a = store.action(id).unwrap();
    assert_eq!(
        (a.status.as_str(), a.approver.as_deref()),
        ("performed", Some("bob"))
    );
}

#[test]
fn a_tasks_pending_actions_are_one_indexed_read_and_only_for_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let mine = store.begin_task(&task("deployer"), "me").unwrap();
    let other = store.begin_task(&task("deployer"), "me").unwrap();
    let add = |t: u64| {
        store
            .add_action(&action(t), &|a| format!("h{}", a.id), &|_| Ok(()))
            .unwrap()
            .id
    };
    let (first, _, settled, second) = (add(mine), add(other), add(mine), add(mine));
    assert!(
        store
            .settle_action(settled, "pending", "performed", "bob", "ok")
            .unwrap()
    );
    let ids = |owner: Option<&str>, limit: usize| -> Vec<u64> {
        let found = store.task_actions(mine, "pending", owner, limit).unwrap();
        found.iter().map(|a| a.id).collect()
    };
    assert_eq!(
        ids(None, 10),
        [first, second],
        "its own, pending, oldest first"
    );
    assert_eq!(ids(Some("alice"), 10), [first, second]);
    assert_eq!(ids(Some("alice"), 1), [first]);
    assert!(
        ids(Some("mallory"), 10).is_empty(),
        "not the owner: nothing"
    );
    let done = store.task_actions(mine, "performed", None, 10).unwrap();
    assert_eq!(done.iter().map(|a| a.id).collect::<Vec<_>>(), [settled]);
    assert!(
        store
            .task_actions(99, "pending", None, 10)
            .unwrap()
            .is_empty()
    );
    // The read goes through the index, not a scan of every action.
    let plan: Vec<String> = {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id FROM actions WHERE task = ?1 AND status = ?2 ORDER BY id",
            )
            .unwrap();
        stmt.query_map(rusqlite::params![mine, "pending"], |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert!(
        plan.iter().any(|p| p.contains("actions_by_task")),
        "{plan:?}"
    );
}

/// A ledger's open finds the rows to recover in an index of the running ones only: its cost
/// does not grow with every task the store ever held (it read them all, ~12,000 pages at 20,000
/// tasks, before the index).
#[test]
fn the_running_tasks_are_found_without_reading_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let running = store.begin_task(&task("hello"), "me").unwrap();
    for _ in 0..3 {
        let done = store.begin_task(&task("hello"), "me").unwrap();
        store.end_task(&end(done, "completed")).unwrap();
    }
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::sqlite::RUNNING_ROWS
        ))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // A scan of the partial index: the running rows, nothing else.
    assert!(
        plan.iter().any(|p| p.contains("INDEX tasks_running")),
        "{plan:?}"
    );
    let indexed: Vec<u64> = conn
        .prepare("SELECT id FROM tasks INDEXED BY tasks_running WHERE status = 'running'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(indexed, [running], "the index holds the running row only");
}

/// A task called by `parent`'s agent.
fn callee(store: &SqliteStore, parent: u64) -> u64 {
    let t = TaskRecord {
        parent: Some(parent),
        ..task("deployer")
    };
    store.begin_task(&t, "me").unwrap()
}

#[test]
fn a_trees_actions_are_its_tasks_and_their_callees_at_every_depth() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let root = store.begin_task(&task("deployer"), "me").unwrap();
    let (child, sibling) = (callee(&store, root), callee(&store, root));
    let grandchild = callee(&store, child);
    let other = store.begin_task(&task("deployer"), "me").unwrap();
    let others_callee = callee(&store, other);
    let add = |t: u64, expires_ms: u64| {
        let a = ActionRecord {
            expires_ms,
            ..action(t)
        };
        store
            .add_action(&a, &|a| format!("h{}", a.id), &|_| Ok(()))
            .unwrap()
            .id
    };
    let deep = add(grandchild, 9_000);
    let _elsewhere = add(others_callee, 9_000);
    let top = add(root, 9_000);
    let expired = add(child, 4_000);
    let settled = add(sibling, 9_000);
    let middle = add(child, 9_000);
    let beside = add(sibling, 9_000);
    assert!(
        store
            .settle_action(settled, "pending", "performed", "bob", "ok")
            .unwrap()
    );
    let ids = |root: u64, at: Option<u64>, owner: Option<&str>, limit: usize| -> Vec<u64> {
        let found = store
            .tree_actions(root, "pending", at, owner, limit)
            .unwrap();
        found.iter().map(|a| a.id).collect()
    };
    assert_eq!(
        ids(root, Some(5_000), None, 10),
        [deep, top, middle, beside],
        "every level's pending, unexpired actions, oldest first; not another tree's"
    );
    assert_eq!(
        ids(root, None, None, 10),
        [deep, top, expired, middle, beside],
        "without a time, the expired one too"
    );
    assert_eq!(
        ids(root, Some(4_000), None, 10),
        [deep, top, middle, beside],
        "an action expiring at the instant asked about has expired"
    );
    assert_eq!(
        ids(root, Some(5_000), Some("alice"), 10),
        [deep, top, middle, beside]
    );
    assert!(
        ids(root, Some(5_000), Some("mallory"), 10).is_empty(),
        "not the owner: nothing"
    );
    assert_eq!(ids(root, Some(5_000), None, 2), [deep, top], "the limit");
    assert_eq!(
        ids(child, Some(5_000), None, 10),
        [deep, middle],
        "a subtree: the task and the tasks below it, not its caller's"
    );
    assert_eq!(ids(other, Some(5_000), None, 10).len(), 1);
    let done = store
        .tree_actions(root, "performed", None, None, 10)
        .unwrap();
    assert_eq!(done.iter().map(|a| a.id).collect::<Vec<_>>(), [settled]);
    assert!(ids(999, None, None, 10).is_empty(), "no such task: nothing");
}

#[test]
fn a_tree_is_followed_down_to_the_deepest_a_host_may_run_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let root = store.begin_task(&task("deployer"), "me").unwrap();
    let mut chain = vec![root];
    for _ in 0..=TREE_DEPTH {
        chain.push(callee(&store, *chain.last().unwrap()));
    }
    let add = |t: u64| {
        store
            .add_action(&action(t), &|a| format!("h{}", a.id), &|_| Ok(()))
            .unwrap()
            .id
    };
    let deepest = add(chain[TREE_DEPTH as usize]);
    let _beyond = add(chain[TREE_DEPTH as usize + 1]);
    let found = store.tree_actions(root, "pending", None, None, 10).unwrap();
    assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), [deepest]);
}

#[test]
fn checkpoints_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    for size in [4, 12, 8] {
        store
            .put_checkpoint(&StoredCheckpoint {
                size,
                head: format!("h{size}"),
                key: "k".into(),
                signature: "s".into(),
            })
            .unwrap();
    }
    assert_eq!(store.latest_checkpoint().unwrap().unwrap().size, 12);
}

#[test]
fn each_task_commit_records_the_log_head_it_was_made_at() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(FakeLog(AtomicU64::new(3)));
    let store = SqliteStore::open(dir.path(), Durability::Process)
        .unwrap()
        .vouching_for(log.clone());
    let a = store.begin_task(&task("hello"), "gone").unwrap();
    let b = store.begin_task(&task("hello"), "gone").unwrap();
    log.0.store(9, Ordering::SeqCst);
    store.end_task(&end(a, "completed")).unwrap();
    log.0.store(12, Ordering::SeqCst);
    assert_eq!(store.recover(&|_| false, &|_| Ok(())).unwrap(), vec![b]);
    let witness = store.witness().unwrap();
    let heads: Vec<_> = witness
        .tasks
        .iter()
        .map(|t| (t.id, t.status.as_str(), t.log_head.as_ref().map(|h| h.seq)))
        .collect();
    assert_eq!(
        heads,
        [(a, "completed", Some(9)), (b, "interrupted", Some(12))]
    );
    let trace = serde_json::json!({"events": [], "dropped": 0}).to_string();
    assert_eq!(
        witness.tasks[0].trace_sha256.as_deref(),
        Some(to_hex(&<sha2::Sha256 as sha2::Digest>::digest(trace.as_bytes())).as_str())
    );
    assert_eq!(witness.tasks[1].trace_sha256, None);
    // A row keeps the hash's first 16 digits, which match the record's whole hash.
    let recent = store.recent_log_head().unwrap().unwrap();
    assert_eq!(
        (recent.seq, recent.hash.as_str()),
        (12, &hash(12)[..LogHead::KEPT_DIGITS])
    );
    assert!(recent.matches(&hash(12)) && !recent.matches(&hash(13)));
    // A newer checkpoint raises it; an older one does not.
    for (size, expect) in [(5, 12), (20, 20)] {
        store
            .put_checkpoint(&StoredCheckpoint {
                size,
                head: format!("h{size}"),
                key: "k".into(),
                signature: "s".into(),
            })
            .unwrap();
        assert_eq!(store.recent_log_head().unwrap().unwrap().seq, expect);
    }
    // Without a source, rows record no head.
    let plain = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(plain.path(), Durability::Process).unwrap();
    let id = store.begin_task(&task("hello"), "gone").unwrap();
    store.end_task(&end(id, "completed")).unwrap();
    assert_eq!(store.witness().unwrap().tasks[0].log_head, None);
    assert_eq!(store.recent_log_head().unwrap(), None);
}

#[test]
fn a_change_whose_audit_record_fails_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let id = store.begin_task(&task("hello"), "gone").unwrap();
    let refuse = |_: u64| Err("disk full".to_string());
    let e = store.recover(&|_| false, &refuse).unwrap_err();
    assert!(
        matches!(&e, StoreError::Audit { what, .. } if what == &format!("task {id} interrupted")),
        "{e}"
    );
    assert_eq!(store.task(id).unwrap().status, "running");
    let e = store
        .add_action(&action(id), &|_| "h".into(), &|_| Err("disk full".into()))
        .unwrap_err();
    assert!(matches!(e, StoreError::Audit { .. }), "{e}");
    assert!(
        store.actions(10).unwrap().is_empty(),
        "an unaudited action was stored"
    );
    // The twins: audited, both commit; the audit hook sees the action with its id and hash.
    assert_eq!(store.recover(&|_| false, &|_| Ok(())).unwrap(), vec![id]);
    let seen = std::sync::Mutex::new(None);
    let stored = store
        .add_action(&action(id), &|a| format!("h{}", a.id), &|a| {
            *seen.lock().unwrap() = Some((a.id, a.hash.clone()));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.into_inner().unwrap(), Some((stored.id, stored.hash)));
    assert_eq!(store.actions(10).unwrap().len(), 1);
}

#[test]
fn the_read_only_view_reads_everything_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let id = store.begin_task(&task("hello"), "gone").unwrap();
        store.end_task(&end(id, "completed")).unwrap();
        store
            .add_action(&action(id), &|_| "h".into(), &|_| Ok(()))
            .unwrap();
        store.begin_task(&task("hello"), "gone").unwrap();
    }
    let db = dir.path().join("state.db");
    let before = std::fs::read(&db).unwrap();
    let view = SqliteStore::open_read_only(dir.path()).unwrap();
    let witness = view.witness().unwrap();
    assert_eq!((witness.tasks.len(), witness.actions.len()), (2, 1));
    assert_eq!(witness.actions[0].hash, "h");
    // Every write is refused: no task begins, none is interrupted.
    assert!(view.begin_task(&task("hello"), "x").is_err());
    assert!(view.recover(&|_| false, &|_| Ok(())).is_err());
    assert!(
        view.put_trust(&TrustRecord::new("unsigned/x", "ab"))
            .is_err()
    );
    assert_eq!(view.witness().unwrap().tasks[1].status, "running");
    drop(view);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the read-only view changed state.db"
    );
    // A missing database is an error, not a new file.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        SqliteStore::open_read_only(empty.path()),
        Err(StoreError::Open { .. })
    ));
    assert!(!empty.path().join("state.db").exists());
}

#[test]
fn a_database_from_before_the_log_head_opens_and_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let old = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    old.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, agent_id TEXT NOT NULL,
            module_hash TEXT NOT NULL, user TEXT NOT NULL, level INTEGER NOT NULL,
            grant_json TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, trace TEXT,
            staging TEXT NOT NULL, staging_path TEXT, started_ms INTEGER NOT NULL, ended_ms INTEGER);
         CREATE TABLE actions (id INTEGER PRIMARY KEY AUTOINCREMENT, task INTEGER NOT NULL,
            agent TEXT NOT NULL, user TEXT NOT NULL, tool TEXT NOT NULL, params TEXT NOT NULL,
            hash TEXT NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL, approver TEXT, result TEXT);
         CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, head TEXT NOT NULL, key TEXT NOT NULL,
            signature TEXT NOT NULL);
         INSERT INTO tasks (agent, agent_id, module_hash, user, level, grant_json, status, staging, started_ms)
            VALUES ('hello', 'unsigned/hello', 'ab', '-', 1, '{}', 'completed', 'none', 1);",
    )
    .unwrap();
    drop(old);
    // Read-only, as it is: no head, no owner, no caller.
    let view = SqliteStore::open_read_only(dir.path()).unwrap();
    let witness = view.witness().unwrap();
    assert_eq!(witness.tasks.len(), 1);
    assert_eq!(
        (
            witness.tasks[0].log_head.as_ref(),
            witness.tasks[0].owner.as_str(),
            witness.tasks[0].parent
        ),
        (None, "", None)
    );
    drop(view);
    // Opened for writing, it gains the columns and new rows fill them.
    let log = Arc::new(FakeLog(AtomicU64::new(4)));
    let store = SqliteStore::open(dir.path(), Durability::Process)
        .unwrap()
        .vouching_for(log);
    let id = store.begin_task(&task("hello"), "me").unwrap();
    let child = store
        .begin_task(
            &TaskRecord {
                parent: Some(1),
                ..task("scribe")
            },
            "me",
        )
        .unwrap();
    let witness = store.witness().unwrap();
    assert_eq!(witness.tasks[0].log_head, None);
    assert_eq!(witness.tasks[1].id, id);
    assert_eq!(witness.tasks[1].log_head.as_ref().map(|h| h.seq), Some(4));
    assert_eq!(witness.tasks[2].parent, Some(1));
    assert_eq!(store.task(1).unwrap().parent, None);
    assert_eq!(
        store
            .children(1, 10)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        [child]
    );
}

#[test]
fn a_task_tree_is_read_back_by_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let root = store.begin_task(&task("front"), "me").unwrap();
    let called = |parent: u64, agent: &str| {
        store
            .begin_task(
                &TaskRecord {
                    parent: Some(parent),
                    ..task(agent)
                },
                "me",
            )
            .unwrap()
    };
    let a = called(root, "middle");
    let b = called(root, "middle");
    let c = called(a, "back");
    let ids = |id: u64, limit: usize| -> Vec<u64> {
        store
            .children(id, limit)
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(ids(root, 10), [a, b], "oldest first");
    assert_eq!(ids(root, 1), [a], "at most the limit");
    assert_eq!(ids(a, 10), [c]);
    assert!(ids(c, 10).is_empty() && ids(b, 10).is_empty());
    assert_eq!(store.task(c).unwrap().parent, Some(a));
    assert_eq!(store.tasks(10).unwrap()[0].parent, Some(a), "newest first");
    // Reopened, the tree is still there.
    drop(store);
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert_eq!(store.task(c).unwrap().parent, Some(a));
}

#[test]
fn the_witness_is_read_without_creating_a_file_and_with_a_live_writers_wal() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let id = writer.begin_task(&task("hello"), "live").unwrap();
    // A writer holds it open: what it committed is in the WAL, and is read from there.
    assert!(dir.path().join("state.db-wal").exists());
    let wal = std::fs::read(dir.path().join("state.db-wal")).unwrap();
    assert_eq!(
        SqliteStore::read_witness(dir.path()).unwrap().tasks[0].id,
        id
    );
    assert_eq!(std::fs::read(dir.path().join("state.db-wal")).unwrap(), wal);
    // No one has it open: nothing is created beside it, not even SQLite's side files.
    drop(writer);
    let names = || {
        let mut n: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        n.sort();
        n
    };
    let before = names();
    assert_eq!(before, ["state.db"]);
    let witness = SqliteStore::read_witness(dir.path()).unwrap();
    assert_eq!(witness.tasks[0].status, "running");
    assert!(
        SqliteStore::open_read_only(dir.path())
            .unwrap()
            .task(id)
            .is_ok()
    );
    assert_eq!(names(), before);
}

#[test]
fn cascade_positions_and_calibration_histories_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert_eq!(store.cascade(7).unwrap(), None);
    store.put_cascade(7, r#"{"phase":"route"}"#).unwrap();
    store.put_cascade(7, r#"{"phase":"plan"}"#).unwrap();
    assert_eq!(
        store.cascade(7).unwrap().as_deref(),
        Some(r#"{"phase":"plan"}"#)
    );
    assert_eq!(store.calibration("router").unwrap(), [(0, 0); 10]);
    store.add_calibration("router", 9, true).unwrap();
    store.add_calibration("router", 9, false).unwrap();
    store.add_calibration("router", 2, false).unwrap();
    let h = store.calibration("router").unwrap();
    assert_eq!((h[9], h[2], h[0]), ((2, 1), (1, 0), (0, 0)));
    assert!(store.add_calibration("router", 10, true).is_err());
    assert_eq!(store.calibration("skeptic").unwrap(), [(0, 0); 10]);
}

#[test]
fn the_wal_is_checkpointed_by_the_stores_own_thread_not_inside_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let wal = dir.path().join("state.db-wal");
    // The WAL header's checkpoint sequence (bytes 12..16) moves when a writer restarts the WAL
    // after a complete checkpoint.
    let restarts = || {
        let bytes = std::fs::read(&wal).unwrap();
        u32::from_be_bytes(bytes[12..16].try_into().unwrap())
    };
    let big = serde_json::json!({"events": ["x".repeat(2000)], "dropped": 0});
    let write = || {
        let id = store.begin_task(&task("hello"), "me").unwrap();
        store
            .end_task(&TaskEnd {
                trace: big.clone(),
                ..end(id, "completed")
            })
            .unwrap();
    };
    write();
    let first = restarts();
    // Until the WAL is restarted, it only grows: SQLite's own automatic checkpoint would wait
    // for 8,192 pages (8 MiB); the store's thread checkpoints past 4 MiB, off the commits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut n = 1;
    while restarts() == first {
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(
            size < 7 * 1024 * 1024,
            "no checkpoint by the time the WAL held {size} bytes"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in 30 s"
        );
        if size > 4 * 1024 * 1024 + 64 * 1024 {
            // Past the limit: give the thread its turn.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        write();
        n += 1;
    }
    // Everything is still there, and the thread stops with the store.
    assert_eq!(store.tasks(n + 10).unwrap().len(), n);
    drop(store);
    let again = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert_eq!(again.tasks(n + 10).unwrap().len(), n);
}

#[test]
fn a_resume_is_stored_beside_an_escalated_row_only_and_taken_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let escalated = store.begin_task(&task("cascade"), "me").unwrap();
    store.end_task(&end(escalated, "escalated")).unwrap();
    let running = store.begin_task(&task("cascade"), "me").unwrap();
    let queued = store
        .enqueue_task(&task("hello"), "{\"agent\":\"hello\"}")
        .unwrap();
    // Deny twins: a running task, a queued one and no task at all get no resume.
    for id in [running, queued, 999] {
        assert!(!store.queue_resume(id, "alice", "{}").unwrap(), "{id}");
    }
    assert!(
        store
            .queue_resume(escalated, "alice", "{\"resume\":1}")
            .unwrap()
    );
    // A second resume of the same task is not stored (the first stays).
    assert!(!store.queue_resume(escalated, "bob", "{}").unwrap());
    let listed = store.queued_tasks(10).unwrap();
    let listed: Vec<_> = listed
        .iter()
        .map(|q| (q.id, q.resume, q.user.as_str(), q.work.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (escalated, true, "alice", "{\"resume\":1}"),
            (queued, false, "alice", "{\"agent\":\"hello\"}")
        ]
    );
    // Taking a resume back never takes a queued task's work.
    assert!(!store.take_resume(queued).unwrap());
    assert!(store.take_resume(escalated).unwrap());
    assert!(!store.take_resume(escalated).unwrap());
    assert_eq!(store.queued_tasks(10).unwrap().len(), 1);
    // Reopened, a stored resume is still there; once its row leaves `escalated` (stopped by
    // another process) it is no longer listed.
    assert!(store.queue_resume(escalated, "alice", "{}").unwrap());
    drop(store);
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert!(
        store
            .queued_tasks(10)
            .unwrap()
            .iter()
            .any(|q| q.id == escalated && q.resume)
    );
    store.end_task(&end(escalated, "stopped")).unwrap();
    assert!(
        !store
            .queued_tasks(10)
            .unwrap()
            .iter()
            .any(|q| q.id == escalated)
    );
}
