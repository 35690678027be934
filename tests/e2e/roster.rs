//! End-to-end: the roster's agents (`agents/README.md`), each run through the `warden` binary
//! under its shipped policy (`policies/<name>.toml`) on a copy of `docs/sample-workspace`, with
//! the scripted stub provider as its model (`small` and `large`).
//!
//! Every run that completes has passed the host's check of the agent's output contract (a breach
//! would be a kill), so each test that reads an output also checks the contract. The hostile
//! cases are the model's: junk instead of JSON, file blocks for `../x`, `/etc/passwd`, `.git/`,
//! code from the tester, a token in a lesson. One test asks the real local model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use warden::orchestra::model::stub::{StubProvider, StubReply};
use warden_tests::{agent, cargo, root, warden_bin};

/// The roster, by crate name.
const ROSTER: &[&str] = &[
    "router",
    "planner",
    "implementer",
    "tester",
    "skeptic",
    "documenter",
    "memory-curator",
    "validator",
];

/// The roster's components, built once per test binary.
fn roster(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"]);
        for a in ROSTER {
            cmd.args(["-p", a]);
        }
        assert!(
            cmd.status().expect("cargo runs").success(),
            "building the roster failed"
        );
        agent("hello")
            .parent()
            .expect("the wasm folder")
            .to_path_buf()
    });
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// A host of a test's own: a data directory, a `warden.toml` whose `small` and `large` are at
/// `url`, and a copy of the sample workspace in `ws/`.
struct Host {
    dir: tempfile::TempDir,
}

/// One run's `--json` report.
struct Report {
    code: i32,
    json: Value,
    err: String,
}

impl Report {
    fn status(&self) -> &str {
        self.json["outcome"]["status"].as_str().unwrap_or("")
    }

