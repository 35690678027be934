//! The team: the fast path's change failing the gate (or the validator) and the team (planner →
//! skeptic → tester → implementer on `large`) fixing it from the original workspace; the team
//! failing the gate `team_attempts` times → escalated, resumed; the skeptic rejecting a plan
//! `skeptic_rejections` times → escalated, then resumed with a person's note (verified) or stopped
//! (its working copy deleted, nothing applied); resume and stop refused on anything but an
//! escalated cascade.

use serde_json::json;
use warden::orchestra::model::stub::StubProvider;

use super::{
    BROKEN, FIXED, Host, REQUEST, WRONG, children, docs, lesson, model_id, pass, plan, route, say,
    stages, tests, verdict, write,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_fails_the_fast_path_and_the_team_fixes_it_with_the_large_model() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        route("fast", 0.9),
        write(&[("calc.py", WRONG)], 0.9),
        plan(),
        verdict(true),
        tests(),
        write(&[("calc.py", FIXED)], 0.8),
        docs(),
        pass(),
        lesson(),
    ]);
    let host = Host::new(&stub.url(), "");
    let r = host.run(REQUEST).await;
    r.assert_verified();
    assert_eq!(
        r.stages(),
        stages(&[
            ("router", "completed"),
            ("implementer", "completed"),
            ("gate", "failed"),
            ("planner", "completed"),
            ("skeptic", "completed"),
            ("tester", "completed"),
            ("implementer", "completed"),
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ]),
        "{r}"
    );
    assert_eq!(
        r.json["changed"],
        json!(["README.md", "calc.py", "test_mean.py"]),
        "{r}"
    );
    assert_eq!(r.json["staging"], "proposed", "{r}");

    // The fast path asked `small`, the team's implementer `large` (its own provider id).
    let sent = stub.requests();
    let ids: Vec<String> = sent.iter().map(model_id).collect();
    let mut want = vec!["stub-small"; 9];
    want[5] = "stub-large";
    assert_eq!(ids, want);
    // The team was told why the fast path failed (the gate's output), and started from the
    // original workspace, not from the fast path's failed change.
    for (i, stage) in [(2, "planner"), (5, "implementer")] {
        let body = String::from_utf8_lossy(&sent[i].body).into_owned();
        assert!(body.contains("AssertionError"), "{stage}: {body}");
    }
    let team_implementer = String::from_utf8_lossy(&sent[5].body).into_owned();
    assert!(
        team_implementer.contains("(len(values) + 1)")
            && !team_implementer.contains("(len(values) - 1)"),
        "{team_implementer}"
    );

    // The gate ran twice in the jail: the fast change failed, the team's passed.
    let gate = host.records("gate-run").await;
    let statuses: Vec<&serde_json::Value> = gate.iter().map(|g| &g["detail"]["status"]).collect();
    assert_eq!(statuses, [&json!(1), &json!(0)], "{gate:#?}");
    assert!(
        r.json["verification"]["commands"][0]["output"]
            .as_str()
            .is_some(),
        "{r}"
    );

    // Proposed: the workspace is untouched; the diff holds the team's fix and the tester's test.
    assert_eq!(host.ws("calc.py"), BROKEN);
    assert!(!host.path("ws/test_mean.py").exists());
    let diff = host.warden(&["task", "diff", &r.task().to_string()]).await;
    assert_eq!(diff.code, 0, "{}", diff.err);
    assert!(
        diff.out.contains("return sum(values) / len(values)")
            && diff.out.contains("test_mean.py")
            && !diff.out.contains("(len(values) - 1)"),
        "{}",
        diff.out
    );

    // Nine stages, nine children, nine calls of 10 + 5 tokens, two models.
    let show = host.show(r.task()).await;
    let agents: Vec<String> = children(&show).into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        agents,
        [
            "router",
            "implementer",
            "planner",
            "skeptic",
            "tester",
            "implementer",
            "documenter",
            "validator",
            "memory-curator"
        ],
        "{show:#}"
    );
    let model = &r.json["model"];
    assert_eq!(
        (
            &model["calls"],
            &model["prompt_tokens"],
            &model["completion_tokens"],
            &model["models"]
        ),
        (
            &json!(9),
            &json!(90),
            &json!(45),
            &json!(["large", "small"])
        ),
        "{r}"
    );
    host.audit_verifies().await;
}

