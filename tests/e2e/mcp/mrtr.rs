//! Multi-round tool calls on MCP 2026-07-28 (SEP-2322, `crates/warden/src/mcp/mrtr.rs`) in plain
//! JSON-RPC over HTTP against the real `warden serve`, with the conformance fixtures: a run that
//! asks its person pauses and the call answers an `InputRequiredResult`; two questions are two
//! rounds with two states; a changed state, another user's state and an earlier round's state
//! are refused (-32602) and the run still waits for the right one; a missing answer asks again;
//! an answer of the wrong kind is refused and the run still waits; the client's model (sampling)
//! is asked the same way, and a client that declared only `sampling` is never sent a question
//! for its person; a run paused past its wall-clock limit is killed and recorded, and a late
//! answer gets the task's end. Every question leaves its `human-ask` record, never its text.

use serde_json::{Value, json};

use super::fixtures::call;
use super::sampling::{audit, host};

const FIXTURES: [&str; 4] = [
    "test_input_required_result_elicitation",
    "test_input_required_result_multi_round",
    "test_input_required_result_capabilities",
    "test_input_required_result_tampered_state",
];

/// `tools/call` of `tool` on 2026-07-28 by a client declaring `capabilities`, with `extra`
/// (`inputResponses`, `requestState`) merged in.
fn tool_call(tool: &str, capabilities: Value, extra: Value) -> Value {
    let mut params = json!({
        "name": tool,
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    params
}

fn both() -> Value {
    json!({"elicitation": {}, "sampling": {}})
}

/// The last message of an answer (its result or error).
fn last(messages: Vec<Value>) -> Value {
    messages.into_iter().last().expect("an answer")
}

fn accept(content: Value) -> Value {
    json!({"action": "accept", "content": content})
}

/// The one input request of an input-required result: its key, the request and the state.
fn asked(answer: &Value) -> (String, Value, String) {
    let result = &answer["result"];
    assert_eq!(result["resultType"], "input_required", "{answer}");
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1, "{answer}");
    let (key, request) = requests.iter().next().unwrap();
    let state = result["requestState"].as_str().unwrap().to_owned();
    (key.clone(), request.clone(), state)
}

fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_is_answered_over_rounds_and_only_through_its_own_state() {
    let (dir, data) = host(&FIXTURES);
    // A short wall-clock limit for the fixture whose run is left paused until it is killed.
    let short = dir
        .path()
        .join("test_input_required_result_tampered_state.toml");
    let policy = std::fs::read_to_string(&short).unwrap();
    std::fs::write(&short, policy.replace("wall = \"5 s\"", "wall = \"1 s\"")).unwrap();
    let config = dir.path().join("warden.toml");
    let (mut child, addr, token) = warden_tests::served::start(
        warden_tests::served::command(&config, data.path()),
        &data.path().join("stderr"),
    );
    let eve = warden_tests::served::dev_token(
        data.path(),
        "eve",
        &["dev"],
        std::time::Duration::from_secs(600),
    );
    let mut id = 0;
    let mut rpc = async |token: &str, tool: &str, caps: Value, extra: Value| {
        id += 1;
        let params = tool_call(tool, caps, extra);
        last(call(&addr, token, id, "tools/call", params).await)
    };

    // Round 1 of 2: the first question, with the agent's own key.
    let multi = "test_input_required_result_multi_round";
    let first = rpc(&token, multi, both(), json!({})).await;
    let (key, request, state1) = asked(&first);
    assert_eq!(key, "step1");
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["message"], "Step 1: What is your name?");
    let schema = &request["params"]["requestedSchema"];
    assert_eq!(schema["required"], json!(["name"]), "{first}");
    assert!(schema.get("x-warden-input-key").is_none(), "{first}");

    // A changed state, another user's state: refused, and the run still waits.
    let answer1 = json!({"step1": accept(json!({"name": "Ada"}))});
    let tampered = format!("{state1}-TAMPERED");
    let refused = rpc(
        &token,
        multi,
        both(),
        json!({"inputResponses": answer1, "requestState": tampered}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let stolen = rpc(
        &eve,
        multi,
        both(),
        json!({"inputResponses": answer1, "requestState": state1}),
    )
    .await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");
    assert!(
        stolen["error"]["message"]
            .as_str()
            .unwrap()
            .contains("integrity check"),
        "{stolen}"
    );

    // A missing answer asks the same question again; a wrong kind of answer is refused.
    let again = rpc(&token, multi, both(), json!({"requestState": state1})).await;
    assert_eq!(asked(&again).0, "step1", "{again}");
    let wrong = rpc(
        &token,
        multi,
        both(),
        json!({"inputResponses": {"step1": 12345}, "requestState": state1}),
    )
    .await;
    assert_eq!(wrong["error"]["code"], -32602, "{wrong}");

    // Answered: round 2, a new state; the first one is spent.
    let second = rpc(
        &token,
        multi,
        both(),
        json!({"inputResponses": answer1, "requestState": state1}),
    )
    .await;
    let (key, _, state2) = asked(&second);
    assert_eq!(key, "step2");
    assert_ne!(state1, state2);
    let replay = rpc(
        &token,
        multi,
        both(),
        json!({"inputResponses": answer1, "requestState": state1}),
    )
    .await;
    assert_eq!(replay["error"]["code"], -32602, "{replay}");
    let done = rpc(
        &token,
        multi,
        both(),
        json!({"inputResponses": {"step2": accept(json!({"color": "teal"}))}, "requestState": state2}),
    )
    .await;
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(text(&done), "Hello, Ada! Your favorite color is teal.");
    let task = done["result"]["structuredContent"]["task"]
        .as_u64()
        .unwrap();

    // Answers given with the first call answer the questions they name: no pause at all.
    let up_front = rpc(
        &token,
        "test_input_required_result_elicitation",
        both(),
        json!({"inputResponses": {"user_name": accept(json!({"name": "Bo"})), "other": {}}}),
    )
    .await;
    assert_eq!(text(&up_front), "Hello, Bo!", "{up_front}");

    // Sampling: a client that declared only `sampling` is asked no question for its person;
    // the model's answer reaches the agent.
    let caps = "test_input_required_result_capabilities";
    let sampling = json!({"sampling": {}});
    let paused = rpc(&token, caps, sampling.clone(), json!({})).await;
    let (key, request, state) = asked(&paused);
    assert_eq!(request["method"], "sampling/createMessage", "{paused}");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "Generate a greeting"
    );
    assert_eq!(request["params"]["maxTokens"], 50);
    let reply = json!({"role": "assistant", "content": {"type": "text", "text": "Hi there"}, "model": "m", "stopReason": "endTurn"});
    let sampled = rpc(
        &token,
        caps,
        sampling,
        json!({"inputResponses": {key: reply}, "requestState": state}),
    )
    .await;
    assert_eq!(text(&sampled), "Hi there (name: (none))", "{sampled}");

    // A run left paused past its 1 s wall-clock limit is killed and recorded; a late answer
    // gets the task's end.
    let short = "test_input_required_result_tampered_state";
    let left = rpc(&token, short, both(), json!({})).await;
    let (key, _, state) = asked(&left);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = rpc(
        &token,
        short,
        both(),
        json!({"inputResponses": {key: accept(json!({"ok": true}))}, "requestState": state}),
    )
    .await;
    assert_eq!(late["result"]["isError"], true, "{late}");
    assert!(text(&late).contains("killed"), "{late}");

    let _ = child.kill();
    let _ = child.wait();

    let records = audit(data.path());
    let asks: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "human-ask")
        .collect();
    let of_multi: Vec<&str> = asks
        .iter()
        .filter(|r| r["task"] == task)
        .map(|r| r["detail"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(of_multi, ["accepted", "accepted"], "{asks:#?}");
    let shown = serde_json::to_string(&asks).unwrap();
    for secret in ["Ada", "teal", "Step 1"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The client without `elicitation` was not asked: its agent's question is `unavailable`.
    assert!(
        asks.iter()
            .any(|r| r["agent"] == caps && r["detail"]["outcome"] == "unavailable"),
        "{asks:#?}"
    );
    let killed = records
        .iter()
        .any(|r| r["agent"] == short && r.to_string().contains("wall-limit"));
    assert!(killed, "the paused run's kill is recorded: {records:#?}");
}
