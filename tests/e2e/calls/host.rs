//! The harness of the agent-call tests: a host of a test's own with a ledger, an agents
//! directory of real components (the `probe` agent copied under each name a test gives it,
//! `hello`) beside their policies, and a workspace. Shared with the red-team class `calls`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use warden::store::TaskRecord;
use warden::user::User;
use warden::{RunOptions, RunReport, Runtime};
use warden_tests::{agent, root, warden_bin};

/// A host with its own data directory, agents directory and workspace.
pub struct Host {
    dir: tempfile::TempDir,
    pub runtime: Runtime,
    /// Its agents directory.
    agents: PathBuf,
}

impl Host {
    /// A host whose `[agents]` table holds `dir` and the keys in `agents_keys`.
    pub fn new(agents_keys: &str) -> Host {
        Host::configured(&format!("[agents]\ndir = \"{{agents}}\"\n{agents_keys}"))
    }

    /// A host whose agents directory is `current/agents`, `current` a symbolic link to
    /// `release-1` (as a deploy that re-points a link to its newest release lays it out; see
    /// [`Host::release`]).
    pub fn linked() -> Host {
        let host = Host::configured_in("[agents]\ndir = \"{agents}\"\n", "current/agents");
        let base = host.dir.path();
        std::fs::rename(base.join("current"), base.join("release-1")).unwrap();
        std::os::unix::fs::symlink("release-1", base.join("current")).unwrap();
        host
    }

