//! Retries and timeouts of a model call, through the `warden` binary: a 429 is retried after its
//! `Retry-After`, 5xx answers until the retries run out (the guest gets a provider error, the
//! agent is not demoted), a reply that is not a completion (not JSON, no usage, no choices, over
//! the size the host reads) is not retried, a reply that never ends is stopped by
//! the provider's timeout (or, with a long one, by the task's wall limit), and a slow reply that
//! trickles in byte by byte completes while it is inside the timeout.

use std::time::{Duration, Instant};

use warden::orchestra::model::stub::{StubProvider, StubReply};

use super::{Host, POLICY, ask, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        StubReply::RateLimited {
            retry_after_secs: 1,
        },
        StubReply::answer("after the wait"),
    ]);
    let host = Host::new(&stub.url(), &[], "");
    let started = Instant::now();
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.outcome()["output"], "after the wait", "{r}");
    assert_eq!(stub.request_count(), 2);
    let call = host.one_call(r.task());
    assert_eq!(call["outcome"], "ok", "{call}");
    assert_eq!(call["attempts"], 2, "{call}");
    assert!(
        count(&call["elapsed_us"]) >= 1_000_000 && started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was waited for: {call}"
    );
    assert_eq!(r.json["model"]["calls"], 1, "{r}");

    // A Retry-After past the provider's timeout (5 s) is not waited for.
    stub.script([StubReply::RateLimited {
        retry_after_secs: 3600,
    }]);
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(
        r.text().contains("rate limited (429)") && r.text().contains("would pass its timeout"),
        "{r}"
    );
    let call = host.one_call(r.task());
    assert_eq!(call["attempts"], 1, "{call}");
    assert!(
        count(&call["elapsed_us"]) < 2_000_000,
        "given up at once, not at the timeout: {call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_5xx_is_a_provider_error_not_a_violation() {
    let stub = StubProvider::start().await.unwrap();
    // retries = 2: three attempts, all refused.
    stub.script(std::iter::repeat_n(StubReply::server_error(), 3));
    let host = Host::new(&stub.url(), &[], "");
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.code, 1, "an agent error: {r}");
    assert_eq!(r.status(), "agent-error", "{r}");
    assert_eq!(r.outcome()["kind"], "failed", "{r}");
    let message = r.text();
    assert!(
        message.starts_with("provider: ") && message.contains("gave up after 3 attempt(s)"),
        "{r}"
    );
    assert!(
        message.contains("stub: internal error"),
        "the provider's message is quoted: {r}"
    );
    assert_eq!(stub.request_count(), 3);
    let call = host.one_call(r.task());
    assert_eq!(call["outcome"], "provider-error", "{call}");
    assert_eq!(call["attempts"], 3, "{call}");
    assert_eq!(
        call["prompt_tokens"], 0,
        "a failed call charges nothing: {call}"
    );
    assert_eq!(call["cost_micro_usd"], 0, "{call}");
    let shown = host.task_show(r.task()).await;
    assert_eq!(shown["status"], "agent-error", "{shown:#}");
    assert_eq!(shown["outcome"]["usage"]["model"]["calls"], 1, "{shown:#}");
    assert!(
        host.records("task-killed", r.task()).is_empty(),
        "a provider error is no kill"
    );
    assert!(!host.trust().await.contains("HELD"), "no demotion");

    // One 5xx, then an answer: the retry succeeds.
    stub.script([StubReply::server_error(), StubReply::answer("second time")]);
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.text(), "second time", "{r}");
    assert_eq!(host.one_call(r.task())["attempts"], 2);
    host.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_is_not_a_completion_is_a_provider_error_and_is_not_retried() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url(), &[], "");
    let cases = [
        (
            StubReply::Malformed,
            "malformed reply: not the JSON of a chat completion",
        ),
        (StubReply::NoUsage, "malformed reply: no usage"),
        (StubReply::NoChoices, "malformed reply: no choices"),
        // Read up to the bound, not further.
        (
            StubReply::Oversized,
            "sent a reply over 8388608 bytes; it was not read",
        ),
    ];
    for (i, (reply, says)) in cases.into_iter().enumerate() {
        stub.script([reply]);
        let r = host.probe(POLICY, &ask("small", "hi")).await;
        assert_eq!(r.status(), "agent-error", "{r}");
        assert!(
            r.text().starts_with("provider: model `small` ") && r.text().contains(says),
            "{says}: {r}"
        );
        assert_eq!(
            stub.request_count(),
            i + 1,
            "a 200 that is not a completion is not retried"
        );
        let call = host.one_call(r.task());
        assert_eq!(
            (call["outcome"].as_str(), count(&call["attempts"])),
            (Some("provider-error"), 1)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_never_ends_is_stopped_by_the_provider_timeout() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::NeverEnds]);
    let host = Host::new(&stub.url(), &[("timeout", "\"1 s\"")], "");
    let started = Instant::now();
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(
        r.text()
            .contains("gave no complete answer within its timeout of 1s"),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped at the provider's timeout, not the task's 20 s: {:?}",
        started.elapsed()
    );
    let call = host.one_call(r.task());
    assert_eq!(call["outcome"], "provider-error", "{call}");
    let elapsed = count(&call["elapsed_us"]);
    assert!((1_000_000..5_000_000).contains(&elapsed), "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_never_ends_is_stopped_by_the_wall_limit() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::NeverEnds]);
    let host = Host::new(&stub.url(), &[("timeout", "\"10 min\"")], "");
    let policy = "[model]\nallow = [\"small\"]\n[limits]\nwall = \"1500 ms\"\n";
    let started = Instant::now();
    let r = host.probe(policy, &ask("small", "hi")).await;
    assert_eq!(r.code, 3, "{r}");
    assert_eq!(r.status(), "killed", "{r}");
    assert_eq!(r.outcome()["reason"], "wall-limit", "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The call was abandoned in flight: recorded, with the estimate it was charged.
    let call = host.one_call(r.task());
    assert_eq!(call["outcome"], "abandoned", "{call}");
    assert_eq!(call["attempts"], 1, "{call}");
    assert!(count(&call["prompt_tokens"]) > 0, "{call}");
    assert_eq!(
        call["completion_tokens"], 8,
        "max_tokens is charged: {call}"
    );
    assert_eq!(r.json["model"]["calls"], 1, "{r}");
    assert_eq!(
        r.json["model"]["prompt_tokens"], call["prompt_tokens"],
        "{r}"
    );
    let kinds: Vec<_> = host
        .audit()
        .into_iter()
        .filter(|a| a["task"] == r.task())
        .map(|a| a["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    let at = |kind: &str| kinds.iter().position(|k| k == kind);
    assert!(
        at("model-call") < at("task-ended") && at("task-ended").is_some(),
        "the abandoned call is recorded before the task ends: {kinds:?}"
    );
    host.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_trickle_completes_inside_the_timeout_and_fails_past_it() {
    let stub = StubProvider::start().await.unwrap();
    let every = Duration::from_millis(2);
    stub.script([StubReply::Trickle { every }]);
    let host = Host::new(&stub.url(), &[], "");
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.text(), "stub reply", "{r}");
    let call = host.one_call(r.task());
    assert_eq!(
        (call["outcome"].as_str(), count(&call["attempts"])),
        (Some("ok"), 1)
    );
    // About 200 bytes, one every 2 ms.
    assert!(
        count(&call["provider_us"]) >= 200_000,
        "it trickled: {call}"
    );

    // The twin: the same trickle against a timeout shorter than it takes.
    stub.script([StubReply::Trickle { every }]);
    let host = Host::new(&stub.url(), &[("timeout", "\"150 ms\"")], "");
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(r.text().contains("within its timeout of 150ms"), "{r}");
}
