//! The shared harness for end-to-end tests: build the agents once, load them under a policy
//! written inline, run a task, and assert on the outcome.

pub mod model_server;
pub mod served;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use warden::capabilities::tools::ToolRegistry;
use warden::policy::Policy;
use warden::{
    EngineConfig, KillReason, LoadError, LoadedAgent, Outcome, RunOptions, RunReport, Runtime,
};

/// The agents the tests use, built for wasm32-wasip2.
pub const AGENTS: &[&str] = &["hello", "scribe", "fetch", "probe"];

/// The workspace's root folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target folder the tests build and cache in.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `cargo` (the one running the tests) in the workspace's root, for the builds a test makes.
///
/// Without the variables `cargo test` sets for the test itself (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, …): ring's build tracks some of them, so it would see them change
/// between `cargo test` and this build, and each would rebuild the TLS stack and everything
/// above it for the other.
pub fn cargo() -> Command {
    const THE_TESTS_OWN: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
    ];
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if THE_TESTS_OWN.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// Build every test agent (once per test binary) and return the path of `name`'s component.
pub fn agent(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"]);
        for a in AGENTS {
            cmd.args(["-p", a]);
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the agents failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)");
    });
    target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

/// The `warden` binary, built once per test binary.
pub fn warden_bin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = cargo()
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "warden",
                "--bin",
                "warden",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building warden failed");
    });
    target_dir().join("release/warden")
}

/// A data directory for the `warden` commands a test binary runs (so they never touch the
/// user's own `~/.local/state/warden`), removed when the process ends... or left in the temp dir.
pub fn test_data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// A host of its own with a ledger in `data_dir` and the host configuration `config`.
pub fn ledger_runtime(data_dir: &Path, config: warden::policy::HostConfig) -> Runtime {
    let engine = EngineConfig {
        cache_dir: Some(target_dir().join("warden-test-cache")),
        max_instances: 16,
        ..EngineConfig::default()
    };
    let ledger =
        warden::ledger::Ledger::open(data_dir, config.checkpoint_every).expect("the ledger opens");
    Runtime::new(engine, ToolRegistry::with_builtins())
        .expect("engine builds")
        .with_host_config(config)
        .with_ledger(std::sync::Arc::new(ledger))
}

/// One host shared by the tests of a binary, with a compiled-component cache under target/.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let config = EngineConfig {
            cache_dir: Some(target_dir().join("warden-test-cache")),
            max_instances: 200,
            ..EngineConfig::default()
        };
        Runtime::new(config, ToolRegistry::with_builtins()).expect("engine builds")
    })
}

/// Parse a policy written inline; `name` goes in `[agent]`.
pub fn policy(name: &str, body: &str) -> Policy {
    let text = format!("[agent]\nname = \"{name}\"\n{body}");
    Policy::parse("inline.toml", &text).unwrap_or_else(|e| panic!("test policy is invalid: {e}"))
}

/// Load `agent` under an inline policy.
pub fn load(agent_name: &str, policy_body: &str) -> Result<LoadedAgent, LoadError> {
    runtime().load_file(&agent(agent_name), policy(agent_name, policy_body))
}

/// Load and run one task, in `workspace` if given.
pub async fn run(
    agent_name: &str,
    policy_body: &str,
    task: &str,
    workspace: Option<&Path>,
) -> RunReport {
    let agent = load(agent_name, policy_body).unwrap_or_else(|e| panic!("load failed: {e}"));
    let options = RunOptions {
        workspace: workspace.map(Path::to_path_buf),
        user: None,
        on_begin: None,
        queued: None,
        client: None,
    };
    agent
        .run(task, &options)
        .await
        .unwrap_or_else(|e| panic!("run could not start: {e}"))
}

/// The output of a completed run, or a panic that shows the whole report.
pub fn completed(report: &RunReport) -> &str {
    match &report.outcome {
        Outcome::Completed { output } => output,
        other => panic!(
            "expected completed, got {other:?}\nlogs: {:?}",
            report.output
        ),
    }
}

/// Assert the run was killed for `reason`; returns (capability, detail).
pub fn killed(report: &RunReport, reason: KillReason) -> (String, String) {
    match &report.outcome {
        Outcome::Killed {
            reason: r,
            capability,
            detail,
        } if *r == reason => (capability.clone(), detail.clone()),
        other => panic!("expected killed({reason}), got {other:?}"),
    }
}

/// A probe task as JSON.
pub fn probe(op: &str, fields: &[(&str, serde_json::Value)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("op".into(), op.into());
    for (k, v) in fields {
        map.insert((*k).into(), v.clone());
    }
    serde_json::Value::Object(map).to_string()
}

/// `warden <args>` run from the repository root with `data` as its data directory, no host
/// configuration or token from the environment, and the tests' compile cache: exit code, stdout,
/// stderr.
pub fn warden_with_data(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(warden_bin())
        .current_dir(root())
        .env("WARDEN_DATA_DIR", data)
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(args)
        .output()
        .expect("warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
