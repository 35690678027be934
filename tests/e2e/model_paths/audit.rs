//! The audit trail of model calls: one `model-call` record per call, written as the call returns,
//! with its model, tokens, cached tokens and cost (never the prompt); the `task-ended` record and
//! the task record carry the task's spend, which the report also shows; `warden audit verify`
//! passes afterwards. A call the host refuses as invalid (a schema its provider cannot honour) is
//! recorded too, and never sent.

use serde_json::json;
use warden::orchestra::model::stub::{StubProvider, StubReply};

use super::{Host, POLICY, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_has_its_record_and_the_task_its_spend() {
    let stub = StubProvider::start().await.unwrap();
    let answer = |text: &str, prompt, cached, completion| StubReply::Answer {
        text: text.into(),
        finish_reason: "stop".into(),
        prompt_tokens: prompt,
        cached_tokens: Some(cached),
        completion_tokens: completion,
    };
    stub.script([answer("one", 100, 60, 7), answer("two", 120, 100, 3)]);
    let host = Host::new(&stub.url(), &[], "");
    let task = json!({
        "op": "model", "model": "small", "text": "a private prompt", "max_tokens": 8,
        "then": {"op": "model", "model": "small", "text": "a second private prompt", "max_tokens": 8},
    });
    let r = host.probe(POLICY, &task).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.text(), "two", "{r}");

    // Priced at 1 (input), 0.5 (cached) and 2 (output) USD per million tokens:
    // 40 + 30 + 14 = 84 and 20 + 50 + 6 = 76 µUSD.
    let calls = host.records("model-call", r.task());
    let expected = [(100, 60, 7, 84), (120, 100, 3, 76)];
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for (call, (prompt, cached, completion, cost)) in calls.iter().zip(expected) {
        assert_eq!(call["model"], "small", "{call}");
        assert_eq!(call["provider_model"], "stub-1", "{call}");
        assert_eq!(call["outcome"], "ok", "{call}");
        assert_eq!(call["finish_reason"], "stop", "{call}");
        assert_eq!(
            [
                count(&call["prompt_tokens"]),
                count(&call["cached_tokens"]),
                count(&call["completion_tokens"]),
                count(&call["cost_micro_usd"]),
            ],
            [prompt, cached, completion, cost],
            "{call}"
        );
    }
    let spend = json!({
        "calls": 2, "prompt_tokens": 220, "cached_tokens": 160, "completion_tokens": 10,
        "cost_micro_usd": 160, "models": ["small"],
    });
    assert_eq!(r.json["model"], spend, "{r}");
    let ended = host.records("task-ended", r.task());
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["model"], spend, "{:#}", ended[0]);
    let shown = host.task_show(r.task()).await;
    assert_eq!(shown["outcome"]["usage"]["model"], spend, "{shown:#}");

    // The records of the task, in order: the calls before the end; each names the agent.
    let log = host.audit();
    let of_task: Vec<&str> = log
        .iter()
        .filter(|a| a["task"] == r.task())
        .map(|a| a["kind"].as_str().unwrap_or(""))
        .collect();
    let first_call = of_task.iter().position(|k| *k == "model-call").unwrap();
    let end = of_task.iter().position(|k| *k == "task-ended").unwrap();
    assert!(first_call < end, "{of_task:?}");
    assert!(
        log.iter()
            .filter(|a| a["kind"] == "model-call")
            .all(|a| a["agent"] == "probe")
    );
    // Accounting, not content: no prompt in the log.
    let text = std::fs::read_to_string(host.path("data/audit.log")).unwrap();
    assert!(
        !text.contains("private prompt"),
        "the audit log holds a prompt"
    );

    // `warden task list` shows the cost; the log verifies.
    let list = host.warden(&["task", "list", "--json"]).await;
    assert_eq!(list.code, 0, "{}", list.err);
    assert!(
        list.out.contains("160"),
        "task list shows the cost: {}",
        list.out
    );
    host.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_as_invalid_is_recorded_and_never_sent() {
    let stub = StubProvider::start().await.unwrap();
    // A provider that cannot honour a JSON schema: a request with one is not sent.
    let host = Host::new(&stub.url(), &[("json_schema", "false")], "");
    let schema = r#"{"type":"object","properties":{"answer":{"type":"string"}}}"#;
    let task = json!({"op": "model", "model": "small", "text": "hi", "schema": schema});
    let r = host.probe(POLICY, &task).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(
        r.text().starts_with("invalid-request: ") && r.text().contains("json_schema = false"),
        "{r}"
    );
    assert_eq!(stub.request_count(), 0, "nothing was sent");
    let call = host.one_call(r.task());
    assert_eq!(call["outcome"], "invalid", "{call}");
    assert_eq!(call["attempts"], 0, "{call}");

    // The twin: a provider that honours schemas gets the schema, strict.
    let host = Host::new(&stub.url(), &[], "");
    let r = host.probe(POLICY, &task).await;
    assert_eq!(r.code, 0, "{r}");
    let sent = stub.requests()[0].json();
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        serde_json::from_str::<serde_json::Value>(schema).unwrap(),
        "{sent}"
    );
    assert_eq!(
        sent["response_format"]["json_schema"]["strict"], true,
        "{sent}"
    );
    assert_eq!(sent["max_tokens"], 8, "max_tokens is always sent: {sent}");
    host.verify().await;
}
