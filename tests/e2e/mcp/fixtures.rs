//! The conformance fixture agents (`tests/conformance/agents`) through `/mcp` on the real
//! `warden serve`, over plain 2026-07-28 stateless HTTP: agent names with `_`, an agent's MCP
//! content blocks (text, image, embedded resource) as the tool result's content, an agent's error
//! as `isError`, and an agent's log lines sent as `notifications/message` only to a request that
//! set `_meta`'s log level, at or above it. Every call is a recorded task of the agent.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_tests::root;

const FIXTURES: [&str; 3] = [
    "test_logging_tool",
    "test_multiple_content_types",
    "test_error_handling",
];

/// POST one JSON-RPC request to `/mcp`; the JSON messages of its answer, in order.
pub(super) async fn call(
    addr: &str,
    token: &str,
    id: u64,
    method: &str,
    params: Value,
) -> Vec<Value> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut req = hyper::Request::post("/mcp")
        .header("host", addr)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if !name.is_empty() {
        req = req.header("mcp-name", name);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let response = sender.send_request(req).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    if messages.is_empty() {
        vec![serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))]
    } else {
        messages
    }
}

/// `tools/call` of `tool` with the per-request `_meta` (and `logLevel` when given).
fn tool_call(tool: &str, log_level: Option<&str>) -> Value {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    if let Some(level) = log_level {
        meta["io.modelcontextprotocol/logLevel"] = json!(level);
    }
    json!({"name": tool, "arguments": {}, "_meta": meta})
}

fn logs(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect()
}

fn result(messages: &[Value]) -> &Value {
    let last = messages.last().expect("an answer");
    assert!(last.get("result").is_some(), "{messages:?}");
    &last["result"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_agents_answer_with_content_errors_and_logs_asked_for() {
    let built = warden_tests::cargo()
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .args(["-p", "conformance-agents", "--examples"])
        .status()
        .unwrap();
    assert!(built.success(), "the fixture agents build");
    let agents = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/conformance/agents");
    for name in FIXTURES {
        std::fs::copy(
            root().join(format!("target/wasm32-wasip2/release/examples/{name}.wasm")),
            agents.path().join(format!("{name}.wasm")),
        )
        .unwrap();
        std::fs::copy(
            fixtures.join(format!("policies/{name}.toml")),
            agents.path().join(format!("{name}.toml")),
        )
        .unwrap();
    }
    let config = agents.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[agents]\ndir = {:?}\n",
            agents.path().display().to_string()
        ),
    )
    .unwrap();
    let (mut child, addr, token) = warden_tests::served::start(
        warden_tests::served::command(&config, data.path()),
        &data.path().join("stderr"),
    );

    let meta = tool_call("", None)["_meta"].clone();
    let listed = call(&addr, &token, 1, "tools/list", json!({ "_meta": meta })).await;
    let mut names: Vec<&str> = result(&listed)["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "test_error_handling",
            "test_logging_tool",
            "test_multiple_content_types"
        ]
    );

    // Logs at or above the level asked for, named after the agent, before the result.
    let asked = call(
        &addr,
        &token,
        2,
        "tools/call",
        tool_call("test_logging_tool", Some("info")),
    )
    .await;
    let lines: Vec<&Value> = logs(&asked);
    let said: Vec<&str> = lines
        .iter()
        .map(|m| m["params"]["data"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed"
        ],
        "{asked:?}"
    );
    assert!(lines.iter().all(|m| m["params"]["level"] == "info"
        && m["params"]["logger"] == "test_logging_tool"));
    let done = result(&asked);
    assert_eq!(done["isError"], false);
    let task = done["structuredContent"]["task"].as_u64().unwrap();
    assert_eq!(lines[0]["params"]["data"]["task"], task);

    // None without a level, none below the level asked for.
    for (id, level) in [(3, None), (4, Some("warning"))] {
        let quiet = call(
            &addr,
            &token,
            id,
            "tools/call",
            tool_call("test_logging_tool", level),
        )
        .await;
        assert!(logs(&quiet).is_empty(), "{level:?}: {quiet:?}");
        assert_eq!(result(&quiet)["isError"], false);
    }

    // The agent's content blocks are the result's content.
    let mixed = call(
        &addr,
        &token,
        5,
        "tools/call",
        tool_call("test_multiple_content_types", None),
    )
    .await;
    let content = result(&mixed)["content"].as_array().unwrap().clone();
    let kinds: Vec<&str> = content
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "image", "resource"], "{mixed:?}");
    assert_eq!(content[1]["mimeType"], "image/png");
    assert_eq!(
        content[2]["resource"]["uri"],
        "test://mixed-content-resource"
    );

    // An agent's error is a tool error with its message.
    let failed = call(
        &addr,
        &token,
        6,
        "tools/call",
        tool_call("test_error_handling", None),
    )
    .await;
    let failed = result(&failed);
    assert_eq!(failed["isError"], true);
    let why = failed["content"][0]["text"].as_str().unwrap();
    assert!(why.contains("intentionally returns an error"), "{why}");

    // Each call was a task of the agent, recorded as any other.
    let out = std::process::Command::new(warden_tests::warden_bin())
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_DATA_DIR")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path())
        .args(["task", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for agent in FIXTURES {
        assert!(list.contains(agent), "{agent} not in:\n{list}");
    }

    let _ = child.kill();
    let _ = child.wait();
}
