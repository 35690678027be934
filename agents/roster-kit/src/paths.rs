//! Which paths a stage may name: [`check_path`] turns what a model or a caller wrote into a
//! normal relative path (or says why not), and [`Globs`] says whether it lies inside the stage's
//! grant, with the policy's pattern meaning (`*` within one component, `**` as a whole component
//! for any number of them).
//!
//! The agent checks before it touches a file; its policy is the backstop (a write outside the
//! grant kills the agent), so a refusal here is what keeps a hostile reply from ending the run.

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 512;
/// Most components of a path.
pub const MAX_DEPTH: usize = 32;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing was named.
    #[error("the path is empty; name a file relative to the workspace")]
    Empty,
    /// Longer than [`MAX_PATH`] bytes or deeper than [`MAX_DEPTH`] components.
    #[error("the path is longer than {MAX_PATH} bytes or {MAX_DEPTH} components")]
    TooLong,
    /// Starts at the root (`/etc/passwd`) or a drive (`C:`).
    #[error("`{0}` is absolute; name a file relative to the workspace")]
    Absolute(String),
    /// Has a `..` component.
    #[error("`{0}` climbs out with `..`; name a file inside the workspace")]
    Climbs(String),
    /// Has a control character, a backslash, an empty or a `.` component.
    #[error("`{0}` is not a normal path (control characters, `\\`, `//` or `.` parts)")]
    NotNormal(String),
    /// Has a component that starts with `.` (`.git/hooks/x`, `.env`).
    #[error("`{0}` names a hidden file or folder, which no stage writes")]
    Hidden(String),
    /// Normal, but outside the stage's globs.
    #[error("`{path}` is outside what this stage may write ({globs})")]
    OutsideGrant {
        /// The path.
        path: String,
        /// The globs, comma-separated.
        globs: String,
    },
}

/// `raw` as a normal relative path: `/`-separated components, no `..`, no `.`, no empty or hidden
/// component, no control character or backslash; a leading `./` is dropped.
///
/// # Errors
///
/// [`PathError`] naming what is wrong (the path shown is escaped by the caller before any
/// terminal; here it is only cut to [`MAX_PATH`]).
pub fn check_path(raw: &str) -> Result<String, PathError> {
    let shown = || crate::clip(raw, MAX_PATH);
    let path = raw.trim();
    let path = path.strip_prefix("./").unwrap_or(path);
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let bytes = path.as_bytes();
    if path.starts_with('/') || (bytes.len() >= 2 && bytes[1] == b':') {
        return Err(PathError::Absolute(shown()));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::NotNormal(shown()));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(PathError::TooLong);
    }
    if parts.contains(&"..") {
        return Err(PathError::Climbs(shown()));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(PathError::NotNormal(shown()));
    }
    if parts.iter().any(|p| p.starts_with('.')) {
        return Err(PathError::Hidden(shown()));
    }
    Ok(path.to_string())
}

/// A list of path patterns, matched as the policy's `[fs]` patterns are: `*` and `?` within one
/// component, `**` as a whole component for zero or more components. No classes or braces: the
/// roster's own grants do not need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globs {
    patterns: Vec<String>,
}

impl Globs {
    /// These patterns (as written in the stage's policy).
    pub fn new(patterns: &[&str]) -> Globs {
        Globs {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Whether the normal relative path `path` matches one of the patterns.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        self.patterns.iter().any(|p| {
            let pat: Vec<&str> = p.split('/').collect();
            match_parts(&pat, &parts)
        })
    }

    /// [`check_path`], then the path must match one of the patterns.
    ///
    /// # Errors
    ///
    /// What [`check_path`] refuses, or [`PathError::OutsideGrant`].
    pub fn check(&self, raw: &str) -> Result<String, PathError> {
        let path = check_path(raw)?;
        if self.matches(&path) {
            Ok(path)
        } else {
            Err(PathError::OutsideGrant {
                path,
                globs: self.patterns.join(", "),
            })
        }
    }
}

fn match_parts(pat: &[&str], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        // A trailing `**` grants what is inside a folder, not the folder: `docs/**` is not `docs`.
        Some((&"**", [])) => !parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|i| match_parts(rest, &parts[i..])),
        Some((first, rest)) => match parts.split_first() {
            Some((part, more)) => {
                match_component(first.as_bytes(), part.as_bytes()) && match_parts(rest, more)
            }
            None => false,
        },
    }
}