/// The five answers of a cascade the skeptic stops: the router sends it to the team, and the
/// skeptic rejects both plans.
fn rejected_twice(stub: &StubProvider) {
    stub.script([
        route("team", 0.8),
        plan(),
        verdict(false),
        plan(),
        verdict(false),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skeptic_rejecting_twice_escalates_then_a_person_resumes_or_stops() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url(), "skeptic_rejections = 2");
    rejected_twice(&stub);
    let a = host.run(REQUEST).await;
    a.assert_escalated("skeptic-rejected");
    assert!(
        a.detail().contains("2 times") && a.detail().contains("too broad"),
        "{a}"
    );
    assert_eq!(
        a.stages(),
        stages(&[
            ("router", "completed"),
            ("planner", "completed"),
            ("skeptic", "completed"),
            ("planner", "completed"),
            ("skeptic", "completed"),
        ]),
        "{a}"
    );
    // The second plan was made with the skeptic's reasons.
    assert!(
        String::from_utf8_lossy(&stub.requests()[3].body).contains("too broad"),
        "the planner did not get the skeptic's reasons"
    );
    assert_eq!(stub.request_count(), 5);
    assert!(host.working_copy(a.task()).is_dir());
    assert_eq!(host.show(a.task()).await["status"], "escalated");
    let escalated = host.records("task-escalated").await;
    assert_eq!(escalated.len(), 1, "{escalated:#?}");
    assert_eq!(
        escalated[0]["detail"]["outcome"]["trigger"],
        "skeptic-rejected"
    );

    // A person resumes with a note: the skeptic is overruled (not asked again), the team goes
    // on with the plan, verified.
    stub.script([
        tests(),
        write(&[("calc.py", FIXED)], 0.8),
        docs(),
        pass(),
        lesson(),
    ]);
    let note = "only touch calc.py, keep the fix to one line";
    let resumed = host.resume(a.task(), Some(note)).await;
    resumed.assert_verified();
    assert_eq!(resumed.task(), a.task());
    let after: Vec<(String, String)> = resumed.stages().into_iter().skip(5).collect();
    assert_eq!(
        after,
        stages(&[
            ("tester", "completed"),
            ("implementer", "completed"),
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ]),
        "{resumed}"
    );
    assert_eq!(resumed.json["tasks"].as_array().unwrap().len(), 5);
    let sent = stub.requests();
    let implementer = &sent[6];
    assert_eq!(model_id(implementer), "stub-large");
    assert!(
        String::from_utf8_lossy(&implementer.body).contains(note),
        "the note did not reach the implementer"
    );
    let resumed_records = host.records("task-resumed").await;
    assert_eq!(resumed_records.len(), 1);
    assert_eq!(
        resumed_records[0]["detail"]["waived"], "skeptic-rejected",
        "{resumed_records:#?}"
    );
    assert_eq!(resumed.json["staging"], "proposed", "{resumed}");
    assert_eq!(host.ws("calc.py"), BROKEN);
    let show = host.show(a.task()).await;
    assert_eq!(show["status"], "completed", "{show:#}");
    assert_eq!(children(&show).len(), 10, "{show:#}");

    // Another escalated cascade, stopped: nothing applied, its working copy deleted.
    rejected_twice(&stub);
    let b = host.run(REQUEST).await;
    b.assert_escalated("skeptic-rejected");
    assert!(host.working_copy(b.task()).is_dir());
    let stop = host.warden(&["task", "stop", &b.task().to_string()]).await;
    assert_eq!(stop.code, 0, "{}{}", stop.out, stop.err);
    assert!(!host.working_copy(b.task()).exists());
    let show = host.show(b.task()).await;
    assert_eq!(
        (&show["status"], &show["staging"]),
        (&json!("stopped"), &json!("none")),
        "{show:#}"
    );
    assert_eq!(host.ws("calc.py"), BROKEN);
    let calls = stub.request_count();

    // Resume and stop take only an escalated cascade: a stopped one, a verified one, a stage's
    // task, a task that does not exist.
    let stage = show["children"][0]["task"].as_u64().unwrap().to_string();
    let (b, a) = (b.task().to_string(), a.task().to_string());
    for (args, why) in [
        (vec!["task", "resume", b.as_str()], "not escalated"),
        (vec!["task", "stop", b.as_str()], "not escalated"),
        (vec!["task", "resume", a.as_str()], "not escalated"),
        (vec!["task", "stop", a.as_str()], "not escalated"),
        (vec!["task", "resume", stage.as_str()], "not a cascade"),
        (vec!["task", "stop", stage.as_str()], "not a cascade"),
        (vec!["task", "resume", "999999"], "999999"),
    ] {
        let ran = host.warden(&args).await;
        assert_eq!(ran.code, 2, "{args:?}: {}{}", ran.out, ran.err);
        assert!(ran.err.contains(why), "{args:?}: {}", ran.err);
    }
    assert_eq!(stub.request_count(), calls, "a refused command ran a stage");
    host.audit_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_team_failing_the_gate_twice_escalates_and_a_resume_gives_it_a_fresh_attempt() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        plan(),
        verdict(true),
        tests(),
        write(&[("calc.py", WRONG)], 0.8),
        write(&[("calc.py", WRONG)], 0.8),
    ]);
    let host = Host::new(&stub.url(), "fast_path = false\nteam_attempts = 2");
    let r = host.run(REQUEST).await;
    r.assert_escalated("verification-failed");
    assert!(r.detail().contains("2 times"), "{r}");
    assert_eq!(
        r.stages(),
        stages(&[
            ("planner", "completed"),
            ("skeptic", "completed"),
            ("tester", "completed"),
            ("implementer", "completed"),
            ("gate", "failed"),
            ("implementer", "completed"),
            ("gate", "failed"),
        ]),
        "{r}"
    );
    // The second attempt was told why the first failed; both asked `large`.
    let sent = stub.requests();
    assert!(String::from_utf8_lossy(&sent[4].body).contains("AssertionError"));
    assert_eq!(
        (model_id(&sent[3]), model_id(&sent[4])),
        ("stub-large".into(), "stub-large".into())
    );
    assert_eq!(host.records("gate-run").await.len(), 2);

    // A person resumes: the team gets another attempt, and passes.
    stub.script([write(&[("calc.py", FIXED)], 0.8), docs(), pass(), lesson()]);
    let resumed = host.resume(r.task(), None).await;
    resumed.assert_verified();
    assert!(
        resumed.stages().ends_with(&stages(&[
            ("implementer", "completed"),
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ])),
        "{resumed}"
    );
    assert_eq!(stub.request_count(), 9, "{resumed}");
    assert_eq!(resumed.json["staging"], "proposed", "{resumed}");
    assert_eq!(host.ws("calc.py"), BROKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_resume_after_failed_verification_gives_the_team_a_new_attempt_with_the_note() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        plan(),
        verdict(true),
        tests(),
        write(&[("calc.py", WRONG)], 0.8),
    ]);
    let host = Host::new(&stub.url(), "fast_path = false\nteam_attempts = 1");
    let r = host.run(REQUEST).await;
    r.assert_escalated("verification-failed");
    // A person redirects the team with a note: the next attempt gets it, and passes.
    stub.script([write(&[("calc.py", FIXED)], 0.8), docs(), pass(), lesson()]);
    let note = "divide by len(values), nothing else";
    let resumed = host.resume(r.task(), Some(note)).await;
    resumed.assert_verified();
    let after: Vec<(String, String)> = resumed.stages().into_iter().skip(5).collect();
    assert_eq!(
        after,
        stages(&[
            ("implementer", "completed"),
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ]),
        "the failed change was verified again: {resumed}"
    );
    let sent = stub.requests();
    assert_eq!(sent.len(), 8, "{resumed}");
    assert!(
        String::from_utf8_lossy(&sent[4].body).contains(note),
        "the note did not reach the implementer: {resumed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validator_failing_the_fast_paths_result_sends_it_to_the_team() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        route("fast", 0.9),
        write(&[("calc.py", FIXED), ("extra.py", "X = 1\n")], 0.9),
        docs(),
        say(r#"{"verdict": "fail", "reasons": ["scripted: extra.py is not what was asked"]}"#),
        plan(),
        verdict(true),
        tests(),
        write(&[("calc.py", FIXED)], 0.8),
        docs(),
        pass(),
        lesson(),
    ]);
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
            ("planner", "completed"),
            ("skeptic", "completed"),
            ("tester", "completed"),
            ("implementer", "completed"),
            ("gate", "passed"),
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ]),
        "{r}"
    );
    // The team started from the workspace: the fast path's extra file is not in the change.
    assert_eq!(
        r.json["changed"],
        json!(["README.md", "calc.py", "test_mean.py"]),
        "{r}"
    );
    assert!(
        String::from_utf8_lossy(&stub.requests()[4].body)
            .contains("extra.py is not what was asked"),
        "the planner was not told why"
    );
}
