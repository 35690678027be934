//! The write-behind: reads through the ledger see every journaled row at once; a stopped host's
//! journal is written into the store at the next open (a torn last line left out, a damaged
//! line refused by its number); task ids reserved, never taken twice, given back on close; a
//! trust record another process commits is seen, and reading one waits for the writer only when
//! the last look is old.

use std::io::Write;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::super::kill_tests::running_row;
use super::super::{Ledger, LedgerError, verify_dir};
use super::{JOURNAL_DIR, Line};
use crate::audit::AuditEvent;
use crate::store::{
    BegunRow, Durability, EndedRow, LogHead, SqliteStore, StateStore, TaskEnd, TaskRecord,
    TrustRecord, now_ms,
};

fn trace() -> serde_json::Value {
    json!({"events": [], "dropped": 0})
}

fn end(id: u64, agent: &str, streak: u32) -> TaskEnd {
    let mut trust = TrustRecord::new(&format!("unsigned/{agent}"), "h");
    trust.streak = streak;
    TaskEnd {
        id,
        status: "completed".into(),
        outcome: json!({"status": "completed"}),
        trace: trace(),
        staging: "none".into(),
        staging_path: None,
        ended_ms: now_ms(),
        trust: Some(trust),
    }
}

fn ended(id: u64, agent: &str) -> AuditEvent {
    let sha = crate::policy::keys::to_hex(&Sha256::digest(trace().to_string().as_bytes()));
    AuditEvent::new("task-ended")
        .task(id)
        .agent(agent)
        .detail(json!({"status": "completed", "trace_sha256": sha}))
}

fn begin(ledger: &Ledger, agent: &str) -> u64 {
    ledger
        .begin_task(
            running_row(agent, json!({})),
            AuditEvent::new("task-started").agent(agent),
        )
        .unwrap()
}

fn journal_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(JOURNAL_DIR))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "replay.lock")
        .collect();
    names.sort();
    names
}

#[test]
fn reads_through_the_ledger_see_every_task_the_moment_its_call_returns() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    for i in 0..40 {
        let id = begin(&ledger, "a");
        assert_eq!(ledger.store().task(id).unwrap().status, "running");
        ledger
            .end_task(vec![ended(id, "a")], end(id, "a", i))
            .unwrap();
        assert_eq!(ledger.store().task(id).unwrap().status, "completed");
        // The trust record the next task reads is this end's.
        let trust = ledger.store().trust("unsigned/a").unwrap().unwrap();
        assert_eq!(trust.streak, i);
    }
    drop(ledger);
    // A clean close leaves no journal, and the store holds every row.
    assert!(journal_files(dir.path()).is_empty());
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!(report.tasks, 40, "{report:?}");
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert_eq!(store.trust("unsigned/a").unwrap().unwrap().streak, 39);
}

/// `line` as the journal writes it as its line `n`, vouching for `head`.
fn text(n: u64, line: &Line<'_>, head: &LogHead) -> String {
    serde_json::to_string(&line.entry(head).unwrap().out(n)).unwrap()
}

/// The head of the log in `dir` now.
fn head(dir: &std::path::Path) -> LogHead {
    let last = crate::audit::read_tail(&dir.join(crate::audit::LOG_FILE), 1).unwrap();
    last.first().map_or_else(
        || LogHead {
            seq: 0,
            hash: "0".repeat(64),
        },
        |r| LogHead {
            seq: r.seq,
            hash: r.hash.clone(),
        },
    )
}

