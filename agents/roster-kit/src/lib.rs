//! What the roster's agents share, as plain code that runs and is tested on the host.
//!
//! The roster (`router`, `planner`, `implementer`, `tester`, `skeptic`, `documenter`,
//! `memory-curator`, `validator`) are the stages of the cascade (`docs/cascade.md`). Each agent is
//! a thin component: it reads its input, asks a model where judgement is needed, and does the
//! rest with this crate:
//!
//! | module | owns |
//! |---|---|
//! | [`stages`] | every stage's input and output (serde + JSON Schema): the contracts of `docs/cascade.md` |
//! | [`reply`] | reading a model's reply: `FILE:` blocks, JSON wrapped in prose or a fence, a stated confidence |
//! | [`paths`] | which paths a stage may name and write: relative, normal, no hidden parts, inside its globs |
//! | [`read`] | bounded reads of the workspace: a capped listing, a file's text capped with a marker, writes inside the globs |
//! | [`prompt`] | the prompt text of every stage |
//!
//! Nothing here trusts a model: every path a reply names is checked, every size is capped, and a
//! reply that cannot be used is an ordinary value (`None`, a refusal), never a panic.
#![deny(missing_docs)]

#[cfg(feature = "guest")]
pub mod ask;
pub mod paths;
pub mod prompt;
pub mod read;
pub mod reply;
pub mod stages;

pub use paths::{Globs, PathError, check_path};
pub use read::{
    Bundle, ReadError, WriteError, apply_blocks, bundle, list_files, read_text, write_file,
};
pub use reply::{FileBlock, FileBlocks, Problem, extract_json, parse_file_blocks};

/// `text` cut to at most `max` bytes on a character boundary, with `…` when it was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        for (text, max, want) in [
            ("short", 10, "short"),
            ("exactly", 7, "exactly"),
            ("abcdef", 3, "abc…"),
            ("ééé", 3, "é…"),
            ("", 0, ""),
        ] {
            assert_eq!(clip(text, max), want, "{text:?} at {max}");
        }
    }
}
