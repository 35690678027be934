//! One `fs.read` / `fs.write` entry: [`PathPattern`], a workspace-relative
//! glob validated and compiled at load, with the questions enforcement asks of
//! it (does it match this file? could it match below this directory? where is
//! its fixed directory?).
//!
//! Glob syntax is globset's with `literal_separator(true)`: `*`, `?` and
//! `[...]` never match `/`; a `**` component matches any number of components,
//! including none in the middle (`a/**/b` matches `a/b`). `data/**` matches
//! `data/a` and `data/a/b` but not `data` itself: it grants what is inside the
//! directory. Globs do not treat dot-files specially (`*` matches `.env`).

use std::fmt;
use std::hash::{Hash, Hasher};

use globset::{GlobBuilder, GlobMatcher};

/// Why a path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("the pattern is empty")]
    Empty,
    /// The pattern starts with `/`.
    #[error("absolute paths are not allowed: patterns are relative to the workspace")]
    Absolute,
    /// The pattern contains `\`.
    #[error(
        "backslashes are not allowed: separate components with `/`, match metacharacters with `[*]`"
    )]
    Backslash,
    /// The pattern contains a NUL or another control character.
    #[error("control characters are not allowed")]
    ControlCharacter,
    /// Two `/` in a row, or a trailing `/`.
    #[error("empty path component (`//` or a trailing `/`)")]
    EmptyComponent,
    /// A `.` component.
    #[error("`.` components are not allowed: write the path without them")]
    Dot,
    /// A `..` component.
    #[error("`..` components are not allowed: a pattern cannot reach outside the workspace")]
    DotDot,
    /// A `/` inside `{...}` or `[...]`.
    #[error("`/` inside `{{...}}` or `[...]` is not allowed: write one pattern per directory")]
    SeparatorInGroup,
    /// `**` combined with other characters in one component (`a**`).
    #[error("`**` must be a whole path component (as in `a/**/b`); use `*` within a name")]
    PartialRecursive,
    /// globset refused the glob.
    #[error("invalid glob: {0}")]
    Glob(String),
}

impl PatternError {
    /// What a valid pattern looks like, for the error's "expected" note.
    pub(crate) fn expected(&self) -> &'static str {
        match self {
            PatternError::Glob(_)
            | PatternError::SeparatorInGroup
            | PatternError::PartialRecursive => {
                "a glob such as \"data/**\", \"src/*.rs\" or \"notes/{a,b}.md\""
            }
            _ => {
                "a workspace-relative path or glob such as \"data/**\" (no leading `/`, no `.` or `..`)"
            }
        }
    }
}

/// A validated, compiled `fs` pattern. Its `Debug` form is the pattern text
/// (the compiled matcher's internals are not worth printing).
///
/// Paths given to its methods are workspace-relative, `/`-separated, with no
/// leading `/` and no `.`, `..` or empty components; `""` is the workspace
/// root. A path not in that form never matches, whatever the pattern.
#[derive(Clone)]
pub struct PathPattern {
    text: String,
    matcher: GlobMatcher,
    prefix: String,
    steps: Vec<Step>,
}

/// One component of the pattern, for walking directories towards a match.
#[derive(Clone)]
enum Step {
    /// `**`: any number of components.
    AnyDepth,
    /// Exactly one component matching this glob.
    One(GlobMatcher),
}

