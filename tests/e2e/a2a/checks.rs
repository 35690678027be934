//! What `tests/clients/a2a_client.py` saw, checked part by part; and one raw JSON-RPC call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

const COMPLETED: &str = "TASK_STATE_COMPLETED";

fn state(task: &Value) -> &str {
    task["status"]["state"].as_str().unwrap_or_default()
}

fn output_text(task: &Value) -> &str {
    task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

fn ids(list: &Value) -> Vec<&str> {
    list["tasks"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["id"].as_str()).collect())
        .unwrap_or_default()
}

/// The public card has no skills; the caller's one per agent; `hello`'s own one, at its URL.
pub fn cards(out: &Value) {
    let public = &out["public_card"];
    assert!(
        public["skills"].as_array().is_none_or(Vec::is_empty),
        "{public}"
    );
    let iface = &public["supportedInterfaces"][0];
    assert!(iface["url"].as_str().unwrap().ends_with("/a2a"), "{iface}");
    assert_eq!(iface["protocolBinding"], "JSONRPC");
    assert_eq!(iface["protocolVersion"], "1.0");
    assert_eq!(
        public["securitySchemes"]["warden-identity"]["httpAuthSecurityScheme"]["scheme"], "Bearer",
        "{public}"
    );
    assert_eq!(public["capabilities"]["streaming"], true);

    let skills: Vec<&str> = out["card"]["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["hello", "probe"]);
    let probe = &out["card"]["skills"][1];
    let tags = probe["tags"].to_string();
    assert!(tags.contains("irreversible-actions"), "{probe}");
    assert!(
        !out["card"]["skills"][0]["tags"]
            .to_string()
            .contains("irreversible")
    );

    let hello = &out["hello_card"];
    assert_eq!(hello["name"], "hello");
    assert_eq!(hello["skills"].as_array().unwrap().len(), 1, "{hello}");
    assert_eq!(
        hello["skills"][0]["description"],
        "Greets the name it is given."
    );
    let url = hello["supportedInterfaces"][0]["url"].as_str().unwrap();
    assert!(url.ends_with("/a2a/hello"), "{url}");
}

/// `hello` answered streamed (text part, skill in metadata) and not (data part, own endpoint).
pub fn hello(out: &Value) {
    let streamed = &out["hello_streamed"];
    assert!(
        streamed["events"][0].get("task").is_some(),
        "the first event is the task: {streamed}"
    );
    let task = &streamed["task"];
    assert_eq!(state(task), COMPLETED, "{task}");
    assert_eq!(output_text(task), "hello, bob", "{task}");
    assert_eq!(task["metadata"]["agent"], "hello");
    assert_eq!(task["contextId"], task["id"]);

    let sent = &out["hello_sent"];
    assert_eq!(state(sent), COMPLETED, "{sent}");
    assert_eq!(output_text(sent), "hello, ann", "{sent}");
}

/// GetTask and ListTasks show the caller's tasks, paged and per agent; another user sees none.
pub fn tasks(out: &Value) {
    let (first, second) = (
        out["hello_streamed"]["task"]["id"].as_str().unwrap(),
        out["hello_sent"]["id"].as_str().unwrap(),
    );
    let got = &out["get_task"];
    assert_eq!(got["id"], second);
    assert_eq!(state(got), COMPLETED);
    assert_eq!(output_text(got), "hello, ann");

    let list = &out["list_tasks"];
    assert_eq!(ids(list), [second, first], "newest first: {list}");
    assert_eq!(list["totalSize"], 2, "{list}");
    assert!(
        list["tasks"][0].get("artifacts").is_none(),
        "artifacts only when asked: {list}"
    );
    let page = &out["list_page"];
    assert_eq!(ids(page), [second], "{page}");
    assert_eq!(page["nextPageToken"], second, "{page}");
    assert_eq!(page["pageSize"], 1);
    let per_agent = &out["list_hello_only"];
    assert_eq!(ids(per_agent), [second, first], "{per_agent}");

    assert_eq!(out["other_get"]["type"], "TaskNotFoundError", "{out}");
    assert!(ids(&out["other_list"]).is_empty(), "{}", out["other_list"]);
    // A guest's roles list `hello` only: one skill, and `probe` refused at either endpoint.
    let skills = &out["other_card"]["skills"];
    assert_eq!(skills.as_array().map(Vec::len), Some(1), "{skills}");
    assert_eq!(skills[0]["id"], "hello");
    for case in ["other_probe", "other_probe_own"] {
        let seen = &out[case];
        assert_eq!(seen["status"], 200, "{case}: {seen}");
        let error = &seen["answer"]["error"];
        assert_eq!(error["code"], -32602, "{case}: {seen}");
        assert_eq!(
            error["data"][0]["metadata"]["warden"], "agent-not-granted",
            "{case}: {seen}"
        );
    }
}

/// The spinning probe answered at once, then cancelled while it spins (the server stops its
/// instance); an ended task not cancellable.
pub fn cancel(out: &Value) {
    let sent = &out["spin_sent"];
    assert!(
        ["TASK_STATE_WORKING", "TASK_STATE_SUBMITTED"].contains(&state(sent)),
        "answered at once: {sent}"
    );
    assert_eq!(sent["metadata"]["agent"], "probe");
    let cancel = &out["spin_cancel"];
    let after = &out["spin_after_cancel"];
    assert_eq!(state(cancel), "TASK_STATE_CANCELED", "{cancel}");
    assert_eq!(state(after), "TASK_STATE_CANCELED", "{after}");
    // An ended task cannot be followed.
    let followed = &out["spin_followed"];
    assert_eq!(followed["type"], "UnsupportedOperationError", "{followed}");
    let ended = &out["ended_cancel"];
    assert_eq!(ended["type"], "TaskNotCancelableError", "{ended}");
    assert!(
        ended["message"].as_str().unwrap().contains("already ended"),
        "{ended}"
    );
}

/// A model call over the budget escalates: `INPUT_REQUIRED`, with the trigger and what to do.
pub fn escalation(out: &Value) {
    let task = &out["escalated"];
    assert_eq!(state(task), "TASK_STATE_INPUT_REQUIRED", "{task}");
    assert_eq!(task["metadata"]["status"], "escalated", "{task}");
    let text = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("escalated (budget-cap)") && text.contains("send a new message"),
        "{text}"
    );
    assert_eq!(
        task["status"]["message"]["parts"][1]["data"]["reason"], "budget-cap",
        "{task}"
    );
}

