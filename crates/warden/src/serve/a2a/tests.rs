//! Unit tests of the A2A endpoint's translation: the JSON-RPC envelope, the version, a message's
//! parts as an input, a ledger row as an A2A task, the facade's errors as A2A's, timestamps.

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::rpc::{request, version};
use super::send::input_of;
use super::task::task;
use super::wire::{Code, Part, RpcError, TaskState, rfc3339};
use crate::serve::ApiError;
use crate::store::{ActionRecord, TaskRecord};

fn row(status: &str, outcome: Value) -> TaskRecord {
    TaskRecord {
        id: 7,
        agent: "probe".into(),
        agent_id: "k/probe".into(),
        module_hash: "h".into(),
        user: "dev".into(),
        level: 0,
        grant: json!({}),
        status: status.into(),
        outcome: (!outcome.is_null()).then_some(outcome),
        trace: None,
        staging: "none".into(),
        staging_path: None,
        started_ms: 1_000,
        ended_ms: Some(2_000),
        parent: None,
    }
}

fn action(id: u64) -> ActionRecord {
    ActionRecord {
        id,
        task: 7,
        agent: "probe".into(),
        user: "dev".into(),
        tool: "deploy".into(),
        params: "v1".into(),
        hash: "h".into(),
        status: "pending".into(),
        created_ms: 1_500,
        expires_ms: 600_000,
        approver: None,
        result: None,
    }
}

/// The first text of a task's status message.
fn word(t: &super::wire::Task) -> String {
    t.status.message.as_ref().unwrap().parts[0]
        .text
        .clone()
        .unwrap()
}

#[test]
fn each_warden_status_has_its_a2a_state() {
    let cases = [
        ("queued", json!(null), TaskState::Submitted),
        ("running", json!(null), TaskState::Working),
        (
            "completed",
            json!({"status": "completed", "output": "hi"}),
            TaskState::Completed,
        ),
        (
            "killed",
            json!({"reason": "not-granted", "capability": "net", "detail": "x"}),
            TaskState::Failed,
        ),
        (
            "agent-error",
            json!({"kind": "failed", "message": "no"}),
            TaskState::Failed,
        ),
        ("interrupted", json!(null), TaskState::Failed),
        (
            "escalated",
            json!({"reason": "budget", "detail": "over"}),
            TaskState::InputRequired,
        ),
        ("cancelled", json!(null), TaskState::Canceled),
        ("stopped", json!(null), TaskState::Canceled),
        ("something-new", json!(null), TaskState::Failed),
    ];
    for (status, outcome, state) in cases {
        let t = task(&row(status, outcome), &[], true);
        assert_eq!(t.status.state, state, "{status}");
        assert_eq!(t.id, "7");
        assert_eq!(t.metadata["status"], status);
        // A state that is not plain progress or success says why.
        let says = t.status.message.is_some();
        let quiet = matches!(
            state,
            TaskState::Submitted | TaskState::Working | TaskState::Completed
        );
        assert_eq!(says, !quiet, "{status}");
    }
}

#[test]
fn a_failure_says_why_and_an_escalation_what_a_person_does() {
    let killed = task(
        &row(
            "killed",
            json!({"reason": "not-granted", "capability": "net.connect", "detail": "127.0.0.1:1"}),
        ),
        &[],
        true,
    );
    let text = killed.status.message.unwrap().parts[0]
        .text
        .clone()
        .unwrap();
    assert!(
        text.contains("not-granted") && text.contains("net.connect"),
        "{text}"
    );
    assert!(killed.artifacts.is_empty());
    let cascade = TaskRecord {
        agent: "cascade".into(),
        ..row(
            "escalated",
            json!({"reason": "budget", "detail": "over \u{1b}[2J"}),
        )
    };
    let text = word(&task(&cascade, &[], true));
    assert!(text.contains("warden task resume 7"), "{text}");
    let agent = task(
        &row("escalated", json!({"reason": "budget-cap", "detail": "d"})),
        &[],
        true,
    );
    let agent = word(&agent);
    assert!(
        agent.contains("budget-cap") && agent.contains("send a new message"),
        "{agent}"
    );
    assert!(!agent.contains("resume"), "only a cascade resumes: {agent}");
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences from the outcome are neutralised: {text:?}"
    );
}

