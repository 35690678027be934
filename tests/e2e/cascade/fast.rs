//! The fast path: router → implementer (`small`) → the gate passes → documenter → validator →
//! curator, verified. The implementer is new (level 1), so the change is proposed, not applied:
//! the workspace is untouched until a reviewer applies it. Every stage's model spend is in its
//! child task's row and adds up in the cascade's report and its own row.

use serde_json::json;
use warden::orchestra::model::stub::StubProvider;

use super::{
    BROKEN, FIXED, Host, REQUEST, children, costing, count, docs, lesson, model_id, pass, route,
    stages, write,
};

/// Each stage's usage: (prompt, completion) tokens, distinct so a mixed-up sum shows.
const USAGE: [(&str, u64, u64); 5] = [
    ("router", 110, 11),
    ("implementer", 220, 22),
    ("documenter", 330, 33),
    ("validator", 440, 44),
    ("memory-curator", 550, 55),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_is_verified_and_its_change_proposed_then_applied_by_a_reviewer() {
    let stub = StubProvider::start().await.unwrap();
    let replies = [
        route("fast", 0.9),
        write(&[("calc.py", FIXED)], 0.9),
        docs(),
        pass(),
        lesson(),
    ];
    stub.script(
        replies
            .into_iter()
            .zip(USAGE)
            .map(|(r, (_, p, c))| costing(r, p, c)),
    );
    let host = Host::new(&stub.url(), "");
    let r = host.run(REQUEST).await;
    r.assert_verified();
    assert_eq!(
        r.stages(),
        stages(&[
            ("router", "completed"),
            ("implementer", "completed"),
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ]),
        "{r}"
    );
    assert_eq!(r.json["changed"], json!(["README.md", "calc.py"]), "{r}");
    assert_eq!(r.json["staging"], "proposed", "{r}");
    assert!(r.json["applied"].is_null(), "{r}");
    let check = &r.json["verification"]["commands"][0];
    assert_eq!(
        (&check["command"][0], &check["status"]),
        (&json!("python3"), &json!(0)),
        "{r}"
    );
    // The fast path asks `small` only; one call per stage.
    let sent: Vec<String> = stub.requests().iter().map(model_id).collect();
    assert_eq!(sent, ["stub-small"; 5], "{r}");

    // Proposed: the workspace is untouched, the working copy is gone, the diff holds the change.
    assert_eq!(host.ws("calc.py"), BROKEN);
    assert!(!host.ws("README.md").contains("(fixed)"));
    assert!(!host.working_copy(r.task()).exists());
    let id = r.task().to_string();
    let diff = host.warden(&["task", "diff", &id]).await;
    assert_eq!(diff.code, 0, "{}", diff.err);
    for needle in [
        "calc.py",
        "return sum(values) / len(values)",
        "README.md",
        "(fixed)",
    ] {
        assert!(diff.out.contains(needle), "{needle} not in {}", diff.out);
    }

    // The tree: the cascade's task, each stage a child with its agent, outcome and cost.
    let show = host.show(r.task()).await;
    assert_eq!(
        (&show["agent"], &show["status"], &show["staging"]),
        (&json!("cascade"), &json!("completed"), &json!("proposed")),
        "{show:#}"
    );
    let tree = children(&show);
    let expected: Vec<(String, String)> = USAGE
        .iter()
        .map(|(a, _, _)| ((*a).to_owned(), "completed".to_owned()))
        .collect();
    assert_eq!(tree, expected, "{show:#}");
    let ids: Vec<&serde_json::Value> = show["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["task"])
        .collect();
    let reported: Vec<&serde_json::Value> = r.json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["task"])
        .collect();
    assert_eq!(ids, reported, "the report's stage tasks are the tree's");

    // Every stage's spend, in its row; their sum in the report and in the cascade's row.
    // Priced at 1 µUSD per prompt token and 2 per completion token.
    for (child, (agent, prompt, completion)) in
        show["children"].as_array().unwrap().iter().zip(USAGE)
    {
        let model = &child["outcome"]["usage"]["model"];
        assert_eq!(
            [
                count(&model["calls"]),
                count(&model["prompt_tokens"]),
                count(&model["completion_tokens"]),
                count(&child["cost_micro_usd"]),
            ],
            [1, prompt, completion, prompt + 2 * completion],
            "{agent}: {child:#}"
        );
    }
    let (prompt, completion) = USAGE
        .iter()
        .fold((0, 0), |(p, c), (_, dp, dc)| (p + dp, c + dc));
    let total = json!({
        "calls": 5, "prompt_tokens": prompt, "cached_tokens": 0,
        "completion_tokens": completion, "cost_micro_usd": prompt + 2 * completion,
        "models": ["small"],
    });
    assert_eq!(r.json["model"], total, "{r}");
    assert_eq!(show["outcome"]["usage"]["model"], total, "{show:#}");

    // The audit log: the gate's run in the jail, the proposal, the cascade's start and end.
    let gate = host.records("gate-run").await;
    assert_eq!(gate.len(), 1, "{gate:#?}");
    assert_eq!(
        (
            &gate[0]["task"],
            &gate[0]["agent"],
            &gate[0]["detail"]["status"]
        ),
        (&json!(r.task()), &json!("gate"), &json!(0)),
        "{gate:#?}"
    );
    let proposed = host.records("staging-proposed").await;
    assert!(
        proposed
            .iter()
            .any(|p| p["task"] == r.task() && p["agent"] == "cascade"),
        "{proposed:#?}"
    );
    let root_applied = |records: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        records
            .into_iter()
            .filter(|a| a["task"] == r.task())
            .collect()
    };
    // (The stages' own writes were applied to the working copy, under their own tasks.)
    assert!(root_applied(host.records("staging-applied").await).is_empty());
    host.audit_verifies().await;

    // A reviewer applies it (as scripts/demo does): now the workspace holds the change.
    let keygen = host
        .warden(&["keygen", host.path("reviewer").to_str().unwrap()])
        .await;
    assert_eq!(keygen.code, 0, "{}", keygen.err);
    std::fs::write(
        host.path("roles.toml"),
        format!(
            "[person.reviewer]\nkey = \"{}\"\nroles = [\"reviewer\"]\n[role.reviewer]\nagents = [\"*\"]\nreview = true\n",
            keygen.out.trim()
        ),
    )
    .unwrap();
    let key = host.path("reviewer.key");
    let roles = host.path("roles.toml");
    let apply = host
        .warden(&[
            "task",
            "apply",
            &id,
            "--key",
            key.to_str().unwrap(),
            "--roles-file",
            roles.to_str().unwrap(),
        ])
        .await;
    assert_eq!(apply.code, 0, "{}{}", apply.out, apply.err);
    assert_eq!(host.ws("calc.py"), FIXED);
    assert!(host.ws("README.md").contains("(fixed)"));
    let applied = root_applied(host.records("staging-applied").await);
    assert_eq!(applied.len(), 1, "{applied:#?}");
    assert_eq!(applied[0]["detail"]["reviewer"], "reviewer", "{applied:#?}");
    host.audit_verifies().await;
}