/// A `deploy` waits for a person: `AUTH_REQUIRED` saying who does what; the action's id.
pub fn approval(out: &Value) -> u64 {
    let streamed = &out["deploy_streamed"];
    let task = &streamed["task"];
    assert_eq!(state(task), "TASK_STATE_AUTH_REQUIRED", "{streamed}");
    let parts = &task["status"]["message"]["parts"];
    let approvals = &parts[1]["data"]["approvals"];
    let action = approvals[0]["action"]
        .as_u64()
        .or_else(|| approvals[0]["action"].as_f64().map(|f| f as u64))
        .unwrap_or_else(|| panic!("no action in {task}"));
    assert_eq!(approvals[0]["tool"], "deploy", "{task}");
    let text = parts[0]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("`warden approve {action}`")),
        "{text}"
    );
    let got = &out["deploy_get"];
    assert_eq!(state(got), "TASK_STATE_AUTH_REQUIRED", "{got}");
    assert_eq!(got["id"], task["id"]);
    // A blocking SendMessage's answer reads its tree's actions too (an action was held since
    // it submitted the task, so the read is not skipped).
    let blocking = &out["deploy_blocking"];
    assert_eq!(state(blocking), "TASK_STATE_AUTH_REQUIRED", "{blocking}");
    let held = &blocking["status"]["message"]["parts"][1]["data"]["approvals"][0];
    assert_eq!(held["tool"], "deploy", "{blocking}");
    assert_ne!(held["action"], approvals[0]["action"], "{blocking}");
    action
}

/// No token: 401. Malformed requests: JSON-RPC errors with A2A's codes, nothing stored.
pub fn refusals(out: &Value) {
    let nobody = &out["no_token"];
    assert_eq!(nobody["type"], "A2AClientError", "{nobody}");
    assert!(
        nobody["message"].as_str().unwrap().contains("401"),
        "{nobody}"
    );
    assert_eq!(
        out["no_token_raw"]["status"], 401,
        "{}",
        out["no_token_raw"]
    );

    let expected = [
        ("not_json", -32700, "JSON_PARSE"),
        ("no_method", -32600, "INVALID_REQUEST"),
        ("unknown_method", -32601, "METHOD_NOT_FOUND"),
        ("bad_params", -32602, "INVALID_PARAMS"),
        ("no_skill", -32602, "INVALID_PARAMS"),
        ("path_skill", -32602, "INVALID_PARAMS"),
        ("file_part", -32005, "CONTENT_TYPE_NOT_SUPPORTED"),
        ("old_version", -32009, "VERSION_NOT_SUPPORTED"),
        ("no_task", -32001, "TASK_NOT_FOUND"),
    ];
    for (case, code, reason) in expected {
        let seen = &out["malformed"][case];
        assert_eq!(seen["status"], 200, "{case}: {seen}");
        let error = &seen["answer"]["error"];
        assert_eq!(error["code"], code, "{case}: {seen}");
        assert_eq!(error["data"][0]["reason"], reason, "{case}: {seen}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{case}: {seen}"
        );
        assert!(seen["answer"].get("result").is_none(), "{case}: {seen}");
    }
    assert_eq!(
        out["tasks_before_malformed"], out["tasks_after_malformed"],
        "a malformed request stored a task"
    );
}

/// One JSON-RPC request to `{base}/a2a` with `token` and `A2A-Version: 1.0`.
pub async fn post(base: &str, token: &str, body: &Value) -> (u16, Value) {
    let addr = base.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/a2a")
        .header("host", addr)
        .header("content-type", "application/json")
        .header("a2a-version", "1.0")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}
