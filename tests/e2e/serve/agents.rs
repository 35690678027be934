//! The agents a user may use, over HTTP: a roles file whose development role lists only `hello`.
//! `GET /v1/agents` lists `hello` with its contract and what its policy lets it do, and not
//! `probe` (in the same agents directory); `GET /v1/agents/probe` is 404 like a missing agent;
//! `POST /v1/tasks` for `probe` is 403 `agent-not-granted`, allocates no task and leaves a
//! `task-refused` audit record; `hello` still runs.

use serde_json::{Value, json};
use warden_tests::{agent, root};

use super::{ended, error_code, get, launch, request, submit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_and_runs_only_the_agents_their_roles_list() {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(dir.join("probe.toml"), "[agent]\nname = \"probe\"\n").unwrap();
    let host = tempfile::tempdir().unwrap();
    let roles = host.path().join("roles.toml");
    std::fs::write(&roles, "[role.dev]\nagents = [\"hello\"]\n").unwrap();
    let config = host.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n",
            roles.display().to_string(),
            dir.display().to_string()
        ),
    )
    .unwrap();
    let s = tokio::task::spawn_blocking(move || launch(&config, agents))
        .await
        .unwrap();
    let token = s.token.clone();

    let (status, listed) = get(&s, "/v1/agents", Some(&token)).await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello"], "{listed}");
    let hello = &listed["agents"][0];
    assert_eq!(hello["writes"], false, "{hello}");
    assert_eq!(hello["network"], false, "{hello}");
    assert!(hello["input_schema"].is_object(), "{hello}");
    let (status, one) = get(&s, "/v1/agents/hello", Some(&token)).await;
    assert_eq!((status, &one), (200, hello));

    // Present in the directory, not listed for the user: as absent as a missing agent.
    let (status, v) = get(&s, "/v1/agents/probe", Some(&token)).await;
    assert_eq!((status, error_code(&v)), (404, "no-agent"), "{v}");
    let (status, v) = get(&s, "/v1/agents/ghost", Some(&token)).await;
    assert_eq!((status, error_code(&v)), (404, "no-agent"), "{v}");
    let (status, v) = get(&s, "/v1/agents", None).await;
    assert_eq!(status, 401, "{v}");

    // Refused before anything is stored.
    let (status, v) = request(
        &s.addr,
        "POST",
        "/v1/tasks",
        Some(&token),
        json!({"agent": "probe", "input": {"op": "echo", "text": "x"}})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!((status, error_code(&v)), (403, "agent-not-granted"), "{v}");
    let id = submit(&s, &token, &json!({"agent": "hello", "input": "ann"})).await;
    let done = ended(&s, &token, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(id, 1, "the refused task allocated no id");
    let log = std::fs::read_to_string(s.data.path().join("audit.log")).unwrap();
    assert!(
        log.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .any(|r| r["kind"] == "task-refused"
                && r["agent"] == "probe"
                && r["detail"]["why"] == "agent-not-granted"),
        "{log}"
    );
}
