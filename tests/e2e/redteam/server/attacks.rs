//! The attacks of class `server`, by name (`host:server-<name>` in `attacks.toml`). Each runs
//! with `bob`'s victim task running, between two snapshots of the server's state (see
//! [`super::State`]), and answers the refusal it got (`<status> <code>`, several joined by
//! `, ` once each) or why it was not contained.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Reply, Served, staged};

/// The outcome of attack `name` on `s`.
pub async fn run(name: &str, s: &Served) -> Result<String, String> {
    let victim = s.victim().await?;
    let alice = s.token("alice", &["narrow"]);
    let hello = json!({"agent": "hello", "input": "x"});
    let refused = match name {
        "no-token-api" => {
            let v = format!("/v1/tasks/{victim}");
            contained(s, None, async {
                Ok(vec![
                    s.api("POST", "/v1/tasks", None, &hello).await?,
                    s.api("GET", &v, None, &Value::Null).await?,
                    s.api("DELETE", &v, None, &Value::Null).await?,
                ])
            })
            .await
        }
        "no-token-mcp" => {
            contained(s, None, async {
                Ok(vec![s.mcp(None, &[], "tools/call", call("hello")).await?])
            })
            .await
        }
        "no-token-a2a" => {
            contained(s, None, async {
                Ok(vec![s.a2a(None, "SendMessage", message("hello")).await?])
            })
            .await
        }
        "forged-token" => {
            let other = tempfile::tempdir().unwrap();
            let forged = warden::serve::DevIssuer::open(other.path())
                .unwrap()
                .token(Duration::from_secs(600))
                .unwrap();
            contained(s, None, async {
                Ok(vec![
                    s.api("POST", "/v1/tasks", Some(&forged), &hello).await?,
                    s.mcp(Some(&forged), &[], "tools/call", call("hello"))
                        .await?,
                    s.a2a(Some(&forged), "SendMessage", message("hello"))
                        .await?,
                ])
            })
            .await
            .map(|r| r.replace("401 -", "401 unauthorized"))
        }
        "expired-token" => {
            let expired = warden_tests::served::dev_token(
                &s.data(),
                "alice",
                &["narrow"],
                Duration::from_secs(1),
            );
            tokio::time::sleep(Duration::from_millis(2100)).await;
            contained(s, None, async {
                let r = s.api("POST", "/v1/tasks", Some(&expired), &hello).await?;
                says(&r, "expired")?;
                Ok(vec![r])
            })
            .await
        }
        "mcp-other-audience" => {
            let key =
                warden::identity::SecretKey::read(&s.data().join("serve/dev-issuer.key")).unwrap();
            let token = warden::token::issue(
                &key,
                warden::serve::DevIssuer::NAME,
                "alice",
                &["narrow".to_owned()],
                "elsewhere",
                Duration::from_secs(600),
            )
            .unwrap();
            contained(s, None, async {
                let r = s
                    .mcp(Some(&token), &[], "tools/call", call("hello"))
                    .await?;
                says(&r, "audience")?;
                Ok(vec![r])
            })
            .await
        }
        "api-workspace-own-folder" => {
            // The root holds the data directory (named by `--data-dir`): inside the root, the
            // own-folder guard answers; the agents folder lies outside it.
            let data = s.data();
            let agents = s.agents().to_path_buf();
            let through = s.workspace_root().join("work/../data");
            contained(s, Some("task-refused"), async {
                let mut out = Vec::new();
                for dir in [
                    data.clone(),
                    data.join("serve"),
                    agents.clone(),
                    through,
                    data.parent().unwrap().to_path_buf(),
                    PathBuf::from("/"),
                ] {
                    let body = json!({"agent": "hello", "input": "x", "workspace": dir});
                    out.push(s.api("POST", "/v1/tasks", Some(&alice), &body).await?);
                }
                Ok(out)
            })
            .await
        }
        "api-workspace-outside-roots" => {
            let root = s.workspace_root();
            std::os::unix::fs::symlink("/etc", root.join("work/etc")).unwrap();
            std::os::unix::fs::symlink(s.agents(), root.join("work/agents")).unwrap();
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            contained(s, Some("task-refused"), async {
                let mut out = Vec::new();
                for dir in [
                    PathBuf::from("/etc"),
                    PathBuf::from("/"),
                    home,
                    root.join("work/../.."),
                    root.join("work/etc"),
                    root.join("work/agents"),
                    root.join("../nowhere"),
                ] {
                    let body = json!({"agent": "hello", "input": "x", "workspace": dir});
                    out.push(s.api("POST", "/v1/tasks", Some(&alice), &body).await?);
                }
                // The same over A2A (`metadata.workspace`): the API's code in the error's data.
                for dir in [PathBuf::from("/etc"), root.join("work/etc")] {
                    let mut m = message("hello");
                    m["message"]["metadata"]["workspace"] = json!(dir);
                    let r = s.a2a(Some(&alice), "SendMessage", m).await?;
                    says(&r, "workspace-not-allowed")?;
                    out.push(r);
                }
                Ok(out)
            })
            .await
        }
        "api-path-agent" => {
            contained(s, None, async {
                let mut out = Vec::new();
                for name in [
                    "../hello",
                    "hello/../../x",
                    "/etc/passwd",
                    "hello.wasm",
                    "..",
                ] {
                    let body = json!({"agent": name, "input": "x"});
                    out.push(s.api("POST", "/v1/tasks", Some(&alice), &body).await?);
                }
                Ok(out)
            })
            .await
        }
        "mcp-path-tool" => {
            contained(s, None, async {
                let mut out = Vec::new();
                for name in &paths() {
                    out.push(s.mcp(Some(&alice), &[], "tools/call", call(name)).await?);
                }
                Ok(out)
            })
            .await
        }
        "a2a-path-skill" => {
            contained(s, None, async {
                let mut out = Vec::new();
                for name in &paths() {
                    out.push(s.a2a(Some(&alice), "SendMessage", message(name)).await?);
                }
                Ok(out)
            })
            .await
        }
        "api-ungranted-agent" => {
            let probe = json!({"agent": "probe", "input": {"op": "echo", "text": "x"}});
            contained(s, Some("task-refused"), async {
                Ok(vec![
                    s.api("POST", "/v1/tasks", Some(&alice), &probe).await?,
                ])
            })
            .await
        }
        "mcp-ungranted-tool" => {
            contained(s, Some("task-refused"), async {
                Ok(vec![
                    s.mcp(Some(&alice), &[], "tools/call", call("probe"))
                        .await?,
                ])
            })
            .await
        }
        "a2a-ungranted-skill" => {
            let own = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                "params": message("probe")});
            contained(s, Some("task-refused"), async {
                Ok(vec![
                    s.a2a(Some(&alice), "SendMessage", message("probe")).await?,
                    // The agent's own endpoint: the same refusal.
                    s.send(
                        "POST",
                        "/a2a/probe",
                        Some(&alice),
                        &[("a2a-version", "1.0")],
                        own.to_string(),
                    )
                    .await?,
                ])
            })
            .await
        }
        "unknown-role" => {
            let admin = s.token("alice", &["narrow", "admin"]);
            contained(s, None, async {
                Ok(vec![
                    s.api("POST", "/v1/tasks", Some(&admin), &hello).await?,
                    s.api("GET", "/v1/audit", Some(&admin), &Value::Null)
                        .await?,
                    s.mcp(Some(&admin), &[], "tools/call", call("hello"))
                        .await?,
                    s.a2a(Some(&admin), "SendMessage", message("hello")).await?,
                ])
            })
            .await
        }
        "api-read-others-task" => {
            let routes = ["", "/trace", "/events"].map(|r| ("GET", r));
            others_task(s, victim, &alice, &routes).await
        }
        "api-cancel-others-task" => {
            let routes = [("DELETE", ""), ("POST", "/resume"), ("POST", "/stop")];
            others_task(s, victim, &alice, &routes).await
        }
        "mcp-others-task" => {
            let ask = |id: u64| {
                let alice = alice.clone();
                async move {
                    let id = json!({"taskId": id.to_string()});
                    Ok(vec![
                        s.mcp(Some(&alice), &[], "tasks/get", id.clone()).await?,
                        s.mcp(Some(&alice), &[], "tasks/cancel", id).await?,
                    ])
                }
            };
            same_as_missing(s, victim, ask).await
        }
        "a2a-others-task" => {
            let ask = |id: u64| {
                let alice = alice.clone();
                async move {
                    let id = json!({"id": id.to_string()});
                    Ok(vec![
                        s.a2a(Some(&alice), "GetTask", id.clone()).await?,
                        s.a2a(Some(&alice), "CancelTask", id.clone()).await?,
                        s.a2a(Some(&alice), "SubscribeToTask", id).await?,
                    ])
                }
            };
            same_as_missing(s, victim, ask).await
        }
        "mcp-rebinding-host" => {
            contained(s, None, async {
                Ok(vec![
                    s.mcp(
                        Some(&alice),
                        &[("host", "evil.example.com")],
                        "tools/call",
                        call("hello"),
                    )
                    .await?,
                    s.mcp(
                        Some(&alice),
                        &[("host", "localhost.evil.example.com")],
                        "tools/call",
                        call("hello"),
                    )
                    .await?,
                ])
            })
            .await
        }
        "mcp-foreign-origin" => {
            contained(s, None, async {
                let mut out = Vec::new();
                for origin in [
                    "http://evil.example.com",
                    "null",
                    "http://localhost.evil.example.com",
                ] {
                    out.push(
                        s.mcp(
                            Some(&alice),
                            &[("origin", origin)],
                            "tools/call",
                            call("hello"),
                        )
                        .await?,
                    );
                }
                Ok(out)
            })
            .await
        }
        "api-not-json" => {
            contained(s, None, async {
                let mut out = Vec::new();
                for body in [
                    &b"{\"agent\": "[..],
                    b"agent=hello",
                    b"\xff\xfe{}",
                    b"[\"hello\"]",
                ] {
                    out.push(
                        s.send("POST", "/v1/tasks", Some(&alice), &[], body.to_vec())
                            .await?,
                    );
                }
                Ok(out)
            })
            .await
        }
        "api-oversized-body" => {
            contained(s, None, async { Ok(vec![staged::oversized(s, &alice)?]) }).await
        }
        "approval-unsigned" => staged::approval_unsigned(s).await,
        "non-reviewer-routes" => {
            let report = json!({"task": victim, "why": "it broke the build"});
            contained(s, None, async {
                Ok(vec![
                    s.api("GET", "/v1/audit/verify", Some(&alice), &Value::Null)
                        .await?,
                    s.api("GET", "/v1/audit", Some(&alice), &Value::Null)
                        .await?,
                    s.api("POST", "/v1/trust/probe/report", Some(&alice), &report)
                        .await?,
                    s.api("GET", "/v1/trust/probe/review", Some(&alice), &Value::Null)
                        .await?,
                    s.api(
                        "POST",
                        "/v1/trust/probe/reinstate",
                        Some(&alice),
                        &json!({}),
                    )
                    .await?,
                ])
            })
            .await
        }
        "flood" => staged::flood(s).await,
        other => panic!("no server attack named `{other}` (tests/e2e/redteam/server/attacks.rs)"),
    }?;
    // Whatever the attack, the victim still runs.
    let bob = s.token("bob", &["worker"]);
    let row = s.row(&bob, victim).await?;
    if row["status"] != "running" {
        return Err(format!("the victim task is {}", row["status"]));
    }
    Ok(format!("contained:refused {refused}"))
}

