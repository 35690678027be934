//! `warden serve` over real HTTP on loopback: the real binary started on a free port with an
//! agents directory (`hello`, and `probe` under a policy that grants no network) and no token
//! issuer, so it makes a development issuer and prints a token. Checked with hyper's client:
//! health without a token; 401 without a token, with a forged and with an expired one; `hello`
//! submitted and its completed result read; a probe reaching for the network reported killed; a
//! path-traversal agent name, a malformed body and an oversized body each a clear 4xx that
//! allocates no task; another user's task not visible; SIGTERM stops the server cleanly.
//! `serve/metrics.rs`: `GET /metrics` behind the token, its counters after a completed and a
//! killed run, its text parsed as an OpenMetrics exposition. `serve/cascade.rs`: a request
//! submitted to the cascade (the roster, the stub provider as the models) verified and counted.
//! `serve/queue.rs`: the queue's bounds (`[server] max_queued`, `per_user`) answered `429` and
//! counted by code. `serve/resume.rs`: an escalated cascade resumed and stopped through the API.
//! `serve/report.rs`: a regression reported through the API (reviewers only).
//! `serve/workspaces.rs`: a workspace outside the server's workspace roots refused (`403
//! workspace-not-allowed`, audited, nothing stored), one inside run.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden::serve::DevIssuer;
use warden_tests::served::dev_token;
use warden_tests::{agent, root};

#[path = "serve/agents.rs"]
mod agents;
#[path = "serve/cascade.rs"]
mod cascade;
#[path = "serve/events.rs"]
mod events;
#[path = "serve/load.rs"]
mod load;
#[path = "serve/metrics.rs"]
mod metrics;
#[path = "serve/now.rs"]
mod now;
#[path = "serve/openapi.rs"]
mod openapi;
#[path = "serve/queue.rs"]
mod queue;
#[path = "serve/report.rs"]
mod report;
#[path = "serve/resume.rs"]
mod resume;
#[path = "serve/resume_stored.rs"]
mod resume_stored;
#[path = "serve/review.rs"]
mod review;
#[path = "serve/tree_cancel.rs"]
mod tree_cancel;
#[path = "serve/workspaces.rs"]
mod workspaces;

/// A running `warden serve`, stopped (SIGKILL) if a test fails before it stops it itself.
struct Server {
    child: Child,
    addr: String,
    token: String,
    data: tempfile::TempDir,
    _agents: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    // No [net]: a request for the network kills the instance.
    std::fs::write(dir.join("probe.toml"), "[agent]\nname = \"probe\"\n").unwrap();
    launch_dir(agents)
}

/// `warden serve` with `agents` as its `[agents] dir` and nothing else configured.
fn launch_dir(agents: tempfile::TempDir) -> Server {
    let config = agents.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[agents]\ndir = {:?}\n",
            agents.path().display().to_string()
        ),
    )
    .unwrap();
    launch(&config, agents)
}

/// `warden serve` with the host configuration `config` (the agents directory `agents` is kept
/// as long as the server).
fn launch(config: &Path, agents: tempfile::TempDir) -> Server {
    let data = tempfile::tempdir().unwrap();
    let (child, addr, token) = warden_tests::served::start(
        warden_tests::served::command(config, data.path()),
        &data.path().join("stderr"),
    );
    Server {
        child,
        addr,
        token,
        data,
        _agents: agents,
    }
}

/// One request on a fresh connection: status and JSON body.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let (status, _, bytes) = request_bytes(addr, method, path, token, body).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// One request on a fresh connection: status, content type and body.
async fn request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, bytes)
}