    /// The output of a completed run, parsed: the agent's contract held.
    fn output(&self) -> Value {
        assert_eq!(self.status(), "completed", "{self}");
        let text = self.json["outcome"]["output"].as_str().expect("an output");
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The agent's error message.
    fn message(&self) -> &str {
        self.json["outcome"]["message"].as_str().unwrap_or("")
    }

    fn task(&self) -> String {
        self.json["task"].as_u64().expect("a task id").to_string()
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

impl Host {
    fn new(url: &str) -> Host {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = String::new();
        for name in ["small", "large"] {
            config.push_str(&format!(
                "[[model]]\nname = \"{name}\"\nurl = \"{url}\"\nid = \"stub-1\"\n\
                 timeout = \"100 s\"\nretries = 0\njson_schema = true\n"
            ));
        }
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        copy_dir(
            &root().join("docs/sample-workspace"),
            &dir.path().join("ws"),
        );
        Host { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warden --config … <args>` on a blocking thread (the stub keeps serving).
    async fn warden(&self, args: &[&str]) -> (i32, String, String) {
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
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .expect("the command's thread")
    }

    /// Run the roster agent `name` under its shipped policy on the workspace copy.
    async fn run(&self, name: &str, task: &Value) -> Report {
        let owned = name.to_owned();
        let wasm = tokio::task::spawn_blocking(move || roster(&owned))
            .await
            .unwrap();
        let policy = root().join(format!("policies/{name}.toml"));
        let input = task.to_string();
        let (code, out, err) = self
            .warden(&[
                "run",
                wasm.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
                "--workspace",
                "ws",
                "--input",
                &input,
                "--json",
            ])
            .await;
        let json = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("--json printed no report ({e}): {out}\nstderr: {err}"));
        Report { code, json, err }
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path("ws").join(rel)).unwrap_or_default()
    }
}

/// A stub whose next answers are `replies`, and a host naming it.
async fn scripted(replies: &[&str]) -> (StubProvider, Host) {
    let stub = StubProvider::start().await.unwrap();
    stub.script(replies.iter().map(|r| StubReply::answer(r)));
    let host = Host::new(&stub.url());
    (stub, host)
}

fn request() -> &'static str {
    "fix the failing test in calc.py"
}

const FIXED_MEAN: &str =
    "FILE: calc.py\n```python\ndef mean(values):\n    return sum(values) / len(values)\n```\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_routes_from_the_model_and_falls_back_to_the_team_on_junk() {
    let (stub, host) = scripted(&[
        r#"{"route": "fast", "complexity": "low", "risk": "low", "confidence": 0.8, "reason": "one function"}"#,
        "Sure! ```json\n{\"route\": \"fast\", \"complexity\": \"high\", \"risk\": \"low\", \"confidence\": 3, \"reason\": \"r\", \"extra\": 1}\n```",
        "I would probably send this to the fast path, it looks simple.",
    ])
    .await;
    let task = json!({"request": request(), "files": ["calc.py", "test_calc.py"]});
    let fast = host.run("router", &task).await.output();
    assert_eq!(
        fast,
        json!({"route": "fast", "complexity": "low", "risk": "low", "confidence": 0.8, "reason": "one function"})
    );
    // The model asked for JSON, with the contract's schema.
    let sent = stub.requests()[0].json();
    assert!(
        sent["response_format"].to_string().contains("\"team\""),
        "{sent}"
    );
    assert!(
        sent.to_string().contains("test_calc.py"),
        "the listing is in the prompt"
    );

    let complex = host.run("router", &task).await.output();
    assert_eq!(
        (&complex["route"], &complex["confidence"]),
        (&json!("team"), &json!(1.0))
    );

    // No files given: the router lists the workspace itself (read-only grant).
    let junk = host
        .run("router", &json!({"request": request()}))
        .await
        .output();
    assert_eq!(
        junk,
        json!({"route": "team", "complexity": "high", "risk": "high", "confidence": 0.0,
               "reason": "the model's answer could not be read"})
    );
    assert!(
        stub.requests()[2]
            .json()
            .to_string()
            .contains("test_calc.py")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_implementer_writes_its_models_file_block_into_staging() {
    let reply = format!(
        "The mean divided by one too many.\n{FIXED_MEAN}SUMMARY: mean divides by len\nCONFIDENCE: 0.9\n"
    );
    let (stub, host) = scripted(&[&reply]).await;
    let before = host.read("calc.py");
    let r = host
        .run("implementer", &json!({"request": request(), "files": ["calc.py", "test_calc.py", "README.md"], "model": "small"}))
        .await;
    let out = r.output();
    assert_eq!(out["changed"], json!(["calc.py"]), "{r}");
    assert_eq!(out["confidence"], json!(0.9));
    assert_eq!(out["summary"], json!("mean divides by len"));
    assert_eq!(out["refused"], json!([]));
    // The prompt carried the file the request names, with its text.
    let prompt = stub.requests()[0].json().to_string();
    assert!(prompt.contains("(len(values) + 1)"), "{prompt}");
    // A level-1 agent proposes: the workspace is untouched, the diff holds the change.
    assert_eq!(host.read("calc.py"), before);
    let (code, diff, err) = host.warden(&["task", "diff", &r.task()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("calc.py") && diff.contains("return sum(values) / len(values)"),
        "{diff}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_implementer_refuses_hostile_blocks_and_is_not_killed() {
    let hostile = "FILE: ../x\n```\nx\n```\nFILE: /etc/passwd\n```\nroot::0:0::/:/bin/sh\n```\n\
                   FILE: .git/hooks/pre-commit\n```\nrm -rf ~\n```\nFILE: calc.py\n```\nunterminated\n";
    let (_stub, host) = scripted(&[hostile, "no blocks at all, sorry"]).await;
    let task = json!({"request": request(), "files": ["calc.py", "test_calc.py"],
                      "model": "large", "feedback": "FAIL: test_mean"});
    let r = host.run("implementer", &task).await;
    let out = r.output();
    assert_eq!(
        (&out["changed"], &out["confidence"]),
        (&json!([]), &json!(0.0)),
        "{r}"
    );
    let refused: Vec<&str> = out["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        refused,
        ["calc.py", "../x", "/etc/passwd", ".git/hooks/pre-commit"]
    );
    assert!(!host.path("x").exists());
    // Nothing was written, so nothing is proposed.
    assert_eq!(r.json["staging"], "none", "{r}");

    let out = host.run("implementer", &task).await.output();
    assert_eq!(
        (&out["changed"], &out["confidence"]),
        (&json!([]), &json!(0.0))
    );
    assert!(
        out["summary"].as_str().unwrap().contains("no file block"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tester_writes_test_files_only() {
    let reply = "FILE: test_mean_more.py\n```python\nimport unittest\n```\nFILE: calc.py\n```python\nbroken\n```\n\
                 FILE: tests/test_deep.py\n```python\nx = 1\n```\nSUMMARY: mean of two numbers\n";
    let (_stub, host) = scripted(&[reply]).await;
    let r = host
        .run(
            "tester",
            &json!({"request": request(), "files": ["calc.py", "test_calc.py"],
                    "plan": [{"id": "1", "do": "test mean", "after": []}]}),
        )
        .await;
    let out = r.output();
    assert_eq!(
        out["tests"],
        json!(["test_mean_more.py", "tests/test_deep.py"]),
        "{r}"
    );
    assert_eq!(out["refused"][0]["path"], "calc.py");
    assert!(
        out["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("outside what this stage may write")
    );
    let (code, diff, err) = host.warden(&["task", "diff", &r.task()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("test_mean_more.py") && !diff.contains("broken"),
        "{diff}{err}\n{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skeptic_accepts_rejects_and_rejects_what_it_cannot_read() {
    let (stub, host) = scripted(&[
        r#"{"verdict": "accept", "reasons": []}"#,
        r#"{"verdict": "reject"}"#,
        "LGTM!",
    ])
    .await;
    let plan = json!([{"id": "1", "do": "fix mean in calc.py", "after": []}]);
    let task = json!({"request": request(), "plan": plan});
    assert_eq!(
        host.run("skeptic", &task).await.output(),
        json!({"verdict": "accept", "reasons": []})
    );
    // It read the file the plan names.
    assert!(stub.requests()[0].json().to_string().contains("def mean"));
    let out = host.run("skeptic", &task).await.output();
    assert_eq!(out["verdict"], "reject");
    assert_eq!(out["reasons"].as_array().unwrap().len(), 1);
    let out = host.run("skeptic", &task).await.output();
    assert_eq!(
        out,
        json!({"verdict": "reject", "reasons": ["the model's answer could not be read"]})
    );
    // An empty plan is rejected without a model call.
    let out = host
        .run("skeptic", &json!({"request": request(), "plan": []}))
        .await
        .output();
    assert_eq!(out["verdict"], "reject");
    assert_eq!(stub.request_count(), 3);
}

#[test]
fn each_policy_grants_only_its_job() {
    use warden::policy::Policy;
    let writes = [
        "calc.py",
        "test_calc.py",
        "tests/t.rs",
        "README.md",
        "docs/x.txt",
        ".git/config",
    ];
    // What each stage may write, of `writes`.
    let table: &[(&str, &[&str])] = &[
        ("router", &[]),
        ("planner", &[]),
        ("skeptic", &[]),
        ("validator", &[]),
        ("memory-curator", &[]),
        ("tester", &["test_calc.py", "tests/t.rs"]),
        ("documenter", &["README.md", "docs/x.txt"]),
        (
            "implementer",
            &[
                "calc.py",
                "test_calc.py",
                "tests/t.rs",
                "README.md",
                "docs/x.txt",
                ".git/config",
            ],
        ),
    ];
    for (name, may) in table {
        let path = root().join(format!("policies/{name}.toml"));
        let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.agent.strict, "{name} is strict");
        for w in writes {
            assert_eq!(p.fs.allows_write(w), may.contains(&w), "{name} writing {w}");
        }
        assert_eq!(
            p.fs.allows_read("calc.py"),
            *name != "memory-curator",
            "{name}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for section in ["[net]", "[tools]", "[agents]"] {
            assert!(!text.contains(section), "{name} holds {section}");
        }
        assert_eq!(
            text.contains("[memory]"),
            *name == "memory-curator",
            "{name}"
        );
        let wall = p.limits.wall.as_secs();
        assert!((60..=120).contains(&wall), "{name}: wall {wall} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curator_stores_a_lesson_and_reports_the_one_the_filter_refuses() {
    let token = ["ghp_", "x7Kp2mQ9vL4tR8wZ1nB6cD3fG5hJ0sA2eY9u"].concat();
    let reply = json!({"lessons": [
        {"key": "Run the failing test first!", "text": "Run the failing test before reading the code.", "tags": ["Testing"]},
        {"key": "ci-token", "text": format!("The CI token is {token}"), "tags": []},
        {"key": "third", "text": "never kept: at most two", "tags": []}
    ]})
    .to_string();
    let (_stub, host) = scripted(&[&reply, "not json"]).await;
    let task = json!({"request": request(), "outcome": "completed", "verified": true,
                      "stages": [{"agent": "implementer", "outcome": "completed"}]});
    let r = host.run("memory-curator", &task).await;
    let out = r.output();
    assert_eq!(out["lessons"], json!(["run-the-failing-test-first"]), "{r}");
    assert_eq!(out["refused"][0]["key"], "ci-token");
    assert!(
        !out["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&token)
    );
    let (code, list, err) = host.warden(&["memory", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        list.contains("lessons/run-the-failing-test-first"),
        "{list}"
    );
    assert!(
        !list.contains("ci-token") && !list.contains("third"),
        "{list}"
    );
    let r = host.run("memory-curator", &task).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(r.message().contains("could not be read"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_gives_a_graph_or_says_why_not() {
    let (_stub, host) = scripted(&[
        "Plan: {\"steps\": [{\"id\": \"1\", \"do\": \"read calc.py\"}, {\"id\": \"2\", \"do\": \"fix mean\", \"after\": [\"1\"]}]}",
        r#"{"steps": [{"id": "a", "do": "x", "after": ["b"]}, {"id": "b", "do": "y", "after": ["a"]}]}"#,
    ])
    .await;
    let task = json!({"request": request(), "files": ["calc.py"], "feedback": {"passed": false, "commands": []}});
    let out = host.run("planner", &task).await.output();
    assert_eq!(
        out,
        json!({"steps": [{"id": "1", "do": "read calc.py", "after": []}, {"id": "2", "do": "fix mean", "after": ["1"]}]})
    );
    let r = host.run("planner", &task).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(r.message().contains("cycle"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documenter_writes_docs_only_and_the_validator_judges() {
    let reply =
        "FILE: README.md\n```markdown\n# Calc\nmean is fixed\n```\nFILE: calc.py\n```\nx\n```\n";
    let (stub, host) = scripted(&[
        reply,
        r#"{"verdict": "pass", "reasons": ["the tests pass"]}"#,
        "junk",
    ])
    .await;
    let r = host
        .run(
            "documenter",
            &json!({"request": request(), "changed": ["calc.py"], "summary": "fixed mean"}),
        )
        .await;
    let out = r.output();
    assert_eq!(out["docs"], json!(["README.md"]), "{r}");
    assert_eq!(out["refused"][0]["path"], "calc.py");

    let failed = json!({"passed": false, "commands": [
        {"command": ["python3", "-m", "unittest", "-q"], "status": 1, "timed_out": false, "output": "FAILED (failures=1)"}]});
    let task = json!({"request": request(), "changed": ["calc.py"], "verification": failed});
    let out = host.run("validator", &task).await.output();
    assert_eq!(
        out,
        json!({"verdict": "fail", "reasons": ["`python3 -m unittest -q` exited 1"]})
    );
    assert_eq!(
        stub.request_count(),
        1,
        "a failed verification needs no model"
    );

    let passed = json!({"passed": true, "commands": [
        {"command": ["python3", "-m", "unittest", "-q"], "status": 0, "timed_out": false, "output": "OK"}]});
    let task = json!({"request": request(), "changed": ["calc.py"], "verification": passed});
    let out = host.run("validator", &task).await.output();
    assert_eq!(out["verdict"], "pass");
    assert!(
        stub.requests()[1]
            .json()
            .to_string()
            .contains("python3 -m unittest -q")
    );
    let out = host.run("validator", &task).await.output();
    assert_eq!(
        out,
        json!({"verdict": "fail", "reasons": ["the model's answer could not be read"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_publishes_its_contract() {
    let host = Host::new("http://127.0.0.1:9/v1");
    for name in ROSTER {
        let wasm = tokio::task::spawn_blocking(move || roster(name))
            .await
            .unwrap();
        let (code, out, err) = host.warden(&["inspect", wasm.to_str().unwrap()]).await;
        assert_eq!(code, 0, "{name}: {err}");
        let schema = |which: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(which))
                .unwrap_or_else(|| panic!("{name}: no {which} line:\n{out}"))
                .to_owned()
        };
        assert!(
            schema("input schema:").contains("\"request\""),
            "{name}: {out}"
        );
        assert!(
            schema("output schema:").contains("\"properties\""),
            "{name}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_in_shape_with_the_real_local_model() {
    let url = tokio::task::spawn_blocking(warden_tests::model_server::url)
        .await
        .unwrap();
    let host = Host::new(url);
    let r = host
        .run(
            "router",
            &json!({"request": request(), "files": ["calc.py", "test_calc.py", "README.md"]}),
        )
        .await;
    let out = r.output();
    assert!(
        ["fast", "team"].contains(&out["route"].as_str().unwrap()),
        "{out}"
    );
    assert!(
        ["low", "high"].contains(&out["risk"].as_str().unwrap()),
        "{out}"
    );
    let c = out["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c), "{out}");
    assert!(out["reason"].is_string(), "{out}");
}
