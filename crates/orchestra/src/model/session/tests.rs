use std::time::Duration;

use warden_policy::HostConfig;
use warden_sandbox::capabilities::model::{ChatMessage, ChatRole};

use super::*;
use crate::model::stub::{StubProvider, StubReply};
use crate::model::testing::{request, tls};
use crate::model::{Models, SessionScope, Spent};

/// The models of a host whose `small` is `url` (1 / 0.5 / 2 USD per million tokens).
fn models(url: &str, extra: &str) -> Models {
    let text = format!(
        "[[model]]\nname = \"small\"\nurl = \"{url}\"\nid = \"stub-1\"\ntimeout = \"2 s\"\n\
         price = {{ input = 1.0, cached = 0.5, output = 2.0 }}\n{extra}\n\
         [prompt]\nconstitution = \"Be good.\"\n"
    );
    Models::from_config(&HostConfig::parse("w.toml", &text).unwrap(), tls()).unwrap()
}

fn scope(tokens: u64, micro_usd: u64) -> SessionScope {
    SessionScope {
        agent: "ask".into(),
        rules: "Answer briefly.".into(),
        memory: String::new(),
        tools: vec![("search".into(), "Search the web.".into())],
        tokens,
        micro_usd,
        observer: None,
        client: None,
    }
}

fn observed(scope: &mut SessionScope) -> Arc<Mutex<Vec<CallRecord>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    scope.observer = Some(Arc::new(move |r: &CallRecord| {
        sink.lock().unwrap().push(r.clone())
    }));
    seen
}

#[tokio::test]
async fn every_call_is_accounted_for() {
    let stub = StubProvider::start().await.unwrap();
    let answer = StubReply::Answer {
        text: "blue".into(),
        finish_reason: "stop".into(),
        prompt_tokens: 40,
        cached_tokens: Some(32),
        completion_tokens: 16,
    };
    stub.script([answer.clone(), answer]);
    let mut s = scope(10_000, 10_000);
    let seen = observed(&mut s);
    let session = models(&stub.url(), "").session(s);
    let reply = session.chat(request("What colour?", 16)).await.unwrap();
    assert_eq!(
        (reply.text.as_str(), reply.finish_reason.as_str()),
        ("blue", "stop")
    );
    // 8 fresh × 1 + 32 cached × 0.5 + 16 completion × 2.
    assert_eq!(
        reply.usage,
        ModelUsage {
            prompt_tokens: 40,
            cached_tokens: 32,
            completion_tokens: 16,
            cost_micro_usd: 56
        }
    );
    session.chat(request("And now?", 16)).await.unwrap();
    let calls = session.calls();
    assert_eq!(calls.len(), 2);
    let c = &calls[0];
    assert_eq!(
        (
            c.model.as_str(),
            c.provider_model.as_str(),
            c.outcome,
            c.attempts
        ),
        ("small", "stub-1", CallOutcome::Ok, 1)
    );
    assert_eq!((c.cost_micro_usd, c.finish_reason.as_str()), (56, "stop"));
    assert!(c.provider_us > 0 && c.provider_us <= c.elapsed_us, "{c:?}");
    assert_eq!(*seen.lock().unwrap(), calls, "the observer saw each call");
    let spend = session.spend();
    assert_eq!(
        spend,
        Spend {
            calls: 2,
            prompt_tokens: 80,
            cached_tokens: 64,
            completion_tokens: 32,
            cost_micro_usd: 112,
            models: vec!["small".into()],
        }
    );
    assert!((spend.cache_hit_rate() - 0.8).abs() < 1e-9);
    assert_eq!(
        session.budget().spent(),
        Spent {
            tokens: 112,
            micro_usd: 112
        }
    );
    assert_eq!(session.escalation(), None);
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["outcome"], "ok");
}

