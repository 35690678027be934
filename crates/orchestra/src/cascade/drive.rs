//! The cascade's rules as one loop over [`Phase`]: each step runs a stage (or the gate) through
//! the [`Crew`], reads what it returned, and moves on, loops back, or pauses for a person.
//!
//! A pause says where a person's resume goes on. When the step's own work is what a person must
//! judge — a sensitive change, a low confidence, a rejected plan, a failed verification — the
//! cascade is moved past it first, so the resume goes on with that work as it is (the person's
//! "go ahead"); when the step could not do its work — a spent budget, a killed stage, a gate that
//! could not run — the resume runs the step again.

use serde_json::{Value, json};

use super::{
    CascadeEnd, CascadeRules, CascadeState, Crew, Phase, Stage, StageNote, StageOutcome, Stated,
    Trigger, Verification,
};

/// Why a step stopped the cascade, and where a resume goes on (`None`: the same step again).
struct Pause(Trigger, String, Option<Phase>);

/// Run the cascade from `state.phase` until it is verified or pauses. `state` is updated as it
/// goes and handed to [`Crew::checkpoint`] after every step, so a paused (or interrupted)
/// cascade resumes at the step where it stopped.
pub async fn drive<C: Crew>(
    crew: &mut C,
    rules: &CascadeRules,
    state: &mut CascadeState,
) -> CascadeEnd {
    loop {
        if state.phase == Phase::Done {
            return CascadeEnd::Verified;
        }
        if let Err(why) = crew.budget_left() {
            if state.waived == Some(Trigger::Budget) {
                // A person resumed past a budget pause: this step runs on what is left.
                state.waived = None;
            } else {
                return CascadeEnd::Escalated {
                    trigger: Trigger::Budget,
                    detail: why,
                };
            }
        }
        state.waived = None;
        match step(crew, rules, state).await {
            Ok(next) => {
                state.phase = next;
                crew.checkpoint(state);
            }
            Err(Pause(trigger, detail, next)) => {
                if let Some(next) = next {
                    state.phase = next;
                }
                crew.checkpoint(state);
                return CascadeEnd::Escalated { trigger, detail };
            }
        }
    }
}