/// Write `lines` as the journal of `owner`, a process that is gone, vouching for the log's
/// head now.
fn dead_journal(dir: &std::path::Path, owner: &str, lines: &[Line<'_>], tail: &str) {
    let head = head(dir);
    let mut f =
        std::fs::File::create(dir.join(JOURNAL_DIR).join(format!("{owner}.journal"))).unwrap();
    for (n, line) in (1..).zip(lines) {
        writeln!(f, "{}", text(n, line, &head)).unwrap();
    }
    f.write_all(tail.as_bytes()).unwrap();
}

fn row(id: u64, agent: &str) -> TaskRecord {
    TaskRecord {
        id,
        ..running_row(agent, json!({"n": id}))
    }
}

#[test]
fn a_stopped_hosts_journal_is_written_into_the_store_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    // The records a host wrote before it was killed with rows only in its journal.
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    for id in [1000, 1001, 1002, 1003] {
        ledger
            .record(AuditEvent::new("task-started").task(id).agent("b"))
            .unwrap();
    }
    ledger.record(ended(1000, "b")).unwrap();
    ledger.record(ended(1002, "b")).unwrap();
    ledger.record(ended(1003, "h")).unwrap();
    ledger
        .record(AuditEvent::new("staging-applied").task(1003))
        .unwrap();
    drop(ledger);
    let (r0, r1, r2) = (row(1000, "b"), row(1001, "b"), row(1002, "b"));
    let (e0, e2) = (end(1000, "b", 7), end(1002, "b", 8));
    // 1003 was written before the kill, then a reviewer applied its staging and its agent's
    // trust record changed: its lines, written again, must change neither.
    let r3 = row(1003, "h");
    let mut e3 = end(1003, "h", 1);
    e3.staging = "proposed".into();
    // 1002's begin went into an earlier batch: its end is written over the row.
    dead_journal(
        dir.path(),
        "4242-1",
        &[Line::Begin(&r0), Line::Begin(&r1), Line::Begin(&r2)],
        "",
    );
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let h = head(dir.path());
    // (Written without a mark: the replay comes to these lines and must change nothing.)
    let (b2, b3) = (BegunRow::of(&r2).unwrap(), BegunRow::of(&r3).unwrap());
    store.put_behind(&[(&b2, &h)], "4242-1", &[], None).unwrap();
    store
        .put_behind(
            &[(&b3, &h)],
            "4242-1",
            &[(&EndedRow::of(&e3).unwrap(), &h)],
            None,
        )
        .unwrap();
    store.set_staging(1003, "applied").unwrap();
    let mut newer = TrustRecord::new("unsigned/h", "h");
    newer.streak = 50;
    store.put_trust(&newer).unwrap();
    drop(store);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_DIR).join("4242-1.journal"))
        .unwrap();
    let lines = [
        Line::End(&e0),
        Line::End(&e2),
        Line::Begin(&r3),
        Line::End(&e3),
    ];
    for (n, line) in (4..).zip(lines) {
        writeln!(f, "{}", text(n, &line, &head(dir.path()))).unwrap();
    }
    // A kill cut the last line short: that task was never acknowledged.
    f.write_all(br#"{"end":{"id":1001,"sta"#).unwrap();
    drop(f);

    let ledger = Ledger::open(dir.path(), 64).unwrap();
    let status = |id| ledger.store().task(id).unwrap().status;
    assert_eq!(status(1000), "completed");
    assert_eq!(status(1002), "completed");
    // Begun and never ended: the dead host's task is interrupted.
    assert_eq!(status(1001), "interrupted");
    assert_eq!(
        ledger.store().trust("unsigned/b").unwrap().unwrap().streak,
        8
    );
    assert_eq!(ledger.store().task(1003).unwrap().staging, "applied");
    assert_eq!(
        ledger.store().trust("unsigned/h").unwrap().unwrap().streak,
        50
    );
    assert!(journal_files(dir.path()).is_empty());
    // New tasks take ids above the journal's.
    assert!(begin(&ledger, "b") > 1002);
    drop(ledger);
    verify_dir(dir.path(), None).unwrap();
}

