//! The queue's bounds and its fair order, without a server.

use super::*;
use axum::http::StatusCode;

fn queue(
    max_queued: usize,
    workers: usize,
    per_user: usize,
    per_user_queued: usize,
) -> Arc<Queue<&'static str>> {
    Arc::new(Queue::new(ServerSettings {
        max_queued,
        workers,
        per_user,
        per_user_queued,
        ..ServerSettings::default()
    }))
}

#[test]
fn one_user_is_bounded_and_another_still_admitted() {
    let q = queue(4, 4, 4, 2);
    let a1 = q.admit("alice").unwrap();
    q.push(a1, 1, "a1");
    let _a2 = q.admit("alice").unwrap();
    let e = q.admit("alice").unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::TOO_MANY_REQUESTS, "user-busy")
    );
    let _b = q.admit("bob").unwrap();
    assert_eq!(q.depth(), (3, 0));
    // A place dropped before its task was stored comes back.
    drop(_a2);
    assert_eq!(q.depth(), (2, 0));
    let _a3 = q.admit("alice").unwrap();
}

#[test]
fn the_whole_queue_is_bounded_and_places_come_back_when_tasks_end() {
    let q = queue(2, 2, 2, 2);
    let a = q.admit("alice").unwrap();
    q.push(a, 1, "a");
    let b = q.admit("bob").unwrap();
    q.push(b, 2, "b");
    let e = q.admit("carol").unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::TOO_MANY_REQUESTS, "queue-full")
    );
    let started = q.next().unwrap();
    assert_eq!((started.id, started.job), (1, "a"));
    assert_eq!(q.depth(), (1, 1));
    q.finish(1, None, false);
    assert_eq!(q.depth(), (1, 0));
    let _c = q.admit("carol").unwrap();
    assert!(!q.lanes().users.contains_key("alice"));
}

#[test]
fn users_take_turns_and_each_is_capped_while_running() {
    // alice floods first; bob and carol submit after her.
    let q = queue(100, 3, 2, 50);
    for i in 0..10 {
        let p = q.admit("alice").unwrap();
        q.push(p, i, "alice");
    }
    for (id, user) in [(20, "bob"), (21, "bob"), (30, "carol")] {
        let p = q.admit(user).unwrap();
        q.push(p, id, user);
    }
    let order: Vec<u64> = std::iter::from_fn(|| q.next().map(|s| s.id)).collect();
    // Three workers: alice's oldest, bob's oldest, carol's — not alice's flood.
    assert_eq!(order, vec![0, 20, 30]);
    q.finish(30, None, false);
    q.finish(0, None, false);
    // The turns go on where they stopped (alice, then bob); carol has nothing waiting.
    let order: Vec<u64> = std::iter::from_fn(|| q.next().map(|s| s.id)).collect();
    assert_eq!(order, vec![1, 21]);
    // bob's first ends: the free worker goes to alice (bob has nothing waiting).
    q.finish(20, None, false);
    let next = q.next().unwrap();
    assert_eq!(next.id, 2);
    assert!(q.next().is_none(), "three workers busy");
}

#[test]
fn a_user_at_their_running_cap_waits_while_workers_are_free() {
    let q = queue(10, 4, 1, 10);
    for i in 0..3 {
        let p = q.admit("alice").unwrap();
        q.push(p, i, "alice");
    }
    assert_eq!(q.next().unwrap().id, 0);
    assert!(q.next().is_none(), "alice may run one at a time");
    q.finish(0, None, false);
    assert_eq!(q.next().unwrap().id, 1);
}

#[test]
fn a_cancelled_waiting_task_never_starts_and_a_running_one_is_signalled() {
    let q = queue(10, 1, 1, 10);
    for i in 0..2 {
        let p = q.admit("alice").unwrap();
        q.push(p, i, "job");
    }
    let running = q.next().unwrap();
    let Held::Tracked(watch, user) = q.watch(1) else {
        panic!("task 1 is held")
    };
    assert_eq!(user, "alice");
    assert!(matches!(q.cancel(1, "bob"), Cancelled::Waiting("job")));
    q.forget(1);
    assert!(watch.has_changed().is_err(), "its watchers are woken");
    assert!(matches!(q.cancel(0, "bob"), Cancelled::Running));
    assert_eq!(running.cancel.borrow().as_deref(), Some("bob"));
    q.finish(0, None, false);
    assert!(q.next().is_none());
    assert!(matches!(q.cancel(0, "bob"), Cancelled::Unknown));
    assert_eq!(q.depth(), (0, 0));
}

