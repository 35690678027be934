//! The whole cascade on `docs/sample-workspace` with the real local model (SmolLM2-135M under
//! llama.cpp, `warden_tests::model_server`) as both `small` and `large`. What such a model
//! answers is not scripted, so this asserts only on structure: stages ran (children in the tree),
//! a cost was recorded, an outcome was reached — and, once the gate has run (a person resumes an
//! escalation before it, at most three times), that the verification ran in the OS jail.

use serde_json::Value;

use super::{Cascade, Host, ROSTER, children, count, roster_dir};
use warden_tests::root;

/// The triggers a cascade may pause on (`docs/cascade.md`).
const TRIGGERS: &[&str] = &[
    "skeptic-rejected",
    "verification-failed",
    "sensitive",
    "budget",
    "confidence",
    "killed",
];

/// Most resumes of an escalation before the gate.
const RESUMES: usize = 3;

fn gate_ran(r: &Cascade) -> bool {
    r.stages().iter().any(|(a, _)| a == "gate")
}

/// The report is an outcome: verified, or escalated with a known trigger and its exit code.
fn assert_outcome(r: &Cascade) {
    match r.status() {
        "verified" => assert_eq!(r.code, 0, "{r}"),
        "escalated" => {
            assert_eq!(r.code, 4, "{r}");
            assert!(TRIGGERS.contains(&r.trigger()), "{r}");
            assert!(!r.detail().is_empty(), "{r}");
        }
        other => panic!("no outcome ({other}): {r}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cascade_runs_on_the_sample_workspace_with_the_real_local_model() {
    let url = tokio::task::spawn_blocking(warden_tests::model_server::url)
        .await
        .unwrap();
    let models = ["small", "large"].map(|name| {
        format!(
            "[[model]]\nname = \"{name}\"\nurl = \"{url}\"\nid = \"smollm2-135m\"\n\
             timeout = \"90 s\"\nretries = 0\njson_schema = true\n"
        )
    });
    // Bounded: a token budget for the whole task and a wall time (each run and each resume).
    let host = Host::build(
        &models.concat(),
        "tokens = 60000\nwall = \"300 s\"",
        roster_dir(),
        &root().join("docs/sample-workspace"),
    );
    let started = std::time::Instant::now();
    let mut runs = vec![host.run("fix the failing test in calc.py").await];
    let task = runs[0].task();
    while runs.len() <= RESUMES {
        let last = runs.last().unwrap();
        assert_outcome(last);
        if last.status() == "verified" || gate_ran(last) {
            break;
        }
        let note = "resumed by the end-to-end test";
        runs.push(host.resume(task, Some(note)).await);
    }
    let last = runs.last().unwrap();
    assert_outcome(last);
    eprintln!(
        "the local model's cascade: {} run(s), {:.0} s, ended {} {}",
        runs.len(),
        started.elapsed().as_secs_f64(),
        last.status(),
        last.trigger()
    );

    // Stages ran, each a child of the cascade's task, each a roster agent.
    let show = host.show(task).await;
    let tree = children(&show);
    assert!(!tree.is_empty(), "{show:#}");
    for (agent, status) in &tree {
        assert!(ROSTER.contains(&agent.as_str()), "{agent} in {show:#}");
        assert!(
            !status.is_empty() && status != "running",
            "{agent}: {status}"
        );
    }
    let reported: usize = runs
        .iter()
        .map(|r| {
            r.json["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["task"].is_u64())
                .count()
        })
        .sum();
    assert_eq!(reported, tree.len(), "every stage task is in the tree");

    // A cost was recorded: tokens in the reports and in the stages' rows.
    let tokens: u64 = runs
        .iter()
        .map(|r| {
            count(&r.json["model"]["prompt_tokens"]) + count(&r.json["model"]["completion_tokens"])
        })
        .sum();
    assert!(tokens > 0, "no tokens recorded");
    let in_rows: u64 = show["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let m: &Value = &c["outcome"]["usage"]["model"];
            m["prompt_tokens"].as_u64().unwrap_or(0) + m["completion_tokens"].as_u64().unwrap_or(0)
        })
        .sum();
    assert_eq!(in_rows, tokens, "the rows' tokens are the reports'");

    // The verification ran in the OS jail: the gate's record, with the workspace's command.
    if gate_ran(last) {
        let gate = host.records("gate-run").await;
        assert!(
            gate.iter().any(|g| g["task"] == task
                && g["agent"] == "gate"
                && g["detail"]["command"]
                    == serde_json::json!(["python3", "-m", "unittest", "-q"])),
            "{gate:#?}"
        );
        assert!(
            last.json["verification"]["commands"][0]["command"].is_array(),
            "{last}"
        );
    } else {
        panic!(
            "the gate never ran after {RESUMES} resumes: {}",
            runs.iter()
                .map(|r| format!("{} ({})", r.trigger(), r.detail()))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    // The sample workspace is never changed by a run (a change is at most proposed).
    assert_eq!(
        host.ws("calc.py"),
        std::fs::read_to_string(root().join("docs/sample-workspace/calc.py")).unwrap()
    );
    if last.status() == "escalated" {
        host.stop(task).await;
    }
    host.audit_verifies().await;
}
