//! End-to-end: the request cascade (`docs/cascade.md`) through the `warden` binary, as a user
//! runs it — `warden task run "<request>" --workspace ws --json`, `task resume | stop`, `task
//! show | diff | apply`, `audit tail | verify` — with the roster (`agents/`, under its shipped
//! policies, assembled as an agents directory the way `scripts/setup` does) and the scripted stub
//! provider as both models (`small` and `large`, with different ids and a price).
//!
//! Every scripted test drives the cascade down one path by what the stub answers each stage, in
//! the order the stages call (router, implementer, …), on a copy of the tiny workspace
//! `tests/fixtures/cascade/calc` whose check (`warden.task.toml`) passes only once the
//! implementer's `FILE: calc.py` block fixes `mean`. Each asserts on the `--json` report, the exit
//! code, the task tree, the audit log and the workspace on disk:
//!
//! - `fast.rs`: the fast path verified and its change proposed (the implementer is at level 1),
//!   then applied by a reviewer; every stage's spend in the tree;
//! - `team.rs`: the fast path's change failing the gate and the team (with `large`) fixing it;
//!   the skeptic rejecting → escalated, resumed with a note, stopped, and resume/stop refused;
//! - `triggers.rs`: a sensitive path, the budget cap, a miscalibrated confident router, and
//!   what a resume of a sensitive or budgeted task may do;
//! - `hostile.rs`: bad input refused before anything runs, a killed stage, checks that loop
//!   forever, try the network or write outside their folder, contained by the gate's jail;
//!   control characters escaped on the terminal;
//! - `local_model.rs`: the whole cascade on `docs/sample-workspace` with the real local model.
//!
//! Each test has its own stub, data directory and workspace, so they run in parallel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use warden::orchestra::model::stub::StubReply;
use warden_tests::{agent, cargo, root, warden_bin};

#[path = "cascade/fast.rs"]
mod fast;
#[path = "cascade/hostile.rs"]
mod hostile;
#[path = "cascade/local_model.rs"]
mod local_model;
#[path = "cascade/team.rs"]
mod team;
#[path = "cascade/triggers.rs"]
mod triggers;

/// The roster, by agent name (crate names with `_` for `-` in the component's file name).
const ROSTER: &[&str] = &[
    "router",
    "planner",
    "skeptic",
    "tester",
    "implementer",
    "documenter",
    "validator",
    "memory-curator",
];

/// The request every scripted test makes.
const REQUEST: &str = "fix mean in calc.py";

/// The fixture workspace's `calc.py`, with `mean` broken.
const BROKEN: &str = include_str!("../fixtures/cascade/calc/calc.py");

/// `calc.py` with `mean` fixed: the fixture's check passes on it.
const FIXED: &str = "\"\"\"A tiny calculator.\"\"\"\n\n\ndef mean(values):\n    \"\"\"The arithmetic mean.\"\"\"\n    return sum(values) / len(values)\n";

/// `calc.py` with `mean` still wrong: the fixture's check fails on it.
const WRONG: &str = "def mean(values):\n    return sum(values) / (len(values) - 1)\n";

/// The roster as an agents directory (`<name>.wasm` beside `<name>.toml`, the shipped policy),
/// built and assembled once per test binary.
fn roster_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"]);
        for a in ROSTER {
            cmd.args(["-p", a]);
        }
        assert!(
            cmd.status().expect("cargo runs").success(),
            "building the roster failed"
        );
        let wasm = agent("hello")
            .parent()
            .expect("the wasm folder")
            .to_path_buf();
        let dir = tempfile::tempdir().expect("a temp dir");
        for name in ROSTER {
            let from = wasm.join(format!("{}.wasm", name.replace('-', "_")));
            std::fs::copy(&from, dir.path().join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            std::fs::copy(
                root().join(format!("policies/{name}.toml")),
                dir.path().join(format!("{name}.toml")),
            )
            .expect("the policy is copied");
        }
        dir
    })
    .path()
}

/// A copy of the roster directory in `to`, with `edit` applied to the policy of `agent`.
fn roster_copy(to: &Path, agent: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(roster_dir()).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let policy = to.join(format!("{agent}.toml"));
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, edit(&text)).unwrap();
    to.to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "__pycache__" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// A host of a test's own: a data directory (`data/`), a `warden.toml` naming the roster
/// directory and the models, and a workspace (`ws/`, a copy of the fixture).
struct Host {
    dir: tempfile::TempDir,
}

/// What one `warden` command did.
struct Ran {
    code: i32,
    out: String,
    err: String,
}

/// One `warden task run | resume … --json`: the exit code, the cascade's report, stderr.
struct Cascade {
    code: i32,
    json: Value,
    err: String,
}

