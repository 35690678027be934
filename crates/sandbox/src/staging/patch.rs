//! The text of a diff: a unified diff, line by line, of each small text file that changed.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Largest file whose text is shown.
const MAX_SHOWN: u64 = 64 * 1024;
/// Lines of context around each change.
const CONTEXT: usize = 3;
/// Largest table the line diff computes; larger middles are shown replaced whole.
const MAX_CELLS: usize = 4 << 20;

/// One file's part of [`super::Diff::render`]; `old` is `None` for a created file.
pub(super) fn render_file(rel: &str, old: Option<&Path>, new: &Path, out: &mut String) {
    let from = if old.is_some() {
        format!("a/{rel}")
    } else {
        "/dev/null".to_string()
    };
    let (Some(new_text), Some(old_text)) = (shown_text(Some(new)), shown_text(old)) else {
        let _ = writeln!(
            out,
            "--- {from}\n+++ b/{rel}\n(binary, link or over {MAX_SHOWN} bytes: not shown)"
        );
        return;
    };
    let _ = writeln!(out, "--- {from}\n+++ b/{rel}");
    unified(&old_text, &new_text, out);
}

/// The text of a regular file under [`MAX_SHOWN`] bytes ("" for no file), `None` otherwise.
fn shown_text(path: Option<&Path>) -> Option<String> {
    let Some(path) = path else {
        return Some(String::new());
    };
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() >= MAX_SHOWN {
        return None;
    }
    let text = String::from_utf8(fs::read(path).ok()?).ok()?;
    (!text.contains('\0')).then_some(text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Ins,
}

/// Append the hunks that turn `old` into `new`, line by line.
fn unified(old: &str, new: &str, out: &mut String) {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = script(&a, &b);
    // Where each op starts in `a` and `b`.
    let mut at = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0, 0);
    for op in &ops {
        at.push((i, j));
        match op {
            Op::Same => (i, j) = (i + 1, j + 1),
            Op::Del => i += 1,
            Op::Ins => j += 1,
        }
    }
    at.push((i, j));
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut k = 0;
    while k < changed.len() {
        let first = changed[k];
        while k + 1 < changed.len() && changed[k + 1] - changed[k] <= 2 * CONTEXT + 1 {
            k += 1;
        }
        let (lo, hi) = (
            first.saturating_sub(CONTEXT),
            (changed[k] + 1 + CONTEXT).min(ops.len()),
        );
        k += 1;
        let span = |start: usize, end: usize| match end - start {
            0 => format!("{start},0"),
            1 => format!("{}", start + 1),
            n => format!("{},{n}", start + 1),
        };
        let _ = writeln!(
            out,
            "@@ -{} +{} @@",
            span(at[lo].0, at[hi].0),
            span(at[lo].1, at[hi].1)
        );
        for n in lo..hi {
            let (mark, line) = match ops[n] {
                Op::Same => (' ', a[at[n].0]),
                Op::Del => ('-', a[at[n].0]),
                Op::Ins => ('+', b[at[n].1]),
            };
            out.push(mark);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
}

/// An edit script from `a` to `b`: the common prefix and suffix, and a longest common
/// subsequence of the middle when its table is small enough (otherwise the middle is replaced
/// whole: still correct, only longer).
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops = vec![Op::Same; pre];
    let (mut i, mut j) = (0, 0);
    if ma.len().saturating_mul(mb.len()) <= MAX_CELLS {
        // lcs[i * w + j]: the longest common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for x in (0..ma.len()).rev() {
            for y in (0..mb.len()).rev() {
                lcs[x * w + y] = if ma[x] == mb[y] {
                    lcs[(x + 1) * w + y + 1] + 1
                } else {
                    lcs[(x + 1) * w + y].max(lcs[x * w + y + 1])
                };
            }
        }
        while i < ma.len() && j < mb.len() {
            if ma[i] == mb[j] {
                ops.push(Op::Same);
                (i, j) = (i + 1, j + 1);
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push(Op::Del);
                i += 1;
            } else {
                ops.push(Op::Ins);
                j += 1;
            }
        }
    }
    ops.extend(std::iter::repeat_n(Op::Del, ma.len() - i));
    ops.extend(std::iter::repeat_n(Op::Ins, mb.len() - j));
    ops.extend(std::iter::repeat_n(Op::Same, suf));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(old: &str, new: &str) -> String {
        let mut out = String::new();
        unified(old, new, &mut out);
        out
    }

    #[test]
    fn line_diffs() {
        assert_eq!(diff("a\nb\nc\n", "a\nb\nc\n"), "");
        assert_eq!(diff("", "hi\n"), "@@ -0,0 +1 @@\n+hi\n");
        assert_eq!(
            diff("a\nb\nc\n", "a\nB\nc\n"),
            "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
        assert_eq!(
            diff("x", "y"),
            "@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+y\n\\ No newline at end of file\n"
        );
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new = old.replace("2\n", "two\n").replace("17\n", "seventeen\n");
        let d = diff(&old, &new);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("-17\n+seventeen\n"), "{d}");
    }
}
