//! End-to-end: `warden stats` after three cascades run by the `warden` binary (`warden task run`)
//! on copies of `docs/sample-workspace`, with the roster of `target/agents.d` (`scripts/setup`)
//! and the scripted stub provider as `small` and `large`, priced so that every figure is known:
//!
//! - A: the fast path's change passes the gate (first try); a reviewer discards its proposal;
//! - B: the fast path's change fails, the skeptic rejects the first plan and accepts the second,
//!   the team's implementer (on `large`) passes (rework); a regression is reported on it;
//! - C: the router sends it to the team, the skeptic rejects twice: escalated `skeptic-rejected`.
//!
//! Every stub reply says 1,000 prompt tokens (400 cached) and 100 completion tokens: a call costs
//! $0.001 on `small` and $0.01 on `large`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use warden::orchestra::model::stub::{StubProvider, StubReply};
use warden_tests::{root, warden_bin};

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

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(url: &str) -> Host {
        let agents = root().join("target/agents.d");
        assert!(
            agents.join("implementer.wasm").is_file(),
            "{} is missing: run scripts/setup",
            agents.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!("[agents]\ndir = \"{}\"\n", agents.display());
        for (name, input, cached, output) in [("small", 1, 0.5, 2), ("large", 10, 5.0, 20)] {
            config.push_str(&format!(
                "[[model]]\nname = \"{name}\"\nurl = \"{url}\"\nid = \"stub-1\"\ntimeout = \"100 s\"\n\
                 retries = 0\njson_schema = true\n\
                 price = {{ input = {input}, cached = {cached}, output = {output} }}\n"
            ));
        }
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        Host { dir }
    }

    /// A fresh copy of the sample workspace.
    fn workspace(&self, name: &str) -> PathBuf {
        let ws = self.dir.path().join(name);
        copy_dir(&root().join("docs/sample-workspace"), &ws);
        ws
    }

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
        .unwrap()
    }

    /// `warden task run --json` on a fresh workspace: the report.
    async fn cascade(&self, name: &str, want: &str) -> Value {
        let ws = self.workspace(name);
        let (code, out, err) = self
            .warden(&[
                "task",
                "run",
                "fix the failing test in calc.py",
                "--workspace",
                ws.to_str().unwrap(),
                "--json",
            ])
            .await;
        let report: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("exit {code}: no report ({e}): {out}\nstderr: {err}"));
        assert_eq!(report["status"], want, "{report:#}\nstderr: {err}");
        report
    }
}

fn reply(text: &str) -> StubReply {
    StubReply::Answer {
        text: text.into(),
        finish_reason: "stop".into(),
        prompt_tokens: 1_000,
        cached_tokens: Some(400),
        completion_tokens: 100,
    }
}

/// The sample's `calc.py`, fixed or still wrong, as an implementer's file block.
fn change(fixed: bool) -> String {
    let text = std::fs::read_to_string(root().join("docs/sample-workspace/calc.py")).unwrap();
    let text = if fixed {
        text.replace("(len(values) + 1)", "len(values)")
    } else {
        text.replace("(len(values) + 1)", "(len(values) + 2)")
    };
    assert!(text.contains("len(values)"));
    format!("FILE: calc.py\n```python\n{text}```\nSUMMARY: the mean\nCONFIDENCE: 0.9\n")
}

const ROUTE_FAST: &str = r#"{"route": "fast", "complexity": "low", "risk": "low", "confidence": 0.9, "reason": "one function"}"#;
const ROUTE_TEAM: &str = r#"{"route": "team", "complexity": "high", "risk": "low", "confidence": 0.9, "reason": "unclear"}"#;
const PLAN: &str = r#"{"steps": [{"id": "s1", "do": "fix mean in calc.py", "after": []}]}"#;
const ACCEPT: &str = r#"{"verdict": "accept", "reasons": []}"#;
const REJECT: &str = r#"{"verdict": "reject", "reasons": ["too broad"]}"#;
const PASS: &str = r#"{"verdict": "pass", "reasons": []}"#;
const NO_LESSONS: &str = r#"{"lessons": []}"#;
const NO_DOCS: &str = "The docs need no change.";
const NO_TESTS: &str = "The existing test covers it.\nSUMMARY: none\n";

