//! The cascade through the API: `POST /v1/tasks {"cascade": "<request>", "workspace": DIR}` for
//! the development user, on a host whose agents directory is the roster (built and assembled as
//! `tests/e2e/cascade.rs` does) and whose `small` and `large` models are the scripted stub
//! provider answering the fast path (router → implementer → gate → documenter → validator →
//! curator). The task is acknowledged, its row ends `completed` with the verified change
//! proposed, its stages are its children, and `/metrics` counts one verified cascade. Malformed
//! cascade submissions are refused before anything runs and allocate no task.

use std::path::Path;

use serde_json::{Value, json};
use warden::orchestra::model::stub::{StubProvider, StubReply};
use warden_tests::{agent, cargo, root};

use super::{ended, error_code, launch, request, request_bytes, submit};

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

/// `calc.py` with `mean` fixed: the fixture's check passes on it.
const FIXED: &str = "\"\"\"A tiny calculator.\"\"\"\n\n\ndef mean(values):\n    \"\"\"The arithmetic mean.\"\"\"\n    return sum(values) / len(values)\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_name() == "__pycache__" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn say(value: Value) -> StubReply {
    StubReply::answer(&value.to_string())
}

/// The fast path's five answers, in the order the stages ask.
fn fast_path() -> Vec<StubReply> {
    let write = |path: &str, body: &str| {
        StubReply::answer(&format!(
            "Here is the change.\nFILE: {path}\n```\n{body}```\nSUMMARY: scripted change\nCONFIDENCE: 0.9\n"
        ))
    };
    vec![
        say(json!({"route": "fast", "complexity": "low", "risk": "low",
                   "confidence": 0.9, "reason": "scripted"})),
        write("calc.py", FIXED),
        write(
            "README.md",
            "# calc\n\n`calc.mean(values)` is the arithmetic mean (fixed).\n",
        ),
        say(json!({"verdict": "pass", "reasons": ["the check passes"]})),
        say(
            json!({"lessons": [{"key": "check-the-divisor", "text": "Check the divisor.", "tags": ["python"]}]}),
        ),
    ]
}

/// The roster, built, as an agents directory.
pub(super) fn roster_agents() -> tempfile::TempDir {
    let mut build = cargo();
    build.args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"]);
    for a in ROSTER {
        build.args(["-p", a]);
    }
    assert!(build.status().unwrap().success(), "building the roster");
    let wasm = agent("hello").parent().unwrap().to_path_buf();
    let agents = tempfile::tempdir().unwrap();
    for name in ROSTER {
        std::fs::copy(
            wasm.join(format!("{}.wasm", name.replace('-', "_"))),
            agents.path().join(format!("{name}.wasm")),
        )
        .unwrap();
        std::fs::copy(
            root().join(format!("policies/{name}.toml")),
            agents.path().join(format!("{name}.toml")),
        )
        .unwrap();
    }
    agents
}

/// A host folder for the roster in `agents`: its roles file (`dev` may write the workspace,
/// keep lessons and call both models, then `more_roles`), `small` and `large` at the stub
/// `stub_url`, `[cascade]` with `cascade` in it, and a copy of the fixture workspace `ws`, the
/// server's one workspace root (`[server] workspaces`).
/// Returns the folder and its `warden.toml`.
pub(super) fn roster_host(
    agents: &Path,
    stub_url: &str,
    more_roles: &str,
    cascade: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let host = tempfile::tempdir().unwrap();
    // Without `lessons`, the curator acting for a user is killed: the CLI's intersection.
    let roles = host.path().join("roles.toml");
    std::fs::write(
        &roles,
        format!(
            "[role.dev]\nagents = [\"*\"]\nfs.write = [\"**\"]\nmemory = {{ read = [\"lessons\"], write = [\"lessons\"] }}\n\
             model = {{ allow = [\"small\", \"large\"], tokens = 100000, usd = 10.0 }}\n{more_roles}"
        ),
    )
    .unwrap();
    let models: String = ["small", "large"]
        .map(|name| {
            format!(
                "[[model]]\nname = \"{name}\"\nurl = \"{stub_url}\"\nid = \"stub-{name}\"\n\
                 timeout = \"120 s\"\nretries = 0\njson_schema = true\n"
            )
        })
        .concat();
    let config = host.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[server]\nworkspaces = [{:?}]\n{models}[cascade]\n{cascade}\n",
            roles.display().to_string(),
            agents.display().to_string(),
            host.path().join("ws").display().to_string()
        ),
    )
    .unwrap();
    copy_dir(
        &root().join("tests/fixtures/cascade/calc"),
        &host.path().join("ws"),
    );
    (host, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_submitted_to_the_cascade_is_verified_and_counted() {
    let agents = roster_agents();
    let stub = StubProvider::start().await.unwrap();
    stub.script(fast_path());
    let (host, config) = roster_host(agents.path(), &stub.url(), "", "");
    let ws = host.path().join("ws");
    let broken = std::fs::read_to_string(ws.join("calc.py")).unwrap();

    // The blocking `warden serve` start off the runtime the stub serves on.
    let s = tokio::task::spawn_blocking(move || launch(&config, agents))
        .await
        .unwrap();
    let dev = s.token.clone();
    let ws_text = ws.display().to_string();

    // Refused before anything runs: no workspace, an empty request, an input, both kinds.
    for (body, code) in [
        (json!({"cascade": "fix mean in calc.py"}), "bad-workspace"),
        (json!({"cascade": " ", "workspace": ws_text}), "bad-cascade"),
        (
            json!({"cascade": "fix it", "input": 1, "workspace": ws_text}),
            "bad-body",
        ),
        (
            json!({"cascade": "fix it", "agent": "router", "workspace": ws_text}),
            "bad-body",
        ),
        (json!({"workspace": ws_text}), "bad-body"),
    ] {
        let (status, v) = request(
            &s.addr,
            "POST",
            "/v1/tasks",
            Some(&dev),
            body.to_string().into(),
        )
        .await;
        assert_eq!((status, error_code(&v)), (400, code), "{body}: {v}");
    }

    let body = json!({"cascade": "fix mean in calc.py", "workspace": ws_text});
    let task = submit(&s, &dev, &body).await;
    assert_eq!(task, 1, "a refused submission allocated a task");
    let row = ended(&s, &dev, task).await;
    assert_eq!(
        (&row["agent"], &row["status"], &row["user"]),
        (&json!("cascade"), &json!("completed"), &json!("dev")),
        "{row}"
    );
    assert_eq!(row["staging"], "proposed", "{row}");
    assert_eq!(row["grant"]["request"], "fix mean in calc.py", "{row}");
    // Proposed, not applied: the implementer is new.
    assert_eq!(std::fs::read_to_string(ws.join("calc.py")).unwrap(), broken);
    // Its stages are child tasks the dev user may read.
    let (status, child) = request(&s.addr, "GET", "/v1/tasks/2", Some(&dev), Vec::new()).await;
    assert_eq!(status, 200, "{child}");
    assert_eq!(
        (&child["parent"], &child["agent"]),
        (&json!(task), &json!("router")),
        "{child}"
    );

    // Counted just after its row is closed.
    let verified = r#"warden_runs_total{agent="cascade",outcome="verified"} 1"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let (status, _, text) =
            request_bytes(&s.addr, "GET", "/metrics", Some(&dev), Vec::new()).await;
        assert_eq!(status, 200);
        let text = String::from_utf8(text.to_vec()).unwrap();
        if text.lines().any(|l| l == verified) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(!text.contains("warden_escalations_total"), "{text}");
}
