use rmcp::model::{ElicitRequest, ElicitRequestParams, ElicitationAction};
use serde_json::json;

use super::*;

fn question() -> InputRequest {
    let schema = serde_json::from_value(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"]
    }))
    .unwrap();
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: "Your name?".into(),
            requested_schema: schema,
        },
    ))
}

/// A run of `pauses` that asks one question (key `user_name`), and the call's end of it.
async fn asking(pauses: &Pauses) -> (tokio::task::JoinHandle<Answered>, mpsc::Receiver<Ask>, Ask) {
    let (pauser, mut asks) = pauses.pauser();
    let run = tokio::spawn(async move { pauser.ask("user_name".into(), question()).await });
    let ask = asks.recv().await.unwrap();
    (run, asks, ask)
}

fn accepted(name: &str) -> InputResponses {
    [(
        "user_name".to_owned(),
        json!({"action": "accept", "content": {"name": name}}),
    )]
    .into()
}

#[tokio::test]
async fn a_paused_run_is_answered_through_its_state_only() {
    let pauses = Pauses::default();
    let (run, asks, ask) = asking(&pauses).await;
    let result = pauses.pause("alice", "echo", 7, None, ask, asks).unwrap();
    let wire = serde_json::to_value(&result).unwrap();
    assert_eq!(wire["resultType"], "input_required");
    assert_eq!(
        wire["inputRequests"]["user_name"]["method"],
        "elicitation/create"
    );
    let state = result.request_state.unwrap();

    // Tampered, another user's, another tool's: refused, and the run still waits.
    for (state, subject, tool) in [
        (format!("{state}-TAMPERED"), "alice", "echo"),
        (state.clone(), "bob", "echo"),
        (state.clone(), "alice", "other"),
    ] {
        let e = pauses.take(&state, subject, tool).unwrap_err();
        assert_eq!(
            e.code,
            rmcp::model::ErrorCode::INVALID_PARAMS,
            "{}",
            e.message
        );
    }
    assert!(!run.is_finished());

    let paused = pauses.take(&state, "alice", "echo").unwrap();
    assert_eq!(paused.task, 7);
    assert_eq!(paused.next().1, 1);
    // Taken once: the same state again names no pause.
    let again = pauses.take(&state, "alice", "echo").unwrap_err();
    assert!(
        again.message.contains("names no paused run"),
        "{}",
        again.message
    );

    let Paused { ask, .. } = paused;
    assert!(ask.answer_from(&mut accepted("Alice")).is_ok());
    let Ok(Reply::Elicited(reply)) = run.await.unwrap() else {
        panic!("an elicitation answer")
    };
    assert_eq!(reply.action, ElicitationAction::Accept);
    assert_eq!(reply.content.unwrap()["name"], "Alice");
}

#[tokio::test]
async fn the_next_round_has_a_new_state_and_the_old_one_is_refused() {
    let pauses = Pauses::default();
    let (_run, asks, ask) = asking(&pauses).await;
    let first = pauses.pause("u", "t", 1, None, ask, asks).unwrap();
    let first = first.request_state.unwrap();
    let paused = pauses.take(&first, "u", "t").unwrap();
    let continues = Some(paused.next());
    let Paused { ask, asks, .. } = paused;
    // The same question again stands in for the run's next one.
    let second = pauses.pause("u", "t", 1, continues, ask, asks).unwrap();
    let second = second.request_state.unwrap();
    assert_ne!(first, second);
    // The first round's state passes its tag but names a round the pause has left.
    let e = pauses.take(&first, "u", "t").unwrap_err();
    assert!(e.message.contains("names no paused run"), "{}", e.message);
    assert!(pauses.take(&second, "u", "t").is_ok());
}

#[tokio::test]
async fn a_missing_or_wrong_answer_leaves_the_run_waiting() {
    let pauses = Pauses::default();
    let (run, asks, ask) = asking(&pauses).await;
    let state = pauses
        .pause("u", "t", 1, None, ask, asks)
        .unwrap()
        .request_state
        .unwrap();
    let paused = pauses.take(&state, "u", "t").unwrap();
    let mut wrong: InputResponses = [("user_name".to_owned(), json!(12345))].into();
    let ask = match paused.ask.answer_from(&mut wrong) {
        Err(ask) => ask,
        Ok(()) => panic!("a number is no elicitation result"),
    };
    assert!(
        ask.reply_of(&json!(12345))
            .unwrap_err()
            .contains("not an elicitation result")
    );
    let mut other: InputResponses = [("other".to_owned(), json!({"action": "decline"}))].into();
    let ask = ask.answer_from(&mut other).unwrap_err();
    assert_eq!(other.len(), 1, "an answer to another key is not used up");
    assert!(!run.is_finished());
    // Answered: the answer is used up.
    let mut responses = accepted("A");
    responses.insert("extra".into(), json!({"action": "accept"}));
    assert!(ask.answer_from(&mut responses).is_ok());
    assert_eq!(responses.keys().collect::<Vec<_>>(), ["extra"]);
    assert!(run.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_question_waits_no_longer_than_the_pause_timeout() {
    let pauses = Pauses::with_timeout(Duration::from_millis(50));
    let (run, asks, ask) = asking(&pauses).await;
    let state = pauses
        .pause("u", "t", 1, None, ask, asks)
        .unwrap()
        .request_state
        .unwrap();
    let why = run.await.unwrap().unwrap_err();
    assert!(why.contains("pause timeout"), "{why}");
    // The pause is still found, its question abandoned: a late call learns the run's end.
    let paused = pauses.take(&state, "u", "t").unwrap();
    assert!(paused.ask.abandoned());
}

#[tokio::test]
async fn a_run_whose_call_is_gone_is_told_so() {
    let (pauser, asks) = Pauser::new(Duration::from_secs(5));
    drop(asks);
    let why = pauser.ask("k".into(), question()).await.unwrap_err();
    assert!(why.contains("has ended"), "{why}");
}

#[tokio::test]
async fn too_many_paused_runs_of_one_user_are_refused() {
    let pauses = Pauses::default();
    let mut runs = Vec::new();
    for _ in 0..MAX_PAUSED_PER_USER {
        let (run, asks, ask) = asking(&pauses).await;
        pauses.pause("greedy", "t", 1, None, ask, asks).unwrap();
        runs.push(run);
    }
    let (_run, asks, ask) = asking(&pauses).await;
    let (ask, asks) = pauses.pause("greedy", "t", 1, None, ask, asks).unwrap_err();
    // Another user still may.
    assert!(pauses.pause("other", "t", 2, None, ask, asks).is_ok());
    // A run that stopped waiting makes room.
    runs.pop().unwrap().abort();
    tokio::task::yield_now().await;
    let (_run, asks, ask) = asking(&pauses).await;
    assert!(pauses.pause("greedy", "t", 1, None, ask, asks).is_ok());
}

#[test]
fn a_question_is_named_by_the_agent_or_counted() {
    let (pauser, _asks) = Pauser::new(PAUSE_TIMEOUT);
    let mut schema = json!({"type": "object", INPUT_KEY: "user_name"})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(pauser.key("ask", Some(&mut schema)), "user_name");
    assert!(
        !schema.contains_key(INPUT_KEY),
        "the client never sees the keyword"
    );
    let mut bad = json!({INPUT_KEY: "no spaces"}).as_object().unwrap().clone();
    assert_eq!(pauser.key("ask", Some(&mut bad)), "ask-2");
    assert_eq!(pauser.key("sample", None), "sample-3");
    assert!(!valid_key(&"k".repeat(MAX_KEY + 1)));
    assert!(valid_key("step.1_a-b"));
}