#[test]
fn a_completed_task_with_a_pending_action_waits_for_approval() {
    let done = row(
        "completed",
        json!({"status": "completed", "output": "{\"status\":\"pending\"}"}),
    );
    let plain = task(&done, &[], true);
    assert_eq!(plain.status.state, TaskState::Completed);
    let waiting = task(&done, &[action(3)], true);
    assert_eq!(waiting.status.state, TaskState::AuthRequired);
    let message = waiting.status.message.unwrap();
    assert!(
        message.parts[0]
            .text
            .as_deref()
            .unwrap()
            .contains("`warden approve 3`")
    );
    assert_eq!(
        message.parts[1].data.as_ref().unwrap()["approvals"][0]["action"],
        3
    );
    // The output is JSON: a data part.
    assert_eq!(
        waiting.artifacts[0].parts[0].data,
        Some(json!({"status": "pending"}))
    );
    // Artifacts only when asked for.
    assert!(task(&done, &[], false).artifacts.is_empty());
}

#[test]
fn the_envelope_is_checked_before_the_method() {
    let ok =
        request(br#"{"jsonrpc":"2.0","id":"a","method":"GetTask","params":{"id":"1"}}"#).unwrap();
    assert_eq!((ok.0, ok.1.as_str()), (json!("a"), "GetTask"));
    let cases: [(&[u8], Code, Value); 6] = [
        (b"{oops", Code::Parse, Value::Null),
        (b"[1]", Code::InvalidRequest, Value::Null),
        (
            br#"{"jsonrpc":"2.0","method":"GetTask"}"#,
            Code::InvalidRequest,
            Value::Null,
        ),
        (
            br#"{"jsonrpc":"2.0","id":{},"method":"GetTask"}"#,
            Code::InvalidRequest,
            Value::Null,
        ),
        (
            br#"{"jsonrpc":"1.0","id":3,"method":"GetTask"}"#,
            Code::InvalidRequest,
            json!(3),
        ),
        (
            br#"{"jsonrpc":"2.0","id":4,"method":7}"#,
            Code::InvalidRequest,
            json!(4),
        ),
    ];
    for (body, code, id) in cases {
        let (got_id, e) = request(body).unwrap_err();
        assert_eq!(
            (e.code, got_id),
            (code, id),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn only_a2a_1_0_is_spoken() {
    let with = |v: Option<&str>| {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert("a2a-version", v.parse().unwrap());
        }
        version(&h).map_err(|e| e.code)
    };
    assert_eq!(with(Some("1.0")), Ok(()));
    assert_eq!(with(Some(" 1.0.2 ")), Ok(()));
    for refused in [
        None,
        Some(""),
        Some("0.3"),
        Some("1.1"),
        Some("1"),
        Some("1.0.x"),
        Some("2.0"),
    ] {
        assert_eq!(with(refused), Err(Code::VersionNotSupported), "{refused:?}");
    }
}

#[test]
fn parts_become_one_input() {
    let text = |t: &str| Part {
        text: Some(t.into()),
        ..Part::default()
    };
    let data = |d: Value| Part {
        data: Some(d),
        ..Part::default()
    };
    assert_eq!(input_of(&[text("bob")]).unwrap(), json!("bob"));
    assert_eq!(input_of(&[text("a"), text("b")]).unwrap(), json!("a\nb"));
    assert_eq!(
        input_of(&[data(json!({"name": "ann"}))]).unwrap(),
        json!({"name": "ann"})
    );
    // Whole numbers a protobuf client wrote as floats are integers again; fractions stay.
    assert_eq!(
        input_of(&[data(
            json!({"n": 1000.0, "f": 0.5, "l": [-3.0, 1e300], "s": "1.0"})
        )])
        .unwrap(),
        json!({"n": 1000, "f": 0.5, "l": [-3, 1e300], "s": "1.0"})
    );
    let refused = |parts: &[Part]| input_of(parts).unwrap_err().code;
    assert_eq!(refused(&[]), Code::InvalidParams);
    assert_eq!(refused(&[text("a"), data(json!(1))]), Code::InvalidParams);
    assert_eq!(
        refused(&[data(json!(1)), data(json!(2))]),
        Code::InvalidParams
    );
    let file = Part {
        url: Some("file:///etc/passwd".into()),
        ..Part::default()
    };
    assert_eq!(refused(&[file]), Code::ContentType);
    let raw = Part {
        raw: Some("AAAA".into()),
        ..Part::default()
    };
    assert_eq!(refused(&[text("a"), raw]), Code::ContentType);
}

#[test]
fn the_facades_errors_in_a2a_terms() {
    let cases = [
        (
            ApiError::not_found("no-task", "x"),
            Code::TaskNotFound,
            false,
        ),
        (
            ApiError::not_found("no-agent", "x"),
            Code::InvalidParams,
            false,
        ),
        (
            ApiError::new(StatusCode::CONFLICT, "not-cancellable", "x"),
            Code::TaskNotCancelable,
            false,
        ),
        (
            ApiError::bad_request("input-contract", "x"),
            Code::InvalidParams,
            false,
        ),
        (ApiError::busy("queue-full", "x"), Code::Internal, true),
        (ApiError::internal("disk"), Code::Internal, false),
    ];
    for (api, code, busy) in cases {
        let warden = api.code;
        let e = RpcError::from(api);
        assert_eq!((e.code, e.busy, e.warden_code), (code, busy, warden));
        let json = e.to_json();
        assert_eq!(json["code"], code.parts().0);
        assert_eq!(json["data"][0]["reason"], code.parts().1);
        assert_eq!(json["data"][0]["metadata"]["warden"], warden);
    }
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339(1_795_836_680_059), "2026-11-28T03:31:20.059Z");
}

#[test]
fn a_callees_pending_action_holds_the_task_its_user_started() {
    use super::task::pending_approvals;
    use crate::store::{Durability, SqliteStore, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let top = store
        .begin_task(&row("running", json!(null)), "me")
        .unwrap();
    let callee = store
        .begin_task(
            &TaskRecord {
                parent: Some(top),
                ..row("running", json!(null))
            },
            "me",
        )
        .unwrap();
    let other = store
        .begin_task(&row("running", json!(null)), "me")
        .unwrap();
    let add = |task: u64, expires_ms: u64| {
        store
            .add_action(
                &ActionRecord {
                    task,
                    expires_ms,
                    ..action(0)
                },
                &|_| "h".into(),
                &|_| Ok(()),
            )
            .unwrap()
    };
    let held = add(callee, 10_000);
    let _expired = add(other, 4_000);
    let settled = add(other, 10_000);
    assert!(
        store
            .settle_action(settled.id, "pending", "performed", "rita", "ok")
            .unwrap()
    );
    let ids = |task: u64| -> Vec<u64> {
        let found = pending_approvals(&store, task, 5_000).unwrap();
        found.iter().map(|a| a.id).collect()
    };
    // The callee's action belongs to the top-level task; expired and settled ones to nobody.
    assert_eq!(ids(top), [held.id]);
    assert!(ids(other).is_empty());
}

#[tokio::test]
async fn an_error_is_answered_200_but_a_full_queue_429() {
    use super::rpc::reply;
    let body = |r: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let ok = reply(&json!(1), Ok(json!({"x": 1})));
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        body(ok).await,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"x": 1}})
    );
    let refused = reply(
        &json!("a"),
        Err(RpcError::new(Code::InvalidParams, "bad-params", "no")),
    );
    assert_eq!(refused.status(), StatusCode::OK);
    let v = body(refused).await;
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("a"), json!(-32602))
    );
    let busy = reply(&json!(2), Err(ApiError::busy("user-busy", "wait").into()));
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers()[axum::http::header::RETRY_AFTER], "1");
    let v = body(busy).await;
    assert_eq!(v["error"]["data"][0]["metadata"]["warden"], "user-busy");
}

