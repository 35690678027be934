//! `warden serve`'s logs and traces, end to end: the real binary, started with `[log] format =
//! "json"` and `[telemetry] otlp` pointing at an OTLP/HTTP receiver that this test runs on
//! loopback (axum, decoding `ExportTraceServiceRequest` protobuf with `opentelemetry-proto`'s
//! types: a collector, not a stand-in for the exporter). A `hello` task submitted over HTTP must
//! arrive as a `task` span with its task, agent and user, beside the request's span (method,
//! route, status, latency), under the configured service name; its JSON log lines carry the same
//! ids; no log line holds the bearer token or a host secret; a task that ends just before SIGTERM
//! still has its span delivered. With the collector down the task completes just the same and
//! the server stops promptly.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use serde_json::{Value, json};
use warden_tests::{agent, root};

/// A host secret's value: it must never reach a log line.
const SECRET: &str = "s3cr3t-telemetry-value-5b1f";

/// One span as the receiver got it: its name, attributes (as text) and service.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    attributes: Vec<(String, String)>,
    service: Option<String>,
}

impl Received {
    fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(kv: &KeyValue) -> (String, String) {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    };
    (kv.key.clone(), value)
}

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with a protobuf body, every span kept.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource.resource.as_ref().and_then(|r| {
                        r.attributes
                            .iter()
                            .map(text)
                            .find(|(k, _)| k == "service.name")
                            .map(|(_, v)| v)
                    });
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.push(Received {
                                name: span.name,
                                attributes: span.attributes.iter().map(text).collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), spans)
}

/// A running `warden serve`, killed if the test fails first.
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

impl Server {
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.data.path().join("stderr")).unwrap()
    }

    /// SIGTERM, then the exit status and how long the stop took.
    fn stop(&mut self) -> (bool, Duration) {
        let asked = Instant::now();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), asked.elapsed());
            }
            assert!(Instant::now() < deadline, "warden serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `warden serve` with `hello`, JSON logs at `debug`, a host secret, and `[telemetry]` from
/// `telemetry` (a TOML table body).
fn launch(telemetry: &str) -> Server {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[agents]\ndir = {:?}\n[log]\nformat = \"json\"\nlevel = \"debug\"\n[telemetry]\n{telemetry}\n[[secrets]]\nname = \"api\"\nenv = \"WARDEN_E2E_API_SECRET\"\nhost = \"api.example.com:443\"\nheader = \"authorization\"\nformat = \"Bearer {{}}\"\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut command = warden_tests::served::command(&config, data.path());
    command.env("WARDEN_E2E_API_SECRET", SECRET);
    let (child, addr, token) = warden_tests::served::start(command, &data.path().join("stderr"));
    Server {
        child,
        addr,
        token,
        data,
        _agents: agents,
    }
}

/// One request on a fresh connection: status and JSON body.
async fn request(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &s.addr)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", s.token))
        .body(Full::new(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Submit `hello` and wait for its end: the task id and its row.
async fn hello(s: &Server) -> (u64, Value) {
    let (status, v) = request(
        s,
        "POST",
        "/v1/tasks",
        Some(json!({"agent": "hello", "input": {"name": "otel"}})),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["task"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, row) = request(s, "GET", &format!("/v1/tasks/{id}"), None).await;
        assert_eq!(status, 200, "{row}");
        if row["status"] != "running" && row["status"] != "queued" {
            return (id, row);
        }
        assert!(Instant::now() < deadline, "task {id} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON log lines of `stderr` (the banner with the development token is not a log line).
fn log_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn task_and_request_spans_reach_a_local_collector() {
    let (collector, spans) = receiver().await;
    let mut s = launch(&format!(
        "otlp = {collector:?}\nservice = \"warden-e2e\"\nqueue = 256\n"
    ));
    let (id, row) = hello(&s).await;
    assert_eq!(row["status"], "completed", "{row}");

    // The batch goes out within a second or so.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (task, submit) = loop {
        let got = spans.lock().unwrap().clone();
        let task = got
            .iter()
            .find(|sp| sp.name == "task" && sp.get("task") == Some(&id.to_string()))
            .cloned();
        let submit = got
            .iter()
            .find(|sp| sp.get("route") == Some("/v1/tasks") && sp.get("method") == Some("POST"))
            .cloned();
        if let (Some(t), Some(r)) = (task, submit) {
            break (t, r);
        }
        assert!(
            Instant::now() < deadline,
            "no task/request span for task {id}: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task.get("agent"), Some("hello"), "{task:?}");
    assert_eq!(task.get("user"), Some("dev"), "{task:?}");
    assert_eq!(task.service.as_deref(), Some("warden-e2e"));
    assert_eq!(submit.name, "POST /v1/tasks", "{submit:?}");
    assert_eq!(submit.get("status"), Some("202"), "{submit:?}");
    assert!(
        submit
            .get("latency_us")
            .and_then(|l| l.parse::<u64>().ok())
            .is_some(),
        "{submit:?}"
    );
    // A route with an id is named by its template, never by the raw path.
    let got = spans.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|sp| sp.get("route") == Some("/v1/tasks/{id}") && sp.get("status") == Some("200")),
        "{got:#?}"
    );
    assert!(
        got.iter().all(|sp| sp
            .attributes
            .iter()
            .all(|(_, v)| !v.contains(&s.token) && !v.contains(SECRET))),
        "a span holds the token or the secret"
    );

    // A task that ends just before a graceful stop: its span is flushed on the way out.
    let (last, row) = hello(&s).await;
    assert_eq!(row["status"], "completed", "{row}");
    let (clean, _) = s.stop();
    assert!(clean, "{}", s.stderr());
    let got = spans.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|sp| sp.name == "task" && sp.get("task") == Some(&last.to_string())),
        "the last task's span was lost at the stop: {got:#?}"
    );

    // The log: the run's lines carry its task, agent and user; requests are logged with their
    // route and status; neither the token nor the secret appears in any line.
    let stderr = s.stderr();
    let lines = log_lines(&stderr);
    let finished = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run finished")
        .unwrap_or_else(|| panic!("no `run finished` line in {stderr}"));
    assert_eq!(finished["span"]["task"], id, "{finished}");
    assert_eq!(finished["span"]["agent"], "hello", "{finished}");
    assert_eq!(finished["span"]["user"], "dev", "{finished}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "answered"
            && l["span"]["route"] == "/v1/tasks"
            && l["fields"]["status"] == 202),
        "no request line in {stderr}"
    );
    let signature = s.token.rsplit('.').next().unwrap();
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        assert!(!line.contains(signature), "the token in a log line: {line}");
        assert!(!line.contains(SECRET), "the secret in a log line: {line}");
    }
    assert!(!stderr.contains(SECRET), "the secret on stderr");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_fails_no_task() {
    // A port that was free a moment ago: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = launch(&format!("otlp = \"http://127.0.0.1:{port}\"\n"));
    for _ in 0..3 {
        let started = Instant::now();
        let (_, row) = hello(&s).await;
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["outcome"]["output"], "hello, otel", "{row}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // Past a batch or two of failed exports, the server still answers at once.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, row) = hello(&s).await;
    assert_eq!(row["status"], "completed", "{row}");
    let (clean, took) = s.stop();
    assert!(clean, "{}", s.stderr());
    // The shutdown flush tries the collector once and gives up (refused, or the export's timeout).
    assert!(took < Duration::from_secs(12), "{took:?}");
}