#[tokio::test]
async fn over_the_token_budget_nothing_is_sent_and_the_task_escalates() {
    let stub = StubProvider::start().await.unwrap();
    let mut s = scope(100, 1_000_000);
    let seen = observed(&mut s);
    let session = models(&stub.url(), "").session(s);
    session.chat(request("hi", 8)).await.unwrap();
    assert_eq!(session.escalation(), None);
    let e = session.chat(request("hi", 90)).await.unwrap_err();
    let ModelFailure::BudgetExceeded(why) = &e else {
        panic!("{e}")
    };
    assert!(why.contains("has used 15 of its 100 tokens"), "{why}");
    assert_eq!(stub.request_count(), 1, "the refused call was not sent");
    assert_eq!(session.escalation().as_deref(), Some("budget-cap"));
    let refused = &session.calls()[1];
    assert_eq!(
        (refused.outcome, refused.attempts),
        (CallOutcome::BudgetExceeded, 0)
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(
        serde_json::to_value(refused).unwrap()["outcome"],
        "budget-exceeded"
    );
}

#[tokio::test]
async fn over_the_money_budget_nothing_is_sent() {
    let stub = StubProvider::start().await.unwrap();
    // The estimate: ⌈bytes ÷ 4⌉ prompt tokens at 1 µUSD and 8 completion tokens at 2 µUSD.
    let session = models(&stub.url(), "").session(scope(1_000_000, 20));
    let e = session.chat(request("hi", 8)).await.unwrap_err();
    assert!(
        matches!(&e, ModelFailure::BudgetExceeded(m) if m.contains("of its 20 µUSD")),
        "{e}"
    );
    assert_eq!(stub.request_count(), 0);
    assert_eq!(session.escalation().as_deref(), Some(BUDGET_CAP));
    assert_eq!(session.budget().spent(), Spent::default());
}

#[tokio::test]
async fn calls_in_flight_hold_their_estimate() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::Slow {
        delay: Duration::from_millis(200),
        then: Box::new(StubReply::answer("first")),
    }]);
    let models = models(&stub.url(), "");
    let budget = Budget::new(1_500, 1_000_000);
    let a = models.session_sharing(scope(0, 0), budget.clone());
    let b = models.session_sharing(scope(0, 0), budget.clone());
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.chat(request("two", 1_000)).await
    };
    let (first, second) = tokio::join!(a.chat(request("one", 1_000)), second);
    assert_eq!(first.unwrap().text, "first");
    assert!(
        matches!(second, Err(ModelFailure::BudgetExceeded(_))),
        "{second:?}"
    );
    assert_eq!(stub.request_count(), 1);
    assert_eq!(budget.spent().tokens, 15, "the hold became the real usage");
    assert_eq!(
        (a.escalation(), b.escalation().as_deref()),
        (None, Some(BUDGET_CAP))
    );
}

#[tokio::test]
async fn a_failed_call_charges_nothing_and_an_abandoned_one_its_estimate() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::Status {
        code: 400,
        body: "no".into(),
    }]);
    let session = models(&stub.url(), "").session(scope(10_000, 10_000));
    let e = session.chat(request("x", 8)).await.unwrap_err();
    assert!(matches!(e, ModelFailure::Provider(_)), "{e}");
    assert_eq!(session.budget().spent(), Spent::default());
    let c = &session.calls()[0];
    assert_eq!((c.outcome, c.attempts), (CallOutcome::ProviderError, 1));

    stub.script([StubReply::NeverEnds]);
    let abandoned =
        tokio::time::timeout(Duration::from_millis(200), session.chat(request("x", 100))).await;
    assert!(abandoned.is_err());
    let spent = session.budget().spent();
    assert!(spent.tokens > 100 && spent.micro_usd > 200, "{spent:?}");
    let calls = session.calls();
    let gone = &calls[1];
    assert_eq!(gone.outcome, CallOutcome::Abandoned);
    assert_eq!(
        (
            gone.prompt_tokens + gone.completion_tokens,
            gone.cost_micro_usd
        ),
        (spent.tokens, spent.micro_usd),
        "the record says what the budget was charged"
    );
    assert_eq!(serde_json::to_value(gone).unwrap()["outcome"], "abandoned");
}