#[test]
fn a_damaged_journal_line_is_refused_by_its_number_and_the_journal_kept() {
    let dir = tempfile::tempdir().unwrap();
    drop(Ledger::open(dir.path(), 64).unwrap());
    let r = row(5, "c");
    dead_journal(dir.path(), "4243-1", &[Line::Begin(&r)], "not json\n");
    let err = Ledger::open(dir.path(), 64).unwrap_err();
    match &err {
        LedgerError::JournalCorrupt { line, path, .. } => {
            assert_eq!(*line, 2);
            assert!(path.ends_with("4243-1.journal"), "{path:?}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("move it aside"), "{err}");
    assert_eq!(journal_files(dir.path()), ["4243-1.journal"]);
    // Nothing of it was written.
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert!(store.task(5).is_err());
}

#[test]
fn ids_are_reserved_so_no_other_writer_takes_them_and_given_back_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    let first = begin(&ledger, "d");
    assert_eq!(first, 1);
    // Another process (a CLI) inserting a row meanwhile takes an id above the reservation.
    let other = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let theirs = other
        .begin_task(&running_row("e", json!({})), "other")
        .unwrap();
    assert!(theirs > first + 1, "{theirs}");
    assert_eq!(begin(&ledger, "d"), first + 1);
    drop(ledger);
    // The ids not used are given back: the next one follows the highest row.
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    assert_eq!(begin(&ledger, "d"), theirs + 1);
    drop(ledger);
    // One task per process, one after the other: ids follow one another.
    let dir = tempfile::tempdir().unwrap();
    for expected in 1..=3 {
        let ledger = Ledger::open(dir.path(), 64).unwrap();
        assert_eq!(begin(&ledger, "f"), expected);
    }
}

/// A ledger in `dir` whose agent `g` ended a task with a streak of 3.
fn with_a_streak_of_3(dir: &std::path::Path) -> Ledger {
    let ledger = Ledger::open(dir, 64).unwrap();
    let id = begin(&ledger, "g");
    ledger
        .end_task(vec![ended(id, "g")], end(id, "g", 3))
        .unwrap();
    ledger
}

#[test]
fn a_trust_record_another_process_commits_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = with_a_streak_of_3(dir.path());
    assert_eq!(
        ledger.store().trust("unsigned/g").unwrap().unwrap().streak,
        3
    );
    // The end's trust record in the store first: written after the change below, it would
    // overwrite it.
    ledger.behind.flush().unwrap();
    let other = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let mut changed = TrustRecord::new("unsigned/g", "h");
    changed.streak = 99;
    other.put_trust(&changed).unwrap();
    seen_soon(
        || ledger.store().trust("unsigned/g").unwrap().unwrap().streak,
        99,
    );
}

/// `check` given the store's connection, held, and the answer of `g`'s trust read made on
/// another thread meanwhile (its streak).
fn held_read(
    ledger: &Ledger,
    check: impl FnOnce(
        std::sync::MutexGuard<'_, rusqlite::Connection>,
        std::sync::mpsc::Receiver<Result<Option<u32>, LedgerError>>,
    ),
) {
    let held = ledger.behind.store.hold_connection();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || tx.send(ledger.trust("unsigned/g").map(|t| t.map(|t| t.streak))));
        check(held, rx);
    });
}

/// Date the trust cache's last look at the store `ago`.
fn last_look(ledger: &Ledger, ago: std::time::Duration) {
    ledger.behind.trust.lock().unwrap().checked = std::time::Instant::now() - ago;
}

/// Wait (at most 2 s) for `read` to give `want`: a trust change another process commits is seen within
/// [`super::FOREIGN_CHECK`] once this process's store connection is free (the writer may hold
/// it for a batch, and a read does not wait for it), so within well under a second here.
fn seen_soon<T: PartialEq + std::fmt::Debug>(read: impl Fn() -> T, want: T) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let got = read();
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {got:?} two seconds after another process committed {want:?}"
        );
        std::thread::sleep(super::FOREIGN_CHECK / 2);
    }
}

