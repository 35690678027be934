//! The server's workspace roots over real HTTP (`[server] workspaces`, deny by default): a
//! workspace outside every root — `/etc`, `/`, another folder of the host, a root's parent
//! through `..`, a link inside a root to outside it, a folder that does not exist — is `403
//! workspace-not-allowed`, says what to do without naming the roots, is audited `task-refused`
//! with why, and stores nothing (the next task accepted is the first); a folder inside a root,
//! and the root itself, are run.

use serde_json::{Value, json};

use super::{Server, agent, ended, error_code, launch, request, root, submit};

/// The audit log's `task-refused` records.
fn refusals(s: &Server) -> Vec<Value> {
    let log = std::fs::read_to_string(s.data.path().join("audit.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "task-refused")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_folder_of_the_workspace_roots_is_run() {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    let host = tempfile::tempdir().unwrap();
    let work = host.path().join("work");
    let other = host.path().join("other");
    for d in [work.join("bob"), other.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::symlink(&other, work.join("escape")).unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[agents]\ndir = {:?}\n[server]\nworkspaces = [{:?}]\n",
            dir.display().to_string(),
            work.display().to_string()
        ),
    )
    .unwrap();
    let s = launch(&config, agents);
    let secret = work.display().to_string();

    let outside = [
        "/etc".to_owned(),
        "/".to_owned(),
        other.display().to_string(),
        format!("{}/..", work.display()),
        format!("{}/bob/../../other", work.display()),
        work.join("escape").display().to_string(),
        host.path().join("nowhere").display().to_string(),
    ];
    for ws in &outside {
        let body = json!({"agent": "hello", "input": {"name": "x"}, "workspace": ws});
        let (status, v) = request(
            &s.addr,
            "POST",
            "/v1/tasks",
            Some(&s.token),
            body.to_string().into(),
        )
        .await;
        assert_eq!(
            (status, error_code(&v)),
            (403, "workspace-not-allowed"),
            "{ws}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("[server] workspaces"), "{v}");
        assert!(!message.contains(&secret), "the roots leak: {v}");
    }
    let refused = refusals(&s);
    assert_eq!(refused.len(), outside.len(), "{refused:?}");
    for (r, ws) in refused.iter().zip(&outside) {
        assert_eq!(r["detail"]["why"], "workspace-not-allowed", "{r}");
        assert_eq!(r["detail"]["workspace"], ws.as_str(), "{r}");
        assert_eq!(r["agent"], "hello", "{r}");
    }

    // Nothing was stored or run: the first task accepted is task 1, and it runs in the root.
    let inside = json!({"agent": "hello", "input": {"name": "bob"}, "workspace": work.join("bob")});
    let first = submit(&s, &s.token, &inside).await;
    assert_eq!(first, 1);
    let row = ended(&s, &s.token, first).await;
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(row["outcome"]["output"], "hello, bob", "{row}");
    let itself = json!({"agent": "hello", "input": {"name": "ann"}, "workspace": work});
    let second = submit(&s, &s.token, &itself).await;
    assert_eq!(ended(&s, &s.token, second).await["status"], "completed");
    // A folder inside the root that does not exist is the client's mistake, told as before.
    let missing = json!({"agent": "hello", "workspace": work.join("none")});
    let (status, v) = request(
        &s.addr,
        "POST",
        "/v1/tasks",
        Some(&s.token),
        missing.to_string().into(),
    )
    .await;
    assert_eq!((status, error_code(&v)), (400, "bad-workspace"), "{v}");
    assert_eq!(refusals(&s).len(), outside.len());
}