/// A request declaring a 2 MiB body, of which it sends only the start: the server answers from
/// the declared length without reading on (raw TCP, since a client that goes on writing the body
/// after the answer sees its connection closed under it).
fn oversized(addr: &str, token: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{{\"agent\": \"hello\", \"input\": \"xxxx",
        2 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    request(&s.addr, "GET", path, token, Vec::new()).await
}

async fn submit(s: &Server, token: &str, body: &Value) -> u64 {
    let (status, v) = request(
        &s.addr,
        "POST",
        "/v1/tasks",
        Some(token),
        body.to_string().into(),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    v["task"]
        .as_u64()
        .unwrap_or_else(|| panic!("no task id: {v}"))
}

/// The task's row once it has ended.
async fn ended(s: &Server, token: &str, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get(s, &format!("/v1/tasks/{id}"), Some(token)).await;
        assert_eq!(status, 200, "{v}");
        if !matches!(v["status"].as_str(), Some("running" | "queued")) {
            return v;
        }
        assert!(Instant::now() < deadline, "task {id} still running: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_code(v: &Value) -> &str {
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_over_http() {
    let s = start();
    let dev = s.token.clone();
    // Expires while the other checks run; checked at the end.
    let expired = dev_token(s.data.path(), "dev", &["dev"], Duration::from_secs(1));
    let issued = Instant::now();

    let (status, v) = get(&s, "/health", None).await;
    assert_eq!((status, v), (200, json!({"status": "ok"})));

    // No token, or one of an issuer the server does not trust: refused, nothing runs.
    let other = tempfile::tempdir().unwrap();
    let forged = DevIssuer::open(other.path())
        .unwrap()
        .token(Duration::from_secs(60))
        .unwrap();
    let hello = json!({"agent": "hello", "input": {"name": "bob"}});
    for (token, why) in [
        (None, "no identity token"),
        (Some(forged.as_str()), "trusted issuer"),
    ] {
        let (status, v) = request(
            &s.addr,
            "POST",
            "/v1/tasks",
            token,
            hello.to_string().into(),
        )
        .await;
        assert_eq!((status, error_code(&v)), (401, "unauthorized"), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
        let (status, _) = get(&s, "/v1/tasks/1", token).await;
        assert_eq!(status, 401);
    }

    // hello completes; its row, cost and trace are the dev user's to read.
    let first = submit(&s, &dev, &hello).await;
    let row = ended(&s, &dev, first).await;
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(row["outcome"]["output"], "hello, bob", "{row}");
    assert_eq!(row["user"], "dev");
    assert!(row.get("cost").is_some(), "{row}");
    let (status, trace) = get(&s, &format!("/v1/tasks/{first}/trace"), Some(&dev)).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["status"], "completed");
    assert!(trace["trace"]["events"].is_array(), "{trace}");

    // The probe reaching for the network is killed, and says so.
    let probe = json!({"agent": "probe", "input": {"op": "http", "url": "http://127.0.0.1:1/"}});
    let killed = submit(&s, &dev, &probe).await;
    assert_eq!(killed, first + 1);
    let row = ended(&s, &dev, killed).await;
    assert_eq!(row["status"], "killed", "{row}");
    assert_eq!(row["outcome"]["reason"], "not-granted", "{row}");
    assert!(
        row["outcome"]["capability"]
            .as_str()
            .unwrap()
            .starts_with("wasi:http"),
        "{row}"
    );

    // Bad requests: each a clear 4xx, none allocates a task.
    let bad: [(Vec<u8>, u16, &str); 4] = [
        (
            json!({"agent": "../hello"}).to_string().into(),
            400,
            "bad-agent-name",
        ),
        (
            json!({"agent": "hello/../../x"}).to_string().into(),
            400,
            "bad-agent-name",
        ),
        (b"{\"agent\": ".to_vec(), 400, "bad-body"),
        (
            json!({"agent": "nobody"}).to_string().into(),
            404,
            "no-agent",
        ),
    ];
    for (body, want, code) in bad {
        let (status, v) = request(&s.addr, "POST", "/v1/tasks", Some(&dev), body).await;
        assert_eq!((status, error_code(&v)), (want, code), "{v}");
    }
    let (status, v) = oversized(&s.addr, &dev);
    assert_eq!((status, error_code(&v)), (413, "body-too-large"), "{v}");
    let (status, v) = get(&s, "/v1/tasks/not-a-number", Some(&dev)).await;
    assert_eq!((status, error_code(&v)), (400, "bad-task-id"));
    let next = submit(&s, &dev, &hello).await;
    assert_eq!(next, killed + 1, "a refused request allocated a task");

    // Another user sees none of dev's tasks (answered as missing), but their own.
    let mallory = dev_token(s.data.path(), "mallory", &["dev"], Duration::from_secs(60));
    for path in [
        format!("/v1/tasks/{first}"),
        format!("/v1/tasks/{first}/trace"),
    ] {
        let (status, v) = get(&s, &path, Some(&mallory)).await;
        assert_eq!((status, error_code(&v)), (404, "no-task"), "{path}: {v}");
    }
    let theirs = submit(&s, &mallory, &hello).await;
    assert_eq!(ended(&s, &mallory, theirs).await["user"], "mallory");

    // The expired token: refused as expired.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(issued.elapsed())).await;
    let (status, v) = get(&s, &format!("/v1/tasks/{first}"), Some(&expired)).await;
    assert_eq!((status, error_code(&v)), (401, "unauthorized"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );

    // SIGTERM: a clean stop.
    let mut s = s;
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "warden serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
