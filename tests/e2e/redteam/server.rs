//! Class `server`: hostile clients of `warden serve` (the HTTP API `/v1`, MCP `/mcp`, A2A
//! `/a2a`). Each attack gets a real `warden serve` of its own on loopback (the real binary, a
//! data directory of its own, at most three at once), with a roles file giving `alice` a narrow
//! role (`hello` only), `bob` and `mallory` a worker's (`hello`, `probe`, the network to a
//! silent listener, the irreversible tool `deploy`), and `rita` an approver's (`deploy`); no one
//! is a reviewer. `bob`'s victim task is a `probe` waiting on that listener (it runs, and spends
//! no CPU, until the server is killed).
//!
//! An attack is a request (or a few) that must be refused: `contained:refused <status> <code>`
//! when it was, **and** changed nothing: the tasks, the pending actions and the trust records of
//! the store are what they were, the audit log gained no record but the refusal's own (the kind
//! the attack names, if the server audits that refusal), and the victim still runs. Otherwise
//! `breach:<what>`.

mod attacks;
mod staged;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_tests::{agent, root};

/// A `warden serve` for one attack, killed when dropped.
pub struct Served {
    child: Child,
    pub addr: String,
    /// The server's one workspace root (`[server] workspaces`), which holds its data directory
    /// (`data`, named by `--data-dir`, so not refused at load) and a folder `work`.
    host: tempfile::TempDir,
    agents: tempfile::TempDir,
    /// Accepts connections (the kernel's backlog) and never answers: the victim waits on it.
    silent: TcpListener,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of the host attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = (task, port);
    let attack = name.strip_prefix("server-")?.to_owned();
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);
    let _slot = SLOTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let served = tokio::task::spawn_blocking(start)
        .await
        .expect("the server starts");
    let outcome = attacks::run(&attack, &served).await;
    Some(vec![
        outcome.unwrap_or_else(|breach| format!("breach:{breach}")),
    ])
}

fn start() -> Served {
    let agents = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let net = silent.local_addr().unwrap().to_string();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(
        dir.join("probe.toml"),
        format!(
            "[agent]\nname = \"probe\"\n[net]\nallow = [\"{net}\"]\n[tools]\nallow = [\"deploy\"]\n[limits]\nwall = \"300 s\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("roles.toml"),
        format!(
            "[role.dev]\nagents = [\"hello\"]\n[role.narrow]\nagents = [\"hello\"]\n[role.worker]\nagents = [\"hello\", \"probe\"]\nnet.allow = [\"{net}\"]\ntools.allow = [\"deploy\"]\n[role.release]\nagents = [\"hello\"]\napprove = [\"deploy\"]\n"
        ),
    )
    .unwrap();
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data");
    std::fs::create_dir_all(host.path().join("work")).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[server]\nworkers = 8\nper_user_queued = 3\nworkspaces = [{:?}]\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\napproval_ttl = \"10 min\"\nwritable = [{:?}]\n",
            dir.join("roles.toml").display().to_string(),
            dir.display().to_string(),
            host.path().display().to_string(),
            dir.join("deployed").display(),
            dir.display().to_string(),
        ),
    )
    .unwrap();
    let (child, addr, _dev) = warden_tests::served::start(
        warden_tests::served::command(&config, &data),
        &host.path().join("stderr"),
    );
    Served {
        child,
        addr,
        host,
        agents,
        silent,
    }
}

/// An answer: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (the last `data:` event of a stream), or `null`.
    pub fn json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        serde_json::from_str(&text).unwrap_or_else(|_| {
            text.lines()
                .rev()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
                .unwrap_or(Value::Null)
        })
    }

    /// `<status> <code>`: the API's error code, or a JSON-RPC error's code.
    pub fn refusal(&self) -> String {
        let v = self.json();
        let code = match (&v["error"]["code"], &v["error"]) {
            (Value::String(c), _) => c.clone(),
            (Value::Number(n), _) => n.to_string(),
            (_, Value::Null) => "-".into(),
            (_, e) => e.to_string(),
        };
        format!("{} {code}", self.status)
    }
}

