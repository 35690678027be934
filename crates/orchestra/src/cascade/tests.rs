//! The cascade's rules against a scripted crew: every path of `docs/cascade.md`.

use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

use super::*;

#[derive(Default)]
struct Script {
    outcomes: HashMap<&'static str, VecDeque<StageOutcome>>,
    gates: VecDeque<Result<Verification, String>>,
    /// Paths each implementer/tester/documenter run adds to the working copy.
    writes: HashMap<&'static str, Vec<String>>,
    sensitive: Vec<String>,
    /// agent -> calibrated value to return (instead of the stated one).
    calibration: HashMap<&'static str, f64>,
    budget_out: bool,
    ran: Vec<(&'static str, Value)>,
    changed: Vec<String>,
    resets: u32,
    checkpoints: Vec<Phase>,
}

impl Script {
    fn then(mut self, stage: Stage, outcome: StageOutcome) -> Self {
        self.outcomes
            .entry(stage.agent())
            .or_default()
            .push_back(outcome);
        self
    }
    fn gate(mut self, passed: bool) -> Self {
        self.gates.push_back(Ok(Verification {
            passed,
            commands: vec![CommandRun {
                command: vec!["python3".into(), "-m".into(), "unittest".into()],
                status: Some(if passed { 0 } else { 1 }),
                limit: None,
                output: if passed {
                    "OK".into()
                } else {
                    "FAILED (failures=1)".into()
                },
            }],
        }));
        self
    }
    fn writes(mut self, stage: Stage, path: &str) -> Self {
        self.writes
            .entry(stage.agent())
            .or_default()
            .push(path.into());
        self
    }
    fn agents(&self) -> Vec<&'static str> {
        self.ran.iter().map(|(a, _)| *a).collect()
    }
}

fn done(v: Value) -> StageOutcome {
    StageOutcome::Done(v)
}

impl Crew for Script {
    async fn stage(&mut self, stage: Stage, input: Value) -> StageOutcome {
        self.ran.push((stage.agent(), input));
        let outcome = self
            .outcomes
            .get_mut(stage.agent())
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| match stage {
                Stage::Implementer => {
                    done(json!({"changed": ["calc.py"], "summary": "s", "confidence": 0.9}))
                }
                Stage::Skeptic => done(json!({"verdict": "accept", "reasons": []})),
                Stage::Validator => done(json!({"verdict": "pass", "reasons": []})),
                Stage::Planner => done(json!({"steps": [{"id": "s1", "do": "fix", "after": []}]})),
                _ => done(json!({})),
            });
        if matches!(outcome, StageOutcome::Done(_)) {
            let add = self.writes.get(stage.agent()).cloned().unwrap_or_else(|| {
                if stage == Stage::Implementer {
                    vec!["calc.py".into()]
                } else {
                    vec![]
                }
            });
            for p in add {
                if !self.changed.contains(&p) {
                    self.changed.push(p);
                }
            }
        }
        outcome
    }
    async fn verify(&mut self) -> Result<Verification, String> {
        self.ran.push(("gate", Value::Null));
        self.gates
            .pop_front()
            .unwrap_or_else(|| Err("no check command".into()))
    }
    fn files(&self) -> Vec<String> {
        vec!["calc.py".into(), "test_calc.py".into()]
    }
    fn changed(&self) -> Vec<String> {
        self.changed.clone()
    }
    fn reset(&mut self) -> Result<(), String> {
        self.resets += 1;
        self.changed.clear();
        Ok(())
    }
    fn sensitive(&self, paths: &[String]) -> Option<String> {
        paths
            .iter()
            .find(|p| self.sensitive.contains(p))
            .map(|p| format!("`{p}` is labelled sensitive"))
    }
    fn budget_left(&self) -> Result<(), String> {
        if self.budget_out {
            Err("the tree's tokens are spent".into())
        } else {
            Ok(())
        }
    }
    fn calibrate(&self, agent: &str, stated: f64) -> f64 {
        self.calibration.get(agent).copied().unwrap_or(stated)
    }
    fn checkpoint(&mut self, state: &CascadeState) {
        self.checkpoints.push(state.phase);
    }
}

fn fast_route() -> StageOutcome {
    done(
        json!({"route": "fast", "complexity": "low", "risk": "low", "confidence": 0.9, "reason": "one function"}),
    )
}

fn team_route() -> StageOutcome {
    done(
        json!({"route": "team", "complexity": "high", "risk": "low", "confidence": 0.9, "reason": "many files"}),
    )
}

fn run(script: &mut Script, state: &mut CascadeState) -> CascadeEnd {
    let rules = CascadeRules::default();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(drive(script, &rules, state))
}