impl PathPattern {
    /// Validates and compiles a pattern.
    ///
    /// # Errors
    ///
    /// Empty, absolute (leading `/`), containing `\`, a control character, an
    /// empty, `.` or `..` component, a `/` inside `{}`/`[]`, a `**` that is not a
    /// whole component, or a glob globset rejects.
    ///
    /// # Examples
    ///
    /// ```
    /// use warden_policy::PathPattern;
    /// let pattern = PathPattern::parse("data/**").unwrap();
    /// assert!(pattern.allows("data/a/b.txt"));
    /// assert!(!pattern.allows("data"));
    /// assert!(PathPattern::parse("../etc/passwd").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<PathPattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.chars().any(char::is_control) {
            return Err(PatternError::ControlCharacter);
        }
        if text.contains('\\') {
            return Err(PatternError::Backslash);
        }
        if text.starts_with('/') {
            return Err(PatternError::Absolute);
        }
        if separator_in_group(text) {
            return Err(PatternError::SeparatorInGroup);
        }
        let mut steps = Vec::new();
        for component in text.split('/') {
            match component {
                "" => return Err(PatternError::EmptyComponent),
                "." => return Err(PatternError::Dot),
                ".." => return Err(PatternError::DotDot),
                "**" => steps.push(Step::AnyDepth),
                _ if component.contains("**") => return Err(PatternError::PartialRecursive),
                _ => steps.push(Step::One(compile(component)?)),
            }
        }
        Ok(PathPattern {
            text: text.to_owned(),
            matcher: compile(text)?,
            prefix: static_prefix(text),
            steps,
        })
    }

    /// The pattern as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the file or directory at `rel` matches the pattern. The root
    /// (`""`) and paths not in normal form never match.
    pub fn allows(&self, rel: &str) -> bool {
        !rel.is_empty() && is_normal(rel) && self.matcher.is_match(rel)
    }

    /// The leading components that contain no glob metacharacter (`*?[{`),
    /// never including the last component (which names a file when the
    /// pattern has no metacharacter at all); `""` for the workspace root.
    /// `data/out/**` gives `data/out`, `data/report.txt` gives `data`, `*.md` gives `""`.
    pub fn static_prefix(&self) -> &str {
        &self.prefix
    }

    /// True if the directory `dir` is on the way to, or inside, something the
    /// pattern may match: an ancestor of a possible match, a directory below a
    /// `**`, or a match itself. Paths not in normal form give false.
    pub fn allows_traverse(&self, dir: &str) -> bool {
        if dir.is_empty() {
            return true;
        }
        if !is_normal(dir) {
            return false;
        }
        let mut steps = self.steps.iter();
        for component in dir.split('/') {
            match steps.next() {
                Some(Step::AnyDepth) => return true,
                Some(Step::One(glob)) if glob.is_match(component) => {}
                // A mismatch, or `dir` is deeper than anything the pattern matches.
                Some(Step::One(_)) | None => return false,
            }
        }
        true
    }
}

impl PartialEq for PathPattern {
    fn eq(&self, other: &PathPattern) -> bool {
        self.text == other.text
    }
}

impl Eq for PathPattern {}

impl Hash for PathPattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Debug for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PathPattern").field(&self.text).finish()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn compile(glob: &str) -> Result<GlobMatcher, PatternError> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|error| PatternError::Glob(error.kind().to_string()))
}

const METACHARACTERS: [char; 4] = ['*', '?', '[', '{'];

fn static_prefix(text: &str) -> String {
    let components: Vec<&str> = text.split('/').collect();
    let fixed = components
        .iter()
        .take_while(|c| !c.contains(METACHARACTERS))
        .count();
    components[..fixed.min(components.len() - 1)].join("/")
}