/// `*` any run of bytes, `?` one character, anything else itself.
fn match_component(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while n < name.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            resume = n;
            p += 1;
        } else if p < pat.len() && (pat[p] == name[n] || (pat[p] == b'?' && name[n] & 0xC0 != 0x80))
        {
            p += 1;
            n += 1;
            // A `?` takes a whole character: skip its continuation bytes.
            if pat[p - 1] == b'?' {
                while n < name.len() && name[n] & 0xC0 == 0x80 {
                    n += 1;
                }
            }
        } else if let Some(s) = star {
            p = s + 1;
            resume += 1;
            n = resume;
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test of which error came back.
    type Is<E> = fn(&E) -> bool;

    #[test]
    fn normal_relative_paths_pass_and_hostile_ones_are_named() {
        let ok = [
            ("calc.py", "calc.py"),
            ("./calc.py", "calc.py"),
            (" src/lib.rs ", "src/lib.rs"),
            ("a/b/c.txt", "a/b/c.txt"),
            ("naïve/é.md", "naïve/é.md"),
        ];
        for (raw, want) in ok {
            assert_eq!(check_path(raw).as_deref(), Ok(want), "{raw:?}");
        }
        let long = "a/".repeat(40) + "x";
        let huge = "x".repeat(MAX_PATH + 1);
        let bad: &[(&str, Is<PathError>)] = &[
            ("", |e| *e == PathError::Empty),
            ("   ", |e| *e == PathError::Empty),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
            ("C:/x", |e| matches!(e, PathError::Absolute(_))),
            ("../x", |e| matches!(e, PathError::Climbs(_))),
            ("a/../../x", |e| matches!(e, PathError::Climbs(_))),
            ("a/..", |e| matches!(e, PathError::Climbs(_))),
            ("a//b", |e| matches!(e, PathError::NotNormal(_))),
            ("a/./b", |e| matches!(e, PathError::NotNormal(_))),
            ("a/", |e| matches!(e, PathError::NotNormal(_))),
            ("a\\b", |e| matches!(e, PathError::NotNormal(_))),
            ("a\u{0}b", |e| matches!(e, PathError::NotNormal(_))),
            ("a\nb", |e| matches!(e, PathError::NotNormal(_))),
            ("\u{1b}[2Jx", |e| matches!(e, PathError::NotNormal(_))),
            (".git/hooks/pre-commit", |e| {
                matches!(e, PathError::Hidden(_))
            }),
            ("src/.env", |e| matches!(e, PathError::Hidden(_))),
            (&long, |e| *e == PathError::TooLong),
            (&huge, |e| *e == PathError::TooLong),
        ];
        for (raw, is) in bad {
            let e = check_path(raw).expect_err(raw);
            assert!(is(&e), "{raw:?}: {e:?}");
            assert!(
                e.to_string().len() < MAX_PATH + 200,
                "the message is bounded"
            );
        }
    }

    #[test]
    fn globs_match_as_the_policy_does() {
        let tester = Globs::new(&["tests", "tests/**", "**/test_*.py", "**/*_test.py"]);
        let docs = Globs::new(&["**/*.md", "docs/**"]);
        let all = Globs::new(&["**"]);
        let table: &[(&Globs, &str, bool)] = &[
            (&tester, "test_calc.py", true),
            (&tester, "pkg/test_calc.py", true),
            (&tester, "calc_test.py", true),
            (&tester, "tests/x/y.rs", true),
            (&tester, "tests", true),
            (&tester, "calc.py", false),
            (&tester, "testsuite/x.py", false),
            (&tester, "test_calc.pyc", false),
            (&tester, "src/tests.rs", false),
            (&docs, "README.md", true),
            (&docs, "a/b/NOTES.md", true),
            (&docs, "docs/x.txt", true),
            (&docs, "docs", false),
            (&docs, "calc.py", false),
            (&docs, "README.md.py", false),
            (&all, "x", true),
            (&all, "a/b/c", true),
        ];
        for (globs, path, want) in table {
            assert_eq!(globs.matches(path), *want, "{globs:?} {path}");
        }
        assert!(matches!(
            tester.check("calc.py"),
            Err(PathError::OutsideGrant { .. })
        ));
        assert!(matches!(
            tester.check("../test_x.py"),
            Err(PathError::Climbs(_))
        ));
        assert_eq!(tester.check("./test_x.py").as_deref(), Ok("test_x.py"));
    }

    #[test]
    fn stars_and_question_marks_stay_in_one_component() {
        for (pat, name, want) in [
            ("*", "anything", true),
            ("*", "", true),
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbx", false),
            ("?.md", "é.md", true),
            ("?.md", "ab.md", false),
            ("*.*.md", "a.b.md", true),
            ("x", "y", false),
        ] {
            assert_eq!(
                match_component(pat.as_bytes(), name.as_bytes()),
                want,
                "{pat} {name}"
            );
        }
        assert!(!Globs::new(&["*.md"]).matches("docs/a.md"));
    }
}
