//! Warden's MCP server checked by a client nobody here wrote: Python's official `mcp` SDK
//! (`tests/clients/mcp_client.py`, in `.venv-clients` made by `scripts/setup`), over stdio
//! (`warden mcp`, `mcp/stdio.rs`) and over streamable HTTP (`/mcp` on `warden serve`,
//! `mcp/http.rs`), in both spec eras (the 2025-11-25 initialize handshake, the 2026-07-28
//! stateless `server/discover`). The agents directory holds `hello` and `probe` under a policy
//! that grants no network: the client lists both tools with their schemas and annotations,
//! calls `hello` (progress notifications, structured content matching the declared output
//! schema), calls `probe` reaching for the network — killed, an error result, not a protocol
//! error — and calls `hello` again on the same connection: the server keeps serving.
//! `mcp/tasks.rs`: a call given up by the client stops its task at once (both eras), and the
//! tasks extension (SEP-2663) in plain JSON-RPC: handle, poll, result, cancel, another user's
//! task invisible. `mcp/transport.rs`: the streams under `warden mcp` (pipes and socketpairs on
//! tokio's reactor, the fallback to blocking streams, an oversized line dropped).
//! `mcp/approvals.rs`: an irreversible action held for approval is named in the call's result.
//! `mcp/sampling.rs`: an agent whose model is the calling client (sampling), and a client
//! without `sampling` refused (-32021) before anything runs. `mcp/elicit.rs`: an agent asking
//! the client's person (elicitation) accepted, declined, cancelled, unavailable. `mcp/mrtr.rs`:
//! on 2026-07-28 a run that asks pauses, over rounds of input-required results, its state
//! checked (changed, another user's, spent: refused).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use warden_tests::{agent, root, warden_bin};

#[path = "mcp/approvals.rs"]
mod approvals;
#[path = "mcp/elicit.rs"]
mod elicit;
#[path = "mcp/fixtures.rs"]
mod fixtures;
#[path = "mcp/http.rs"]
mod http;
#[path = "mcp/mrtr.rs"]
mod mrtr;
#[path = "mcp/sampling.rs"]
mod sampling;
#[path = "mcp/stdio.rs"]
mod stdio;
#[path = "mcp/tasks.rs"]
mod tasks;
#[path = "mcp/transport.rs"]
mod transport;

/// An agents directory (`hello`, `probe` with no network) and its host configuration.
struct Host {
    dir: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::copy(agent("hello"), d.join("hello.wasm")).unwrap();
        std::fs::copy(root().join("policies/hello.toml"), d.join("hello.toml")).unwrap();
        std::fs::copy(agent("probe"), d.join("probe.wasm")).unwrap();
        // Limits far above a test's length: only a cancellation stops a spinning probe in time.
        std::fs::write(
            d.join("probe.toml"),
            "[agent]\nname = \"probe\"\n[limits]\ncpu = \"60 s\"\nwall = \"120 s\"\n",
        )
        .unwrap();
        // The development user may use every agent; `hello-only` only `hello`.
        std::fs::write(
            d.join("roles.toml"),
            "[role.dev]\nagents = [\"*\"]\nfs.write = [\"**\"]\n[role.hello-only]\nagents = [\"hello\"]\n",
        )
        .unwrap();
        std::fs::write(
            d.join("warden.toml"),
            format!(
                "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[server]\nallowed_hosts = [\"mcp.example.com\"]\nallowed_origins = [\"https://app.example.com\"]\n",
                d.join("roles.toml").display().to_string(),
                d.display().to_string()
            ),
        )
        .unwrap();
        Host {
            dir,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("warden.toml")
    }

    /// `warden` with this host's configuration, data and the tests' compile cache, then `args`.
    fn warden_args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--config".to_string(),
            self.config().display().to_string(),
            "--data-dir".into(),
            self.data.path().display().to_string(),
            "--cache-dir".into(),
            root()
                .join("target/warden-test-cache")
                .display()
                .to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }
}

/// The clients' Python (`scripts/setup` makes the venv).
fn python() -> PathBuf {
    let p = root().join(".venv-clients/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup (it installs the pinned `mcp` and `a2a-sdk` clients)",
        p.display()
    );
    p
}

/// Run the client script with `args`; its JSON report.
fn client(args: &[String]) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/clients/mcp_client.py"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

/// What every session must show, whatever the transport and the era.
fn check_session(report: &Value) {
    let tools = report["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello", "probe"], "{report}");
    assert_eq!(report["same_order"], true);
    let hello = &tools[0];
    assert_eq!(
        hello["description"],
        "Greets the name it is given. (hello 0.1.0)"
    );
    // hello takes a string or an object: not an object schema, so its input is wrapped.
    assert_eq!(hello["inputSchema"]["type"], "object");
    assert!(hello["inputSchema"]["properties"]["input"].is_object());
    assert_eq!(
        hello["outputSchema"]["properties"]["output"]["type"],
        "string"
    );
    assert_eq!(hello["annotations"]["readOnlyHint"], true);
    assert_eq!(hello["annotations"]["destructiveHint"], false);
    assert_eq!(hello["annotations"]["openWorldHint"], false);
    // probe's contract takes and returns any JSON: wrapped input, an output of any shape.
    assert_eq!(
        tools[1]["inputSchema"]["properties"]["input"],
        serde_json::json!({})
    );
    assert_eq!(
        tools[1]["outputSchema"]["properties"]["output"],
        serde_json::json!({})
    );

    assert_eq!(report["hello"]["isError"], false, "{report}");
    assert_eq!(report["hello"]["structured"]["output"], "hello, mcp");
    assert_eq!(report["hello"]["structured"]["status"], "completed");
    assert!(report["hello"]["structured"]["task"].as_u64().is_some());
    let progress = report["progress"].as_array().expect("progress");
    assert!(progress.len() >= 2, "accepted and ended: {progress:?}");
    assert!(
        progress
            .windows(2)
            .all(|w| w[0]["progress"].as_f64() < w[1]["progress"].as_f64()),
        "progress increases: {progress:?}"
    );

    assert_eq!(report["hostile"]["isError"], true, "{report}");
    let why = report["hostile"]["text"].as_str().unwrap();
    assert!(why.contains("killed"), "{why}");

    assert_eq!(report["hello_after"]["isError"], false, "{report}");
    assert_eq!(
        report["hello_after"]["structured"]["output"],
        "hello, again"
    );
    let unknown = report["unknown"].as_str().unwrap();
    assert!(
        unknown.starts_with("error:") && unknown.contains("no tool"),
        "{unknown}"
    );
}

/// The `warden` binary path as a string.
fn warden() -> String {
    warden_bin().display().to_string()
}
