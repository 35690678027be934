//! End-to-end: model calls through the host against the scripted stub provider
//! (`warden::orchestra::model::stub::StubProvider`), for what a real server will not do on
//! demand: rate limits, errors, malformed and endless replies (`retries.rs`), an API key a
//! provider echoes back (`key.rs`), users whose roles lack the model or bound its budget
//! (`users.rs`), budgets drained by a loop (`budget.rs`), HTTPS to a provider (`https.rs`), the
//! audit records of every call (`audit.rs`), and a kill quoting a name of megabytes (`gate.rs`).
//!
//! Each test stands up its own stub and its own host (a data directory and a `warden.toml`
//! naming the stub), and runs the `probe` agent's `model` ops through the `warden` binary, as a
//! user would. The stub runs on the test's tokio runtime; the binary runs on a blocking thread.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use warden_tests::{agent, root, warden_bin};

#[path = "model_paths/audit.rs"]
mod audit;
#[path = "model_paths/budget.rs"]
mod budget;
#[path = "model_paths/gate.rs"]
mod gate;
#[path = "model_paths/https.rs"]
mod https;
#[path = "model_paths/key.rs"]
mod key;
#[path = "model_paths/retries.rs"]
mod retries;
#[path = "model_paths/users.rs"]
mod users;

/// The `[[model]]` keys of `small` unless a test overrides them: the stub's model id, a price
/// (so costs are not all zero), a short timeout and two retries.
const SMALL: &[(&str, &str)] = &[
    ("id", "\"stub-1\""),
    ("price", "{ input = 1.0, cached = 0.5, output = 2.0 }"),
    ("timeout", "\"5 s\""),
    ("retries", "2"),
];

/// A probe policy that may call `small` (the default budget) and runs at most 20 s.
const POLICY: &str = "[model]\nallow = [\"small\"]\n[limits]\nwall = \"20 s\"\n";

/// What one `warden` command did.
struct Ran {
    code: i32,
    out: String,
    err: String,
}

/// A run of the probe with `--json`: its exit code, report and stderr.
struct Report {
    code: i32,
    json: Value,
    err: String,
}

impl Report {
    fn task(&self) -> u64 {
        self.json["task"]
            .as_u64()
            .expect("the report names its task")
    }

    fn outcome(&self) -> &Value {
        &self.json["outcome"]
    }

    /// `outcome.status`.
    fn status(&self) -> &str {
        self.outcome()["status"].as_str().unwrap_or("")
    }

    /// The agent's error message or output.
    fn text(&self) -> &str {
        let o = self.outcome();
        o["message"]
            .as_str()
            .or_else(|| o["output"].as_str())
            .unwrap_or("")
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}: {:#}\nstderr: {}",
            self.code, self.json, self.err
        )
    }
}

