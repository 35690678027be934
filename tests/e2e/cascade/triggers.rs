//! The triggers that pause a cascade for a person, each with what it must not do: a change to a
//! path the workspace labels sensitive (no gate runs it), the task's token budget spent (no
//! further stage runs), and a router whose confident answers keep failing verification (its
//! calibrated confidence, not the stated one, falls under the floor). A person resuming a
//! sensitive change goes on with the change they reviewed; a resumed task's budget is what is
//! left of the task's.

use serde_json::json;
use warden::orchestra::model::stub::StubProvider;

use super::{
    BROKEN, FIXED, Host, REQUEST, WRONG, costing, docs, lesson, pass, plan, route, stages, tests,
    verdict, write,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_sensitive_path_escalates_before_the_gate() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        route("fast", 0.9),
        write(
            &[("auth/x.py", "ALLOW_ALL = True\n"), ("calc.py", FIXED)],
            0.9,
        ),
    ]);
    let host = Host::new(&stub.url(), "");
    host.put(
        "warden.task.toml",
        "check = [\"python3\", \"-c\", \"import calc; assert calc.mean([1, 2, 3]) == 2\"]\n\
         sensitive = [\"auth/**\"]\n",
    );
    let r = host.run(REQUEST).await;
    r.assert_escalated("sensitive");
    assert!(
        r.detail().contains("auth/x.py") && r.detail().contains("warden.task.toml"),
        "{r}"
    );
    assert_eq!(
        r.stages(),
        stages(&[("router", "completed"), ("implementer", "completed")]),
        "{r}"
    );
    assert_eq!(r.json["changed"], json!(["auth/x.py", "calc.py"]), "{r}");
    assert_eq!(r.json["staging"], "none", "{r}");
    assert!(r.json["verification"].is_null(), "{r}");
    assert!(host.records("gate-run").await.is_empty(), "the gate ran");
    assert_eq!(stub.request_count(), 2);
    // Nothing reached the workspace; the change waits in the working copy for a person.
    assert!(!host.path("ws/auth").exists());
    assert_eq!(host.ws("calc.py"), BROKEN);
    assert!(host.working_copy(r.task()).join("auth/x.py").is_file());
    // A person stops it: the sensitive change is deleted, never applied.
    host.stop(r.task()).await;
    assert!(!host.working_copy(r.task()).exists());
    assert!(!host.path("ws/auth").exists());
    host.audit_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_budget_spent_escalates_before_the_next_stage() {
    let stub = StubProvider::start().await.unwrap();
    // The router's one call uses 5010 tokens — within its own policy's 6000, past the task's
    // 3000. Were the cap not enforced, the implementer would get the next answer.
    stub.script([
        costing(route("fast", 0.9), 5000, 10),
        write(&[("calc.py", FIXED)], 0.9),
    ]);
    let host = Host::new(&stub.url(), "tokens = 3000");
    let r = host.run(REQUEST).await;
    r.assert_escalated("budget");
    assert!(r.detail().contains("token"), "{r}");
    assert_eq!(
        stub.request_count(),
        1,
        "a stage called a model past the cap"
    );
    let stages = r.stages();
    assert!(
        stages.len() <= 1 && stages.iter().all(|(a, _)| a == "router"),
        "{r}"
    );
    assert_eq!(r.json["model"]["prompt_tokens"], 5000, "{r}");
    assert_eq!(r.json["staging"], "none", "{r}");
    assert_eq!(host.ws("calc.py"), BROKEN);
    assert!(host.records("gate-run").await.is_empty());
    let escalated = host.records("task-escalated").await;
    assert_eq!(
        escalated
            .iter()
            .filter(|e| e["task"] == r.task())
            .map(|e| e["detail"]["outcome"]["trigger"].clone())
            .collect::<Vec<_>>(),
        [json!("budget")]
    );
    host.stop(r.task()).await;
    host.audit_verifies().await;
}

