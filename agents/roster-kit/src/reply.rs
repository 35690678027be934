//! Reading a model's reply, which is untrusted text: the `FILE: <path>` + fenced block format of
//! the writing stages ([`parse_file_blocks`]), JSON that may come wrapped in prose or a code fence
//! ([`extract_json`]), and a stated `CONFIDENCE:` ([`stated_confidence`]).
//!
//! Every scan is bounded ([`MAX_REPLY`] bytes read, [`MAX_BLOCKS`] blocks, [`MAX_BLOCK`] bytes a
//! block); what cannot be used is reported as a [`Problem`], never a panic.

use serde::de::DeserializeOwned;

/// Most bytes of a reply that are read; the rest is ignored.
pub const MAX_REPLY: usize = 1 << 20;
/// Most file blocks taken from one reply; later ones are reported as problems.
pub const MAX_BLOCKS: usize = 16;
/// Largest content of one block, in bytes.
pub const MAX_BLOCK: usize = 256 * 1024;
/// Most `{` positions tried when looking for JSON in prose.
const MAX_JSON_STARTS: usize = 64;

/// One file the model wrote in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBlock {
    /// The path as the model wrote it (not yet checked: see [`crate::paths`]).
    pub path: String,
    /// The file's new content (lines joined with `\n`, ending with one).
    pub content: String,
}

/// A block that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The path as the model wrote it (cut to 512 bytes).
    pub path: String,
    /// Why it was not taken.
    pub reason: String,
}

/// What a reply's `FILE:` blocks came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileBlocks {
    /// The complete blocks, in order (a path written twice keeps its last block).
    pub blocks: Vec<FileBlock>,
    /// Blocks not taken: unterminated, too large, too many, no fence after `FILE:`.
    pub problems: Vec<Problem>,
    /// The text outside the blocks, trimmed (the model's explanation).
    pub prose: String,
}

/// The path of a `FILE:` line (`FILE: a.py`, `**FILE:** a.py`, `### File: a.py`, `` FILE: `a.py` ``).
fn file_line(line: &str) -> Option<String> {
    let t = line.trim().trim_start_matches(['#', '*', ' ', '>']);
    let rest = t
        .get(..5)
        .filter(|head| head.eq_ignore_ascii_case("file:"))
        .map(|_| &t[5..])?;
    let path = rest
        .trim()
        .trim_start_matches('*')
        .trim()
        .trim_matches(['`', '"', '\''])
        .trim();
    Some(path.to_string())
}

/// The fence a line opens (its character and length), if it opens one.
fn fence_open(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    let c = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = t.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

fn closes(line: &str, (c, n): (char, usize)) -> bool {
    let t = line.trim();
    t.chars().take_while(|x| *x == c).count() >= n && t.chars().all(|x| x == c)
}

/// The `FILE: <path>` blocks of `reply`: each `FILE:` line followed (after blank lines) by a
/// fenced block of three or more backticks or tildes, closed by a fence at least as long.
pub fn parse_file_blocks(reply: &str) -> FileBlocks {
    let reply = crate::clip(reply, MAX_REPLY);
    let mut out = FileBlocks::default();
    let mut prose = Vec::new();
    let mut lines = reply.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(path) = file_line(line) else {
            prose.push(line);
            continue;
        };
        let shown = crate::clip(&path, 512);
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
        }
        let Some(fence) = lines.peek().and_then(|l| fence_open(l)) else {
            out.problems.push(Problem {
                path: shown,
                reason: "no fenced block follows the FILE line".into(),
            });
            continue;
        };
        lines.next();
        let mut content = String::new();
        let mut closed = false;
        let mut too_large = false;
        for l in lines.by_ref() {
            if closes(l, fence) {
                closed = true;
                break;
            }
            if content.len() + l.len() + 1 > MAX_BLOCK {
                too_large = true;
            } else {
                content.push_str(l);
                content.push('\n');
            }
        }
        let problem = if !closed {
            Some("the block's fence is never closed".to_string())
        } else if too_large {
            Some(format!("the block is larger than {} KiB", MAX_BLOCK / 1024))
        } else if out.blocks.len() >= MAX_BLOCKS {
            Some(format!("more than {MAX_BLOCKS} files in one reply"))
        } else {
            None
        };
        match problem {
            Some(reason) => out.problems.push(Problem {
                path: shown,
                reason,
            }),
            None => {
                out.blocks.retain(|b| b.path != path);
                out.blocks.push(FileBlock { path, content });
            }
        }
    }
    out.prose = prose.join("\n").trim().to_string();
    out
}