/// A host of a test's own: a data directory, a `warden.toml` whose model `small` is a stub.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A host whose `small` is at `url` with [`SMALL`]'s keys, `overrides` replacing or adding
    /// some, and `more` (whole tables) after it.
    fn new(url: &str, overrides: &[(&str, &str)], more: &str) -> Host {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut keys: Vec<(&str, &str)> = SMALL
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        keys.extend_from_slice(overrides);
        let mut config = format!("[[model]]\nname = \"small\"\nurl = \"{url}\"\n");
        for (k, v) in keys {
            config.push_str(&format!("{k} = {v}\n"));
        }
        config.push_str(more);
        std::fs::write(dir.path().join("warden.toml"), config).expect("the config is written");
        std::fs::create_dir_all(dir.path().join("ws")).expect("the workspace");
        Host { dir }
    }

    /// Add `text` (whole tables) to the end of `warden.toml`.
    fn append_config(&self, text: &str) {
        let path = self.path("warden.toml");
        let config = std::fs::read_to_string(&path).expect("the config");
        std::fs::write(&path, config + text).expect("the config is written");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warden --config … <args>` with `env` set, on a blocking thread (the stub keeps serving).
    async fn warden_env(&self, env: &[(&str, &str)], args: &[&str]) -> Ran {
        let dir = self.dir.path().to_path_buf();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(warden_bin())
                .current_dir(&dir)
                .env("WARDEN_DATA_DIR", dir.join("data"))
                .env_remove("WARDEN_CONFIG")
                .env_remove("WARDEN_TOKEN")
                .env_remove("WARDEN_LOG")
                .envs(env)
                .arg("--cache-dir")
                .arg(root().join("target/warden-test-cache"))
                .arg("--config")
                .arg(dir.join("warden.toml"))
                .args(args)
                .output()
                .expect("warden runs");
            Ran {
                code: out.status.code().unwrap_or(-1),
                out: String::from_utf8_lossy(&out.stdout).into_owned(),
                err: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .expect("the command's thread")
    }

    async fn warden(&self, args: &[&str]) -> Ran {
        self.warden_env(&[], args).await
    }

    /// Run the probe under `[agent] name = "probe"` + `policy` with `task`, as `extra` says
    /// (`--token …`), with `env` set: the `--json` report.
    async fn probe_as(
        &self,
        env: &[(&str, &str)],
        extra: &[&str],
        policy: &str,
        task: &Value,
    ) -> Report {
        let policy_path = self.path("probe.toml");
        std::fs::write(&policy_path, format!("[agent]\nname = \"probe\"\n{policy}"))
            .expect("the policy is written");
        let probe = tokio::task::spawn_blocking(|| agent("probe"))
            .await
            .expect("the build's thread");
        let input = task.to_string();
        let mut args = vec![
            "run",
            probe.to_str().expect("a UTF-8 path"),
            "--policy",
            policy_path.to_str().expect("a UTF-8 path"),
            "--workspace",
            "ws",
            "--input",
            &input,
            "--json",
        ];
        args.extend_from_slice(extra);
        let ran = self.warden_env(env, &args).await;
        let json = serde_json::from_str(&ran.out).unwrap_or_else(|e| {
            panic!(
                "--json printed no report ({e}): {}\nstderr: {}",
                ran.out, ran.err
            )
        });
        Report {
            code: ran.code,
            json,
            err: ran.err,
        }
    }

    async fn probe(&self, policy: &str, task: &Value) -> Report {
        self.probe_as(&[], &[], policy, task).await
    }

    /// Every record of the audit log, parsed.
    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("data/audit.log")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The details of the audit records of kind `kind` for `task`, in order.
    fn records(&self, kind: &str, task: u64) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["kind"] == kind && r["task"] == task)
            .map(|r| r["detail"].clone())
            .collect()
    }

    /// The one `model-call` record of `task`.
    fn one_call(&self, task: u64) -> Value {
        let calls = self.records("model-call", task);
        assert_eq!(calls.len(), 1, "one model-call record: {calls:#?}");
        calls[0].clone()
    }

    /// `warden task show <task>`, parsed.
    async fn task_show(&self, task: u64) -> Value {
        let ran = self.warden(&["task", "show", &task.to_string()]).await;
        assert_eq!(ran.code, 0, "{}", ran.err);
        serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out))
    }

    /// The probe's line of `warden trust list`.
    async fn trust(&self) -> String {
        let ran = self.warden(&["trust", "list"]).await;
        assert_eq!(ran.code, 0, "{}", ran.err);
        ran.out
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|id| id.rsplit('/').next() == Some("probe"))
            })
            .unwrap_or_else(|| panic!("probe is not in trust list:\n{}", ran.out))
            .to_owned()
    }

    /// `warden audit verify` passes.
    async fn verify(&self) {
        let ran = self.warden(&["audit", "verify"]).await;
        assert_eq!(
            ran.code, 0,
            "audit verify failed:\n{}\n{}",
            ran.out, ran.err
        );
        assert!(ran.out.starts_with("ok: "), "{}", ran.out);
    }
}

/// The probe's `model` op: one call to `model` saying `text`, 8 completion tokens.
fn ask(model: &str, text: &str) -> Value {
    json!({"op": "model", "model": model, "text": text, "max_tokens": 8})
}

/// `v` as a count.
fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// Whether any file below `dir` contains `needle` (its bytes, whatever the file is).
fn any_file_contains(dir: &Path, needle: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = any_file_contains(&p, needle) {
                return Some(found);
            }
        } else if std::fs::read(&p)
            .ok()
            .is_some_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            return Some(p);
        }
    }
    None
}
