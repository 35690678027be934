//! `memory-curator`: turns a finished task into one or two generic lessons in the curated
//! memory (`lessons`), through the host's filter.
//!
//! Task: `{"request": "...", "outcome": "...", "verified": true, "stages": [{"agent", "outcome"}],
//! "model": "small"}`. Returns `{"lessons": [key], "refused": [{key, reason}]}`. The model writes
//! the lessons; plain code keeps at most two, makes each key a plain `a-z0-9-` name, bounds text
//! and tags, and writes each with `memory::put`. A write the host refuses (its secret and
//! personal-data filter, a bound) is reported in `refused`, not an error. A reply that cannot be
//! read is the agent's error. It has no files and no network; it is the only stage that writes
//! memory.

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::stages::{CuratorInput, CuratorOutput, Lessons, RefusedLesson, lesson_key};
use roster_kit::{clip, extract_json};
use warden_guest::{Agent, AgentError, Description, log, memory};

/// Completion tokens for the lessons.
const MAX_TOKENS: u32 = 300;
/// Most lessons kept from one task.
const MAX_LESSONS: usize = 2;
/// Longest lesson text, in bytes.
const MAX_LESSON: usize = 1000;
/// The namespace the curator writes (its policy's `[memory] write`).
const NAMESPACE: &str = "lessons";

struct Curator;

impl Agent for Curator {
    fn describe() -> Description {
        Description::new(
            "memory-curator",
            env!("CARGO_PKG_VERSION"),
            "Turns a finished task into generic lessons in the curated memory.",
        )
        .input::<CuratorInput>()
        .output::<CuratorOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let input: CuratorInput = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let schema = warden_guest::schema_of::<Lessons>();
        let reply = ask(
            &input.model,
            MAX_TOKENS,
            &prompt::curator(&input),
            Some(&schema),
        )?;
        let proposed = extract_json::<Lessons>(&reply)
            .ok_or_else(|| AgentError::failed("the model's answer could not be read as lessons"))?;
        let mut out = CuratorOutput {
            lessons: Vec::new(),
            refused: Vec::new(),
        };
        for lesson in proposed
            .lessons
            .into_iter()
            .filter(|l| !l.text.trim().is_empty())
            .take(MAX_LESSONS)
        {
            let Some(key) = lesson_key(&lesson.key).or_else(|| lesson_key(&clip(&lesson.text, 48)))
            else {
                continue;
            };
            let tags: Vec<String> = lesson
                .tags
                .iter()
                .filter_map(|t| lesson_key(t))
                .map(|t| clip(&t, 32))
                .take(4)
                .collect();
            let mut tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            tags.push("cascade");
            match memory::put(
                NAMESPACE,
                &key,
                &clip(lesson.text.trim(), MAX_LESSON),
                &tags,
            ) {
                Ok(version) => {
                    log::info(&format!("lesson {key} written (version {version})"));
                    out.lessons.push(key);
                }
                Err(reason) => out.refused.push(RefusedLesson {
                    key,
                    reason: clip(&reason, 600),
                }),
            }
        }
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Curator);
