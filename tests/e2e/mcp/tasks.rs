//! Runs that outlive a request, over `/mcp` on `warden serve`. Cancellation: Python's `mcp` SDK
//! calls `probe` spinning until killed (its limits, 60 s of CPU, are far past the test), gives
//! up after 3 s (the SDK sends `notifications/cancelled`), and the task's row, read over the HTTP
//! API, has ended `cancelled` by the caller at once; the same connection then calls `hello` — in
//! both spec eras. The tasks extension (SEP-2663), which the SDK's client does not speak, in
//! plain JSON-RPC: a task handle whose id is the Warden task id, polled to the very result a
//! synchronous call gives; a spinning task cancelled with `tasks/cancel`; another user's task
//! answered as a missing one; `tasks/list` and `tasks/result` (removed by SEP-2663) unknown; a
//! 2025-11-25 session that declares the extension at `initialize` gets handles too.

use serde_json::Value;

use super::client;
use super::http::serve;

/// The error message of a JSON-RPC answer the client recorded, or "".
fn error_of(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn a_call_the_client_gives_up_stops_its_task_at_once_and_the_server_keeps_serving() {
    let s = serve();
    for mode in ["legacy", "auto"] {
        let r = client(&[
            "cancel".into(),
            "--mode".into(),
            mode.into(),
            "--url".into(),
            s.url.clone(),
            "--token".into(),
            s.token.clone(),
        ]);
        let spin = r["spin"].as_str().unwrap_or_default();
        assert!(
            spin.contains("timed out"),
            "{mode}: the spin never ends on its own: {r}"
        );
        assert!(
            r["task"].as_u64().is_some(),
            "{mode}: progress named the task: {r}"
        );
        let row = &r["row"];
        assert_eq!(row["status"], "cancelled", "{mode}: {r}");
        assert_eq!(row["outcome"]["by"], "dev", "{mode}: {r}");
        // Started, spun ~3 s until the client gave up, stopped then: nowhere near its 60 s limit.
        let ran_ms = row["ended_ms"].as_u64().unwrap() - row["started_ms"].as_u64().unwrap();
        assert!(ran_ms < 10_000, "{mode}: ran {ran_ms} ms: {r}");
        let after = r["ended_after_s"].as_f64().unwrap();
        assert!(after < 5.0, "{mode}: ended {after} s after the cancel: {r}");
        assert_eq!(r["hello_after"]["isError"], false, "{mode}: {r}");
        assert_eq!(r["hello_after"]["structured"]["output"], "hello, after");
    }
}

#[test]
fn the_tasks_extension_hands_back_a_task_polled_to_its_result_and_cancelled() {
    let s = serve();
    let eve = warden_tests::served::dev_token(
        s.host.data.path(),
        "eve",
        &["dev"],
        std::time::Duration::from_secs(600),
    );
    let r = client(&[
        "tasks".into(),
        "--url".into(),
        s.url.clone(),
        "--token".into(),
        s.token.clone(),
        "--other-token".into(),
        eve,
    ]);

    // The handle: at once, a Warden task id.
    let handle = &r["handle"];
    assert_eq!(handle["resultType"], "task", "{r}");
    assert_eq!(handle["status"], "working", "{r}");
    let id = handle["taskId"].as_str().unwrap();
    assert!(id.parse::<u64>().is_ok(), "{r}");
    assert_eq!(handle["ttlMs"], Value::Null);
    assert!(handle["pollIntervalMs"].as_u64().is_some());

    // Polled to its end: the result a synchronous call gives (but for its own task id).
    let done = &r["done"];
    assert_eq!(done["status"], "completed", "{r}");
    assert_eq!(done["taskId"], id);
    let (result, sync) = (&done["result"], &r["sync"]);
    assert_eq!(
        sync["resultType"], "complete",
        "an undeclaring client waits: {r}"
    );
    assert_eq!(result["isError"], false);
    assert_eq!(result["content"], sync["content"], "{r}");
    assert_eq!(result["structuredContent"]["output"], "hello, task");
    assert_eq!(
        result["structuredContent"]["output"],
        sync["structuredContent"]["output"]
    );
    assert_eq!(result["structuredContent"]["task"].to_string(), id);
    // tasks/* need the extension declared.
    assert_eq!(r["undeclared_get"]["error"]["code"], -32021, "{r}");

    // A spinning probe: running, then cancelled at once, its row too.
    assert_eq!(r["spin_running"]["status"], "working", "{r}");
    assert_eq!(r["spin_cancel"]["resultType"], "complete", "{r}");
    assert_eq!(r["spin_cancelled"]["status"], "cancelled", "{r}");
    assert!(r["cancel_took_s"].as_f64().unwrap() < 5.0, "{r}");
    assert_eq!(r["spin_row"]["status"], "cancelled", "{r}");
    assert_eq!(r["spin_row"]["outcome"]["by"], "dev", "{r}");

    // Another user sees nothing of it, and cannot cancel it: the same answer as no task at all.
    let other = error_of(&r["other_get"]);
    assert!(other.starts_with("no task"), "{r}");
    assert_eq!(
        other.replace(id, "N"),
        error_of(&r["missing_get"]).replace("999999", "N"),
        "{r}"
    );
    assert!(error_of(&r["other_cancel"]).starts_with("no task"), "{r}");
    assert!(
        !r["other_get"].to_string().contains("hello"),
        "nothing of the task leaks: {r}"
    );

    // Removed by SEP-2663: unknown methods.
    assert_eq!(r["list"]["error"]["code"], -32601, "{r}");
    assert_eq!(r["result"]["error"]["code"], -32601, "{r}");
    // Nothing to answer: Warden never asks the client for input.
    assert_eq!(r["update"]["error"]["code"], -32602, "{r}");

    assert_eq!(r["after"]["isError"], false, "{r}");

    // A 2025-11-25 session whose `initialize` declares the extension gets handles too.
    let legacy = &r["legacy"];
    assert!(
        legacy["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_some(),
        "the server declares the extension: {legacy}"
    );
    assert_eq!(legacy["handle"]["resultType"], "task", "{legacy}");
    assert_eq!(legacy["done"]["status"], "completed", "{legacy}");
    assert_eq!(
        legacy["done"]["result"]["structuredContent"]["output"],
        "hello, legacy"
    );
}