/// True if a `/` appears inside a `[...]` class or a `{...}` alternation, where
/// it would make one glob component span several path components.
fn separator_in_group(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                i += 1;
                // `[!]...]` and `[]...]`: a `]` right after the opening is a literal.
                if matches!(chars.get(i), Some('!' | '^')) {
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    i += 1;
                }
                while i < chars.len() && chars[i] != ']' {
                    if chars[i] == '/' {
                        return true;
                    }
                    i += 1;
                }
            }
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '/' if depth > 0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// True if `rel` is in the normal form enforcement promises: no leading or
/// trailing `/`, no empty, `.` or `..` component, no `\` or control character.
/// Checked again here so a caller's slip cannot make `data/**` match `data/../secret`.
pub(crate) fn is_normal(rel: &str) -> bool {
    rel.is_empty()
        || (!rel.contains('\\')
            && !rel.chars().any(char::is_control)
            && rel
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn refused_patterns() {
        // The globset message is not ours to pin down: only the variant is compared.
        let glob = |_: &str| PatternError::Glob(String::new());
        let cases = [
            ("", PatternError::Empty),
            ("/etc/passwd", PatternError::Absolute),
            ("/", PatternError::Absolute),
            ("data\\a", PatternError::Backslash),
            ("data/\0", PatternError::ControlCharacter),
            ("data//a", PatternError::EmptyComponent),
            ("data/", PatternError::EmptyComponent),
            ("./data", PatternError::Dot),
            ("data/./a", PatternError::Dot),
            ("..", PatternError::DotDot),
            ("data/../etc", PatternError::DotDot),
            ("data/{a,../b}", PatternError::SeparatorInGroup),
            ("data[/]x", PatternError::SeparatorInGroup),
            ("data/a**", PatternError::PartialRecursive),
            ("**b/c", PatternError::PartialRecursive),
            ("data/[a", glob("unclosed class")),
            ("data/{a,b", glob("unclosed alternates")),
        ];
        for (text, expected) in cases {
            let error = PathPattern::parse(text).expect_err(text);
            let same = std::mem::discriminant(&error) == std::mem::discriminant(&expected);
            assert!(same, "{text}: {error:?}, expected {expected:?}");
            assert!(!error.expected().is_empty() && !error.to_string().is_empty());
        }
    }

    /// (pattern, path it allows, its twin the pattern denies)
    #[test]
    fn allows_and_denies() {
        let cases = [
            ("data/**", "data/a", "data"),
            ("data/**", "data/a/b/c", "database/a"),
            ("data/**", "data/.env", "other/data/a"),
            ("data/*.txt", "data/a.txt", "data/sub/a.txt"),
            ("data/*.txt", "data/.txt", "data/a.txt.bak"),
            ("data/?.txt", "data/a.txt", "data/ab.txt"),
            ("data/[ab].txt", "data/b.txt", "data/c.txt"),
            ("data/[!ab].txt", "data/c.txt", "data/a.txt"),
            ("data/{x,y}.md", "data/y.md", "data/z.md"),
            ("data/report.txt", "data/report.txt", "data/report.txt/x"),
            ("data/report.txt", "data/report.txt", "Data/report.txt"),
            ("a/**/b", "a/b", "a/b/c"),
            ("a/**/b", "a/x/y/b", "x/a/b"),
            ("**/*.rs", "src/lib.rs", "src/lib.rsx"),
            ("**", "anything/at/all", ""),
            ("*", "top", "top/level"),
            // Paths not in normal form never match, even where the text would.
            ("data/**", "data/x", "data/../secret"),
            ("data/**", "data/x", "data/./x"),
            ("data/**", "data/x", "data//x"),
            ("data/**", "data/x", "data/x/"),
            ("data/**", "data/x", "/data/x"),
            ("data/**", "data/x", "data/a\\..\\..\\x"),
        ];
        for (text, allowed, denied) in cases {
            let pattern = pattern(text);
            assert!(pattern.allows(allowed), "{text} should allow {allowed}");
            assert!(!pattern.allows(denied), "{text} should deny {denied}");
        }
    }

    #[test]
    fn static_prefixes() {
        let cases = [
            ("data/**", "data"),
            ("data/out/**", "data/out"),
            ("data/out/*.txt", "data/out"),
            ("data/report.txt", "data"),
            ("report.txt", ""),
            ("*.md", ""),
            ("**", ""),
            ("**/x", ""),
            ("a/b/{c,d}/e", "a/b"),
            ("a/b[0-9]/c", "a"),
            ("a/x?/c", "a"),
        ];
        for (text, prefix) in cases {
            let pattern = pattern(text);
            assert_eq!(pattern.static_prefix(), prefix, "{text}");
            assert_eq!(pattern.as_str(), text);
            assert_eq!(pattern.to_string(), text);
            assert_eq!(format!("{pattern:?}"), format!("PathPattern({text:?})"));
        }
    }

    /// (pattern, directory it lets you traverse, its twin it does not)
    #[test]
    fn traversal() {
        let cases = [
            ("data/out/**", "", "other"),
            ("data/out/**", "data", "database"),
            ("data/out/**", "data/out", "data/in"),
            ("data/out/**", "data/out/a/b", "data/outer"),
            ("data/*.txt", "data", "data/sub"),
            ("data/*.txt", "data/dir.txt", "data/dir.txt/inner"),
            ("data/report.txt", "data", "data/other"),
            ("a/*/c/**", "a/x/c/d", "a/x/d"),
            ("a/**/b", "a/x/y/z", "b"),
            ("**/x", "any/where", "../up"),
            ("data/**", "data/x", "data/../etc"),
        ];
        for (text, allowed, denied) in cases {
            let pattern = pattern(text);
            assert!(pattern.allows_traverse(allowed), "{text}: {allowed:?}");
            assert!(!pattern.allows_traverse(denied), "{text}: {denied:?}");
        }
    }
}