#[test]
fn a_pending_action_older_than_600_others_still_holds_its_task() {
    use super::task::pending_approvals;
    use crate::store::{Durability, SqliteStore, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let top = store
        .begin_task(&row("completed", json!(null)), "me")
        .unwrap();
    let busy = store
        .begin_task(&row("completed", json!(null)), "me")
        .unwrap();
    let add = |task: u64| {
        store
            .add_action(
                &ActionRecord { task, ..action(0) },
                &|_| "h".into(),
                &|_| Ok(()),
            )
            .unwrap()
    };
    let held = add(top);
    for _ in 0..600 {
        add(busy);
    }
    let pending = pending_approvals(&store, top, 5_000).unwrap();
    let shown = task(
        &TaskRecord {
            id: top,
            ..row(
                "completed",
                json!({"status": "completed", "output": "done"}),
            )
        },
        &pending,
        true,
    );
    assert_eq!(shown.status.state, TaskState::AuthRequired);
    assert!(word(&shown).contains(&format!("`warden approve {}`", held.id)));
}

#[test]
fn past_32_pending_actions_the_rest_are_said_to_be_there() {
    let many: Vec<ActionRecord> = (1..=33).map(action).collect();
    let shown = task(&row("completed", json!({"output": "x"})), &many, false);
    assert_eq!(shown.status.state, TaskState::AuthRequired);
    let text = word(&shown);
    assert!(text.contains("`warden approve 32`"), "{text}");
    assert!(!text.contains("`warden approve 33`"), "{text}");
    assert!(text.ends_with("and more: `warden approve --list` shows them all"));
    let data = shown.status.message.as_ref().unwrap().parts[1].data.clone();
    assert_eq!(data.unwrap()["approvals"].as_array().unwrap().len(), 32);
    let few = task(
        &row("completed", json!({"output": "x"})),
        &many[..32],
        false,
    );
    assert!(!word(&few).contains("and more"));
}

#[test]
fn list_tasks_shows_and_filters_a_waiting_task_by_its_trees_pending_actions() {
    use super::list::Query;
    use crate::store::{Durability, SqliteStore, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
    let begin = |status: &str, user: &str, parent: Option<u64>| {
        let r = TaskRecord {
            user: user.into(),
            parent,
            ..row(status, json!({"output": "x"}))
        };
        let id = store.begin_task(&r, "me").unwrap();
        if status != "running" {
            let end = crate::store::TaskEnd {
                id,
                status: status.into(),
                outcome: json!({"status": status, "output": "x"}),
                trace: json!({"events": []}),
                staging: "none".into(),
                staging_path: None,
                ended_ms: 3_000,
                trust: None,
            };
            store.end_task(&end).unwrap();
        }
        id
    };
    let add = |task: u64| {
        let a = ActionRecord { task, ..action(0) };
        store.add_action(&a, &|_| "h".into(), &|_| Ok(())).unwrap()
    };
    let waiting = begin("completed", "dev", None);
    let callee = begin("completed", "dev", Some(waiting));
    let held = add(callee);
    let done = begin("completed", "dev", None);
    let running = begin("running", "dev", None);
    let others = begin("completed", "eve", None);
    add(others);
    for _ in 0..600 {
        add(done);
        store
            .settle_action(
                store.actions(1).unwrap()[0].id,
                "pending",
                "performed",
                "rita",
                "ok",
            )
            .unwrap();
    }
    let list = |state: Option<TaskState>, before: u64, size: usize| {
        let query = Query {
            user: "dev".into(),
            agent: None,
            context: None,
            state,
            before,
            size,
            artifacts: false,
        };
        let rows = store.tasks(100).unwrap();
        let (tasks, next, total) = query.page(&store, rows, 5_000).unwrap();
        let shown: Vec<(u64, TaskState)> = tasks
            .iter()
            .map(|t| (t.id.parse().unwrap(), t.status.state))
            .collect();
        (shown, next, total)
    };
    let (shown, _, total) = list(Some(TaskState::AuthRequired), u64::MAX, 10);
    assert_eq!(
        (shown, total),
        (vec![(waiting, TaskState::AuthRequired)], 1)
    );
    let (shown, _, total) = list(Some(TaskState::Completed), u64::MAX, 10);
    assert_eq!((shown, total), (vec![(done, TaskState::Completed)], 1));
    let (shown, next, total) = list(None, u64::MAX, 2);
    assert_eq!(
        (shown, next.clone(), total),
        (
            vec![(running, TaskState::Working), (done, TaskState::Completed)],
            done.to_string(),
            3
        ),
        "the caller's top-level tasks, newest first; not eve's, not the callee"
    );
    let (shown, next, _) = list(None, next.parse().unwrap(), 2);
    assert_eq!(
        (shown, next),
        (vec![(waiting, TaskState::AuthRequired)], String::new()),
        "a task on a later page without a filter still reads its tree's pending action"
    );
    assert!(held.id < store.actions(1).unwrap()[0].id);
}
