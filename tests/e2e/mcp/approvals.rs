//! An irreversible action through MCP: `probe` asks for the host tool `deploy`, which the host
//! holds for a person's approval. The call is no error: its result names the action and the
//! command that approves it (`structuredContent.approvals`, read from the ledger by the task's
//! pending actions), nothing was deployed, and a call that asked for nothing lists no approvals;
//! an action a callee holds is named in its caller's result.

use std::io::BufReader;
use std::process::Stdio;

use serde_json::{Value, json};

use super::Host;
use super::transport::{INITIALIZE, INITIALIZED, answer, send, spawn};

#[test]
fn an_action_held_for_approval_is_named_in_the_result_not_an_error() {
    let host = Host::new();
    let d = host.dir.path();
    let effects = tempfile::tempdir().unwrap();
    let deployed = effects.path().join("deployed.log");
    std::fs::write(
        d.join("probe.toml"),
        "[agent]\nname = \"probe\"\n[tools]\nallow = [\"deploy\"]\n",
    )
    .unwrap();
    // `front` asks `probe` for the same: the action is held in the callee's task, and the
    // caller's result names it (its tree's pending actions).
    std::fs::copy(d.join("probe.wasm"), d.join("front.wasm")).unwrap();
    std::fs::write(
        d.join("front.toml"),
        "[agent]\nname = \"front\"\n[tools]\nallow = [\"deploy\"]\n[agents]\ncall = [\"probe\"]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("roles.toml"),
        "[role.dev]\nagents = [\"*\"]\ntools.allow = [\"deploy\"]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("warden.toml"),
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\napproval_ttl = \"10 min\"\nwritable = [{:?}]\n",
            d.join("roles.toml").display().to_string(),
            d.display().to_string(),
            deployed.display(),
            effects.path().display().to_string(),
        ),
    )
    .unwrap();
    let (mut child, _ws) = spawn(&host, Stdio::piped(), Stdio::piped());
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    send(&mut to, INITIALIZE);
    answer(&mut from, 0);
    send(&mut to, INITIALIZED);
    let call = |id: u64, name: &str, input: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": {"input": input}}})
        .to_string()
    };
    let deploy = json!({"op": "tool", "name": "deploy", "input": "v1"});
    send(&mut to, &call(1, "probe", deploy.clone()));
    let result = answer(&mut from, 1)["result"].clone();
    assert_eq!(result["isError"], false, "{result}");
    let envelope = &result["structuredContent"];
    assert_eq!(envelope["status"], "completed", "{result}");
    let approvals = envelope["approvals"].as_array().expect("approvals");
    assert_eq!(approvals.len(), 1, "{result}");
    assert_eq!(approvals[0]["tool"], "deploy");
    let action = approvals[0]["action"].as_u64().unwrap();
    assert_eq!(approvals[0]["approve"], format!("warden approve {action}"));
    let said = result["content"].to_string();
    assert!(
        said.contains(&format!("`warden approve {action}`")),
        "{said}"
    );
    assert!(!deployed.exists(), "the irreversible action ran unapproved");

    send(&mut to, &call(2, "hello", json!("after")));
    let result = answer(&mut from, 2)["result"].clone();
    assert_eq!(result["structuredContent"]["output"], "hello, after");
    assert!(
        result["structuredContent"].get("approvals").is_none(),
        "{result}"
    );

    let through = json!({"op": "call", "name": "probe", "input": deploy.to_string()});
    send(&mut to, &call(3, "front", through));
    let result = answer(&mut from, 3)["result"].clone();
    assert_eq!(
        result["structuredContent"]["status"], "completed",
        "{result}"
    );
    let approvals = result["structuredContent"]["approvals"]
        .as_array()
        .expect("the callee's action named in the caller's result");
    assert_eq!(approvals.len(), 1, "{result}");
    assert_ne!(approvals[0]["action"].as_u64().unwrap(), action);
    assert!(!deployed.exists(), "the irreversible action ran unapproved");
    drop(to);
    assert!(child.wait().unwrap().success());
}
