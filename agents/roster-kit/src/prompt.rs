//! The prompt of every stage: a [`Prompt`] of one system message (the stage's job and the
//! reply's format) and one user message (the request and what the stage read).
//!
//! Prompts are short and plain so that a small local model can follow them, and bounded: the
//! listing shows at most [`MAX_LISTED`] names, feedback at most [`MAX_FEEDBACK`] bytes; file text
//! comes already bounded from [`crate::read::bundle`].

use crate::stages::{
    CuratorInput, DocumenterInput, ImplementerInput, PlannerInput, RouterInput, SkepticInput, Step,
    TesterInput, ValidatorInput,
};

/// Most file names a prompt lists.
pub const MAX_LISTED: usize = 100;
/// Most bytes of feedback a prompt quotes.
pub const MAX_FEEDBACK: usize = 4096;
/// Most bytes of the request a prompt quotes.
pub const MAX_REQUEST: usize = 4096;

/// One model call's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The system message: the stage's job and the reply's format.
    pub system: String,
    /// The user message: the request and the material.
    pub user: String,
}

const FILE_FORMAT: &str = "Write each file you change in full, as a line `FILE: <path>` (relative \
to the workspace) followed by a fenced code block with the whole new content. Then one line \
`SUMMARY: <what you changed>` and one line `CONFIDENCE: <0 to 1>`.";

fn listing(files: &[String]) -> String {
    let mut out: Vec<String> = files
        .iter()
        .take(MAX_LISTED)
        .map(|f| format!("- {}", crate::clip(f, 256)))
        .collect();
    if files.len() > MAX_LISTED {
        out.push(format!("- … and {} more", files.len() - MAX_LISTED));
    }
    if out.is_empty() {
        "(no files)".into()
    } else {
        out.join("\n")
    }
}

fn request(text: &str) -> String {
    crate::clip(text.trim(), MAX_REQUEST)
}

