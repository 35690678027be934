//! The server's durable queue over HTTP (`[server]` bounds, fair order, cancel, restart), on the
//! real binary: a host with one worker and a probe that spins until its CPU limit.
//!
//! - Bounds: with `max_queued = 3, per_user_queued = 2`, the development user's third task is
//!   `429 user-busy` and a third user's is `429 queue-full`, each with `Retry-After`; a refusal
//!   stores nothing (the ids stay consecutive), and each is counted in `/metrics` by its code
//!   (`warden_http_too_many_requests_total`). A task acknowledged while the worker is busy
//!   shows `queued` (and is counted by the `warden_tasks_queued` gauge), then runs with the
//!   same id.
//! - Fairness: behind a spinning task, dev's three tasks and then alice's one: alice's starts
//!   second, not last (the order of the `task-started` records).
//! - Cancel (`DELETE /v1/tasks/{id}`): a queued task ends `cancelled` and never starts; a
//!   spinning one ends `cancelled` at once, long before its CPU limit, with who cancelled it;
//!   another user cannot cancel (404).
//! - Restart: queued tasks survive a SIGTERM (no queued task starts during the shutdown) and
//!   complete after the next start on the same data directory; a task of a user whose role the
//!   roles file no longer defines ends `refused` and never runs; `warden audit verify` passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_tests::served::dev_token;
use warden_tests::{agent, root, warden_with_data};

use super::error_code;

/// A `warden serve` on a data directory the test keeps (so it can be restarted on it),
/// SIGKILLed if the test ends first.
pub(super) struct Host {
    pub child: Child,
    pub addr: String,
    pub token: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `warden serve` with `config` on `data` (its stderr appended to `data/stderr`).
pub(super) fn serve_on(config: &Path, data: &Path) -> Host {
    let (child, addr, token) = warden_tests::served::start(
        warden_tests::served::command(config, data),
        &data.join("stderr"),
    );
    Host { child, addr, token }
}

/// An agents directory with `hello` and `probe` (no grants; its limits `limits`) and a host
/// configuration naming it with `extra` appended.
pub(super) fn host_config(limits: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(
        dir.join("probe.toml"),
        format!("[agent]\nname = \"probe\"\n[limits]\n{limits}"),
    )
    .unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!("[agents]\ndir = {:?}\n{extra}", dir.display().to_string()),
    )
    .unwrap();
    (agents, config)
}

/// One request on a fresh connection: status, `Retry-After`, JSON body.
pub(super) async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Option<String>, Value) {
    try_call(addr, method, path, token, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`call`], or why the connection failed (the server was killed).
pub(super) async fn try_call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Option<String>, Value), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(
            body.map(Value::to_string).unwrap_or_default(),
        )))
        .unwrap();
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    Ok((status, retry, value))
}

/// Submit `body`, expecting `202`; the task id.
pub(super) async fn accepted(addr: &str, token: &str, body: &Value) -> u64 {
    let (status, _, v) = call(addr, "POST", "/v1/tasks", token, Some(body)).await;
    assert_eq!(status, 202, "{v}");
    v["task"]
        .as_u64()
        .unwrap_or_else(|| panic!("no task id: {v}"))
}

/// The task's row.
pub(super) async fn row(addr: &str, token: &str, id: u64) -> Value {
    let (status, _, v) = call(addr, "GET", &format!("/v1/tasks/{id}"), token, None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The task's row once its status is no longer one of `waiting`, within `within`.
pub(super) async fn settled(addr: &str, token: &str, id: u64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = row(addr, token, id).await;
        if !matches!(v["status"].as_str(), Some("queued" | "running")) {
            return v;
        }
        assert!(Instant::now() < deadline, "task {id} not ended: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The tasks whose `task-started` record the audit log of `data` holds, in its order.
pub(super) fn started_order(data: &Path) -> Vec<u64> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "task-started")
        .filter_map(|r| r["task"].as_u64())
        .collect()
}

/// The audit records of `kind` about task `id` in `data`'s log, in its order.
pub(super) fn records(data: &Path, kind: &str, id: u64) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == kind && r["task"] == id)
        .collect()
}