impl Cascade {
    fn task(&self) -> u64 {
        self.json["task"]
            .as_u64()
            .expect("the report names its task")
    }

    fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }

    fn trigger(&self) -> &str {
        self.json["trigger"].as_str().unwrap_or("")
    }

    fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or("")
    }

    /// `(agent, outcome)` of every stage run so far, the gate included.
    fn stages(&self) -> Vec<(String, String)> {
        self.json["stages"]
            .as_array()
            .expect("a list of stages")
            .iter()
            .map(|s| {
                (
                    s["agent"].as_str().unwrap_or("").to_owned(),
                    s["outcome"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Asserts this is an escalation by `trigger` with exit code 4.
    fn assert_escalated(&self, trigger: &str) {
        assert_eq!(
            (self.code, self.status(), self.trigger()),
            (4, "escalated", trigger),
            "{self}"
        );
    }

    /// Asserts this is a verified cascade with exit code 0.
    fn assert_verified(&self) {
        assert_eq!((self.code, self.status()), (0, "verified"), "{self}");
        assert_eq!(self.json["verification"]["passed"], true, "{self}");
    }
}

impl std::fmt::Display for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}: {:#}\nstderr: {}",
            self.code, self.json, self.err
        )
    }
}

/// `stages` as the report lists them, for comparing with [`Cascade::stages`].
fn stages(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
        .collect()
}

/// A stub answer of `text` with this usage (no cached tokens).
fn say_with(text: &str, prompt_tokens: u64, completion_tokens: u64) -> StubReply {
    StubReply::Answer {
        text: text.to_owned(),
        finish_reason: "stop".into(),
        prompt_tokens,
        cached_tokens: None,
        completion_tokens,
    }
}

/// A stub answer of `text` (10 prompt and 5 completion tokens).
fn say(text: &str) -> StubReply {
    StubReply::answer(text)
}

/// The router's judgement.
fn route(route: &str, confidence: f64) -> StubReply {
    let complexity = if route == "fast" { "low" } else { "high" };
    say(
        &json!({"route": route, "complexity": complexity, "risk": "low",
                "confidence": confidence, "reason": "scripted"})
        .to_string(),
    )
}

/// An implementer's (or tester's, or documenter's) reply writing `files` in full.
fn write(files: &[(&str, &str)], confidence: f64) -> StubReply {
    let mut text = String::from("Here is the change.\n");
    for (path, body) in files {
        text.push_str(&format!("FILE: {path}\n```\n{body}```\n"));
    }
    text.push_str(&format!(
        "SUMMARY: scripted change\nCONFIDENCE: {confidence}\n"
    ));
    say(&text)
}

/// The planner's plan of one step.
fn plan() -> StubReply {
    say(r#"{"steps": [{"id": "1", "do": "fix mean in calc.py", "after": []}]}"#)
}

/// The skeptic's verdict.
fn verdict(accept: bool) -> StubReply {
    say(&if accept {
        json!({"verdict": "accept", "reasons": []})
    } else {
        json!({"verdict": "reject", "reasons": ["scripted: the plan is too broad"]})
    }
    .to_string())
}

/// The tester's reply: one test file.
fn tests() -> StubReply {
    write(
        &[(
            "test_mean.py",
            "import calc\n\n\ndef test_mean():\n    assert calc.mean([2, 4]) == 3\n",
        )],
        0.8,
    )
}

/// The documenter's reply: the README in step.
fn docs() -> StubReply {
    write(
        &[(
            "README.md",
            "# calc\n\n`calc.mean(values)` is the arithmetic mean (fixed).\n",
        )],
        0.8,
    )
}

/// The validator's pass.
fn pass() -> StubReply {
    say(r#"{"verdict": "pass", "reasons": ["the check passes as the README promises"]}"#)
}

/// The curator's lesson.
fn lesson() -> StubReply {
    say(
        r#"{"lessons": [{"key": "check-the-divisor", "text": "Check the divisor of an average.", "tags": ["python"]}]}"#,
    )
}

impl Host {
    /// A host whose `small` (id `stub-small`) and `large` (id `stub-large`) are at `url`, with
    /// `cascade` as the body of `[cascade]` (and any tables after it), on a copy of the fixture.
    fn new(url: &str, cascade: &str) -> Host {
        Host::with_agents(url, cascade, roster_dir())
    }

    /// [`Host::new`] with the agents directory `agents`.
    fn with_agents(url: &str, cascade: &str, agents: &Path) -> Host {
        let models = ["small", "large"].map(|name| {
            format!(
                "[[model]]\nname = \"{name}\"\nurl = \"{url}\"\nid = \"stub-{name}\"\n\
                 price = {{ input = 1.0, cached = 0.5, output = 2.0 }}\n\
                 timeout = \"120 s\"\nretries = 0\njson_schema = true\n"
            )
        });
        Host::build(
            &models.concat(),
            cascade,
            agents,
            &root().join("tests/fixtures/cascade/calc"),
        )
    }

    /// A host with these `[[model]]` tables, `[cascade]` body and agents directory, on a copy
    /// of `workspace`.
    fn build(models: &str, cascade: &str, agents: &Path, workspace: &Path) -> Host {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = format!(
            "[agents]\ndir = {:?}\n{models}[cascade]\n{cascade}\n",
            agents.display().to_string()
        );
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        copy_dir(workspace, &dir.path().join("ws"));
        Host { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A file of the workspace ("" when absent).
    fn ws(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path("ws").join(rel)).unwrap_or_default()
    }

    /// Replace a file of the workspace.
    fn put(&self, rel: &str, text: &str) {
        let p = self.path("ws").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `warden --config … <args>` in the host's folder, on a blocking thread (the stub keeps
    /// serving on the test's runtime).
    async fn warden(&self, args: &[&str]) -> Ran {
        let dir = self.dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(warden_bin())
                .current_dir(&dir)
                .env("WARDEN_DATA_DIR", dir.join("data"))
                .env_remove("WARDEN_CONFIG")
                .env_remove("WARDEN_TOKEN")
                .env_remove("WARDEN_LOG")
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

    /// A cascade command with `--json`, its report parsed.
    async fn cascade(&self, args: &[&str]) -> Cascade {
        let mut args = args.to_vec();
        args.push("--json");
        let ran = self.warden(&args).await;
        let json = serde_json::from_str(&ran.out).unwrap_or_else(|e| {
            panic!(
                "--json printed no report ({e}), exit {}: {}\nstderr: {}",
                ran.code, ran.out, ran.err
            )
        });
        Cascade {
            code: ran.code,
            json,
            err: ran.err,
        }
    }

    /// `warden task run "<request>" --workspace ws --json`.
    async fn run(&self, request: &str) -> Cascade {
        self.cascade(&["task", "run", request, "--workspace", "ws"])
            .await
    }

    /// `warden task resume <task> [--note …] --json`.
    async fn resume(&self, task: u64, note: Option<&str>) -> Cascade {
        let id = task.to_string();
        let mut args = vec!["task", "resume", &id];
        if let Some(n) = note {
            args.extend(["--note", n]);
        }
        self.cascade(&args).await
    }

    /// `warden task show <task>`, parsed (the task and its children).
    async fn show(&self, task: u64) -> Value {
        let ran = self.warden(&["task", "show", &task.to_string()]).await;
        assert_eq!(ran.code, 0, "{}", ran.err);
        serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out))
    }

    /// Every record of the audit log, as `warden audit tail` prints them.
    async fn audit(&self) -> Vec<Value> {
        let ran = self.warden(&["audit", "tail", "-n", "100000"]).await;
        assert_eq!(ran.code, 0, "{}", ran.err);
        ran.out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The audit records of `kind` (with their task, agent and detail).
    async fn records(&self, kind: &str) -> Vec<Value> {
        self.audit()
            .await
            .into_iter()
            .filter(|r| r["kind"] == kind)
            .collect()
    }

    /// `warden audit verify` passes.
    async fn audit_verifies(&self) {
        let ran = self.warden(&["audit", "verify"]).await;
        assert_eq!(ran.code, 0, "audit verify: {}{}", ran.out, ran.err);
        assert!(ran.out.starts_with("ok:"), "{}", ran.out);
    }

    /// `warden task stop <task>` succeeds.
    async fn stop(&self, task: u64) {
        let ran = self.warden(&["task", "stop", &task.to_string()]).await;
        assert_eq!(ran.code, 0, "stop {task}: {}{}", ran.out, ran.err);
    }

    /// The cascade's working copy of `task`.
    fn working_copy(&self, task: u64) -> PathBuf {
        self.path(&format!("data/cascades/{task}/work"))
    }
}

/// The children of a `task show`, as `(agent, status)`.
fn children(show: &Value) -> Vec<(String, String)> {
    show["children"]
        .as_array()
        .expect("a list of children")
        .iter()
        .map(|c| {
            (
                c["agent"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// `model` of a stub request's body (the provider's model id the host sent).
fn model_id(request: &warden::orchestra::model::stub::StubRequest) -> String {
    request.json()["model"].as_str().unwrap_or("").to_owned()
}

/// `reply` with this usage instead of its own.
fn costing(reply: StubReply, prompt: u64, completion: u64) -> StubReply {
    match reply {
        StubReply::Answer { text, .. } => say_with(&text, prompt, completion),
        other => other,
    }
}

/// A whole count of a JSON report.
fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}