#[tokio::test]
async fn what_the_host_cannot_send() {
    let stub = StubProvider::start().await.unwrap();
    let session = models(&stub.url(), "json_schema = false").session(scope(10_000, 10_000));
    let mut other = request("x", 8);
    other.model = "large".into();
    let e = session.chat(other).await.unwrap_err();
    assert_eq!(
        e,
        ModelFailure::Provider("this host has no model `large`".into())
    );
    let mut schema = request("x", 8);
    schema.json_schema = Some(r#"{"type":"object"}"#.into());
    let e = session.chat(schema).await.unwrap_err();
    assert!(matches!(e, ModelFailure::InvalidRequest(_)), "{e}");
    assert_eq!(stub.request_count(), 0);
    let outcomes: Vec<_> = session
        .calls()
        .iter()
        .map(|c| (c.outcome, c.attempts))
        .collect();
    assert_eq!(
        outcomes,
        [(CallOutcome::ProviderError, 0), (CallOutcome::Invalid, 0)]
    );
    assert_eq!(session.spend().models, Vec::<String>::new());
    assert_eq!(session.escalation(), None, "only the budget escalates");
}

#[tokio::test]
async fn the_stable_layers_are_byte_identical_across_calls_and_sessions() {
    let stub = StubProvider::start().await.unwrap();
    let models = models(&stub.url(), "");
    let first = models.session(scope(100_000, 100_000));
    let mut one = request("What is 2 + 2?", 8);
    one.knowledge = Some("Arithmetic is exact.".into());
    first.chat(one).await.unwrap();
    let mut two = request("Name a colour.", 8);
    two.messages.insert(
        0,
        ChatMessage {
            role: ChatRole::System,
            content: "Reply in one word.".into(),
        },
    );
    first.chat(two).await.unwrap();
    let again = models.session(scope(100_000, 100_000));
    again.chat(request("Another task.", 8)).await.unwrap();
    assert_eq!(first.context(), again.context());

    let prefix = first.context().stable_prefix();
    assert!(prefix.starts_with("Be good.\n\n# Rules of this agent\nAnswer briefly."));
    assert!(prefix.ends_with("- search: Search the web."));
    let encoded = serde_json::to_string(prefix).unwrap();
    let head = format!(
        r#"{{"model":"stub-1","messages":[{{"role":"system","content":{}"#,
        &encoded[..encoded.len() - 1]
    );
    let seen = stub.requests();
    assert_eq!(seen.len(), 3);
    for r in &seen {
        assert!(
            r.body.starts_with(head.as_bytes()),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let j = seen[1].json();
    assert_eq!(
        j["messages"][1]["role"], "system",
        "the guest's system message follows"
    );
    assert_eq!(j["messages"][2]["content"], "Name a colour.");
    assert_eq!(j["max_tokens"], 8);
    assert!(
        seen[0].json()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .ends_with("# Knowledge for this task\nArithmetic is exact.")
    );
}

/// With `WARDEN_MODEL_URL` (a llama.cpp server, e.g. `/tmp/ms.py`), real usage and a real
/// prefix cache; without it the test checks nothing and says so.
#[tokio::test]
async fn against_the_real_server() {
    let Ok(url) = std::env::var("WARDEN_MODEL_URL") else {
        eprintln!("WARDEN_MODEL_URL is not set: the real-server test is skipped");
        return;
    };
    let models = models(&url, "");
    let session = models.session(scope(100_000, 100_000));
    let mut rates = Vec::new();
    for i in 0..3 {
        let reply = session
            .chat(request(&format!("Say a number near {i}."), 8))
            .await
            .unwrap();
        let u = reply.usage;
        assert!(u.prompt_tokens > 20 && u.completion_tokens <= 8, "{u:?}");
        assert!(["stop", "length"].contains(&reply.finish_reason.as_str()));
        rates.push(u.cached_tokens as f64 / u.prompt_tokens as f64);
    }
    assert!(rates[1] > 0.5 && rates[2] > 0.5, "prefix cache: {rates:?}");
    let mut structured = request("Give a name and an age.", 64);
    structured.json_schema = Some(
        r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
            "required":["name","age"],"additionalProperties":false}"#
            .into(),
    );
    let reply = session.chat(structured).await.unwrap();
    eprintln!("structured: {} {:?}", reply.finish_reason, reply.text);
    if reply.finish_reason == "stop" {
        let v: serde_json::Value = serde_json::from_str(&reply.text).unwrap();
        assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
    }
    eprintln!("real server: {:?}, cache rates {rates:?}", session.spend());
}
