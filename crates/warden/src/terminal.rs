//! Untrusted text on its way to an operator's terminal: the one escaping function every command
//! routes through ([`escape`], with its entry points [`line()`], [`block`] and [`json_line`] /
//! [`json_pretty`]), and the stdout and stderr that treat a reader who went away as the end of
//! the output ([`stdout`], [`stderr`]).
//!
//! Text that came from a guest (its output, logs, errors, `describe()`), a token (subject,
//! roles), a policy or roles file (names, paths, hosts, tools), a file name, a tool or a model can
//! hold bytes that drive a terminal: ESC sequences that clear the screen, set the window title,
//! write the clipboard (OSC 52) or plant hyperlinks (OSC 8); BEL; C1 controls (U+009B is a
//! one-byte CSI and U+009D an OSC on many terminals); Unicode bidi controls that reorder what a
//! reviewer reads ("Trojan Source"); line and paragraph separators; and invisible format
//! characters that make two names look alike. [`escape`] shows each of them visibly, as `\n`,
//! `\t`, `\r` or `\u{1b}`, so what reaches the terminal is inert text that still says what the
//! bytes were. Invalid UTF-8 is shown lossily (U+FFFD) before it gets here.
//!
//! A backslash is left as it is: it drives no terminal, and paths and JSON stay readable. The
//! visible escapes are therefore not reversible; they are for eyes, not for parsers (which get
//! JSON, where [`json_line`] keeps every value intact).

use std::borrow::Cow;
use std::fmt::Write as _;

mod stream;

pub use stream::{LogStderr, Output, stderr, stdout, stdout_closed};

/// How [`escape`] treats the characters a text may legitimately span lines with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A field printed inside one line (a name, a subject, a path, a kill detail): newlines and
    /// tabs are escaped too, so a hostile value cannot forge a line of its own.
    Line,
    /// A block of text that may span lines (an agent's output, a diff, a rendered diagnostic):
    /// `\n` and `\t` are kept, everything else that drives a terminal is escaped.
    Block,
    /// Text that is already JSON (as `serde_json` writes it): every character that drives a
    /// terminal becomes a JSON `\uXXXX` escape, so the text still parses to the same value.
    /// `\n` is kept (the pretty printer's line breaks never occur inside a string).
    Json,
}

/// Whether `c` can drive a terminal or hide what a reader sees: every control character (C0,
/// DEL, C1), the Unicode bidi controls, the line and paragraph separators, and the invisible
/// format characters (zero-width spaces, word joiners, the byte-order mark, interlinear
/// annotations, tag characters). The zero-width (non-)joiners U+200C and U+200D are kept: several
/// scripts and emoji need them, and they move no text.
pub fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'
                | '\u{200E}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// The one escaping function: `text` with every character that could drive the terminal (see
/// [`is_hazard`]) shown visibly, as `mode` says. Borrowed when there is nothing to escape.
pub fn escape(text: &str, mode: Mode) -> Cow<'_, str> {
    let keep = |c: char| match mode {
        Mode::Line => false,
        Mode::Block => c == '\n' || c == '\t',
        Mode::Json => c == '\n',
    };
    let Some(first) = text.find(|c: char| is_hazard(c) && !keep(c)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !is_hazard(c) || keep(c) {
            out.push(c);
            continue;
        }
        match (mode, c) {
            (Mode::Json, c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            (_, '\n') => out.push_str("\\n"),
            (_, '\t') => out.push_str("\\t"),
            (_, '\r') => out.push_str("\\r"),
            (_, c) => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
        }
    }
    Cow::Owned(out)
}

/// A single-line field ([`Mode::Line`]).
pub fn line(text: &str) -> Cow<'_, str> {
    escape(text, Mode::Line)
}

/// A multi-line block ([`Mode::Block`]).
pub fn block(text: &str) -> Cow<'_, str> {
    escape(text, Mode::Block)
}

/// `value` as one line of JSON, safe for a terminal and parsing to the same value.
///
/// # Errors
///
/// When `value` cannot be serialized (a map with non-string keys).
pub fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(value).map(|s| escape(&s, Mode::Json).into_owned())
}

