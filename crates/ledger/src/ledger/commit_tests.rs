//! The group commit without a kill: concurrent callers share batches and every task ends
//! stored and verified; a lone caller commits at once, one batch per call.

use std::sync::Arc;

use super::kill_tests::run_task;
use super::{Ledger, verify_dir};

fn quiet(_: &str, _: u64) {}

#[test]
fn concurrent_tasks_share_batches_and_all_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path(), 64).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || (0..150).for_each(|i| run_task(&ledger, n, i, quiet)))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let stats = ledger.commit_stats();
    assert_eq!(stats.jobs, 8 * 150 * 2, "{stats:?}");
    // Eight threads on any machine queue behind one another's commits now and then.
    assert!(stats.batches < stats.jobs, "{stats:?}");
    let tasks = ledger.store().tasks(2000).unwrap();
    assert_eq!(tasks.len(), 1200);
    assert!(tasks.iter().all(|t| t.status == "completed"));
    drop(ledger);
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!(report.tasks, 1200, "{report:?}");
    assert!(report.awaiting_recovery.is_empty(), "{report:?}");
}

#[test]
fn a_lone_caller_commits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), 64).unwrap();
    for i in 0..10 {
        run_task(&ledger, 0, i, quiet);
    }
    let stats = ledger.commit_stats();
    assert_eq!((stats.batches, stats.jobs), (20, 20));
}
