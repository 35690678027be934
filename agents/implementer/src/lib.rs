//! `implementer`: writes a change into the task's staging, from its model's file blocks.
//!
//! Task: `{"request": "...", "files": [...], "model": "small", "plan": [...]?, "feedback": ...?}`.
//! Returns `{"changed": [path], "summary", "confidence", "refused": [{path, reason}]}`.
//!
//! Plain code reads the files the request and the feedback name (and, when the workspace has
//! few, every small text file), bounded; the model named in the task writes the change as
//! `FILE: <path>` blocks; plain code writes each block whose path is relative, normal, not
//! hidden and inside the workspace, and refuses the rest in its output (the policy is the
//! backstop). It has no network. A reply with no usable block changes nothing: `changed: []`,
//! confidence 0.

use std::path::Path;

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::reply::{stated_confidence, summary_of};
use roster_kit::stages::{ImplementerInput, ImplementerOutput};
use roster_kit::{Globs, apply_blocks, bundle, list_files, parse_file_blocks};
use warden_guest::{Agent, AgentError, Description, log};

/// Completion tokens for the change.
const MAX_TOKENS: u32 = 2000;
/// A workspace with at most this many files is shown whole.
const ALL_BELOW: usize = 12;
/// Most bytes of one file shown.
const PER_FILE: usize = 16 * 1024;
/// Most bytes of all files shown.
const TOTAL: usize = 32 * 1024;
/// The confidence of a change whose reply states none.
const UNSTATED: f64 = 0.5;
/// What the implementer may write: its policy's `[fs] write`.
const WRITE: &[&str] = &["**"];

struct Implementer;

impl Agent for Implementer {
    fn describe() -> Description {
        Description::new(
            "implementer",
            env!("CARGO_PKG_VERSION"),
            "Writes a change into the task's staging from its model's file blocks.",
        )
        .input::<ImplementerInput>()
        .output::<ImplementerOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let mut input: ImplementerInput =
            serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let root = Path::new("/");
        if input.files.is_empty() {
            input.files = list_files(root, 200).0;
        }
        let feedback = input
            .feedback
            .as_ref()
            .map(prompt::feedback_text)
            .unwrap_or_default();
        let mentions = format!("{}\n{feedback}", input.request);
        let shown = bundle(root, &input.files, &mentions, ALL_BELOW, PER_FILE, TOTAL);
        if !shown.skipped.is_empty() {
            log::info(&format!(
                "{} files not shown (not text, or over the bound)",
                shown.skipped.len()
            ));
        }
        let reply = ask(
            &input.model,
            MAX_TOKENS,
            &prompt::implementer(&input, &shown.render()),
            None,
        )?;
        let blocks = parse_file_blocks(&reply);
        let (changed, refused) = apply_blocks(root, &blocks, &Globs::new(WRITE));
        let out = if changed.is_empty() {
            ImplementerOutput {
                changed,
                summary: if blocks.blocks.is_empty() && refused.is_empty() {
                    "the model's answer had no file block; nothing was changed".into()
                } else {
                    "no file block of the model's answer could be written; nothing was changed"
                        .into()
                },
                confidence: 0.0,
                refused,
            }
        } else {
            ImplementerOutput {
                summary: summary_of(&blocks.prose, 600),
                confidence: stated_confidence(&blocks.prose).unwrap_or(UNSTATED),
                changed,
                refused,
            }
        };
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Implementer);