fn row<'a>(lines: &'a [Value], kind: &str, name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["kind"] == kind && l[kind] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {lines:#?}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_cost_escalations_disagreement_quality_and_trust_per_agent_and_model() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url());
    let script = |texts: &[&str]| stub.script(texts.iter().map(|t| reply(t)));

    // A: the fast path, first try (5 calls on small).
    let (fixed, wrong) = (change(true), change(false));
    script(&[ROUTE_FAST, &fixed, NO_DOCS, PASS, NO_LESSONS]);
    let a = host.cascade("a", "verified").await;
    assert_eq!(a["staging"], "proposed", "a level-1 implementer proposes");
    let a = a["task"].as_u64().unwrap().to_string();
    let (code, _, err) = host.warden(&["task", "discard", &a]).await;
    assert_eq!(code, 0, "{err}");

    // B: rework (10 calls on small, the team's implementer on large).
    script(&[
        ROUTE_FAST, &wrong, PLAN, REJECT, PLAN, ACCEPT, NO_TESTS, &fixed, NO_DOCS, PASS, NO_LESSONS,
    ]);
    let b = host.cascade("b", "verified").await;
    let team = b["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["agent"] == "implementer")
        .nth(1)
        .and_then(|t| t["task"].as_u64())
        .expect("the team's implementer task")
        .to_string();
    let (code, _, err) = host
        .warden(&["trust", "report", &team, "--why", "mean of one is wrong"])
        .await;
    assert_eq!(code, 0, "{err}");

    // C: escalated by the skeptic (5 calls on small).
    script(&[ROUTE_TEAM, PLAN, REJECT, PLAN, REJECT]);
    let c = host.cascade("c", "escalated").await;
    assert_eq!(c["trigger"], "skeptic-rejected");
    assert_eq!(stub.request_count(), 21, "every scripted reply was used");

    let (code, out, err) = host.warden(&["stats", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();

    let cascade = row(&lines, "agent", "cascade");
    assert_eq!(
        [
            &cascade["tasks"],
            &cascade["cascades"],
            &cascade["first_try"],
            &cascade["rework"],
            &cascade["escalated"],
        ]
        .map(n),
        [3, 3, 1, 1, 1],
        "{cascade:#}"
    );
    assert_eq!(cascade["triggers"], json!({"skeptic-rejected": 1}));
    assert_eq!(cascade["first_try_rate"], json!(0.5));
    // The reviewer's discard of A's proposal: one reversal of one decision.
    assert_eq!(
        [&cascade["reviewed_proposals"], &cascade["reversals"]].map(n),
        [1, 1]
    );
    assert_eq!(cascade["disagreement_rate"], json!(1.0));
    // A cascade's own row sums its stages: 20 calls on small, 1 on large.
    assert_eq!(n(&cascade["cost_micro_usd"]), 20 * 1_000 + 10_000);
    assert_eq!(n(&cascade["cost_per_task_micro_usd"]), 10_000);

    let skeptic = row(&lines, "agent", "skeptic");
    assert_eq!(
        [&skeptic["skeptic_reviews"], &skeptic["skeptic_rejections"]].map(n),
        [4, 3]
    );
    assert_eq!(skeptic["disagreement_rate"], json!(0.75));
    let implementer = row(&lines, "agent", "implementer");
    assert_eq!(
        [
            &implementer["tasks"],
            &implementer["cost_micro_usd"],
            &implementer["cost_per_task_micro_usd"],
            &implementer["demotions"],
        ]
        .map(n),
        [3, 12_000, 4_000, 1]
    );
    assert_eq!(implementer["cache_hit_rate"], json!(0.4));

    let small = row(&lines, "model", "small");
    assert_eq!(
        [
            &small["tasks"],
            &small["calls"],
            &small["cost_micro_usd"],
            &small["cascades"],
            &small["first_try"],
            &small["rework"],
            &small["skeptic_reviews"],
            &small["skeptic_rejections"],
            &small["demotions"],
        ]
        .map(n),
        [20, 20, 20_000, 3, 1, 1, 4, 3, 0]
    );
    assert_eq!(small["triggers"], json!({"skeptic-rejected": 1}));
    assert_eq!(small["cache_hit_rate"], json!(0.4));
    let large = row(&lines, "model", "large");
    assert_eq!(
        [
            &large["tasks"],
            &large["cost_micro_usd"],
            &large["cost_per_task_micro_usd"],
            &large["cascades"],
            &large["first_try"],
            &large["rework"],
            &large["demotions"],
        ]
        .map(n),
        [1, 10_000, 10_000, 1, 0, 1, 1]
    );
    assert_eq!(large["triggers"], json!({}));

    let days: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "trust").collect();
    assert_eq!(days.len(), 1, "{days:#?}");
    assert_eq!(days[0]["agent"], "implementer");
    assert_eq!(n(&days[0]["demotions"]), 1);

    // The text form carries the same figures.
    let (code, text, err) = host.warden(&["stats"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("cascades: 1 over 3 cascades: skeptic-rejected 1 (33.3%)"),
        "{text}"
    );
    assert!(
        text.contains("implementer") && text.contains("+0 -1"),
        "{text}"
    );
}
