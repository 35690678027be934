//! `documenter`: keeps the documentation in step with a change.
//!
//! Task: `{"request": "...", "changed": [path], "summary": "...", "model": "small"}`. Returns
//! `{"docs": [path], "refused": [{path, reason}]}`. Plain code reads the Markdown files and
//! `docs/` (and the changed files), bounded; the model rewrites what the change made untrue as
//! `FILE: <path>` blocks, or none; plain code writes only `*.md` and `docs/**` (as its policy
//! grants) and refuses the rest in its output.

use std::path::Path;

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::stages::{DocumenterInput, DocumenterOutput};
use roster_kit::{Globs, apply_blocks, bundle, list_files, parse_file_blocks};
use warden_guest::{Agent, AgentError, Description};

/// Completion tokens for the docs.
const MAX_TOKENS: u32 = 1200;
/// Most bytes of one file shown.
const PER_FILE: usize = 12 * 1024;
/// Most bytes of all files shown.
const TOTAL: usize = 32 * 1024;
/// What the documenter may write: its policy's `[fs] write`.
const WRITE: &[&str] = &["**/*.md", "docs", "docs/**"];

struct Documenter;

impl Agent for Documenter {
    fn describe() -> Description {
        Description::new(
            "documenter",
            env!("CARGO_PKG_VERSION"),
            "Keeps the Markdown docs in step with a change.",
        )
        .input::<DocumenterInput>()
        .output::<DocumenterOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let input: DocumenterInput =
            serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let root = Path::new("/");
        let docs = Globs::new(WRITE);
        let (files, _) = list_files(root, 200);
        // The docs first, then the changed files (checked as any listed path is).
        let mut shown: Vec<String> = files
            .iter()
            .filter(|f| docs.matches(f))
            .take(12)
            .cloned()
            .collect();
        for c in input.changed.iter().take(8) {
            if !shown.contains(c) {
                shown.push(c.clone());
            }
        }
        let material = bundle(root, &shown, "", shown.len(), PER_FILE, TOTAL).render();
        let reply = ask(
            &input.model,
            MAX_TOKENS,
            &prompt::documenter(&input, &material),
            None,
        )?;
        let (written, refused) = apply_blocks(root, &parse_file_blocks(&reply), &docs);
        let out = DocumenterOutput {
            docs: written,
            refused,
        };
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Documenter);
