//! The agents a user may use, over HTTP: a roles file whose development role lists only `hello`.
//! `GET /v1/agents` lists `hello` with its contract and what its policy lets it do, and not
//! `probe` (in the same agents directory); `GET /v1/agents/probe` is 404 like a missing agent;
//! `POST /v1/tasks` for `probe` is 403 `agent-not-granted`, allocates no task and leaves a
//! `task-refused` audit record; `hello` still runs. And an agent the server runs from its agents
//! directory calls another one there through the host (a child task for the same user). And a
//! starting server loads its directory's agents before any request names them, once: the first
//! call runs the agent loaded then (`ServerState::warm`).

use serde_json::{Value, json};
use warden_tests::{agent, root};

use super::{ended, error_code, get, launch, launch_dir, request, submit};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_the_server_runs_calls_another_through_the_host() {
    // `relay` (the probe) may call `hello`; both in the server's agents directory.
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("relay.wasm")).unwrap();
    std::fs::write(
        dir.join("relay.toml"),
        "[agent]\nname = \"relay\"\n[agents]\ncall = [\"hello\"]\n",
    )
    .unwrap();
    let s = tokio::task::spawn_blocking(move || launch_dir(agents))
        .await
        .unwrap();
    let token = s.token.clone();
    let id = submit(
        &s,
        &token,
        &json!({"agent": "relay", "input": {"op": "call", "name": "hello", "input": "\"ann\""}}),
    )
    .await;
    let done = ended(&s, &token, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["outcome"]["output"], r#"{"ok":"hello, ann"}"#,
        "the callee's answer reaches the caller: {done}"
    );
    // The hop is a child task of the submitted one, for the same user.
    let (status, child) = get(&s, &format!("/v1/tasks/{}", id + 1), Some(&token)).await;
    assert_eq!(status, 200, "{child}");
    assert_eq!(
        (&child["agent"], &child["parent"], &child["user"]),
        (&json!("hello"), &json!(id), &json!("dev")),
        "{child}"
    );
}

/// The agents directory of a server [`launch`]ed with one.
fn dir_of(s: &super::Server) -> &std::path::Path {
    s._agents.path()
}

/// The `agent-loaded` records of `agent` in the server's audit log.
fn loads_of(s: &super::Server, agent: &str) -> usize {
    let log = std::fs::read_to_string(s.data.path().join("audit.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "agent-loaded" && r["agent"] == agent)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_server_loads_its_agents_once_before_their_first_call() {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(dir.join("probe.toml"), "[agent]\nname = \"probe\"\n").unwrap();
    // Not an agent of this directory: its policy names another agent. Left for a call to refuse.
    std::fs::copy(agent("hello"), dir.join("stray.wasm")).unwrap();
    std::fs::write(dir.join("stray.toml"), "[agent]\nname = \"hello\"\n").unwrap();
    let s = tokio::task::spawn_blocking(move || launch_dir(agents))
        .await
        .unwrap();
    // No request yet: both agents are loaded (and audited as loaded) by the start itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while loads_of(&s, "hello") + loads_of(&s, "probe") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not load its agents at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let token = s.token.clone();
    let id = submit(&s, &token, &json!({"agent": "hello", "input": "ann"})).await;
    let done = ended(&s, &token, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(id, 1, "warming the agents ran no task");
    assert_eq!(
        (loads_of(&s, "hello"), loads_of(&s, "probe")),
        (1, 1),
        "the call ran the agent the start loaded"
    );
    // An agent added later is loaded by its first calls: two at once load it once (the second
    // waits for the first's load and runs what it kept).
    std::fs::copy(agent("hello"), dir_of(&s).join("again.wasm")).unwrap();
    std::fs::write(dir_of(&s).join("again.toml"), "[agent]\nname = \"again\"\n").unwrap();
    let again = json!({"agent": "again", "input": "bo"});
    let (a, b) = tokio::join!(submit(&s, &token, &again), submit(&s, &token, &again));
    for id in [a, b] {
        let done = ended(&s, &token, id).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    assert_eq!(loads_of(&s, "again"), 1, "two calls, one load");
    // The stray policy is still refused, by the call that names it.
    let (status, v) = request(
        &s.addr,
        "POST",
        "/v1/tasks",
        Some(&token),
        json!({"agent": "stray", "input": "x"}).to_string().into(),
    )
    .await;
    assert_eq!((status, error_code(&v)), (422, "agent-refused"), "{v}");
}
