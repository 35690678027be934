//! `warden mcp` over stdio, started by the Python SDK's stdio client, in both spec eras.

use super::{Host, check_session, client, warden};

fn session(mode: &str) -> serde_json::Value {
    let host = Host::new();
    let workspace = tempfile::tempdir().unwrap();
    let mut args = vec![
        "session".to_string(),
        "--mode".into(),
        mode.into(),
        "--".into(),
    ];
    args.push(warden());
    args.extend(host.warden_args(&[
        "mcp",
        "--workspace",
        &workspace.path().display().to_string(),
    ]));
    client(&args)
}

#[test]
fn stdio_legacy_handshake_lists_and_calls_tools() {
    let report = session("legacy");
    assert_eq!(report["protocol"], "2025-11-25", "{report}");
    check_session(&report);
}

#[test]
fn stdio_2026_07_28_lists_and_calls_tools() {
    let report = session("auto");
    assert_eq!(report["protocol"], "2026-07-28", "{report}");
    check_session(&report);
}

/// An agent copied into the agents folder while a client is connected is announced
/// (`notifications/tools/list_changed`) and listed.
#[test]
fn an_agent_added_to_the_folder_is_announced_and_listed() {
    let host = Host::new();
    let d = host.dir.path();
    std::fs::remove_file(d.join("probe.wasm")).unwrap();
    let policy = d.join("probe.toml");
    let kept = d.join("probe.toml.kept");
    std::fs::rename(&policy, &kept).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![
        "watch".into(),
        "--mode".into(),
        "legacy".into(),
        "--add-from".into(),
        format!(
            "{},{}",
            kept.display(),
            warden_tests::agent("probe").display()
        ),
        "--add-to".into(),
        format!("{},{}", policy.display(), d.join("probe.wasm").display()),
        "--".into(),
        warden(),
    ];
    args.extend(host.warden_args(&[
        "mcp",
        "--workspace",
        &workspace.path().display().to_string(),
    ]));
    let report = client(&args);
    assert_eq!(report["before"], serde_json::json!(["hello"]), "{report}");
    assert_eq!(report["notified"], true, "{report}");
    assert_eq!(
        report["after"],
        serde_json::json!(["hello", "probe"]),
        "{report}"
    );
}

/// A token the host does not trust is refused before anything is served.
#[test]
fn a_refused_token_serves_nothing() {
    let host = Host::new();
    let out = std::process::Command::new(warden())
        .args(host.warden_args(&["mcp", "--token", "v4.public.forged"]))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on the protocol's stream");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token"), "{err}");
}

/// `warden mcp` with no arguments in a repository's root (its built agents in
/// `target/wasm32-wasip2/release`, their policies in `policies/`): the current folder holds the
/// agents served, so it is no workspace — the tools run without one, with a note saying so,
/// rather than every call being refused — and an agent is loaded once, not for every call.
#[test]
fn from_a_repositorys_root_the_tools_run_without_a_workspace_and_load_once() {
    use std::io::{BufRead, BufReader, Write};
    let repo = tempfile::tempdir().unwrap();
    let built = repo.path().join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::create_dir_all(repo.path().join("policies")).unwrap();
    std::fs::copy(warden_tests::agent("hello"), built.join("hello.wasm")).unwrap();
    std::fs::copy(
        warden_tests::root().join("policies/hello.toml"),
        repo.path().join("policies/hello.toml"),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stderr = data.path().join("stderr");
    let mut child = std::process::Command::new(warden())
        .current_dir(repo.path())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .arg("--cache-dir")
        .arg(warden_tests::target_dir().join("warden-test-cache"))
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .arg("mcp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |msg: serde_json::Value| -> serde_json::Value {
        writeln!(input, "{msg}").unwrap();
        input.flush().unwrap();
        if msg.get("id").is_none() {
            return serde_json::Value::Null;
        }
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    };
    ask(
        serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "0"}}}),
    );
    ask(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    for id in 1..=2 {
        let answer = ask(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "hello", "arguments": {"input": "ann"}}}),
        );
        let result = &answer["result"];
        assert_eq!(result["isError"], false, "{answer}");
        assert!(result.to_string().contains("hello, ann"), "{answer}");
    }
    drop(input);
    let _ = child.wait();
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(err.contains("no workspace"), "{err}");
    let log = std::fs::read_to_string(data.path().join("data/audit.log")).unwrap();
    let loads = log
        .lines()
        .filter(|l| l.contains("\"agent-loaded\"") && l.contains("\"hello\""))
        .count();
    assert_eq!(loads, 1, "{log}");
}
