//! The contracts: the documented shapes parse, outputs serialise as `docs/cascade.md` says, model
//! judgements are bounded, plans are checked as graphs.

use super::*;
use serde_json::json;

#[test]
fn inputs_take_the_documented_shapes_and_ignore_extra_keys() {
    let r: RouterInput =
        serde_json::from_value(json!({"request": "fix", "files": ["a.py"], "extra": 1})).unwrap();
    assert_eq!((r.model.as_str(), r.files.len()), ("small", 1));
    let i: ImplementerInput = serde_json::from_value(json!({
        "request": "fix", "files": [], "model": "large",
        "plan": [{"id": "1", "do": "edit", "after": []}],
        "feedback": {"passed": false, "commands": []}
    }))
    .unwrap();
    assert_eq!(i.plan.unwrap()[0].action, "edit");
    assert!(serde_json::from_value::<ImplementerInput>(json!({"request": "fix"})).is_err());
    let v: ValidatorInput = serde_json::from_value(json!({
        "request": "fix", "changed": ["calc.py"],
        "verification": {"passed": true, "commands": [
            {"command": ["python3", "-m", "unittest"], "status": null, "timed_out": true, "output": ""}
        ]}
    }))
    .unwrap();
    assert_eq!(v.verification.commands[0].status, None);
    let c: CuratorInput = serde_json::from_value(json!({
        "request": "fix", "outcome": "completed", "verified": true,
        "stages": [{"agent": "router", "outcome": "completed"}]
    }))
    .unwrap();
    assert_eq!(c.stages.len(), 1);
}

#[test]
fn outputs_serialise_with_the_documented_names() {
    let out = serde_json::to_value(RouterOutput::unreadable()).unwrap();
    assert_eq!(
        out,
        json!({"route": "team", "complexity": "high", "risk": "high", "confidence": 0.0,
               "reason": "the model's answer could not be read"})
    );
    let plan = Plan {
        steps: vec![Step {
            id: "1".into(),
            action: "edit".into(),
            after: vec![],
        }],
    };
    assert_eq!(
        serde_json::to_value(plan).unwrap(),
        json!({"steps": [{"id": "1", "do": "edit", "after": []}]})
    );
    let v = ValidatorOutput {
        verdict: Check::Fail,
        reasons: vec![],
    };
    assert_eq!(
        serde_json::to_value(v).unwrap(),
        json!({"verdict": "fail", "reasons": []})
    );
}

#[test]
fn schemas_name_the_enums_and_bounds() {
    let schema = serde_json::to_string(&schemars::schema_for!(RouterOutput)).unwrap();
    for needle in ["\"fast\"", "\"team\"", "\"maximum\":1.0", "\"confidence\""] {
        assert!(schema.contains(needle), "{needle} in {schema}");
    }
    let schema = serde_json::to_string(&schemars::schema_for!(Plan)).unwrap();
    assert!(schema.contains("\"do\""), "{schema}");
}

#[test]
fn router_judgements_are_bounded_and_never_fast_when_risky() {
    let table = [
        (Route::Fast, Level::Low, Level::Low, 0.9, Route::Fast, 0.9),
        (Route::Fast, Level::High, Level::Low, 0.9, Route::Team, 0.9),
        (Route::Fast, Level::Low, Level::High, 7.0, Route::Team, 1.0),
        (Route::Team, Level::Low, Level::Low, -1.0, Route::Team, 0.0),
        (
            Route::Fast,
            Level::Low,
            Level::Low,
            f64::NAN,
            Route::Fast,
            0.0,
        ),
    ];
    for (route, complexity, risk, confidence, want, want_c) in table {
        let out = RouterOutput {
            route,
            complexity,
            risk,
            confidence,
            reason: "x".repeat(10_000),
        }
        .bounded();
        assert_eq!((out.route, out.confidence), (want, want_c));
        assert!(out.reason.len() < MAX_TEXT + 64);
    }
}

fn step(id: &str, after: &[&str]) -> Step {
    Step {
        id: id.into(),
        action: "do it".into(),
        after: after.iter().map(|a| a.to_string()).collect(),
    }
}

#[test]
fn plans_are_dependency_graphs() {
    let ok = Plan {
        steps: vec![
            step("read", &[]),
            step("fix", &["read"]),
            step("test", &["fix", "read"]),
        ],
    };
    assert!(ok.checked().is_ok());
    let too_long = (0..=MAX_ITEMS).map(|i| step(&i.to_string(), &[])).collect();
    let table: Vec<(Vec<Step>, PlanError)> = vec![
        (vec![], PlanError::Empty),
        (too_long, PlanError::TooLong),
        (
            vec![step("a", &[]), step("a", &[])],
            PlanError::BadId("a".into()),
        ),
        (vec![step(" ", &[])], PlanError::BadId("".into())),
        (
            vec![step("a", &["b"])],
            PlanError::Dangling {
                step: "a".into(),
                missing: "b".into(),
            },
        ),
        (vec![step("a", &["a"])], PlanError::Cycle("a".into())),
        (
            vec![step("x", &[]), step("a", &["b"]), step("b", &["a"])],
            PlanError::Cycle("a".into()),
        ),
    ];
    for (steps, want) in table {
        assert_eq!(Plan { steps }.checked(), Err(want));
    }
}

#[test]
fn reasons_and_lesson_keys_are_bounded() {
    let many: Vec<String> = (0..50).map(|i| format!("  r{i} ")).collect();
    let got = bounded_reasons(many);
    assert_eq!(got.len(), MAX_ITEMS);
    assert_eq!(got[0], "r0");
    assert_eq!(
        bounded_reasons(vec!["".into(), " ".into()]),
        Vec::<String>::new()
    );
    for (raw, want) in [
        ("Run the tests first", Some("run-the-tests-first")),
        ("  --Off by one!! ", Some("off-by-one")),
        ("ÉTÉ", Some("t")),
        ("", None),
        ("!!!", None),
    ] {
        assert_eq!(lesson_key(raw).as_deref(), want, "{raw}");
    }
    assert!(lesson_key(&"a".repeat(500)).unwrap().len() <= 64);
}