#[test]
fn a_closed_queue_starts_nothing_and_resumed_tasks_pass_the_bounds() {
    let q = queue(1, 2, 2, 1);
    q.resume("alice", 7, "old");
    q.resume("alice", 8, "old");
    assert_eq!(q.depth(), (2, 0));
    assert_eq!(q.admit("bob").unwrap_err().code, "queue-full");
    q.close();
    assert!(q.next().is_none());
}

fn ended_row(id: u64, user: &str) -> Ended {
    Some(Arc::new(TaskRecord {
        id,
        agent: "hello".into(),
        agent_id: "unsigned/hello".into(),
        module_hash: "h".into(),
        user: user.into(),
        level: 0,
        grant: serde_json::json!({}),
        status: "completed".into(),
        outcome: None,
        trace: None,
        staging: "none".into(),
        staging_path: None,
        started_ms: 0,
        ended_ms: Some(1),
        parent: None,
    }))
}

#[test]
fn a_task_starts_at_once_only_within_the_bounds_and_behind_no_one_who_could_start() {
    let q = queue(10, 2, 1, 10);
    // A free worker and nothing waiting: it starts at once, counted as running.
    let now = q.start_now(q.admit("alice").unwrap()).unwrap();
    assert_eq!(q.depth(), (0, 1));
    // Its deny twins: alice at her running cap, then every worker busy.
    let refused = q.start_now(q.admit("alice").unwrap()).unwrap_err();
    drop(refused);
    let bob = q.start_now(q.admit("bob").unwrap()).unwrap();
    assert!(q.start_now(q.admit("carol").unwrap()).is_err(), "no worker");
    assert_eq!(q.depth(), (0, 2), "refused places come back");
    // Began, ended: its place comes back and the ended row waits for its caller once.
    now.began(5, watch::channel(None).0);
    assert!(matches!(q.cancel(5, "alice"), Cancelled::Running));
    q.finish(5, ended_row(5, "alice"), true);
    assert!(matches!(q.watch(5), Held::Ended(r) if r.user == "alice"));
    assert!(matches!(q.watch(5), Held::Unknown), "handed once");
    // A slot dropped before its task began gives its worker back.
    drop(bob);
    assert_eq!(q.depth(), (0, 0));
    assert!(q.lanes().users.is_empty());
}

#[test]
fn a_task_does_not_start_at_once_ahead_of_a_waiting_user_who_could_start() {
    let q = queue(10, 1, 1, 10);
    for (id, user) in [(1, "alice"), (2, "bob")] {
        let p = q.admit(user).unwrap();
        q.push(p, id, "job");
    }
    assert_eq!(q.next().unwrap().id, 1);
    // The worker frees: bob waits for it, so carol may not take it at once.
    q.finish(1, None, false);
    assert!(q.start_now(q.admit("carol").unwrap()).is_err());
    assert_eq!(q.next().unwrap().id, 2);
    // A waiting user at their running cap does not hold others back.
    let q = queue(10, 3, 1, 10);
    for id in [1, 2] {
        let p = q.admit("alice").unwrap();
        q.push(p, id, "job");
    }
    assert_eq!(q.next().unwrap().id, 1);
    assert!(q.next().is_none(), "alice is at her cap");
    assert!(q.start_now(q.admit("alice").unwrap()).is_err(), "hers wait");
    let carol = q.start_now(q.admit("carol").unwrap()).unwrap();
    // A closed queue starts nothing at once either.
    q.close();
    assert!(q.start_now(q.admit("dave").unwrap()).is_err());
    // A watcher of a task that started at once is woken with its row.
    carol.began(9, watch::channel(None).0);
    let Held::Tracked(mut ended, user) = q.watch(9) else {
        panic!("task 9 is held")
    };
    assert_eq!(user, "carol");
    assert!(q.watched(9));
    q.finish(9, ended_row(9, "carol"), true);
    assert!(!q.watched(9));
    assert_eq!(ended.borrow_and_update().as_ref().unwrap().id, 9);
    assert!(matches!(q.watch(9), Held::Unknown), "a watcher had it");
}

#[test]
fn a_task_held_already_is_not_pushed_twice_and_its_place_comes_back() {
    let q = queue(4, 1, 1, 4);
    assert_eq!(q.holds(7), None);
    assert!(q.push_unheld(q.admit("alice").unwrap(), 7, "resume"));
    assert_eq!(q.holds(7), Some(true));
    assert!(!q.push_unheld(q.admit("alice").unwrap(), 7, "again"));
    // Only the first holds a place: three more fit under alice's bound of four.
    for id in 10..13 {
        q.push(q.admit("alice").unwrap(), id, "other");
    }
    assert!(q.admit("alice").is_err());
    let start = q.next().unwrap();
    assert_eq!((start.id, start.job), (7, "resume"));
    assert_eq!(q.holds(7), Some(false));
    q.finish(7, None, false);
    assert_eq!(q.holds(7), None);
}
