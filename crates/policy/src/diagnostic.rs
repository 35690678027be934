//! Policy load errors: [`PolicyError`] with its file/line/column location, the
//! translation of TOML and serde errors into it, and its rendering as a
//! codespan-reporting diagnostic with the offending source line.

use std::fmt;
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};

/// What kind of mistake a [`PolicyError`] reports.
///
/// Tools and tests match on this rather than on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The policy file could not be read (missing, unreadable, not UTF-8).
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// A section or key that the schema does not define.
    UnknownKey,
    /// A value of the wrong TOML type (e.g. an integer where a string is expected).
    WrongType,
    /// A required section or key is absent (`[agent]`, `agent.name`).
    MissingKey,
    /// An agent or tool name with characters or a length outside its rule.
    InvalidName,
    /// An `fs.read` / `fs.write` pattern that is not a valid workspace-relative glob.
    InvalidPath,
    /// A `net.allow` entry that is not a valid `host:port`.
    InvalidHost,
    /// A size string (`"64 MiB"`) that does not parse.
    InvalidSize,
    /// A duration string (`"500 ms"`) that does not parse.
    InvalidDuration,
    /// A number, size or duration outside its allowed range.
    OutOfRange,
    /// The same key, or the same list entry, given twice.
    Duplicate,
    /// Two settings that cannot both hold (cpu > wall, a path in both read and write).
    Contradiction,
}

/// An error found while loading a policy, located in the policy file.
///
/// `line` and `column` are 1-based and point at the offending value or key;
/// both are 0 when the file itself could not be read. [`Display`](fmt::Display)
/// gives a one-line `file:line:column: message; expected ...` form,
/// [`render`](PolicyError::render) a multi-line diagnostic with the source line.
#[derive(Debug, Clone)]
pub struct PolicyError {
    /// Label of the policy file (usually its path).
    pub file: String,
    /// 1-based line of the offending value or key (0 if there is no source).
    pub line: usize,
    /// 1-based column, in characters, of the offending value or key (0 if there is no source).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What would have been accepted instead, when that can be said.
    pub expected: Option<String>,
    /// The kind of mistake.
    pub kind: PolicyErrorKind,
    /// The source and span to quote; `None` when there is no source (I/O errors).
    snippet: Option<Box<Snippet>>,
}

/// What [`PolicyError::render`] quotes. Boxed: errors stay small on the `Err` path.
#[derive(Debug, Clone)]
struct Snippet {
    /// The policy source.
    text: String,
    /// Byte range of the offending text in `text`, on character boundaries.
    span: Range<usize>,
}

impl PolicyError {
    /// An error about the policy file as a whole (it could not be read), with no location.
    pub(crate) fn unlocated(
        file: &str,
        kind: PolicyErrorKind,
        message: String,
        expected: Option<String>,
    ) -> PolicyError {
        PolicyError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message,
            expected,
            kind,
            snippet: None,
        }
    }

    /// Renders the error as a diagnostic: the message, the source line with a
    /// caret under the offending span, and an `expected ...` note.
    ///
    /// With `color` the output carries ANSI escape codes.
    pub fn render(&self, color: bool) -> String {
        let source = self
            .snippet
            .as_ref()
            .map_or("", |snippet| snippet.text.as_str());
        let file = SimpleFile::new(self.file.as_str(), source);
        let mut diagnostic = Diagnostic::error().with_message(&self.message);
        if let Some(snippet) = &self.snippet {
            diagnostic = diagnostic.with_label(Label::primary((), snippet.span.clone()));
        } else {
            // Without a source line there is no caret to show where; say which file.
            diagnostic = diagnostic.with_note(format!("in {}", self.file));
        }
        if let Some(expected) = &self.expected {
            diagnostic = diagnostic.with_note(format!("expected {expected}"));
        }
        let config = term::Config::default();
        let rendered = if color {
            let mut buffer = termcolor::Buffer::ansi();
            term::emit_to_write_style(&mut buffer, &config, &file, &diagnostic)
                .map(|()| String::from_utf8_lossy(buffer.as_slice()).into_owned())
        } else {
            term::emit_into_string(&config, &file, &diagnostic)
        };
        // Rendering only fails on an inconsistent span; the one-line form still says it all.
        rendered.unwrap_or_else(|_| format!("{self}\n"))
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(expected) = &self.expected {
            write!(f, "; expected {expected}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// The policy text being validated, and its label; turns byte spans into located errors.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl<'a> Source<'a> {
    /// An error located at `span` (a byte range of the source).
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        kind: PolicyErrorKind,
        message: impl Into<String>,
        expected: impl Into<Option<String>>,
    ) -> PolicyError {
        let span = clamp_span(self.text, &span);
        let (line, column) = line_column(self.text, span.start);
        PolicyError {
            file: self.file.to_owned(),
            line,
            column,
            message: escape_controls(&message.into()),
            expected: expected.into().map(|expected| escape_controls(&expected)),
            kind,
            snippet: Some(Box::new(Snippet {
                text: mask_controls(self.text),
                span,
            })),
        }
    }

    /// Translates a TOML parse or deserialization error, reshaping serde's
    /// wording ("invalid type: ..., expected ...") into message + expected.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> PolicyError {
        let span = error.span().unwrap_or(0..0);
        let raw = error.message().trim_end();
        let (head, expected) = match raw.split_once(", expected ") {
            Some((head, tail)) => (head, Some(plain_expected(tail))),
            None => (raw, None),
        };
        if let Some(key) = head.strip_prefix("unknown field ") {
            let message = format!("unknown key {key}");
            return self.error(span, PolicyErrorKind::UnknownKey, message, expected);
        }
        if let Some(found) = head.strip_prefix("invalid type: ") {
            let message = format!("wrong type: found {found}");
            return self.error(span, PolicyErrorKind::WrongType, message, expected);
        }
        if let Some(found) = head.strip_prefix("invalid value: ") {
            let message = format!("invalid value: {found}");
            return self.error(span, PolicyErrorKind::WrongType, message, expected);
        }
        if head == "duplicate key" {
            let key = self.text.get(span.clone()).unwrap_or("").trim();
            let message = format!("key `{key}` is set twice");
            let expected = Some("each key at most once per table".to_owned());
            return self.error(span, PolicyErrorKind::Duplicate, message, expected);
        }
        if head == "invalid boolean" || head == "string values must be quoted" {
            // The TOML parser guesses from the first letter (`files` → "invalid
            // boolean, expected `false`"); say what the author most likely meant.
            let rest = self.text.get(span.start..).unwrap_or("");
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect();
            let message =
                format!("not valid TOML: bare word `{word}` is neither a string nor a boolean");
            let expected = Some(format!(
                "a quoted string such as \"{word}\", or `true` / `false`"
            ));
            return self.error(span, PolicyErrorKind::Syntax, message, expected);
        }
        let message = format!("not valid TOML: {head}");
        self.error(span, PolicyErrorKind::Syntax, message, expected)
    }
}

