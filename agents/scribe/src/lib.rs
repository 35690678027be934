//! `scribe`: reads every `.md` note in a folder and writes a summary file.
//!
//! Task: `{"notes": "notes", "summary": "notes/out/summary.md"}` (paths relative to the
//! workspace, as the policy names them). Its policy grants read on `notes/**` and write on
//! `notes/out/**` only; the host stages the write and applies it when the task completes.

use serde::Deserialize;
use warden_guest::schemars::{self, JsonSchema};
use warden_guest::{Agent, AgentError, Description, log};

/// The contract's input: the notes folder and the summary file, relative to the workspace.
#[derive(Deserialize, JsonSchema)]
struct Task {
    notes: String,
    summary: String,
}

struct Scribe;

impl Agent for Scribe {
    fn describe() -> Description {
        Description::new(
            "scribe",
            env!("CARGO_PKG_VERSION"),
            "Summarises the notes in a folder into one file.",
        )
        .input::<Task>()
        .output::<String>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let task: Task = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        let dir = format!("/{}", task.notes.trim_start_matches('/'));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| AgentError::failed(format!("cannot list {dir}: {e}")))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md"))
            .collect();
        names.sort();
        let mut summary = format!("# Summary of {} notes\n\n", names.len());
        for name in &names {
            let text = std::fs::read_to_string(format!("{dir}/{name}"))
                .map_err(|e| AgentError::failed(format!("cannot read {name}: {e}")))?;
            let title = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(empty)");
            let words = text.split_whitespace().count();
            summary.push_str(&format!(
                "- {name}: {} ({words} words)\n",
                title.trim_start_matches('#').trim()
            ));
        }
        let out = format!("/{}", task.summary.trim_start_matches('/'));
        std::fs::write(&out, &summary)
            .map_err(|e| AgentError::failed(format!("cannot write {out}: {e}")))?;
        log::info(&format!("summarised {} notes into {out}", names.len()));
        Ok(summary)
    }
}

warden_guest::export_agent!(Scribe);
