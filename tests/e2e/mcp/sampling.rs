//! An agent whose model is the calling MCP client (`provider = "mcp-client"`), through the
//! Python SDK's sampling callback: over streamable HTTP and stdio on a 2025-11-25 session the
//! agent's model call becomes `sampling/createMessage` and the client's answer is the agent's
//! reply (audited as a `model-call` whose usage the client did not report); a client that did
//! not declare `sampling` is refused with -32021 (`requiredCapabilities: {"sampling": {}}`)
//! before anything runs. On 2026-07-28 the server sends no request at all: the run pauses and
//! the call answers an input-required result, which the SDK's client fulfils with the same
//! callback and calls again with (`mcp/mrtr.rs`); the agent gets the same answer.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use warden_tests::root;

use super::{client, warden};

const FIXTURES: [&str; 2] = ["test_sampling", "test_missing_capability"];

/// An agents folder with the conformance fixtures `fixtures`, the `caller` model and a `dev`
/// role granting it.
pub(super) fn host(fixtures: &[&str]) -> (tempfile::TempDir, tempfile::TempDir) {
    let built = warden_tests::cargo()
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .args(["-p", "conformance-agents", "--examples"])
        .status()
        .unwrap();
    assert!(built.success(), "the fixture agents build");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in fixtures {
        std::fs::copy(
            root().join(format!("target/wasm32-wasip2/release/examples/{name}.wasm")),
            d.join(format!("{name}.wasm")),
        )
        .unwrap();
        std::fs::copy(
            root().join(format!("tests/conformance/agents/policies/{name}.toml")),
            d.join(format!("{name}.toml")),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("roles.toml"),
        "[role.dev]\nagents = [\"*\"]\nmodel = { allow = [\"caller\"], tokens = 100000 }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("warden.toml"),
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[[model]]\nname = \"caller\"\nprovider = \"mcp-client\"\n[prompt]\nconstitution = \"Be brief.\"\n",
            d.join("roles.toml").display().to_string(),
            d.display().to_string()
        ),
    )
    .unwrap();
    (dir, tempfile::tempdir().unwrap())
}

pub(super) fn warden_args(dir: &Path, data: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--config".to_string(),
        dir.join("warden.toml").display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--cache-dir".into(),
        root()
            .join("target/warden-test-cache")
            .display()
            .to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

/// The audit records of `data`.
pub(super) fn audit(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The client's reports (`what`: `sampling` or `elicit`) against `warden serve` on a fresh host
/// of `fixtures`, one for each `runs` entry (`[mode, extra args...]`), and the host's audit
/// records.
pub(super) fn over_http(
    what: &str,
    fixtures: &[&str],
    runs: &[&[&str]],
) -> (Vec<Value>, Vec<Value>) {
    let (dir, data) = host(fixtures);
    let mut command = Command::new(warden());
    command
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_DATA_DIR")
        .args(warden_args(
            dir.path(),
            data.path(),
            &["serve", "--listen", "127.0.0.1:0", "--grace-secs", "1"],
        ));
    let (mut child, addr, token) =
        warden_tests::served::start(command, &data.path().join("stderr"));
    let url = format!("http://{addr}/mcp");
    let reports = runs
        .iter()
        .map(|run| {
            let mut args = vec![what.to_string(), "--mode".into(), run[0].into()];
            args.extend(run[1..].iter().map(|a| a.to_string()));
            args.extend(["--url".into(), url.clone(), "--token".into(), token.clone()]);
            client(&args)
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    (reports, audit(data.path()))
}

/// The client answered the agent's model call: its answer is the agent's, what it was asked
/// is the agent's prompt under the host's layers.
fn check_answered(report: &Value, protocol: &str) {
    assert_eq!(report["protocol"], protocol, "{report}");
    let done = &report["calls"]["test_sampling"];
    assert_eq!(done["isError"], false, "{report}");
    assert_eq!(
        done["text"],
        "LLM response: the client's answer to: What is 2 + 2?"
    );
    let asked = report["asked"].as_array().unwrap();
    assert_eq!(asked.len(), 2, "both tools asked the client: {report}");
    assert_eq!(
        asked[0]["turns"],
        json!([{"role": "user", "text": "What is 2 + 2?"}])
    );
    assert_eq!(asked[0]["max_tokens"], 100);
    assert!(
        asked[0]["system"]
            .as_str()
            .is_some_and(|s| s.starts_with("Be brief.")),
        "the host's constitution leads the system prompt: {report}"
    );
}

/// A -32021 refusal naming `sampling`.
fn check_refused(report: &Value) {
    for tool in FIXTURES {
        let call = &report["calls"][tool];
        assert_eq!(call["code"], -32021, "{tool}: {report}");
        assert_eq!(
            call["data"]["requiredCapabilities"],
            json!({"sampling": {}}),
            "{report}"
        );
    }
    assert_eq!(report["asked"], json!([]));
}

#[test]
fn over_http_the_client_is_the_agents_model_and_a_client_without_sampling_is_refused() {
    let (reports, audit) = over_http(
        "sampling",
        &FIXTURES,
        &[
            &["legacy"],
            &["legacy", "--no-sampling"],
            &["auto", "--no-sampling"],
            &["auto"],
        ],
    );
    check_answered(&reports[0], "2025-11-25");
    check_refused(&reports[1]);
    assert_eq!(reports[2]["protocol"], "2026-07-28", "{}", reports[2]);
    check_refused(&reports[2]);
    // 2026-07-28 with sampling declared: the run pauses, the SDK answers the input-required
    // result with its callback, and the agent's call gets the same answer.
    check_answered(&reports[3], "2026-07-28");

    // Each model call audited: the client's answers with no usage (it reports none), through
    // either era; the refused calls ran nothing at all.
    let calls: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "model-call")
        .map(|r| &r["detail"])
        .collect();
    assert_eq!(calls.len(), 4, "two answered on each era: {calls:#?}");
    for answered in &calls {
        assert_eq!(answered["outcome"], "ok", "{answered}");
        assert_eq!(answered["usage_reported"], false);
        assert_eq!(answered["provider_model"], "mcp-client:client-test-model");
        assert_eq!(answered["prompt_tokens"], 0);
    }
    let tasks: std::collections::BTreeSet<u64> =
        audit.iter().filter_map(|r| r["task"].as_u64()).collect();
    assert_eq!(
        tasks.len(),
        4,
        "four tasks ran (two on each era), none for a refused call: {audit:#?}"
    );
}

#[test]
fn over_stdio_the_client_is_the_agents_model() {
    let (dir, data) = host(&FIXTURES);
    let workspace = tempfile::tempdir().unwrap();
    let mut args = vec![
        "sampling".to_string(),
        "--mode".into(),
        "legacy".into(),
        "--".into(),
        warden(),
    ];
    args.extend(warden_args(
        dir.path(),
        data.path(),
        &[
            "mcp",
            "--workspace",
            &workspace.path().display().to_string(),
        ],
    ));
    check_answered(&client(&args), "2025-11-25");
    let mut refused = args.clone();
    refused.insert(3, "--no-sampling".into());
    check_refused(&client(&refused));
}