#[test]
fn the_fast_path_verified_runs_no_team() {
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .gate(true);
    let mut state = CascadeState::new("fix the failing test");
    assert_eq!(run(&mut s, &mut state), CascadeEnd::Verified);
    assert_eq!(
        s.agents(),
        [
            "router",
            "implementer",
            "gate",
            "documenter",
            "validator",
            "memory-curator"
        ]
    );
    assert_eq!(s.ran[1].1["model"], "small");
    assert_eq!(state.changed, ["calc.py"]);
    assert!(state.stated.iter().all(|s| s.verdict == Some(true)));
    assert_eq!(s.checkpoints.first(), Some(&Phase::Fast));
    assert_eq!(s.checkpoints.last(), Some(&Phase::Done));
}

#[test]
fn a_failed_gate_sends_the_team_from_the_original_workspace() {
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .gate(false)
        .gate(true);
    let mut state = CascadeState::new("fix it");
    assert_eq!(run(&mut s, &mut state), CascadeEnd::Verified);
    assert_eq!(
        s.agents(),
        [
            "router",
            "implementer",
            "gate",
            "planner",
            "skeptic",
            "tester",
            "implementer",
            "gate",
            "documenter",
            "validator",
            "memory-curator"
        ]
    );
    assert_eq!(s.resets, 1);
    // The team's implementer gets the large model, the plan and the gate's report.
    let team = &s.ran[6].1;
    assert_eq!(team["model"], "large");
    assert!(
        team["feedback"]
            .as_str()
            .unwrap()
            .contains("FAILED (failures=1)")
    );
    assert_eq!(team["plan"][0]["id"], "s1");
    // The fast implementer was wrong, the router's fast route too; the team's was right.
    let verdicts: Vec<_> = state
        .stated
        .iter()
        .map(|s| (s.agent.as_str(), s.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("router", Some(false)),
            ("implementer", Some(false)),
            ("implementer", Some(true))
        ]
    );
}

#[test]
fn the_skeptic_rejecting_n_times_pauses_and_a_resume_goes_on() {
    let reject = || done(json!({"verdict": "reject", "reasons": ["touches auth"]}));
    let mut s = Script::default()
        .then(Stage::Router, team_route())
        .then(Stage::Skeptic, reject())
        .then(Stage::Skeptic, reject())
        .gate(true);
    let mut state = CascadeState::new("refactor the login");
    let end = run(&mut s, &mut state);
    let CascadeEnd::Escalated { trigger, detail } = end else {
        panic!("{end:?}")
    };
    assert_eq!(trigger, Trigger::SkepticRejected);
    assert!(detail.contains("touches auth"), "{detail}");
    assert_eq!(
        s.agents(),
        ["router", "planner", "skeptic", "planner", "skeptic"]
    );
    // The second plan was asked for with the skeptic's reasons.
    assert!(
        s.ran[3].1["feedback"]
            .as_str()
            .unwrap()
            .contains("touches auth")
    );
    // The pause moved past the skeptic: a person who resumes overrules it.
    assert_eq!(state.phase, Phase::Test);
    state.resume(trigger, Some("auth is fine here"));
    let ran = s.ran.len();
    assert_eq!(run(&mut s, &mut state), CascadeEnd::Verified);
    let after: Vec<_> = s.agents()[ran..].to_vec();
    assert_eq!(
        after,
        [
            "tester",
            "implementer",
            "gate",
            "documenter",
            "validator",
            "memory-curator"
        ]
    );
    // The reviewer's note reached the implementer, after the skeptic's reasons.
    let feedback = s.ran[ran + 1].1["feedback"].as_str().unwrap().to_owned();
    assert!(
        feedback.contains("touches auth")
            && feedback.ends_with("A reviewer says: auth is fine here"),
        "{feedback}"
    );
}

#[test]
fn a_resumed_sensitive_change_is_verified_as_it_is_and_does_not_pause_again() {
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .writes(Stage::Implementer, "auth/login.py")
        .gate(true);
    s.sensitive = vec!["auth/login.py".into()];
    let mut state = CascadeState::new("fix login");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::Sensitive,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(state.phase, Phase::FastGate);
    state.resume(Trigger::Sensitive, None);
    assert_eq!(run(&mut s, &mut state), CascadeEnd::Verified);
    // The implementer ran once: the person approved its change, which went to the gate.
    assert_eq!(
        s.agents().iter().filter(|a| **a == "implementer").count(),
        1
    );
    assert_eq!(state.approved, ["auth/login.py"]);
}

#[test]
fn a_resume_after_failed_verification_gives_new_attempts_with_the_note() {
    let mut s = Script::default()
        .then(Stage::Router, team_route())
        .gate(false)
        .gate(false)
        .gate(true);
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::VerificationFailed,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(state.phase, Phase::Implement);
    state.resume(Trigger::VerificationFailed, Some("use a float division"));
    let ran = s.ran.len();
    assert_eq!(run(&mut s, &mut state), CascadeEnd::Verified);
    // No gate ran again on the failed change: the implementer came first, with the note.
    assert_eq!(s.ran[ran].0, "implementer");
    let feedback = s.ran[ran].1["feedback"].as_str().unwrap();
    assert!(
        feedback.contains("FAILED") && feedback.contains("use a float division"),
        "{feedback}"
    );
}