/// The four answers of a cascade whose confident fast path fails the gate and whose skeptic
/// then rejects the team's plan (one rejection is enough here): the router said `router`.
fn confident_and_wrong(stub: &StubProvider, router: f64) {
    stub.script([
        route("fast", router),
        write(&[("calc.py", WRONG)], 0.95),
        plan(),
        verdict(false),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confident_router_that_keeps_failing_is_escalated_by_its_calibrated_confidence() {
    let stub = StubProvider::start().await.unwrap();
    // How many runs: a stated 0.95 is in bin 9, calibrated as (verified + 2·0.95) / (n + 2) over
    // that bin's history. With n failures: 0.95, 0.63, 0.475, … Under the default floor (0.3) it
    // would take five failed runs (1.9 / 7 = 0.27); with the floor at 0.5 it takes two, so the
    // third run is the one escalated. One skeptic rejection ends each failing run quickly.
    let host = Host::new(
        &stub.url(),
        "confidence_floor = 0.5\nskeptic_rejections = 1",
    );
    for run in 1..=2 {
        confident_and_wrong(&stub, 0.95);
        let r = host.run(REQUEST).await;
        // Not escalated for confidence: its history did not yet say otherwise.
        r.assert_escalated("skeptic-rejected");
        assert_eq!(
            r.stages(),
            stages(&[
                ("router", "completed"),
                ("implementer", "completed"),
                ("gate", "failed"),
                ("planner", "completed"),
                ("skeptic", "completed"),
            ]),
            "run {run}: {r}"
        );
    }
    assert_eq!(stub.request_count(), 8);

    // The third time it says 0.95, its history (two failures in bin 9) puts it at 0.475.
    stub.script([route("fast", 0.95)]);
    let r = host.run(REQUEST).await;
    r.assert_escalated("confidence");
    assert_eq!(r.stages(), stages(&[("router", "completed")]), "{r}");
    assert_eq!(stub.request_count(), 9, "a stage ran after the pause");
    let detail = r.detail();
    assert!(detail.contains("router said 0.95"), "{r}");
    let calibrated: f64 = detail
        .split("that is ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no calibrated value in {detail}"));
    assert!((calibrated - 0.475).abs() < 0.01, "{detail}");

    // Its twin: a router with no failures in the bin it now states (0.75, bin 7) is trusted.
    // The implementer, confident and wrong twice in bin 9 too, is now sent to the team without
    // the gate (an unsure fast change goes to the team, not to a person).
    stub.clear_requests();
    confident_and_wrong(&stub, 0.75);
    let r = host.run(REQUEST).await;
    r.assert_escalated("skeptic-rejected");
    assert_eq!(
        r.stages(),
        stages(&[
            ("router", "completed"),
            ("implementer", "completed"),
            ("planner", "completed"),
            ("skeptic", "completed"),
        ]),
        "{r}"
    );
    assert_eq!(host.records("gate-run").await.len(), 2);
    for task in 1..=r.task() {
        if host.show(task).await["status"] == "escalated" {
            host.stop(task).await;
        }
    }
    host.audit_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn the_audit_log_verifies_while_a_cascade_waits_for_a_person() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([route("fast", 0.9), write(&[("auth/x.py", "x = 1\n")], 0.9)]);
    let host = Host::new(&stub.url(), "");
    host.put(
        "warden.task.toml",
        "check = [\"true\"]\nsensitive = [\"auth/**\"]\n",
    );
    let r = host.run(REQUEST).await;
    r.assert_escalated("sensitive");
    host.audit_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_person_resuming_a_sensitive_change_gets_that_change_verified() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        route("fast", 0.9),
        write(
            &[("auth/x.py", "ALLOW_ALL = False\n"), ("calc.py", FIXED)],
            0.9,
        ),
    ]);
    let host = Host::new(&stub.url(), "");
    host.put(
        "warden.task.toml",
        "check = [\"python3\", \"-c\", \"import calc; assert calc.mean([1, 2, 3]) == 2\"]\n\
         sensitive = [\"auth/**\"]\n",
    );
    let r = host.run(REQUEST).await;
    r.assert_escalated("sensitive");
    // The person reviewed the change in the working copy and resumes: the rest of the cascade
    // runs on that change — the gate, the documenter, the validator, the curator.
    stub.script([docs(), pass(), lesson()]);
    let resumed = host
        .resume(r.task(), Some("auth/x.py is reviewed and fine"))
        .await;
    resumed.assert_verified();
    let after: Vec<(String, String)> = resumed.stages().into_iter().skip(2).collect();
    assert_eq!(
        after,
        stages(&[
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ]),
        "{resumed}"
    );
    assert_eq!(stub.request_count(), 5, "the implementer was asked again");
    let diff = host.warden(&["task", "diff", &r.task().to_string()]).await;
    assert!(
        diff.out.contains("auth/x.py") && diff.out.contains("ALLOW_ALL = False"),
        "{}",
        diff.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn the_task_budget_spans_its_resumes() {
    let stub = StubProvider::start().await.unwrap();
    // 2900 of the task's 3000 tokens are spent before the skeptic's rejection pauses it.
    stub.script([
        costing(route("team", 0.9), 1000, 0),
        costing(plan(), 1000, 0),
        costing(verdict(false), 900, 0),
    ]);
    let host = Host::new(&stub.url(), "tokens = 3000\nskeptic_rejections = 1");
    let r = host.run(REQUEST).await;
    r.assert_escalated("skeptic-rejected");
    assert_eq!(r.json["model"]["prompt_tokens"], 2900, "{r}");
    // Resumed, the skeptic's second look takes the task past its cap: no stage after it runs.
    stub.script([
        costing(verdict(true), 200, 0),
        tests(),
        write(&[("calc.py", FIXED)], 0.9),
        docs(),
        pass(),
        lesson(),
    ]);
    let resumed = host.resume(r.task(), None).await;
    resumed.assert_escalated("budget");
    assert!(stub.request_count() <= 4, "{resumed}");
    assert_eq!(host.ws("calc.py"), BROKEN);
}
