//! An agent asks the person behind the calling MCP client (`warden:agent/human`, elicitation),
//! through the Python SDK's elicitation callback over streamable HTTP: on a 2025-11-25 session
//! the question is `elicitation/create` and accept / decline / cancel reach the agent as typed
//! answers; on 2026-07-28 the run pauses and the call answers an input-required result, which
//! the SDK fulfils with the same callback and calls again with (`mcp/mrtr.rs`); a client that
//! did not declare `elicitation` leaves the agent `unavailable` with the reason, unasked. Each
//! question is audited with its outcome and field names, never the text. A strict policy
//! without `[human] ask` refuses the component at load; the CLI has no one to ask.

use serde_json::json;
use warden_tests::root;

use super::sampling::{host, over_http, warden_args};
use super::warden;

#[test]
fn over_http_the_agent_asks_the_clients_person() {
    let (reports, audit) = over_http(
        "elicit",
        &["test_elicitation"],
        &[
            &["legacy", "--answer", "accept"],
            &["legacy", "--answer", "decline"],
            &["legacy", "--answer", "cancel"],
            &["legacy", "--answer", "none"],
            &["auto", "--answer", "accept"],
            &["auto", "--answer", "decline"],
        ],
    );
    let text = |i: usize| {
        reports[i]["call"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(reports[0]["call"]["isError"], false, "{}", reports[0]);
    assert_eq!(
        text(0),
        r#"User response: <action: accept, content: {"email":"ada@example.com","username":"ada"}>"#
    );
    let asked = &reports[0]["asked"][0];
    assert_eq!(asked["message"], "Who are you?", "{asked}");
    assert_eq!(
        asked["requestedSchema"]["required"],
        json!(["username", "email"])
    );
    assert_eq!(text(1), "User response: <action: decline>");
    assert_eq!(text(2), "User response: <action: cancel>");
    assert_eq!(reports[3]["call"]["isError"], true, "{}", reports[3]);
    assert!(
        text(3).contains("Unavailable") && text(3).contains("did not declare the `elicitation`"),
        "{}",
        text(3)
    );
    assert_eq!(reports[3]["asked"], json!([]), "the client is never asked");
    // 2026-07-28: the same question through an input-required result, the same answers.
    for i in [4, 5] {
        assert_eq!(reports[i]["protocol"], "2026-07-28", "{}", reports[i]);
        assert_eq!(reports[i]["call"]["isError"], false, "{}", reports[i]);
        assert_eq!(
            reports[i]["asked"][0]["message"], "Who are you?",
            "{}",
            reports[i]
        );
    }
    assert_eq!(text(4), text(0));
    assert_eq!(text(5), "User response: <action: decline>");

    let asks: Vec<&serde_json::Value> = audit.iter().filter(|r| r["kind"] == "human-ask").collect();
    let outcomes: Vec<&str> = asks
        .iter()
        .map(|r| r["detail"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "accepted",
            "declined",
            "cancelled",
            "unavailable",
            "accepted",
            "declined"
        ]
    );
    for r in &asks {
        assert_eq!(r["agent"], "test_elicitation");
        assert_eq!(r["detail"]["fields"], json!(["email", "username"]));
        let shown = r.to_string();
        assert!(
            !shown.contains("Who are you") && !shown.contains("ada@"),
            "{shown}"
        );
    }
}

#[test]
fn a_strict_policy_without_the_grant_refuses_it_and_the_cli_has_no_one_to_ask() {
    let (dir, data) = host(&["test_elicitation"]);
    let wasm = dir.path().join("test_elicitation.wasm");
    let run = |policy: &std::path::Path| {
        std::process::Command::new(warden())
            .env_remove("WARDEN_CONFIG")
            .env_remove("WARDEN_DATA_DIR")
            .args(warden_args(
                dir.path(),
                data.path(),
                &[
                    "run",
                    &wasm.display().to_string(),
                    "--policy",
                    &policy.display().to_string(),
                    "--input",
                    r#"{"message": "Who are you?"}"#,
                ],
            ))
            .current_dir(root())
            .output()
            .unwrap()
    };
    let bare = dir.path().join("bare.toml");
    std::fs::write(
        &bare,
        "[agent]\nname = \"test_elicitation\"\nstrict = true\n",
    )
    .unwrap();
    let refused = run(&bare);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("refused to load") && err.contains("human.ask"),
        "{err}"
    );
    let granted = run(&dir.path().join("test_elicitation.toml"));
    let err = String::from_utf8_lossy(&granted.stderr);
    assert!(
        err.contains("Unavailable") && err.contains("did not come from an MCP client"),
        "{err}"
    );
}

#[test]
fn over_stdio_the_agent_asks_the_clients_person() {
    let (dir, data) = host(&["test_elicitation"]);
    let workspace = tempfile::tempdir().unwrap();
    let ask = |answer: &str| {
        let mut args = vec![
            "elicit".to_string(),
            "--mode".into(),
            "legacy".into(),
            "--answer".into(),
            answer.into(),
            "--".into(),
            warden(),
        ];
        args.extend(warden_args(
            dir.path(),
            data.path(),
            &[
                "mcp",
                "--workspace",
                &workspace.path().display().to_string(),
            ],
        ));
        super::client(&args)
    };
    let accepted = ask("accept");
    assert_eq!(accepted["protocol"], "2025-11-25", "{accepted}");
    assert_eq!(
        accepted["call"]["text"],
        r#"User response: <action: accept, content: {"email":"ada@example.com","username":"ada"}>"#
    );
    let declined = ask("decline");
    assert_eq!(declined["call"]["text"], "User response: <action: decline>");
}
