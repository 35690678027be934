//! `tester`: writes tests, and only tests, before the implementation.
//!
//! Task: `{"request": "...", "files": [...], "plan": [...], "model": "small"}`. Returns
//! `{"tests": [path], "summary", "refused": [{path, reason}]}`. Plain code reads the files the
//! request and plan name (all small text files when the workspace has few); the model writes
//! test files as `FILE: <path>` blocks; plain code writes only those whose path is a test file
//! (`tests/**`, `**/test_*.py`, `**/*_test.py`, as its policy grants) and refuses the rest in its
//! output. The verification itself is the host's gate: the tester runs no command.

use std::path::Path;

use roster_kit::ask::ask;
use roster_kit::prompt;
use roster_kit::reply::summary_of;
use roster_kit::stages::{TesterInput, TesterOutput};
use roster_kit::{Globs, apply_blocks, bundle, list_files, parse_file_blocks};
use warden_guest::{Agent, AgentError, Description};

/// Completion tokens for the tests.
const MAX_TOKENS: u32 = 1500;
/// A workspace with at most this many files is shown whole.
const ALL_BELOW: usize = 12;
/// Most bytes of one file shown.
const PER_FILE: usize = 16 * 1024;
/// Most bytes of all files shown.
const TOTAL: usize = 32 * 1024;
/// What the tester may write: its policy's `[fs] write` (`tests` itself, so it may make the folder).
const WRITE: &[&str] = &["tests", "tests/**", "**/test_*.py", "**/*_test.py"];

struct Tester;

impl Agent for Tester {
    fn describe() -> Description {
        Description::new(
            "tester",
            env!("CARGO_PKG_VERSION"),
            "Writes tests, and only tests, before the implementation.",
        )
        .input::<TesterInput>()
        .output::<TesterOutput>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let mut input: TesterInput =
            serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if input.request.trim().is_empty() {
            return Err(AgentError::invalid_input("the request is empty"));
        }
        let root = Path::new("/");
        if input.files.is_empty() {
            input.files = list_files(root, 200).0;
        }
        let mentions = format!("{}\n{}", input.request, prompt::plan_text(&input.plan));
        let shown = bundle(root, &input.files, &mentions, ALL_BELOW, PER_FILE, TOTAL);
        let reply = ask(
            &input.model,
            MAX_TOKENS,
            &prompt::tester(&input, &shown.render()),
            None,
        )?;
        let blocks = parse_file_blocks(&reply);
        let (tests, refused) = apply_blocks(root, &blocks, &Globs::new(WRITE));
        let summary = if tests.is_empty() {
            "no test file was written".to_string()
        } else {
            summary_of(&blocks.prose, 600)
        };
        let out = TesterOutput {
            tests,
            summary,
            refused,
        };
        serde_json::to_string(&out).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Tester);