#[test]
fn a_budget_pause_reruns_its_step_once_resumed() {
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .gate(true);
    s.budget_out = true;
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::Budget,
                ..
            }
        ),
        "{end:?}"
    );
    state.spent_tokens = 99;
    state.resume(Trigger::Budget, None);
    assert_eq!(state.spent_tokens, 0);
    // The router runs (the waiver), then the next budget check pauses again.
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::Budget,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(s.agents(), ["router"]);
}

#[test]
fn a_sensitive_path_pauses() {
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .writes(Stage::Implementer, "auth/login.py")
        .gate(true);
    s.sensitive = vec!["auth/login.py".into()];
    let mut state = CascadeState::new("fix login");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(&end, CascadeEnd::Escalated { trigger: Trigger::Sensitive, detail } if detail.contains("auth/login.py")),
        "{end:?}"
    );
    // No gate ran on it.
    assert!(!s.agents().contains(&"gate"));
}

#[test]
fn a_spent_budget_pauses_before_the_next_stage() {
    let mut s = Script::default().then(Stage::Router, fast_route());
    s.budget_out = true;
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::Budget,
                ..
            }
        ),
        "{end:?}"
    );
    assert!(s.ran.is_empty());
    // A stage's own budget escalation pauses the cascade too.
    let mut s = Script::default().then(
        Stage::Router,
        StageOutcome::Escalated("model-budget".into(), "tokens spent".into()),
    );
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::Budget,
                ..
            }
        ),
        "{end:?}"
    );
}

#[test]
fn a_confident_router_with_a_bad_history_is_escalated_by_the_calibrated_floor() {
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .gate(true);
    s.calibration.insert("router", 0.1);
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    let CascadeEnd::Escalated { trigger, detail } = end else {
        panic!("{end:?}")
    };
    assert_eq!(trigger, Trigger::Confidence);
    assert!(
        detail.contains("0.90") && detail.contains("0.10"),
        "{detail}"
    );
    // The same router with a good history goes on.
    let mut s = Script::default()
        .then(Stage::Router, fast_route())
        .gate(true);
    s.calibration.insert("router", 0.8);
    assert_eq!(
        run(&mut s, &mut CascadeState::new("x")),
        CascadeEnd::Verified
    );
}

#[test]
fn the_team_failing_twice_pauses_and_a_killed_stage_pauses() {
    let mut s = Script::default()
        .then(Stage::Router, team_route())
        .gate(false)
        .gate(false);
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::VerificationFailed,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(state.attempts, 2);
    let mut s = Script::default()
        .then(Stage::Router, team_route())
        .then(Stage::Planner, StageOutcome::Killed("network".into()));
    let end = run(&mut s, &mut CascadeState::new("x"));
    assert!(
        matches!(
            end,
            CascadeEnd::Escalated {
                trigger: Trigger::Killed,
                ..
            }
        ),
        "{end:?}"
    );
}

#[test]
fn a_gate_that_cannot_run_pauses_and_unusable_outputs_fall_back() {
    // The router's answer is junk: the team, not a crash.
    let mut s = Script::default().then(Stage::Router, StageOutcome::Failed("unreadable".into()));
    let end = run(&mut s, &mut CascadeState::new("x"));
    assert!(
        matches!(&end, CascadeEnd::Escalated { trigger: Trigger::VerificationFailed, detail } if detail.contains("could not run")),
        "{end:?}"
    );
    assert_eq!(
        s.agents(),
        [
            "router",
            "planner",
            "skeptic",
            "tester",
            "implementer",
            "gate"
        ]
    );
}

#[test]
fn without_the_fast_path_every_request_goes_to_the_team() {
    let mut s = Script::default().gate(true);
    let rules = CascadeRules {
        fast_path: false,
        ..CascadeRules::default()
    };
    let mut state = CascadeState::new("x");
    let end = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(drive(&mut s, &rules, &mut state));
    assert_eq!(end, CascadeEnd::Verified);
    assert_eq!(s.agents()[..2], ["planner", "skeptic"]);
}

#[test]
fn an_unsure_team_implementer_pauses_and_a_resume_sends_its_change_to_the_gate() {
    let mut s = Script::default()
        .then(Stage::Router, team_route())
        .then(
            Stage::Implementer,
            done(json!({"changed": ["calc.py"], "summary": "s", "confidence": 0.9})),
        )
        .gate(true);
    s.calibration.insert("implementer", 0.05);
    let mut state = CascadeState::new("x");
    let end = run(&mut s, &mut state);
    let CascadeEnd::Escalated { trigger, detail } = end else {
        panic!("{end:?}")
    };
    assert_eq!(trigger, Trigger::Confidence);
    assert!(
        detail.contains("implementer") && detail.contains("0.05"),
        "{detail}"
    );
    assert!(!s.agents().contains(&"gate"));
    assert_eq!(state.phase, Phase::TeamGate);
    state.resume(trigger, None);
    assert_eq!(run(&mut s, &mut state), CascadeEnd::Verified);
    assert_eq!(
        s.agents().iter().filter(|a| **a == "implementer").count(),
        1
    );
}
