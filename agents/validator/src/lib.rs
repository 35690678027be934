//! `validator`: checks a change from a user's side — did the documented commands do what the
//! docs promise?
//!
//! Task: `{"request": "...", "changed": [path], "verification": {"passed", "commands": [...]},
//! "model": "small"}` (the host's gate ran the workspace's checks; the validator runs nothing).
//! Returns `{"verdict": "pass"|"fail", "reasons": [...]}`. Plain code fails a verification that
//! did not pass (or ran nothing) without asking a model; otherwise the model compares the
//! commands' output with the workspace's Markdown docs. A reply that cannot be read is a `fail`
//! saying so: nothing passes unchecked.

use std::path::Path;

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::stages::{Check, ValidatorInput, ValidatorOutput, bounded_reasons};
use roster_kit::{Globs, bundle, clip, extract_json, list_files};
use warden_guest::{Agent, AgentError, Description};

/// Completion tokens for the verdict.
const MAX_TOKENS: u32 = 300;
/// Most bytes of the docs shown.
const TOTAL: usize = 16 * 1024;

struct Validator;

fn fail(reasons: Vec<String>) -> ValidatorOutput {
    ValidatorOutput {
        verdict: Check::Fail,
        reasons,
    }
}

/// Why a verification that did not pass failed, from its commands (no model needed).
fn failed_checks(input: &ValidatorInput) -> Option<ValidatorOutput> {
    let v = &input.verification;
    if v.commands.is_empty() {
        return Some(fail(vec!["no check ran".into()]));
    }
    if v.passed {
        return None;
    }
    let reasons = v
        .commands
        .iter()
        .filter(|c| c.timed_out || c.status != Some(0))
        .map(|c| {
            let how = if c.timed_out {
                "timed out".to_string()
            } else {
                c.status
                    .map_or("was killed".into(), |s| format!("exited {s}"))
            };
            clip(&format!("`{}` {how}", c.command.join(" ")), 600)
        })
        .collect::<Vec<_>>();
    Some(fail(if reasons.is_empty() {
        vec!["the verification did not pass".into()]
    } else {
        bounded_reasons(reasons)
    }))
}

impl Agent for Validator {
    fn describe() -> Description {
        Description::new(
            "validator",
            env!("CARGO_PKG_VERSION"),
            "Checks a change from a user's side against what the docs promise.",
        )
        .input::<ValidatorInput>()
        .output::<ValidatorOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let input: ValidatorInput =
            serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let out = match failed_checks(&input) {
            Some(out) => out,
            None => {
                let root = Path::new("/");
                let docs = Globs::new(&["**/*.md", "docs/**"]);
                let (files, _) = list_files(root, 200);
                let shown: Vec<String> = files
                    .into_iter()
                    .filter(|f| docs.matches(f))
                    .take(12)
                    .collect();
                let material = bundle(root, &shown, "", shown.len(), TOTAL, TOTAL).render();
                let schema = warden_guest::schema_of::<ValidatorOutput>();
                let reply = ask(
                    &input.model,
                    MAX_TOKENS,
                    &prompt::validator(&input, &material),
                    Some(&schema),
                )?;
                match extract_json::<ValidatorOutput>(&reply) {
                    Some(mut judged) => {
                        judged.reasons = bounded_reasons(judged.reasons);
                        judged
                    }
                    None => fail(vec!["the model's answer could not be read".into()]),
                }
            }
        };
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Validator);