/// The first JSON value of type `T` in `reply`: the whole reply, else the inside of a code fence,
/// else the first object starting at a `{` that parses as `T` (with anything after it ignored).
/// Unknown keys are ignored unless `T` refuses them. `None` when nothing fits.
pub fn extract_json<T: DeserializeOwned>(reply: &str) -> Option<T> {
    let reply = crate::clip(reply, MAX_REPLY);
    let text = reply.trim();
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    let mut lines = text.lines();
    while let Some(line) = lines.by_ref().next() {
        if let Some(fence) = fence_open(line) {
            let inside: Vec<&str> = lines.by_ref().take_while(|l| !closes(l, fence)).collect();
            if let Ok(v) = serde_json::from_str(inside.join("\n").trim()) {
                return Some(v);
            }
        }
    }
    text.match_indices('{')
        .take(MAX_JSON_STARTS)
        .find_map(|(i, _)| {
            serde_json::Deserializer::from_str(&text[i..])
                .into_iter::<T>()
                .next()
                .and_then(Result::ok)
        })
}

/// A confidence the reply states on a line of its own (`CONFIDENCE: 0.8`, `confidence: 80%`),
/// within 0 to 1; `None` when there is none or it is not a number in range.
pub fn stated_confidence(reply: &str) -> Option<f64> {
    let reply = crate::clip(reply, MAX_REPLY);
    reply.lines().rev().find_map(|line| {
        let t = line.trim().trim_matches('*').trim();
        let rest = t
            .get(..11)
            .filter(|h| h.eq_ignore_ascii_case("confidence:"))
            .map(|_| t[11..].trim().trim_matches('*').trim())?;
        let (num, scale) = match rest.strip_suffix('%') {
            Some(n) => (n.trim(), 100.0),
            None => (rest, 1.0),
        };
        let v: f64 = num.parse().ok()?;
        let v = v / scale;
        (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
    })
}

/// A `SUMMARY:` line of the reply, else its first prose lines; at most `max` bytes.
pub fn summary_of(prose: &str, max: usize) -> String {
    let line = prose.lines().find_map(|l| {
        let t = l.trim();
        t.get(..8)
            .filter(|h| h.eq_ignore_ascii_case("summary:"))
            .map(|_| t[8..].trim().to_string())
    });
    let text = line.unwrap_or_else(|| {
        prose
            .lines()
            .filter(|l| {
                let t = l.trim();
                !t.is_empty() && stated_confidence(t).is_none()
            })
            .take(5)
            .collect::<Vec<_>>()
            .join(" ")
    });
    crate::clip(text.trim(), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn file_blocks_are_read_in_the_documented_format_and_its_variants() {
        let reply = "I fixed the bug.\n\nFILE: calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n\
                     **FILE:** `tests/test_x.py`\n\n~~~\nx = 1\n~~~\nCONFIDENCE: 0.9\n";
        let got = parse_file_blocks(reply);
        assert_eq!(got.problems, vec![]);
        assert_eq!(
            got.blocks,
            vec![
                FileBlock {
                    path: "calc.py".into(),
                    content: "def add(a, b):\n    return a + b\n".into()
                },
                FileBlock {
                    path: "tests/test_x.py".into(),
                    content: "x = 1\n".into()
                },
            ]
        );
        assert_eq!(got.prose, "I fixed the bug.\n\nCONFIDENCE: 0.9");
        assert_eq!(stated_confidence(reply), Some(0.9));
    }

    #[test]
    fn a_longer_fence_may_hold_a_shorter_one_and_a_repeated_path_keeps_its_last_block() {
        let reply = "FILE: README.md\n````markdown\n```sh\nrun\n```\n````\nFILE: README.md\n```\nnew\n```\n";
        let got = parse_file_blocks(reply);
        assert_eq!(got.blocks.len(), 1);
        assert_eq!(got.blocks[0].content, "new\n");
        let got = parse_file_blocks("FILE: README.md\n````markdown\n```sh\nrun\n```\n````\n");
        assert_eq!(got.blocks[0].content, "```sh\nrun\n```\n");
    }

    #[test]
    fn hostile_replies_give_problems_not_panics() {
        let huge = format!("FILE: big.py\n```\n{}\n```\n", "x".repeat(MAX_BLOCK + 10));
        let many: String = (0..MAX_BLOCKS + 3)
            .map(|i| format!("FILE: f{i}.py\n```\n{i}\n```\n"))
            .collect();
        let junk = "FILE: \u{0}\u{fffd}\u{1b}[2J\n```\n";
        let table: &[(&str, usize, &[&str])] = &[
            ("FILE: a.py\n```python\nprint(1)\n", 0, &["never closed"]),
            ("FILE: a.py\nno fence here\n", 0, &["no fenced block"]),
            ("FILE: a.py", 0, &["no fenced block"]),
            (&huge, 0, &["larger than"]),
            (&many, MAX_BLOCKS, &["more than", "more than", "more than"]),
            (junk, 0, &["never closed"]),
            ("", 0, &[]),
            ("just prose, no files", 0, &[]),
        ];
        for (reply, blocks, problems) in table {
            let got = parse_file_blocks(reply);
            assert_eq!(got.blocks.len(), *blocks, "{:?}", crate::clip(reply, 80));
            assert_eq!(got.problems.len(), problems.len(), "{:?}", got.problems);
            for (p, want) in got.problems.iter().zip(problems.iter()) {
                assert!(p.reason.contains(want), "{p:?} lacks {want}");
            }
        }
        // Paths are taken as written: checking them is the caller's job (crate::paths).
        let got = parse_file_blocks("FILE: ../x\n```\na\n```\nFILE: /etc/passwd\n```\nb\n```\n");
        let paths: Vec<&str> = got.blocks.iter().map(|b| b.path.as_str()).collect();
        assert_eq!(paths, ["../x", "/etc/passwd"]);
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Judgement {
        route: String,
        confidence: f64,
    }

    #[test]
    fn json_is_found_in_prose_fences_and_with_extra_keys() {
        let want = Judgement {
            route: "fast".into(),
            confidence: 0.5,
        };
        let table = [
            r#"{"route": "fast", "confidence": 0.5}"#,
            r#"  {"route": "fast", "confidence": 0.5, "extra": [1, 2]}  "#,
            "Sure! Here it is:\n```json\n{\"route\": \"fast\", \"confidence\": 0.5}\n```\nHope it helps.",
            "My answer is {\"route\": \"fast\", \"confidence\": 0.5} and that is final {not json",
            "{broken {\"route\": \"fast\", \"confidence\": 0.5}",
            "{\"a\": 1} then {\"route\": \"fast\", \"confidence\": 0.5}",
        ];
        for reply in table {
            assert_eq!(
                extract_json::<Judgement>(reply).as_ref(),
                Some(&want),
                "{reply}"
            );
        }
        for reply in [
            "",
            "no json at all",
            "{",
            "```json\n{\"route\": 1}\n```",
            "{\"route\": \"fast\"}",
            "\u{0}\u{1}{{{{{{",
            &"{".repeat(100_000),
        ] {
            assert_eq!(
                extract_json::<Judgement>(reply),
                None,
                "{:?}",
                crate::clip(reply, 40)
            );
        }
    }

    #[test]
    fn confidence_and_summary_lines() {
        for (reply, want) in [
            ("CONFIDENCE: 0.25", Some(0.25)),
            ("**Confidence:** 80%", Some(0.8)),
            ("confidence: 1", Some(1.0)),
            ("confidence: 1.5", None),
            ("confidence: -0.1", None),
            ("confidence: NaN", None),
            ("confidence: high", None),
            ("no line", None),
        ] {
            assert_eq!(stated_confidence(reply), want, "{reply}");
        }
        assert_eq!(summary_of("x\nSUMMARY: fixed add\ny", 100), "fixed add");
        assert_eq!(summary_of("Fixed it.\nCONFIDENCE: 0.9", 100), "Fixed it.");
        assert_eq!(summary_of(&"long ".repeat(100), 10), "long long …");
    }
}
