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