/// One step: the phase after it, or a pause.
async fn step<C: Crew>(
    crew: &mut C,
    rules: &CascadeRules,
    state: &mut CascadeState,
) -> Result<Phase, Pause> {
    let request = state.request.clone();
    match state.phase {
        Phase::Route if !rules.fast_path => {
            state.route = Some("team".into());
            Ok(Phase::Plan)
        }
        Phase::Route => {
            let input = json!({"request": request, "files": crew.files()});
            match run(crew, state, Stage::Router, input).await? {
                Ok(out) => {
                    let route = match out.get("route").and_then(Value::as_str) {
                        Some("fast") => "fast",
                        _ => "team",
                    };
                    state.route = Some(route.into());
                    let next = if route == "fast" {
                        Phase::Fast
                    } else {
                        Phase::Plan
                    };
                    confident(crew, state, Stage::Router, &out, rules, next)?;
                    Ok(next)
                }
                // A router that cannot judge sends the request to the team.
                Err(_) => {
                    state.route = Some("team".into());
                    Ok(Phase::Plan)
                }
            }
        }
        Phase::Fast => {
            let input = json!({
                "request": request,
                "files": crew.files(),
                "model": rules.fast_model,
            });
            match run(crew, state, Stage::Implementer, input).await? {
                Ok(out) => {
                    touched(crew, state, Phase::FastGate)?;
                    let stated = stated(&out);
                    note_stated(state, Stage::Implementer, stated);
                    // Unsure of its own change: the team is cheaper than a person.
                    let calibrated = crew.calibrate(Stage::Implementer.agent(), stated);
                    if calibrated < rules.confidence_floor || state.changed.is_empty() {
                        settle(state, false);
                        return to_team(
                            crew,
                            state,
                            "the fast path's change was not confident or empty",
                        );
                    }
                    Ok(Phase::FastGate)
                }
                Err(why) => to_team(crew, state, &why),
            }
        }
        Phase::FastGate => {
            let v = gate(crew, state).await?;
            settle(state, v.passed);
            if v.passed {
                Ok(Phase::Document)
            } else {
                let feedback = v.feedback();
                to_team(crew, state, &feedback)
            }
        }
        Phase::Plan => {
            let mut input = json!({"request": request, "files": crew.files()});
            if let Some(f) = &state.feedback {
                input["feedback"] = json!(f);
            }
            match run(crew, state, Stage::Planner, input).await? {
                Ok(out) => {
                    state.plan = Some(out.get("steps").cloned().unwrap_or_else(|| json!([])));
                    Ok(Phase::Review)
                }
                Err(why) => {
                    // No plan: the team works from the request alone, still reviewed.
                    state.plan = Some(json!([{"id": "s1", "do": request, "after": []}]));
                    state.feedback = Some(format!("the planner could not plan: {why}"));
                    Ok(Phase::Review)
                }
            }
        }
        Phase::Review => {
            let input =
                json!({"request": request, "plan": state.plan.clone().unwrap_or(json!([]))});
            match run(crew, state, Stage::Skeptic, input).await? {
                Ok(out) if out.get("verdict").and_then(Value::as_str) == Some("reject") => {
                    let reasons = reasons(&out);
                    state.rejections += 1;
                    if state.rejections >= rules.skeptic_rejections.max(1) {
                        // A person who resumes overrules the skeptic: the plan goes ahead.
                        return Err(Pause(
                            Trigger::SkepticRejected,
                            format!(
                                "the skeptic rejected the plan {} times; last: {reasons}",
                                state.rejections
                            ),
                            Some(Phase::Test),
                        ));
                    }
                    state.feedback = Some(format!("the skeptic rejected the plan: {reasons}"));
                    Ok(Phase::Plan)
                }
                Ok(_) => Ok(Phase::Test),
                // A skeptic that cannot judge does not block; its failure is on the record.
                Err(_) => Ok(Phase::Test),
            }
        }
        Phase::Test => {
            let input = json!({
                "request": request,
                "files": crew.files(),
                "plan": state.plan.clone().unwrap_or(json!([])),
            });
            // Tests are welcome, not required: a tester that fails leaves the gate to the
            // workspace's own checks.
            let _ = run(crew, state, Stage::Tester, input).await?;
            touched(crew, state, Phase::Implement)?;
            Ok(Phase::Implement)
        }
        Phase::Implement => {
            let mut input = json!({
                "request": request,
                "files": crew.files(),
                "model": rules.team_model,
                "plan": state.plan.clone().unwrap_or(json!([])),
            });
            if let Some(f) = &state.feedback {
                input["feedback"] = json!(f);
            }
            match run(crew, state, Stage::Implementer, input).await? {
                Ok(out) => {
                    touched(crew, state, Phase::TeamGate)?;
                    confident(
                        crew,
                        state,
                        Stage::Implementer,
                        &out,
                        rules,
                        Phase::TeamGate,
                    )?;
                    Ok(Phase::TeamGate)
                }
                Err(why) => failed_attempt(state, rules, &format!("the implementer failed: {why}")),
            }
        }
        Phase::TeamGate => {
            let v = gate(crew, state).await?;
            settle(state, v.passed);
            if v.passed {
                Ok(Phase::Document)
            } else {
                let feedback = v.feedback();
                failed_attempt(state, rules, &feedback)
            }
        }
        Phase::Document => {
            let summary = format!("the change for: {request}");
            let input = json!({"request": request, "changed": state.changed, "summary": summary});
            let _ = run(crew, state, Stage::Documenter, input).await?;
            touched(crew, state, Phase::Validate)?;
            Ok(Phase::Validate)
        }
        Phase::Validate => {
            let verification = state.verification.clone().unwrap_or(Verification {
                passed: false,
                commands: Vec::new(),
            });
            let input =
                json!({"request": request, "changed": state.changed, "verification": verification});
            match run(crew, state, Stage::Validator, input).await? {
                Ok(out) if out.get("verdict").and_then(Value::as_str) == Some("fail") => {
                    let reasons = reasons(&out);
                    if state.route.as_deref() == Some("fast") && state.attempts == 0 {
                        return to_team(
                            crew,
                            state,
                            &format!("the validator failed the fast path's result: {reasons}"),
                        );
                    }
                    failed_attempt(
                        state,
                        rules,
                        &format!("the validator failed the result: {reasons}"),
                    )
                }
                _ => Ok(Phase::Curate),
            }
        }
        Phase::Curate => {
            let stages: Vec<Value> = state
                .stages
                .iter()
                .map(|s| json!({"agent": s.agent, "outcome": s.outcome}))
                .collect();
            let input = json!({"request": request, "outcome": "verified", "verified": true, "stages": stages});
            // Lessons are a by-product: a curator that fails does not fail the task.
            let _ = run(crew, state, Stage::MemoryCurator, input).await?;
            Ok(Phase::Done)
        }
        Phase::Done => Ok(Phase::Done),
    }
}

/// Run a stage: its output (`Ok(Ok)`), its own failure for the step to handle (`Ok(Err)`), or a
/// pause that runs the stage again on resume (a kill, a budget, a sensitive tool).
async fn run<C: Crew>(
    crew: &mut C,
    state: &mut CascadeState,
    stage: Stage,
    input: Value,
) -> Result<Result<Value, String>, Pause> {
    let outcome = crew.stage(stage, input).await;
    let (name, detail, result) = match outcome {
        StageOutcome::Done(out) => ("completed", None, Ok(Ok(out))),
        StageOutcome::Failed(why) => ("failed", Some(why.clone()), Ok(Err(why))),
        StageOutcome::Refused(why) => ("refused", Some(why.clone()), Ok(Err(why))),
        StageOutcome::Killed(why) => {
            let pause = Pause(
                Trigger::Killed,
                format!("`{}` was killed: {why}", stage.agent()),
                None,
            );
            ("killed", Some(why), Err(pause))
        }
        StageOutcome::Escalated(reason, why) => {
            let trigger = if reason.contains("budget") {
                Trigger::Budget
            } else {
                Trigger::Sensitive
            };
            let pause = Pause(
                trigger,
                format!("`{}` escalated ({reason}): {why}", stage.agent()),
                None,
            );
            ("escalated", Some(why), Err(pause))
        }
    };
    state.stages.push(StageNote {
        agent: stage.agent().into(),
        outcome: name.into(),
        detail,
    });
    result
}

