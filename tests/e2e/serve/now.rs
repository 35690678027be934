//! A caller who waits for its task's end (A2A's blocking `SendMessage`, as MCP's `tools/call`)
//! starts it at once when the queue lets it, on the real binary with one worker:
//!
//! - `hello` sent while the worker is free completes in the answer; its task was never queued
//!   (no `task-queued` record) but began (`task-started`) and ended (`task-ended`) like any.
//! - A spinning `probe` sent that way takes the worker; a `hello` sent meanwhile is queued
//!   (a `task-queued` record: the bound holds); `DELETE /v1/tasks/{id}` stops the spinner at
//!   once (its answer says `TASK_STATE_CANCELED`, its row `cancelled` by the canceller, long
//!   before its CPU limit), and then the queued `hello` runs and completes in its answer.
//! - Another user cannot cancel it (404); `warden audit verify` passes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_tests::served::dev_token;

use super::queue::{audit_verifies, call, host_config, records, serve_on};

const SPIN_LIMITS: &str = "cpu = \"10 s\"\nwall = \"20 s\"\n";

/// A blocking `SendMessage` of `input` to `agent`: the task in the answer.
async fn send(addr: &str, token: &str, agent: &str, input: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"data": input}]}}});
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("/a2a/{agent}"))
        .header("host", addr)
        .header("content-type", "application/json")
        .header("a2a-version", "1.0")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(v["result"]["task"].is_object(), "{v}");
    v["result"]["task"].clone()
}

fn id_of(task: &Value) -> u64 {
    task["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no task id: {task}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_callers_task_starts_at_once_within_the_bounds_and_can_be_cancelled() {
    let (_agents, config) = host_config(
        SPIN_LIMITS,
        "[server]\nmax_queued = 5\nworkers = 1\nper_user = 1\nper_user_queued = 4\n",
    );
    let data = tempfile::tempdir().unwrap();
    let s = serve_on(&config, data.path());
    let (dev, addr) = (s.token.clone(), s.addr.clone());
    let mallory = dev_token(data.path(), "mallory", &["dev"], Duration::from_secs(600));

    // The worker is free: started at once, never queued, recorded as any task is.
    let task = send(&addr, &dev, "hello", json!({"name": "now"})).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    let first = id_of(&task);
    let kinds = ["task-queued", "task-started", "task-ended"];
    let counts: Vec<usize> = kinds
        .iter()
        .map(|k| records(data.path(), k, first).len())
        .collect();
    assert_eq!(counts, vec![0, 1, 1], "{kinds:?} of task {first}");

    // A spinner takes the one worker; a hello sent meanwhile waits queued.
    let spin = {
        let (addr, dev) = (addr.clone(), dev.clone());
        tokio::spawn(async move { send(&addr, &dev, "probe", json!({"op": "spin"})).await })
    };
    let spinning =
        super::queue::started_where(data.path(), "a probe task", |r| r["agent"] == "probe").await;
    let queued = {
        let (addr, dev) = (addr.clone(), dev.clone());
        tokio::spawn(async move { send(&addr, &dev, "hello", json!({"name": "later"})).await })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let queued_ids: Vec<u64> = std::fs::read_to_string(data.path().join("audit.log"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "task-queued")
            .filter_map(|r| r["task"].as_u64())
            .collect();
        if let Some(id) = queued_ids.last() {
            break *id;
        }
        assert!(Instant::now() < deadline, "the second hello was not queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(records(data.path(), "task-started", waiting).len(), 0);

    // Another user cannot stop it; its owner can, at once.
    let path = format!("/v1/tasks/{spinning}");
    let (status, _, v) = call(&addr, "DELETE", &path, &mallory, None).await;
    assert_eq!(status, 404, "{v}");
    let asked = Instant::now();
    let (status, _, v) = call(&addr, "DELETE", &path, &dev, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["outcome"]["by"].as_str()),
        (Some("cancelled"), Some("dev")),
        "{v}"
    );
    let task = spin.await.unwrap();
    assert_eq!(task["status"]["state"], "TASK_STATE_CANCELED", "{task}");
    assert!(asked.elapsed() < Duration::from_secs(5), "stopped at once");

    // The worker is free again: the queued hello runs, with the id it was queued with.
    let task = queued.await.unwrap();
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(id_of(&task), waiting);
    drop(s);
    audit_verifies(data.path());
}