/// Feedback (text, or JSON such as a verification report) as prompt text, bounded.
pub fn feedback_text(feedback: &serde_json::Value) -> String {
    let text = match feedback {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    // The tail carries a failing test's message; keep it rather than the head.
    if text.len() <= MAX_FEEDBACK {
        return text;
    }
    let mut start = text.len() - MAX_FEEDBACK;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// A plan as numbered lines.
pub fn plan_text(steps: &[Step]) -> String {
    steps
        .iter()
        .take(crate::stages::MAX_ITEMS)
        .map(|s| {
            let after = if s.after.is_empty() {
                String::new()
            } else {
                format!(" (after {})", s.after.join(", "))
            };
            format!(
                "{}. {}{after}",
                crate::clip(&s.id, 64),
                crate::clip(&s.action, 600)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The router: judge complexity and risk, pick `fast` or `team`.
pub fn router(input: &RouterInput) -> Prompt {
    Prompt {
        system: "You route software change requests. Judge the request: complexity `low` (a small \
                 local fix) or `high` (many files, design work); risk `low` or `high` (security, \
                 authentication, personal data, deleting data, wide effects). Choose route `fast` \
                 for low complexity and low risk, else `team`. Answer only JSON: {\"route\": \
                 \"fast\"|\"team\", \"complexity\": \"low\"|\"high\", \"risk\": \"low\"|\"high\", \
                 \"confidence\": 0 to 1, \"reason\": \"one sentence\"}."
            .into(),
        user: format!(
            "Request: {}\n\nFiles in the workspace:\n{}",
            request(&input.request),
            listing(&input.files)
        ),
    }
}

/// The planner: a dependency graph of steps.
pub fn planner(input: &PlannerInput) -> Prompt {
    let feedback = input
        .feedback
        .as_ref()
        .map(|f| {
            format!(
                "\n\nThe last attempt was refused or failed:\n{}",
                feedback_text(f)
            )
        })
        .unwrap_or_default();
    Prompt {
        system: "You plan a software change as a few small steps (at most 8). Each step has an \
                 `id` (short, unique), `do` (what to do, one sentence) and `after` (the ids of \
                 the steps it needs first). Answer only JSON: {\"steps\": [{\"id\": \"1\", \
                 \"do\": \"...\", \"after\": []}]}."
            .into(),
        user: format!(
            "Request: {}\n\nFiles in the workspace:\n{}{feedback}",
            request(&input.request),
            listing(&input.files)
        ),
    }
}

/// The skeptic: accept or reject a plan.
pub fn skeptic(input: &SkepticInput) -> Prompt {
    Prompt {
        system: "You review a plan for a software change before anyone does it. Reject it if it \
                 adds a security risk (secrets, authentication, network, running untrusted \
                 input), is over-engineered, or goes beyond the request; else accept it. Answer \
                 only JSON: {\"verdict\": \"accept\"|\"reject\", \"reasons\": [\"...\"]}."
            .into(),
        user: format!(
            "Request: {}\n\nPlan:\n{}",
            request(&input.request),
            plan_text(&input.plan)
        ),
    }
}

/// The tester: tests first, in test files only.
pub fn tester(input: &TesterInput, files: &str) -> Prompt {
    Prompt {
        system: format!(
            "You write tests before the change is made: tests that pass once the request is \
             done. Write only test files (`tests/...`, `test_*.py`, `*_test.py`); never change \
             other files. {FILE_FORMAT}"
        ),
        user: format!(
            "Request: {}\n\nPlan:\n{}\n\nFiles in the workspace:\n{}\n\n{files}",
            request(&input.request),
            plan_text(&input.plan),
            listing(&input.files)
        ),
    }
}

/// The implementer: the change, as file blocks.
pub fn implementer(input: &ImplementerInput, files: &str) -> Prompt {
    let plan = input
        .plan
        .as_ref()
        .map(|p| format!("\n\nPlan:\n{}", plan_text(p)))
        .unwrap_or_default();
    let feedback = input
        .feedback
        .as_ref()
        .map(|f| format!("\n\nThe last attempt failed:\n{}", feedback_text(f)))
        .unwrap_or_default();
    Prompt {
        system: format!(
            "You make the smallest change to the workspace that does what the request asks. \
             Keep the existing style; do not change tests unless the request asks for it. \
             {FILE_FORMAT}"
        ),
        user: format!(
            "Request: {}{plan}{feedback}\n\nFiles in the workspace:\n{}\n\n{files}",
            request(&input.request),
            listing(&input.files)
        ),
    }
}

/// The documenter: bring the docs in step with the change.
pub fn documenter(input: &DocumenterInput, files: &str) -> Prompt {
    Prompt {
        system: format!(
            "You keep documentation in step with a change. If a document below says something \
             the change made untrue, or omits what a user now needs, rewrite it; write only \
             Markdown files (`*.md`) or files under `docs/`. If nothing needs changing, write \
             no file and say so. {FILE_FORMAT}"
        ),
        user: format!(
            "Request: {}\n\nChanged files: {}\nWhat changed: {}\n\n{files}",
            request(&input.request),
            input.changed.join(", "),
            crate::clip(&input.summary, 2000)
        ),
    }
}

/// The validator: compare the verification with what the docs promise.
pub fn validator(input: &ValidatorInput, docs: &str) -> Prompt {
    let runs = input
        .verification
        .commands
        .iter()
        .take(8)
        .map(|c| {
            format!(
                "$ {}\nexit: {}{}\n{}",
                c.command.join(" "),
                c.status.map_or("none".to_string(), |s| s.to_string()),
                if c.timed_out { " (timed out)" } else { "" },
                feedback_text(&serde_json::Value::String(c.output.clone()))
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    Prompt {
        system: "You check a finished change from a user's side. Compare what the documentation \
                 promises with what the commands below did. Answer `pass` only if the commands \
                 succeeded and the documented behaviour holds. Answer only JSON: {\"verdict\": \
                 \"pass\"|\"fail\", \"reasons\": [\"...\"]}."
            .into(),
        user: format!(
            "Request: {}\n\nChanged files: {}\n\nCommands run:\n{runs}\n\nDocumentation:\n{docs}",
            request(&input.request),
            input.changed.join(", ")
        ),
    }
}

/// The curator: one or two generic lessons from a finished task.
pub fn curator(input: &CuratorInput) -> Prompt {
    let stages = input
        .stages
        .iter()
        .take(32)
        .map(|s| {
            format!(
                "- {}: {}",
                crate::clip(&s.agent, 64),
                crate::clip(&s.outcome, 200)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Prompt {
        system: "You turn a finished software task into one or two short, generic lessons that \
                 help future tasks (what worked, what to check first). Never include names, \
                 e-mail addresses, keys, tokens, passwords or file contents. Each lesson has a \
                 short `key` (lowercase words joined by `-`), a `text` of one or two sentences \
                 and a few `tags`. Answer only JSON: {\"lessons\": [{\"key\": \"...\", \"text\": \
                 \"...\", \"tags\": [\"...\"]}]}."
            .into(),
        user: format!(
            "Request: {}\nOutcome: {} (verified: {})\nStages:\n{stages}",
            request(&input.request),
            crate::clip(&input.outcome, 200),
            input.verified
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompts_carry_the_request_and_are_bounded() {
        let files: Vec<String> = (0..500).map(|i| format!("f{i}.py")).collect();
        let input: RouterInput = serde_json::from_value(json!({
            "request": format!("fix calc.py {}", "x".repeat(100_000)), "files": files
        }))
        .unwrap();
        let p = router(&input);
        assert!(p.user.starts_with("Request: fix calc.py"));
        assert!(p.user.contains("- f0.py") && p.user.contains("… and 400 more"));
        assert!(!p.user.contains("- f100.py"));
        assert!(
            p.user.len() < MAX_REQUEST + 100 * 12 + 200,
            "{}",
            p.user.len()
        );
        assert!(p.system.contains("\"route\""));
    }

    #[test]
    fn feedback_keeps_the_tail_and_plans_read_as_lines() {
        let long = format!("{}FAIL: test_add", "é".repeat(5000));
        let text = feedback_text(&json!(long));
        assert!(text.ends_with("FAIL: test_add") && text.len() <= MAX_FEEDBACK + 4);
        assert!(feedback_text(&json!({"passed": false})).contains("\"passed\": false"));
        let steps: Vec<Step> = serde_json::from_value(json!([
            {"id": "1", "do": "read calc.py", "after": []},
            {"id": "2", "do": "fix add", "after": ["1"]}
        ]))
        .unwrap();
        assert_eq!(plan_text(&steps), "1. read calc.py\n2. fix add (after 1)");
        let input: ImplementerInput = serde_json::from_value(json!({
            "request": "fix", "model": "small", "plan": steps, "feedback": "FAIL: test_add"
        }))
        .unwrap();
        let p = implementer(&input, "FILE: calc.py\n```\nx\n```\n");
        for needle in [
            "Plan:\n1. read",
            "failed:\nFAIL: test_add",
            "FILE: calc.py",
            "(no files)",
        ] {
            assert!(p.user.contains(needle), "{needle} in {}", p.user);
        }
        assert!(p.system.contains("CONFIDENCE"));
    }
}