/// The gate, recorded; a gate that cannot run pauses the cascade (nothing is verified without it).
async fn gate<C: Crew>(crew: &mut C, state: &mut CascadeState) -> Result<Verification, Pause> {
    match crew.verify().await {
        Ok(v) => {
            state.stages.push(StageNote {
                agent: "gate".into(),
                outcome: if v.passed { "passed" } else { "failed" }.into(),
                detail: None,
            });
            state.verification = Some(v.clone());
            Ok(v)
        }
        Err(why) => {
            state.stages.push(StageNote {
                agent: "gate".into(),
                outcome: "refused".into(),
                detail: Some(why.clone()),
            });
            Err(Pause(
                Trigger::VerificationFailed,
                format!("the verification gate could not run: {why}"),
                None,
            ))
        }
    }
}

/// The working copy's changes, and a pause (going on at `next`) when one that a person has not
/// approved yet is sensitive.
fn touched<C: Crew>(crew: &mut C, state: &mut CascadeState, next: Phase) -> Result<(), Pause> {
    state.changed = crew.changed();
    let unapproved: Vec<String> = state
        .changed
        .iter()
        .filter(|p| !state.approved.contains(p))
        .cloned()
        .collect();
    if let Some(label) = crew.sensitive(&unapproved) {
        return Err(Pause(Trigger::Sensitive, label, Some(next)));
    }
    Ok(())
}

/// A confidence the cascade acts on: a pause (going on at `next`) when calibrated under the floor.
fn confident<C: Crew>(
    crew: &C,
    state: &mut CascadeState,
    stage: Stage,
    out: &Value,
    rules: &CascadeRules,
    next: Phase,
) -> Result<(), Pause> {
    let stated = stated(out);
    note_stated(state, stage, stated);
    let calibrated = crew.calibrate(stage.agent(), stated);
    if calibrated < rules.confidence_floor {
        return Err(Pause(
            Trigger::Confidence,
            format!(
                "the {} said {stated:.2}; calibrated on its history that is {calibrated:.2}, under the floor {:.2}",
                stage.agent(),
                rules.confidence_floor
            ),
            Some(next),
        ));
    }
    Ok(())
}

/// The stated confidence of an output (0 when missing or malformed).
fn stated(out: &Value) -> f64 {
    out.get("confidence")
        .and_then(Value::as_f64)
        .filter(|c| c.is_finite())
        .map_or(0.0, |c| c.clamp(0.0, 1.0))
}

fn note_stated(state: &mut CascadeState, stage: Stage, confidence: f64) {
    state.stated.push(Stated {
        agent: stage.agent().into(),
        confidence,
        verdict: None,
        recorded: false,
    });
}

/// The verdict on every confidence still waiting for one. The router's is on its route: on the
/// fast path it is verified only if the fast path's change was.
fn settle(state: &mut CascadeState, passed: bool) {
    let fast = state.route.as_deref() == Some("fast");
    let phase = state.phase;
    for s in state.stated.iter_mut().filter(|s| s.verdict.is_none()) {
        s.verdict = Some(match (s.agent.as_str(), phase) {
            ("router", Phase::FastGate | Phase::Fast) => passed && fast,
            _ => passed,
        });
    }
}

/// The fast path failed: the team takes over from the original workspace.
fn to_team<C: Crew>(crew: &mut C, state: &mut CascadeState, why: &str) -> Result<Phase, Pause> {
    crew.reset().map_err(|e| {
        Pause(
            Trigger::VerificationFailed,
            format!("the working copy could not be reset for the team: {e}"),
            None,
        )
    })?;
    state.changed.clear();
    state.feedback = Some(format!("the fast path failed: {why}"));
    Ok(Phase::Plan)
}

/// The team's attempt failed: another, or a person (whose resume gives the team new attempts).
fn failed_attempt(
    state: &mut CascadeState,
    rules: &CascadeRules,
    why: &str,
) -> Result<Phase, Pause> {
    state.attempts += 1;
    state.feedback = Some(why.to_owned());
    if state.attempts >= rules.team_attempts.max(1) {
        return Err(Pause(
            Trigger::VerificationFailed,
            format!(
                "the team's change failed {} times; last: {why}",
                state.attempts
            ),
            Some(Phase::Implement),
        ));
    }
    Ok(Phase::Implement)
}

/// The reasons of a skeptic's or validator's verdict, as one line.
fn reasons(out: &Value) -> String {
    let list: Vec<&str> = out
        .get("reasons")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "no reason given".into()
    } else {
        list.join("; ")
    }
}