/// `value` as indented JSON, safe for a terminal and parsing to the same value.
///
/// # Errors
///
/// When `value` cannot be serialized (a map with non-string keys).
pub fn json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(value).map(|s| escape(&s, Mode::Json).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way text drives a terminal, and how each mode shows it.
    const HAZARDS: &[(&str, &str, &str, &str)] = &[
        // (what, input, line, block)
        (
            "ESC (CSI clear screen)",
            "\u{1b}[2J",
            "\\u{1b}[2J",
            "\\u{1b}[2J",
        ),
        (
            "OSC 52 clipboard write",
            "\u{1b}]52;c;ZXZpbA==\u{7}",
            "\\u{1b}]52;c;ZXZpbA==\\u{7}",
            "\\u{1b}]52;c;ZXZpbA==\\u{7}",
        ),
        (
            "OSC 8 hyperlink",
            "\u{1b}]8;;http://x\u{1b}\\a",
            "\\u{1b}]8;;http://x\\u{1b}\\a",
            "\\u{1b}]8;;http://x\\u{1b}\\a",
        ),
        ("BEL", "\u{7}", "\\u{7}", "\\u{7}"),
        ("NUL", "a\0b", "a\\u{0}b", "a\\u{0}b"),
        (
            "backspace",
            "abc\u{8}\u{8}",
            "abc\\u{8}\\u{8}",
            "abc\\u{8}\\u{8}",
        ),
        ("carriage return", "ok\rFAKE", "ok\\rFAKE", "ok\\rFAKE"),
        (
            "vertical tab, form feed",
            "\u{b}\u{c}",
            "\\u{b}\\u{c}",
            "\\u{b}\\u{c}",
        ),
        ("DEL", "\u{7f}", "\\u{7f}", "\\u{7f}"),
        ("C1 CSI", "\u{9b}2J", "\\u{9b}2J", "\\u{9b}2J"),
        (
            "C1 OSC",
            "\u{9d}0;title\u{9c}",
            "\\u{9d}0;title\\u{9c}",
            "\\u{9d}0;title\\u{9c}",
        ),
        ("C1 NEL", "a\u{85}b", "a\\u{85}b", "a\\u{85}b"),
        ("first C1", "\u{80}", "\\u{80}", "\\u{80}"),
        ("last C1", "\u{9f}", "\\u{9f}", "\\u{9f}"),
        (
            "bidi RLO (Trojan Source)",
            "a\u{202e}cba",
            "a\\u{202e}cba",
            "a\\u{202e}cba",
        ),
        (
            "bidi LRE..PDF",
            "\u{202a}\u{202c}",
            "\\u{202a}\\u{202c}",
            "\\u{202a}\\u{202c}",
        ),
        (
            "bidi isolates",
            "\u{2066}\u{2069}",
            "\\u{2066}\\u{2069}",
            "\\u{2066}\\u{2069}",
        ),
        (
            "bidi marks",
            "\u{200e}\u{200f}\u{61c}",
            "\\u{200e}\\u{200f}\\u{61c}",
            "\\u{200e}\\u{200f}\\u{61c}",
        ),
        ("line separator", "a\u{2028}b", "a\\u{2028}b", "a\\u{2028}b"),
        (
            "paragraph separator",
            "a\u{2029}b",
            "a\\u{2029}b",
            "a\\u{2029}b",
        ),
        (
            "zero-width space",
            "ad\u{200b}min",
            "ad\\u{200b}min",
            "ad\\u{200b}min",
        ),
        ("byte-order mark", "\u{feff}x", "\\u{feff}x", "\\u{feff}x"),
        (
            "tag characters (hidden text)",
            "a\u{e0041}",
            "a\\u{e0041}",
            "a\\u{e0041}",
        ),
        ("newline", "a\nb", "a\\nb", "a\nb"),
        ("tab", "a\tb", "a\\tb", "a\tb"),
    ];

    #[test]
    fn every_hazard_is_shown_escaped() {
        for (what, input, line_out, block_out) in HAZARDS {
            assert_eq!(line(input), *line_out, "{what} (line)");
            assert_eq!(block(input), *block_out, "{what} (block)");
            for out in [line(input), block(input)] {
                assert!(
                    !out.chars().any(|c| is_hazard(c) && c != '\n' && c != '\t'),
                    "{what}: {out:?}"
                );
            }
        }
    }

    /// The deny twin: ordinary text, whatever its script, passes untouched (and unallocated).
    #[test]
    fn ordinary_text_is_untouched() {
        for text in [
            "hello, world",
            "docs-writer",
            "notes/out/summary.md",
            r#"{"a": "b\u001b"}"#,
            "C:\\Users\\alice",
            "naïve café — ünïcödé",
            "日本語のテキスト",
            "עברית وعربي",
            "👩‍💻 emoji with a joiner",
            "क्‍ष (a joiner in Devanagari)",
            "",
        ] {
            assert!(matches!(line(text), Cow::Borrowed(_)), "{text}");
            assert!(matches!(block(text), Cow::Borrowed(_)), "{text}");
        }
        assert!(matches!(block("two\nlines\tand a tab"), Cow::Borrowed(_)));
    }

    #[test]
    fn line_mode_cannot_forge_a_second_line() {
        let forged = line("alice\nerror: the audit log FAILED verification");
        assert_eq!(forged.lines().count(), 1);
        assert!(!line("a\u{2028}b\u{85}c\r").contains(['\n', '\r', '\u{2028}', '\u{85}']));
    }

    #[test]
    fn json_escapes_parse_back_to_the_same_value() {
        let hostile = "a\u{1b}]52;c;x\u{7}\u{9b}\u{202e}\u{7f}\u{2028}\u{e0041}\nend";
        let value = serde_json::json!({"name": hostile, "list": [hostile], hostile: 1});
        for text in [json_line(&value).unwrap(), json_pretty(&value).unwrap()] {
            assert!(!text.chars().any(|c| is_hazard(c) && c != '\n'), "{text:?}");
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, value);
        }
        assert!(!json_line(&value).unwrap().contains('\n'));
        // The deny twin: clean JSON is written exactly as serde_json writes it.
        let clean = serde_json::json!({"task": 7, "status": "completed"});
        assert_eq!(json_line(&clean).unwrap(), clean.to_string());
    }

    #[test]
    fn invalid_utf8_is_shown_lossily_then_escaped() {
        let bytes = b"ok \xff\x1b[31m \xc2\x9b";
        let shown = block(&String::from_utf8_lossy(bytes)).into_owned();
        assert_eq!(shown, "ok \u{fffd}\\u{1b}[31m \\u{9b}");
    }
}
