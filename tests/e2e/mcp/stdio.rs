//! `warden mcp` over stdio, started by the Python SDK's stdio client, in both spec eras.

use super::{Host, check_session, client, warden};

fn session(mode: &str) -> serde_json::Value {
    let host = Host::new();
    let workspace = tempfile::tempdir().unwrap();
    let mut args = vec!["session".to_string(), "--mode".into(), mode.into(), "--".into()];
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
