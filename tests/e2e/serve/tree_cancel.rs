//! Cancelling a task stops its whole tree at once: a caller (`front`, the `probe` component with
//! `[agents] call = ["probe"]`) whose callee spins is cancelled over `DELETE /v1/tasks/{id}`; the
//! callee's row is `cancelled` at once and stays so past the callee's own CPU limit (its instance
//! went with its caller: it never ends again as `killed`), its end is recorded once, and
//! `warden audit verify` passes.

use std::time::Duration;

use serde_json::json;

use super::queue::{accepted, audit_verifies, call, host_config, records, row, serve_on};

/// The callee's limits: it would be killed for its CPU within 1.5 s if it ran on.
const SPIN_LIMITS: &str = "cpu = \"1500 ms\"\nwall = \"10 s\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_task_stops_its_callees_at_once() {
    let (agents, config) = host_config(SPIN_LIMITS, "");
    std::fs::copy(
        agents.path().join("probe.wasm"),
        agents.path().join("front.wasm"),
    )
    .unwrap();
    std::fs::write(
        agents.path().join("front.toml"),
        "[agent]\nname = \"front\"\n[agents]\ncall = [\"probe\"]\n[limits]\ncpu = \"10 s\"\nwall = \"20 s\"\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = serve_on(&config, data.path());
    let (dev, addr) = (s.token.clone(), s.addr.clone());

    let spin = json!({"op": "spin"}).to_string();
    let body = json!({"agent": "front", "input": {"op": "call", "name": "probe", "input": spin}});
    let front = accepted(&addr, &dev, &body).await;
    let callee = super::queue::started_where(data.path(), "the front's callee", |r| {
        r["detail"]["parent"] == front
    })
    .await;
    assert_eq!(row(&addr, &dev, callee).await["status"], "running");

    let (status, _, v) = call(&addr, "DELETE", &format!("/v1/tasks/{front}"), &dev, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(row(&addr, &dev, callee).await["status"], "cancelled");

    // Past the callee's CPU limit: had it run on, it would have been killed and ended again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v = row(&addr, &dev, callee).await;
    assert_eq!(v["status"], "cancelled", "the callee ran on: {v}");
    let ends = records(data.path(), "task-ended", callee);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["detail"]["status"], "cancelled", "{ends:?}");
    drop(s);
    audit_verifies(data.path());
}
