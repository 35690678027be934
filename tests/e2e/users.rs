//! End-to-end: an agent acting for a user gets the intersection of its policy and the user's
//! roles (the confused deputy cannot happen), for files, hosts, tools and limits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warden::policy::Roles;
use warden::user::User;
use warden::{KillReason, RunOptions};
use warden_tests::{completed, killed, load, probe};

const ROLES: &str = r#"
[role.docs-writer]
agents = ["*"]
fs.read = ["**"]
fs.write = ["docs/**"]
tools.allow = ["echo"]
limits = { cpu = "40 ms", wall = "5 s" }

[role.admin]
agents = ["*"]
fs.write = ["**"]
tools.allow = ["echo", "text.upper"]
"#;

fn user(roles: &[&str]) -> Arc<User> {
    let file = Roles::parse("roles.toml", ROLES).unwrap();
    Arc::new(
        User::new(
            "alice",
            roles.iter().map(|r| r.to_string()).collect(),
            &file,
        )
        .unwrap(),
    )
}

/// The agent may write anywhere in the workspace and call two tools.
const BROAD: &str = "[fs]\nwrite = [\"**\"]\n[tools]\nallow = [\"echo\", \"text.upper\"]\n";

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}").unwrap();
    dir
}

async fn run_as(user: Option<Arc<User>>, task: &str, ws: &std::path::Path) -> warden::RunReport {
    let agent = load("probe", BROAD).unwrap();
    let options = RunOptions {
        workspace: Some(ws.to_path_buf()),
        user,
        on_begin: None,
        queued: None,
        client: None,
    };
    agent.run(task, &options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_confused_deputy_writes_only_where_its_user_may() {
    let ws = workspace();
    let writer = user(&["docs-writer"]);
    let docs = probe(
        "write",
        &[("path", json!("/docs/guide.md")), ("text", json!("ok"))],
    );
    let r = run_as(Some(writer.clone()), &docs, ws.path()).await;
    completed(&r);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("docs/guide.md")).unwrap(),
        "ok"
    );

    let src = probe(
        "write",
        &[("path", json!("/src/main.rs")), ("text", json!("pwned"))],
    );
    let r = run_as(Some(writer), &src, ws.path()).await;
    let (_, detail) = killed(&r, KillReason::OutOfScope);
    assert!(detail.contains("not allowed to the user"), "{detail}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("src/main.rs")).unwrap(),
        "fn main() {}"
    );

    // The same agent acting for an admin may write there; acting for nobody, its own policy rules.
    let r = run_as(Some(user(&["admin"])), &src, ws.path()).await;
    completed(&r);
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_are_intersected_too() {
    let ws = workspace();
    let upper = probe(
        "tool",
        &[("name", json!("text.upper")), ("input", json!("x"))],
    );
    let r = run_as(Some(user(&["docs-writer"])), &upper, ws.path()).await;
    let (capability, detail) = killed(&r, KillReason::OutOfScope);
    assert_eq!(capability, "tools");
    assert!(detail.contains("not allowed to the user"), "{detail}");
    let r = run_as(Some(user(&["docs-writer", "admin"])), &upper, ws.path()).await;
    assert_eq!(completed(&r), "X");
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_are_intersected_too() {
    // The agent may reach the host; the user may not: killed before any connection.
    let agent = load("probe", "[net]\nallow = [\"127.0.0.1:9\"]\n").unwrap();
    let options = RunOptions {
        workspace: None,
        user: Some(user(&["docs-writer"])),
        on_begin: None,
        queued: None,
        client: None,
    };
    let r = agent
        .run(
            &probe("http", &[("url", json!("http://127.0.0.1:9/"))]),
            &options,
        )
        .await
        .unwrap();
    let (capability, detail) = killed(&r, KillReason::OutOfScope);
    assert_eq!(capability, "net");
    assert!(detail.contains("not allowed to the user"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_the_smaller_of_the_two() {
    let agent = load("probe", "[limits]\ncpu = \"5 s\"\nwall = \"10 s\"\n").unwrap();
    let options = RunOptions {
        workspace: None,
        user: Some(user(&["docs-writer"])),
        on_begin: None,
        queued: None,
        client: None,
    };
    let r = agent.run(&probe("spin", &[]), &options).await.unwrap();
    killed(&r, KillReason::CpuLimit);
    assert!(
        r.cpu < Duration::from_secs(1),
        "the user's 40 ms applied, not the agent's 5 s: {:?}",
        r.cpu
    );
}

#[test]
fn a_token_may_not_invent_a_role() {
    let file = Roles::parse("roles.toml", ROLES).unwrap();
    let err = User::new("mallory", vec!["root".into()], &file).unwrap_err();
    assert!(err.contains("root"), "{err}");
}
