//! `skeptic`: challenges a plan before anyone acts on it — security risk, over-engineering,
//! scope — and accepts it or rejects it with reasons.
//!
//! Task: `{"request": "...", "plan": [{"id", "do", "after"}], "model": "small"}`. Returns
//! `{"verdict": "accept"|"reject", "reasons": [...]}`. It reads the files the plan names (its
//! policy grants reading only: it can never write) and asks the model. Plain code rejects an
//! empty plan without asking, bounds the reasons, gives a rejection without a reason one, and
//! rejects when the model's answer cannot be read (a plan nobody could review is not accepted).

use std::path::Path;

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::stages::{SkepticInput, SkepticOutput, Verdict, bounded_reasons};
use roster_kit::{bundle, extract_json, list_files};
use warden_guest::{Agent, AgentError, Description};

/// Completion tokens for the verdict.
const MAX_TOKENS: u32 = 300;
/// Most bytes of the files the plan names shown to the model.
const MAX_SHOWN: usize = 12 * 1024;

struct Skeptic;

fn reject(why: &str) -> SkepticOutput {
    SkepticOutput {
        verdict: Verdict::Reject,
        reasons: vec![why.to_string()],
    }
}

impl Agent for Skeptic {
    fn describe() -> Description {
        Description::new(
            "skeptic",
            env!("CARGO_PKG_VERSION"),
            "Challenges a plan for security risk, over-engineering and scope.",
        )
        .input::<SkepticInput>()
        .output::<SkepticOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let input: SkepticInput = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let out = if input.plan.is_empty() {
            reject("the plan has no steps")
        } else {
            let named = prompt::plan_text(&input.plan);
            let (files, _) = list_files(Path::new("/"), 200);
            let shown = bundle(Path::new("/"), &files, &named, 0, MAX_SHOWN, MAX_SHOWN).render();
            let mut p = prompt::skeptic(&input);
            if !shown.is_empty() {
                p.user
                    .push_str(&format!("\n\nFiles the plan names:\n{shown}"));
            }
            let schema = warden_guest::schema_of::<SkepticOutput>();
            let reply = ask(&input.model, MAX_TOKENS, &p, Some(&schema))?;
            match extract_json::<SkepticOutput>(&reply) {
                Some(mut judged) => {
                    judged.reasons = bounded_reasons(judged.reasons);
                    if judged.verdict == Verdict::Reject && judged.reasons.is_empty() {
                        judged
                            .reasons
                            .push("the model rejected the plan without a reason".into());
                    }
                    judged
                }
                None => reject("the model's answer could not be read"),
            }
        };
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Skeptic);