/// Replaces serde's Rust-flavoured type names with the TOML ones a policy author knows.
fn plain_expected(serde_expected: &str) -> String {
    match serde_expected {
        "a sequence" => "an array".to_owned(),
        "a boolean" => "`true` or `false`".to_owned(),
        other => other.to_owned(),
    }
}

/// Escapes control characters: messages quote policy text, and an error
/// printed to a terminal must not carry its escape sequences.
fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Replaces control characters other than line breaks and tabs with `?`, one
/// byte for one byte so that spans still point at the same text.
fn mask_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => c,
            c if c.is_ascii_control() => '?',
            c => c,
        })
        .collect()
}

/// Clamps a byte range into `text` and onto character boundaries, so slicing never panics.
fn clamp_span(text: &str, span: &Range<usize>) -> Range<usize> {
    let start = floor_boundary(text, span.start);
    let end = floor_boundary(text, span.end.max(start));
    start..end
}

fn floor_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_table() {
        let text = "ab\ncdé\nf";
        let cases = [
            (0, (1, 1)),
            (2, (1, 3)),
            (3, (2, 1)),
            (5, (2, 3)),
            (6, (2, 3)), // inside 'é': clamped back to its first byte
            (8, (3, 1)),
            (999, (3, 2)), // past the end: clamped
        ];
        for (offset, expected) in cases {
            assert_eq!(line_column(text, offset), expected, "offset {offset}");
        }
    }

    #[test]
    fn display_with_and_without_expected() {
        let source = Source {
            file: "p.toml",
            text: "[agent]\nname = 5\n",
        };
        let with = source.error(
            15..16,
            PolicyErrorKind::WrongType,
            "bad",
            Some("a string".to_owned()),
        );
        assert_eq!(with.to_string(), "p.toml:2:8: bad; expected a string");
        let without = source.error(0..1, PolicyErrorKind::Syntax, "bad", None);
        assert_eq!(without.to_string(), "p.toml:1:1: bad");
    }

    #[test]
    fn render_quotes_the_line_and_the_expectation() {
        let source = Source {
            file: "p.toml",
            text: "[agent]\nname = 5\n",
        };
        let error = source.error(
            15..16,
            PolicyErrorKind::WrongType,
            "bad",
            Some("a string".to_owned()),
        );
        let plain = error.render(false);
        assert!(plain.contains("name = 5"), "{plain}");
        assert!(plain.contains('^'), "{plain}");
        assert!(plain.contains("expected a string"), "{plain}");
        assert!(!plain.contains('\u{1b}'), "{plain}");
        assert!(error.render(true).contains('\u{1b}'));
    }

    #[test]
    fn render_without_source_names_the_file() {
        let error =
            PolicyError::unlocated("gone.toml", PolicyErrorKind::Io, "cannot read".into(), None);
        let plain = error.render(false);
        assert!(
            plain.contains("cannot read") && plain.contains("gone.toml"),
            "{plain}"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let text = "[agent]\nname = \"\u{1b}[31mred\"\n";
        let source = Source {
            file: "p.toml",
            text,
        };
        let error = source.error(15..26, PolicyErrorKind::InvalidName, "bad \u{1b}[31m", None);
        assert_eq!(error.message, "bad \\u{1b}[31m");
        let plain = error.render(false);
        assert!(
            !plain.contains('\u{1b}') && plain.contains("name = \"?[31mred\""),
            "{plain}"
        );
        // Plain printable text is left alone.
        assert_eq!(escape_controls("a \"é\" b"), "a \"é\" b");
    }

    #[test]
    fn out_of_range_spans_do_not_panic() {
        let source = Source {
            file: "p.toml",
            text: "é",
        };
        #[allow(clippy::reversed_empty_ranges)] // a reversed span is one of the cases under test
        let spans = [0..0, 1..2, 5..1, 2..2, 0..usize::MAX];
        for span in spans {
            let error = source.error(span, PolicyErrorKind::Syntax, "x", None);
            let _ = error.render(false);
        }
    }
}