/// The newest task whose `task-started` record in `data`'s log satisfies `which`, waiting for
/// one up to 20 s (`what` names it in the failure).
pub(super) async fn started_where(data: &Path, what: &str, which: impl Fn(&Value) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_to_string(data.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "task-started" && which(r))
            .filter_map(|r| r["task"].as_u64())
            .max();
        if let Some(id) = found {
            return id;
        }
        assert!(Instant::now() < deadline, "{what} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `warden audit verify` on `data` passes.
pub(super) fn audit_verifies(data: &Path) {
    let (code, out, err) = warden_with_data(data, &["audit", "verify"]);
    assert_eq!(code, 0, "audit verify: {out}{err}");
}

const SPIN_LIMITS: &str = "cpu = \"1500 ms\"\nwall = \"3 s\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn bounds_fair_order_and_cancel() {
    let (_agents, config) = host_config(
        SPIN_LIMITS,
        "[server]\nmax_queued = 5\nworkers = 1\nper_user = 1\nper_user_queued = 4\n",
    );
    let data = tempfile::tempdir().unwrap();
    let s = serve_on(&config, data.path());
    let (dev, addr) = (s.token.clone(), s.addr.clone());
    let alice = dev_token(data.path(), "alice", &["dev"], Duration::from_secs(600));
    let carol = dev_token(data.path(), "carol", &["dev"], Duration::from_secs(600));
    let spin = json!({"agent": "probe", "input": {"op": "spin"}});
    let hello = |name: &str| json!({"agent": "hello", "input": {"name": name}});

    // The spinner takes the one worker; what follows waits, acknowledged and `queued`.
    let spinning = accepted(&addr, &dev, &spin).await;
    let devs: Vec<u64> = {
        let mut ids = Vec::new();
        for n in ["d1", "d2", "d3"] {
            ids.push(accepted(&addr, &dev, &hello(n)).await);
        }
        ids
    };
    assert_eq!(row(&addr, &dev, devs[0]).await["status"], "queued");
    // The gauges: one running, three waiting.
    let (status, _, text) =
        super::request_bytes(&addr, "GET", "/metrics", Some(&dev), Vec::new()).await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert_eq!(status, 200);
    for line in ["warden_tasks_queued 3", "warden_tasks_running 1"] {
        assert!(text.lines().any(|l| l == line), "no {line} in {text}");
    }
    // dev holds 4 (per_user_queued): refused, nothing stored.
    let (status, retry, v) = call(&addr, "POST", "/v1/tasks", &dev, Some(&hello("d4"))).await;
    assert_eq!((status, error_code(&v)), (429, "user-busy"), "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per_user_queued"),
        "{v}"
    );
    let alices = accepted(&addr, &alice, &hello("alice")).await;
    assert_eq!(alices, devs[2] + 1, "the refusal stored a task");
    // Someone else's task is not alice's to cancel (nor to see).
    let (status, _, v) = call(
        &addr,
        "DELETE",
        &format!("/v1/tasks/{}", devs[1]),
        &alice,
        None,
    )
    .await;
    assert_eq!((status, error_code(&v)), (404, "no-task"), "{v}");
    // dev's second waiting task is cancelled: it ends at once and never starts.
    let (status, _, v) = call(
        &addr,
        "DELETE",
        &format!("/v1/tasks/{}", devs[1]),
        &dev,
        None,
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );
    assert_eq!(row(&addr, &dev, devs[1]).await["outcome"]["by"], "dev");
    // Five held at most (four now): one more fits, then the queue is full for anyone.
    let carols = accepted(&addr, &carol, &hello("carol")).await;
    let (status, retry, v) = call(&addr, "POST", "/v1/tasks", &carol, Some(&hello("c2"))).await;
    assert_eq!((status, error_code(&v)), (429, "queue-full"), "{v}");
    assert_eq!(retry.as_deref(), Some("1"));

    // The spinner is cancelled at once, long before its CPU limit, by who asked.
    let asked = Instant::now();
    let (status, _, v) = call(
        &addr,
        "DELETE",
        &format!("/v1/tasks/{spinning}"),
        &dev,
        None,
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(1200),
        "{:?}",
        asked.elapsed()
    );
    let spun = row(&addr, &dev, spinning).await;
    assert_eq!(
        (spun["outcome"]["by"].as_str(), spun["staging"].as_str()),
        (Some("dev"), Some("none")),
        "{spun}"
    );
    // Counted as a cancelled run of its agent.
    let (_, _, text) = super::request_bytes(&addr, "GET", "/metrics", Some(&dev), Vec::new()).await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    let agent = spun["agent"].as_str().unwrap();
    let line = format!("warden_runs_total{{agent=\"{agent}\",outcome=\"cancelled\"}} 1");
    assert!(text.lines().any(|l| l == line), "no {line} in {text}");
    // Each 429 counted by its code (the two above, and nothing else).
    for line in [
        r#"warden_http_too_many_requests_total{code="user-busy"} 1"#,
        r#"warden_http_too_many_requests_total{code="queue-full"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in {text}");
    }
    assert_eq!(
        text.matches("warden_http_too_many_requests_total{").count(),
        2,
        "{text}"
    );
    // Cancelling an ended task changes nothing.
    let (status, _, v) = call(
        &addr,
        "DELETE",
        &format!("/v1/tasks/{spinning}"),
        &dev,
        None,
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );

    // The rest complete, with the ids they were acknowledged with, in a fair order: users take
    // turns (dev, alice, carol, dev), so alice's and carol's do not wait behind dev's two.
    for (token, id, name) in [
        (&dev, devs[0], "d1"),
        (&alice, alices, "alice"),
        (&carol, carols, "carol"),
        (&dev, devs[2], "d3"),
    ] {
        let v = settled(&addr, token, id, Duration::from_secs(20)).await;
        assert_eq!(
            (v["status"].as_str(), v["outcome"]["output"].as_str()),
            (Some("completed"), Some(format!("hello, {name}").as_str())),
            "{v}"
        );
    }
    let order = started_order(data.path());
    assert_eq!(
        order,
        vec![spinning, devs[0], alices, carols, devs[2]],
        "never {}",
        devs[1]
    );
    drop(s);
    audit_verifies(data.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_tasks_survive_a_restart_and_a_lost_role_or_workspace_root_is_refused() {
    let roles = tempfile::tempdir().unwrap();
    let roles_file = roles.path().join("roles.toml");
    std::fs::write(
        &roles_file,
        "[role.dev]\nagents = [\"*\"]\nfs.write = [\"**\"]\n[role.ops]\nagents = [\"*\"]\nfs.write = [\"**\"]\n",
    )
    .unwrap();
    // Two workspace roots; the second is dropped from the configuration before the restart.
    let ws = tempfile::tempdir().unwrap();
    let (kept, dropped) = (ws.path().join("kept"), ws.path().join("dropped"));
    for d in [&kept, &dropped] {
        std::fs::create_dir_all(d).unwrap();
    }
    let roots = |list: &[&PathBuf]| {
        let list: Vec<String> = list
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        format!("workspaces = [{}]\n", list.join(", "))
    };
    let extra = format!(
        "[host]\nroles = {:?}\n[server]\nworkers = 1\n{}",
        roles_file.display().to_string(),
        roots(&[&kept, &dropped])
    );
    let (_agents, config) = host_config(SPIN_LIMITS, &extra);
    let data = tempfile::tempdir().unwrap();
    let mut s = serve_on(&config, data.path());
    let (dev, addr) = (s.token.clone(), s.addr.clone());
    let ops = dev_token(data.path(), "olga", &["ops"], Duration::from_secs(600));
    let spinning = accepted(
        &addr,
        &dev,
        &json!({"agent": "probe", "input": {"op": "spin"}}),
    )
    .await;
    let waiting = accepted(
        &addr,
        &dev,
        &json!({"agent": "hello", "input": {"name": "after"}}),
    )
    .await;
    let olgas = accepted(
        &addr,
        &ops,
        &json!({"agent": "hello", "input": {"name": "olga"}}),
    )
    .await;
    let elsewhere = accepted(
        &addr,
        &dev,
        &json!({"agent": "hello", "input": {"name": "gone"}, "workspace": dropped}),
    )
    .await;

    // SIGTERM: the spinner has its grace (it is killed by its CPU limit within it); the queued
    // ones do not start and stay queued.
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(started_order(data.path()), vec![spinning]);

    // The role `ops` is gone from the roles file: olga's task is refused at the restart, dev's
    // resumes and completes with its id.
    // The root `dropped` is gone from the configuration: the task in it is refused too.
    std::fs::write(
        &roles_file,
        "[role.dev]\nagents = [\"*\"]\nfs.write = [\"**\"]\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let narrowed = text.replace(&roots(&[&kept, &dropped]), &roots(&[&kept]));
    assert_ne!(text, narrowed);
    std::fs::write(&config, narrowed).unwrap();
    let s = serve_on(&config, data.path());
    let log = std::fs::read_to_string(data.path().join("stderr")).unwrap();
    assert!(log.contains("resumed 1 queued task(s); 2 refused"), "{log}");
    let done = settled(&s.addr, &s.token, waiting, Duration::from_secs(20)).await;
    assert_eq!(
        (done["status"].as_str(), done["outcome"]["output"].as_str()),
        (Some("completed"), Some("hello, after")),
        "{done}"
    );
    let spun = row(&s.addr, &s.token, spinning).await;
    assert_eq!(spun["status"], "killed", "{spun}");
    // olga's token is refused now too; a reviewer-less dev cannot see her task: read the store.
    let (code, out, err) = warden_with_data(data.path(), &["task", "show", &olgas.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let olga: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(olga["status"], "refused", "{olga}");
    assert!(
        olga["outcome"]["why"].as_str().unwrap().contains("ops"),
        "{olga}"
    );
    assert!(!started_order(data.path()).contains(&olgas));
    let (code, out, err) = warden_with_data(data.path(), &["task", "show", &elsewhere.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let gone: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(gone["status"], "refused", "{gone}");
    assert!(
        gone["outcome"]["why"]
            .as_str()
            .unwrap()
            .contains("workspace-not-allowed"),
        "{gone}"
    );
    assert!(!started_order(data.path()).contains(&elsewhere));
    drop(s);
    audit_verifies(data.path());
}