/// Agent names that are paths or not names at all (the last, 100 KB of name characters).
fn paths() -> [String; 6] {
    [
        "../hello",
        "hello/../../x",
        "/etc/passwd",
        "hello.wasm",
        "..",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([format!("hello-{}", "a".repeat(100_000))])
    .collect::<Vec<_>>()
    .try_into()
    .unwrap()
}

/// `tools/call` of `name` with an input.
fn call(name: &str) -> Value {
    json!({"name": name, "arguments": {"input": "x"}})
}

/// An A2A message for the skill `skill`.
fn message(skill: &str) -> Value {
    json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}],
        "metadata": {"skill": skill}}})
}

/// The answer's text says `what`.
fn says(r: &Reply, what: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(&r.body);
    if text.contains(what) {
        Ok(())
    } else {
        Err(format!("the refusal does not say `{what}`: {text}"))
    }
}

/// Whether a reply is a refusal: an HTTP error, or a JSON-RPC error (and no result).
fn is_refusal(r: &Reply) -> bool {
    let v = r.json();
    r.status >= 400 || (v.get("error").is_some() && v.get("result").is_none())
}

/// Run `attack` between two snapshots: every reply a refusal, nothing changed beyond audit
/// records of kind `audited`; the refusals, once each.
pub(super) async fn contained(
    s: &Served,
    audited: Option<&str>,
    attack: impl Future<Output = Result<Vec<Reply>, String>>,
) -> Result<String, String> {
    let before = s.state();
    let replies = attack.await?;
    // A refusal that is audited is audited before it is answered; what comes after is damage.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = s.state();
    if let Some(r) = replies.iter().find(|r| !is_refusal(r)) {
        return Err(format!(
            "accepted: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    if let Some(why) = before.changed(&after, audited) {
        return Err(why);
    }
    let mut seen: Vec<String> = Vec::new();
    for r in &replies {
        let refusal = r.refusal();
        if !seen.contains(&refusal) {
            seen.push(refusal);
        }
    }
    Ok(seen.join(", "))
}

/// Digit runs masked, so two answers that differ only in an id compare equal.
fn masked(r: &Reply) -> String {
    let text = String::from_utf8_lossy(&r.body);
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('N') {
            out.push('N');
        }
    }
    format!("{} {out}", r.status)
}

/// `ask` about the victim is refused, changes nothing, and is answered exactly as the same
/// requests about a task that does not exist (ids aside): the task's existence does not leak.
async fn same_as_missing<F, Fut>(s: &Served, victim: u64, ask: F) -> Result<String, String>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Vec<Reply>, String>>,
{
    let missing = ask(999_999).await?;
    let mut theirs = Vec::new();
    let refused = contained(s, None, async {
        let replies = ask(victim).await?;
        theirs = replies.iter().map(masked).collect();
        Ok(replies)
    })
    .await?;
    let ours: Vec<String> = missing.iter().map(masked).collect();
    if ours != theirs {
        return Err(format!(
            "another user's task is answered otherwise than a missing one: {theirs:?} vs {ours:?}"
        ));
    }
    Ok(refused)
}

/// The API `routes` (method, suffix of `/v1/tasks/{id}`) on the victim, by `token`.
async fn others_task(
    s: &Served,
    victim: u64,
    token: &str,
    routes: &[(&str, &str)],
) -> Result<String, String> {
    let ask = |id: u64| async move {
        let mut out = Vec::new();
        for (method, suffix) in routes {
            let path = format!("/v1/tasks/{id}{suffix}");
            out.push(s.api(method, &path, Some(token), &json!({})).await?);
        }
        Ok(out)
    };
    same_as_missing(s, victim, ask).await
}