impl Served {
    /// A token of the server's development issuer for `subject` holding `roles`.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        warden_tests::served::dev_token(&self.data(), subject, roles, Duration::from_secs(600))
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.host.path().join("data")
    }

    /// The server's one workspace root (it holds the data directory and a folder `work`).
    pub fn workspace_root(&self) -> &Path {
        self.host.path()
    }

    /// The agents folder.
    pub fn agents(&self) -> &Path {
        self.agents.path()
    }

    /// The file the `deploy` tool appends to (absent until an action is performed).
    pub fn deployed(&self) -> PathBuf {
        self.agents.path().join("deployed")
    }

    /// One request on a fresh connection (a bearer `token` if given, then `headers`), answered
    /// within 20 s (a stream that never ends is an error).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json");
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
                req = req.header("host", &self.addr);
            }
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let response = sender
                .send_request(req.body(Full::new(body.into())).unwrap())
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .map_err(|_| format!("{method} {path} was not answered within 20 s"))?
    }

    /// A JSON request to the API.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Reply, String> {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.send(method, path, token, &[], body).await
    }

    /// A stateless (2026-07-28) MCP request to `/mcp`, declaring the tasks extension.
    pub async fn mcp(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        method: &str,
        mut params: Value,
    ) -> Result<Reply, String> {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "redteam", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities":
                {"extensions": {"io.modelcontextprotocol/tasks": {}}},
        });
        let name = params["name"]
            .as_str()
            .or(params["taskId"].as_str())
            .unwrap_or_default()
            .to_owned();
        let mut all = vec![
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        if !name.is_empty() {
            all.push(("mcp-name", &name));
        }
        all.extend_from_slice(headers);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send("POST", "/mcp", token, &all, body.to_string())
            .await
    }

    /// An A2A JSON-RPC request to `/a2a`.
    pub async fn a2a(
        &self,
        token: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Reply, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send(
            "POST",
            "/a2a",
            token,
            &[("a2a-version", "1.0")],
            body.to_string(),
        )
        .await
    }

    /// `subject` (role `worker`) submits `body`; the task id.
    pub async fn submit(&self, token: &str, body: &Value) -> Result<u64, String> {
        let r = self.api("POST", "/v1/tasks", Some(token), body).await?;
        r.json()["task"]
            .as_u64()
            .ok_or_else(|| format!("a submission was refused: {}", r.refusal()))
    }

    /// The task's row as its user sees it.
    pub async fn row(&self, token: &str, id: u64) -> Result<Value, String> {
        let r = self
            .api("GET", &format!("/v1/tasks/{id}"), Some(token), &Value::Null)
            .await?;
        Ok(r.json())
    }

    /// Wait until the task's status satisfies `done` (30 s at most); its row.
    pub async fn until(
        &self,
        token: &str,
        id: u64,
        done: impl Fn(&str) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = self.row(token, id).await?;
            if done(row["status"].as_str().unwrap_or_default()) {
                return Ok(row);
            }
            if Instant::now() > deadline {
                return Err(format!("task {id} never got there: {row}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `bob`'s victim: a probe waiting on the silent listener, once it runs; its id.
    pub async fn victim(&self) -> Result<u64, String> {
        let bob = self.token("bob", &["worker"]);
        let url = format!("http://{}/", self.silent.local_addr().unwrap());
        let id = self
            .submit(
                &bob,
                &json!({"agent": "probe", "input": {"op": "http", "url": url}}),
            )
            .await?;
        self.until(&bob, id, |s| s == "running").await?;
        // The attack's snapshot must not take for the attack's what the server records on its
        // own a moment later: a queued task's row is `running` a moment before its
        // `task-started` record is appended, and the server loads its agents directory's agents
        // in the background at start (an `agent-loaded` record each).
        let deadline = Instant::now() + Duration::from_secs(10);
        let settled = |audit: &[Value]| {
            let has = |kind: &str, what: &dyn Fn(&Value) -> bool| {
                audit.iter().any(|r| r["kind"] == kind && what(r))
            };
            has("task-started", &|r| r["task"].as_u64() == Some(id))
                && ["hello", "probe"]
                    .iter()
                    .all(|a| has("agent-loaded", &|r| r["agent"] == *a))
        };
        while !settled(&self.state().audit) {
            if Instant::now() > deadline {
                return Err(format!(
                    "task {id} runs, but its start or the agents' loading was never recorded"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(id)
    }

    /// What an attack may not change: the store's tasks, actions and trust records, and the
    /// audit log's records (signed checkpoints aside).
    pub fn state(&self) -> State {
        let db = rusqlite::Connection::open_with_flags(
            self.data().join("state.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("the store opens");
        let rows = |sql: &str| -> Vec<String> {
            let mut stmt = db.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let store = [
            "SELECT id || ' ' || user || ' ' || status || ' ' || coalesce(outcome, '') FROM tasks ORDER BY id",
            "SELECT id || ' ' || status || ' ' || coalesce(approver, '') FROM actions ORDER BY id",
            "SELECT agent_id || ' ' || record FROM trust ORDER BY agent_id",
        ]
        .iter()
        .flat_map(|sql| rows(sql))
        .collect();
        let log = std::fs::read_to_string(self.data().join("audit.log")).unwrap_or_default();
        let audit = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] != "checkpoint")
            .collect();
        State { store, audit }
    }
}

/// The store and the audit log at one moment (see [`Served::state`]).
pub struct State {
    store: Vec<String>,
    audit: Vec<Value>,
}

impl State {
    /// Why `after` is not this state plus at most the refusal's own audit records (of kind
    /// `audited`), or `None` if it is.
    pub fn changed(&self, after: &State, audited: Option<&str>) -> Option<String> {
        if self.store != after.store {
            let new: Vec<_> = after
                .store
                .iter()
                .filter(|r| !self.store.contains(r))
                .collect();
            return Some(format!("the store changed: {new:?}"));
        }
        if after.audit.get(..self.audit.len()) != Some(&self.audit[..]) {
            return Some("the audit log was rewritten".into());
        }
        let added = &after.audit[self.audit.len()..];
        added
            .iter()
            .find(|r| audited != r["kind"].as_str())
            .map(|r| {
                let r = r.to_string();
                format!("the audit log gained {}", &r[..r.len().min(300)])
            })
    }
}
