//! The attacks of class `server`, by name (`host:server-<name>` in `attacks.toml`). Each runs
//! with `bob`'s victim task running, between two snapshots of the server's state (see
//! [`super::State`]), and answers the refusal it got (`<status> <code>`, several joined by
//! `, ` once each) or why it was not contained.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Reply, Served};

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
                s.data(),
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
        "api-oversized-body" => contained(s, None, async { Ok(vec![oversized(s, &alice)?]) }).await,
        "approval-unsigned" => approval_unsigned(s).await,
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
        "flood" => flood(s).await,
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
async fn contained(
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

/// A request declaring a 2 MiB body, of which it sends only the start (raw TCP: the server
/// answers from the declared length without reading on).
fn oversized(s: &Served, token: &str) -> Result<Reply, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&s.addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{{\"agent\": \"hello\", \"input\": \"xxxx",
        s.addr,
        2 * 1024 * 1024
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(Reply {
        status,
        headers: hyper::HeaderMap::new(),
        body: body.to_owned().into(),
    })
}

/// `bob`'s probe calls the irreversible `deploy` (held for approval); `rita`, who may approve
/// it, posts approvals with her token but no valid signature: none signed, one with a signature
/// of zeros, one signed by a key that is no one's. Each is refused, the action stays pending and
/// nothing is deployed.
async fn approval_unsigned(s: &Served) -> Result<String, String> {
    let bob = s.token("bob", &["worker"]);
    let rita = s.token("rita", &["release"]);
    let task = s
        .submit(
            &bob,
            &json!({"agent": "probe", "input": {"op": "tool", "name": "deploy", "input": "pwned"}}),
        )
        .await?;
    s.until(&bob, task, |st| !matches!(st, "queued" | "running"))
        .await?;
    let listing = s
        .api("GET", "/v1/approvals", Some(&rita), &Value::Null)
        .await?
        .json();
    let action = listing["approvals"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["task"] == task))
        .cloned()
        .ok_or_else(|| format!("no pending action for task {task}: {listing}"))?;
    let id = action["id"].as_u64().unwrap();
    let expires = action["expires_ms"].as_u64().unwrap();
    let hash = action["hash"].as_str().unwrap();
    let stranger = warden::identity::SecretKey::generate().unwrap();
    let to_sign = action["to_sign"].as_str().unwrap();
    let forged = stranger.sign(warden::policy::keys::Domain::Approval, to_sign.as_bytes());
    let base = json!({"action": id, "hash": hash, "approver": "rita", "expires_ms": expires});
    let mut unsigned = base.clone();
    unsigned["key"] = json!(forged.key);
    let mut zeros = unsigned.clone();
    zeros["signature"] = json!("00".repeat(64));
    let mut strangers = unsigned.clone();
    strangers["signature"] = json!(forged.signature);
    let path = format!("/v1/approvals/{id}");
    let refused = contained(s, Some("approval-refused"), async {
        Ok(vec![
            s.api("POST", &path, Some(&rita), &base).await?,
            s.api("POST", &path, Some(&rita), &unsigned).await?,
            s.api("POST", &path, Some(&rita), &zeros).await?,
            s.api("POST", &path, Some(&rita), &strangers).await?,
        ])
    })
    .await?;
    if s.deployed().exists() {
        return Err("the action was performed".into());
    }
    Ok(refused)
}

/// `mallory` fills her three places with waiting probes; her fourth task is `429 user-busy`
/// with `Retry-After`, stores nothing, and `bob` is not disturbed: his victim runs and his new
/// `hello` completes.
async fn flood(s: &Served) -> Result<String, String> {
    let mallory = s.token("mallory", &["worker"]);
    let url = format!("http://{}/", s.silent.local_addr().unwrap());
    let wait = json!({"agent": "probe", "input": {"op": "http", "url": url}});
    for _ in 0..3 {
        let id = s.submit(&mallory, &wait).await?;
        s.until(&mallory, id, |st| st == "running").await?;
    }
    let mut retry = None;
    let refused = contained(s, None, async {
        let mut out = Vec::new();
        for _ in 0..20 {
            let r = s.api("POST", "/v1/tasks", Some(&mallory), &wait).await?;
            retry = r.headers.get("retry-after").cloned();
            out.push(r);
        }
        Ok(out)
    })
    .await?;
    if retry.is_none() {
        return Err("the 429 carries no Retry-After".into());
    }
    let bob = s.token("bob", &["worker"]);
    let started = Instant::now();
    let id = s
        .submit(&bob, &json!({"agent": "hello", "input": "bob"}))
        .await?;
    let row = s
        .until(&bob, id, |st| !matches!(st, "queued" | "running"))
        .await?;
    if row["outcome"]["output"] != "hello, bob" {
        return Err(format!("bob's task after the flood: {row}"));
    }
    if started.elapsed() > Duration::from_secs(10) {
        return Err(format!(
            "bob waited {:?} behind the flood",
            started.elapsed()
        ));
    }
    Ok(refused)
}