    /// Make `release-<n>` with the agents of the current one, and re-point `current` to it at
    /// once (a new link renamed over the old).
    pub fn release(&self, n: u32) {
        let base = self.dir.path();
        let new = base.join(format!("release-{n}/agents"));
        std::fs::create_dir_all(&new).unwrap();
        for entry in std::fs::read_dir(self.agents()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), new.join(entry.file_name())).unwrap();
        }
        let link = base.join("next");
        std::os::unix::fs::symlink(format!("release-{n}"), &link).unwrap();
        std::fs::rename(&link, base.join("current")).unwrap();
    }

    /// A host without an agents directory.
    pub fn without_directory() -> Host {
        Host::configured("")
    }

    /// A host whose model `small` is the stub server at `url` (a short constitution, so a
    /// prompt's estimate stays small).
    pub fn with_models(url: &str) -> Host {
        let host = Host::configured(&format!(
            "[agents]\ndir = \"{{agents}}\"\n[prompt]\nconstitution = \"Be brief.\"\n\
             [[model]]\nname = \"small\"\nurl = \"{url}\"\nid = \"stub\"\n"
        ));
        let config = host.runtime.host_config().clone();
        let models =
            warden::orchestra::model::Models::from_config(&config, host.runtime.tls()).unwrap();
        Host {
            runtime: host.runtime.clone().with_models(models),
            ..host
        }
    }

    /// A host with `slots` instance slots (and as many instances in its engine's pool).
    pub fn with_slots(slots: u32, agents_keys: &str) -> Host {
        let host = Host::new(agents_keys);
        let engine = warden::EngineConfig {
            cache_dir: Some(root().join("target/warden-test-cache")),
            max_instances: slots,
            ..warden::EngineConfig::default()
        };
        let ledger = host.runtime.ledger().unwrap().clone();
        let runtime = Runtime::new(
            engine,
            warden::capabilities::tools::ToolRegistry::with_builtins(),
        )
        .unwrap()
        .with_host_config(host.runtime.host_config().clone())
        .with_ledger(ledger);
        Host { runtime, ..host }
    }

    fn configured(text: &str) -> Host {
        Host::configured_in(text, "agents")
    }

    /// A host whose agents directory is `agents` (relative to its folder).
    fn configured_in(text: &str, agents: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        for sub in [agents, "data", "ws/docs", "ws/src"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("ws/docs/a.md"), "alpha docs").unwrap();
        std::fs::write(dir.path().join("ws/src/main.rs"), "fn main() {}").unwrap();
        let agents = dir.path().join(agents);
        let text = text.replace("{agents}", agents.to_str().unwrap());
        std::fs::write(dir.path().join("warden.toml"), &text).unwrap();
        let config = warden::policy::HostConfig::parse("warden.toml", &text)
            .unwrap_or_else(|e| panic!("the test's host configuration: {e}"));
        let runtime = warden_tests::ledger_runtime(&dir.path().join("data"), config);
        Host {
            dir,
            runtime,
            agents,
        }
    }

    /// The agents directory.
    pub fn agents(&self) -> PathBuf {
        self.agents.clone()
    }

    /// The workspace.
    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    /// Put the component `component` in the agents directory as `name`, under a policy with
    /// `body` after its `[agent]` table.
    pub fn agent(&self, name: &str, component: &str, body: &str) {
        std::fs::copy(agent(component), self.agents().join(format!("{name}.wasm"))).unwrap();
        std::fs::write(
            self.agents().join(format!("{name}.toml")),
            format!("[agent]\nname = \"{name}\"\n{body}"),
        )
        .unwrap();
    }

    /// The `probe` agent as `name`.
    pub fn probe(&self, name: &str, body: &str) {
        self.agent(name, "probe", body);
    }

    /// Run the agent `name` of the directory on `task` for `user`, as `warden run` would.
    pub async fn run(&self, name: &str, task: &str, user: Option<Arc<User>>) -> RunReport {
        self.try_run(name, task, user).await.unwrap()
    }

    /// As [`Host::run`], with the error of a run that could not start.
    pub async fn try_run(
        &self,
        name: &str,
        task: &str,
        user: Option<Arc<User>>,
    ) -> Result<RunReport, warden::RunError> {
        let policy = self
            .runtime
            .load_policy(&self.agents().join(format!("{name}.toml")))
            .unwrap();
        let loaded = self
            .runtime
            .load_file(&self.agents().join(format!("{name}.wasm")), policy)
            .unwrap();
        let options = RunOptions {
            workspace: Some(self.ws()),
            user,
            on_begin: None,
            queued: None,
            client: None,
        };
        loaded.run(task, &options).await
    }

    /// Task `id` as the ledger has it.
    pub fn task(&self, id: u64) -> TaskRecord {
        self.runtime.ledger().unwrap().store().task(id).unwrap()
    }

    /// The tasks task `id` called.
    pub fn children(&self, id: u64) -> Vec<TaskRecord> {
        self.runtime
            .ledger()
            .unwrap()
            .store()
            .children(id, 100)
            .unwrap()
    }

    /// Every audit record of `kind`, as JSON.
    pub fn audit(&self, kind: &str) -> Vec<Value> {
        let log = self.dir.path().join("data/audit.log");
        warden::audit::read_tail(&log, 100_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == kind)
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }

    /// `warden --config … --data-dir … <args>`: exit code, stdout, stderr.
    pub fn warden(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(warden_bin())
            .current_dir(root())
            .env_remove("WARDEN_CONFIG")
            .env_remove("WARDEN_TOKEN")
            .env_remove("WARDEN_DATA_DIR")
            .arg("--cache-dir")
            .arg(root().join("target/warden-test-cache"))
            .arg("--config")
            .arg(self.dir.path().join("warden.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .args(if args.first() == Some(&"run") {
                vec!["--workspace".to_string(), self.ws().display().to_string()]
            } else {
                vec![]
            })
            .output()
            .expect("warden runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `warden audit verify` passes on the host's data directory.
    pub fn verify(&self) {
        let (code, out, err) = self.warden(&["audit", "verify"]);
        assert_eq!(code, 0, "audit verify failed: {out}{err}");
    }

    /// The folder that holds the agents, data and workspace folders.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// A probe task that calls `name` on `input`.
pub fn call(name: &str, input: &str) -> String {
    json!({"op": "call", "name": name, "input": input}).to_string()
}

/// The result of a `call` op that came back ok.
pub fn ok_text(out: &str) -> String {
    let v: Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not a call result ({e}): {out}"));
    v["ok"]
        .as_str()
        .unwrap_or_else(|| panic!("the call failed: {out}"))
        .to_owned()
}

/// The error kind of a `call` op that failed.
pub fn error_kind(out: &str) -> String {
    let v: Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not a call result ({e}): {out}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the call did not fail: {out}"))
        .to_owned()
}
