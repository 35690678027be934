//! The budget: a guest that calls until the host refuses, then returns normally, still ends
//! `escalated: budget-cap` (exit 4); its spend is in the report, the task record and the
//! `task-ended` record; the refused call never reaches the provider; the agent is not demoted.
//! A money budget refuses the same way before anything is sent.

use serde_json::json;
use warden::orchestra::model::stub::StubProvider;

use super::{Host, ask, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_that_drains_the_budget_ends_escalated_with_its_spend_recorded() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url(), &[], "");
    let policy = "[model]\nallow = [\"small\"]\ntokens = 400\n";
    let task = json!({"op": "model-loop", "model": "small", "text": "again", "max_tokens": 8});
    let r = host.probe(policy, &task).await;
    assert_eq!(r.code, 4, "{r}");
    assert_eq!(
        r.status(),
        "escalated",
        "the guest returned normally, yet: {r}"
    );
    assert_eq!(r.outcome()["reason"], "budget-cap", "{r}");

    // Every call is accounted for; the last was refused and never sent.
    let spend = &r.json["model"];
    let calls = count(&spend["calls"]);
    assert!(calls >= 3, "several calls fit in 400 tokens: {r}");
    assert_eq!(stub.request_count() as u64, calls - 1, "{r}");
    let records = host.records("model-call", r.task());
    assert_eq!(
        records.len() as u64,
        calls,
        "one model-call record per call"
    );
    let (last, sent) = records.split_last().unwrap();
    assert!(
        sent.iter()
            .all(|c| c["outcome"] == "ok" && c["attempts"] == 1),
        "{sent:#?}"
    );
    assert_eq!(last["outcome"], "budget-exceeded", "{last}");
    assert_eq!(
        (count(&last["attempts"]), count(&last["prompt_tokens"])),
        (0, 0)
    );
    // The stub's answers: 10 prompt + 5 completion tokens each, at 1 and 2 USD per million.
    let ok = calls - 1;
    assert_eq!(count(&spend["prompt_tokens"]), 10 * ok, "{spend}");
    assert_eq!(count(&spend["completion_tokens"]), 5 * ok, "{spend}");
    assert_eq!(count(&spend["cost_micro_usd"]), 20 * ok, "{spend}");
    assert!(15 * ok <= 400, "the spend stays inside the budget: {spend}");
    assert_eq!(spend["models"], json!(["small"]));

    let shown = host.task_show(r.task()).await;
    assert_eq!(shown["status"], "escalated", "{shown:#}");
    assert_eq!(&shown["outcome"]["usage"]["model"], spend, "{shown:#}");
    let ended = host.records("task-ended", r.task());
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["status"], "escalated");
    assert_eq!(&ended[0]["model"], spend, "{:#}", ended[0]);
    assert!(host.records("task-killed", r.task()).is_empty());

    // Not a violation: the agent keeps its level; `warden stats` counts the calls.
    assert!(
        !host.trust().await.contains("HELD"),
        "{}",
        host.trust().await
    );
    let stats = host.warden(&["stats", "--json"]).await;
    assert_eq!(stats.code, 0, "{}", stats.err);
    let probe: serde_json::Value = stats
        .out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|s| s["agent"] == "probe")
        .unwrap_or_else(|| panic!("no stats for probe: {}", stats.out));
    assert_eq!(
        (count(&probe["calls"]), count(&probe["escalated"])),
        (calls, 1),
        "{probe}"
    );
    host.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_money_budget_refuses_before_sending() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url(), &[], "");
    // 50 µUSD: less than one call's estimate at 1 USD per million prompt tokens.
    let policy = "[model]\nallow = [\"small\"]\nusd = 0.00005\n";
    let r = host.probe(policy, &ask("small", "hi")).await;
    assert_eq!(r.code, 4, "{r}");
    assert_eq!(r.outcome()["reason"], "budget-cap", "{r}");
    assert_eq!(stub.request_count(), 0, "nothing was sent");
    assert_eq!(host.one_call(r.task())["outcome"], "budget-exceeded");
    assert_eq!(r.json["model"]["cost_micro_usd"], 0, "{r}");
}