/// The run path's trust read does not wait for the store's connection: with a foreign-write
/// check due while the writer holds the connection (a long batch), the cached record is
/// answered at once, and the check is made at the next read once the connection is free; only a
/// read whose last look is older than `FOREIGN_WAIT` waits for it.
#[test]
fn a_trust_read_does_not_wait_for_a_writer_in_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = with_a_streak_of_3(dir.path());
    // The writer's batch written and its look taken after it (a first look empties the cache:
    // a read then fills it again); the next look due, and far from the wait's bound.
    ledger.behind.flush().unwrap();
    seen_soon(
        || ledger.behind.trust.lock().unwrap().version.is_some(),
        true,
    );
    assert_eq!(ledger.trust("unsigned/g").unwrap().unwrap().streak, 3);
    last_look(&ledger, super::FOREIGN_CHECK * 2);
    held_read(&ledger, |held, read| {
        let got = read.recv_timeout(std::time::Duration::from_secs(5));
        drop(held);
        assert_eq!(
            got.expect("the read waited for the connection").unwrap(),
            Some(3)
        );
    });
    // Free again: the check is made once the connection is free (another process's change is
    // seen). The writer's batch, held back above, goes first: it writes the task's end with
    // its trust record, which would overwrite a change committed before it.
    ledger.behind.flush().unwrap();
    let other = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let mut changed = TrustRecord::new("unsigned/g", "h");
    changed.streak = 99;
    other.put_trust(&changed).unwrap();
    seen_soon(|| ledger.trust("unsigned/g").unwrap().unwrap().streak, 99);
    // A look older than the wait's bound waits for the connection: held, the read does not
    // answer; freed, it does, with another process's change.
    changed.streak = 100;
    other.put_trust(&changed).unwrap();
    last_look(&ledger, super::trust::FOREIGN_WAIT + super::FOREIGN_CHECK);
    held_read(&ledger, |held, read| {
        let early = read.recv_timeout(std::time::Duration::from_millis(100));
        assert!(early.is_err(), "answered without the look: {early:?}");
        drop(held);
        let got = read.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got.expect("the connection was freed").unwrap(), Some(100));
    });
}

/// A task's row is read without waiting for the writer: while another connection holds the
/// store's write lock (the writer cannot write), the row of a task begun and ended since is
/// its journal's lines laid over the store, and once the writer wrote them the store's row is
/// the same.
#[test]
fn a_tasks_row_is_read_from_the_journal_while_the_writer_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    // Ids reserved, and the store up to date.
    let first = begin(&ledger, "a");
    ledger
        .end_task(vec![ended(first, "a")], end(first, "a", 0))
        .unwrap();
    ledger.store().tasks(10).unwrap();
    let blocker = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let id = begin(&ledger, "a");
    assert_eq!(ledger.store().task(id).unwrap().status, "running");
    ledger
        .end_task(vec![ended(id, "a")], end(id, "a", 1))
        .unwrap();
    let seen = ledger.store().task(id).unwrap();
    assert_eq!(seen.status, "completed");
    assert_eq!(seen.trace, Some(trace()));
    // An earlier task's row, which the store holds, is the store's.
    assert_eq!(ledger.store().task(first).unwrap().status, "completed");
    blocker.execute_batch("COMMIT").unwrap();
    ledger.store().tasks(10).unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    assert_eq!(store.task(id).unwrap(), seen);
}

/// An agent whose beginning makes the writer thread panic (the check is compiled in tests only).
pub(super) const PANIC_AGENT: &str = "writer-panics";

#[test]
fn a_writer_that_dies_fails_the_reads_that_wait_for_it_and_its_rows_survive_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    let id = begin(&ledger, PANIC_AGENT);
    let err = ledger.store().tasks(10).unwrap_err();
    assert!(err.to_string().contains("writer thread stopped"), "{err}");
    // The task's own row is still read, from the journal.
    assert_eq!(ledger.store().task(id).unwrap().status, "running");
    drop(ledger);
    // The journal was kept, and the next open writes it.
    assert_eq!(journal_files(dir.path()).len(), 1);
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    assert_eq!(ledger.store().task(id).unwrap().status, "interrupted");
}
