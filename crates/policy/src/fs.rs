//! `[fs]`: the workspace paths an agent may read and write ([`FsGrant`]),
//! the directories to preopen for it ([`Mount`]), and the duplicate and
//! read-and-write checks on the lists.
//!
//! Deny by default: with no `[fs]` section nothing is readable, writable or
//! even listable, and no directory is mounted.

use super::EntryError;
use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::pattern::PathPattern;
use super::raw::{RawFs, Table};

/// The filesystem grant: globs over workspace-relative paths.
///
/// A write grant implies the read grant for the same paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsGrant {
    /// Patterns the agent may read (`fs.read`).
    pub read: Vec<PathPattern>,
    /// Patterns the agent may create, modify and read (`fs.write`).
    pub write: Vec<PathPattern>,
    /// Paths labelled sensitive (`fs.sensitive`: auth, PII, …): not a grant but a label — a
    /// change the agent makes there pauses its task for a person (the cascade's `sensitive`
    /// trigger).
    pub sensitive: Vec<PathPattern>,
}

/// A workspace directory to preopen for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Workspace-relative, `/`-separated; `""` is the workspace root.
    pub dir: String,
    /// True if some write pattern lies at or under `dir`. Each write is still
    /// checked against [`FsGrant::allows_write`]; this only says whether the
    /// preopen needs write rights at all.
    pub writable: bool,
}

impl FsGrant {
    /// True if the grant allows nothing.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }

    /// The `fs.sensitive` label that `rel` matches, if any.
    pub fn sensitive_label(&self, rel: &str) -> Option<&PathPattern> {
        self.sensitive.iter().find(|pattern| pattern.allows(rel))
    }

    /// True if the file at `rel` may be read: it matches a read or a write pattern.
    pub fn allows_read(&self, rel: &str) -> bool {
        self.patterns().any(|pattern| pattern.allows(rel))
    }

    /// True if the file at `rel` may be created or modified: it matches a write pattern.
    pub fn allows_write(&self, rel: &str) -> bool {
        self.write.iter().any(|pattern| pattern.allows(rel))
    }

    /// True if the directory `dir` (`""` = workspace root) may be opened and
    /// listed because it is on the way to, or inside, something a pattern may
    /// match (see [`PathPattern::allows_traverse`]).
    pub fn allows_traverse(&self, dir: &str) -> bool {
        self.patterns().any(|pattern| pattern.allows_traverse(dir))
    }

    /// The directories to preopen: each pattern's static prefix, keeping only
    /// the outermost when one lies inside another, sorted by path.
    pub fn mounts(&self) -> Vec<Mount> {
        let mut dirs: Vec<&str> = self.patterns().map(PathPattern::static_prefix).collect();
        // Sorted, an ancestor comes before everything inside it.
        dirs.sort_unstable();
        dirs.dedup();
        let mut mounts: Vec<Mount> = Vec::new();
        for dir in dirs {
            if mounts.iter().any(|mount| is_at_or_under(dir, &mount.dir)) {
                continue;
            }
            let writable = self
                .write
                .iter()
                .any(|pattern| is_at_or_under(pattern.static_prefix(), dir));
            mounts.push(Mount {
                dir: dir.to_owned(),
                writable,
            });
        }
        mounts
    }

    fn patterns(&self) -> impl Iterator<Item = &PathPattern> {
        self.read.iter().chain(&self.write)
    }

    /// Validates `[fs]`: every pattern, no pattern twice in a list, no pattern in both lists.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawFs>>,
        labels: crate::Labels,
    ) -> Result<FsGrant, PolicyError> {
        let Some(Table(raw)) = raw else {
            return Ok(FsGrant::default());
        };
        labels.check(source, "fs.sensitive", raw.sensitive.as_ref())?;
        let read_entries = raw.read.unwrap_or_default();
        let write_entries = raw.write.unwrap_or_default();
        let read = super::parse_list(source, "fs.read", &read_entries, parse_pattern)?;
        let write = super::parse_list(source, "fs.write", &write_entries, parse_pattern)?;
        let sensitive_entries = raw.sensitive.unwrap_or_default();
        let sensitive =
            super::parse_list(source, "fs.sensitive", &sensitive_entries, parse_pattern)?;
        for entry in &read_entries {
            let text = entry.get_ref();
            if let Some(twin) = write_entries.iter().find(|w| w.get_ref() == text) {
                let span = super::later(entry.span(), twin.span());
                return Err(source.error(
                    span,
                    PolicyErrorKind::Contradiction,
                    format!("\"{text}\" is in both fs.read and fs.write; write implies read: list it once, under write"),
                    Some("each pattern in only one of fs.read, fs.write".to_owned()),
                ));
            }
        }
        Ok(FsGrant {
            read,
            write,
            sensitive,
        })
    }
}

fn parse_pattern(text: &str) -> Result<PathPattern, EntryError> {
    PathPattern::parse(text).map_err(|error| EntryError {
        kind: PolicyErrorKind::InvalidPath,
        reason: error.to_string(),
        expected: error.expected(),
    })
}

/// True if `path` is `dir` or lies inside it (`""` contains everything).
fn is_at_or_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn grant(read: &[&str], write: &[&str]) -> FsGrant {
        let parse = |list: &[&str]| {
            list.iter()
                .map(|t| PathPattern::parse(t).unwrap())
                .collect()
        };
        FsGrant {
            read: parse(read),
            write: parse(write),
            sensitive: Vec::new(),
        }
    }

    #[test]
    fn sensitive_labels_grant_nothing_and_are_checked() {
        let p = Policy::parse(
            "t.toml",
            "[agent]\nname = \"t\"\n[fs]\nwrite = [\"**\"]\nsensitive = [\"auth/**\", \"**/*.pem\"]\n",
        )
        .unwrap();
        assert_eq!(
            p.fs.sensitive_label("auth/login.py")
                .map(PathPattern::as_str),
            Some("auth/**")
        );
        assert!(p.fs.sensitive_label("keys/server.pem").is_some());
        assert!(p.fs.sensitive_label("calc.py").is_none());
        let only_labels = Policy::parse(
            "t.toml",
            "[agent]\nname = \"t\"\n[fs]\nsensitive = [\"auth/**\"]\n",
        )
        .unwrap();
        assert!(!only_labels.fs.allows_read("auth/login.py") && only_labels.fs.mounts().is_empty());
        let e = fs_error("sensitive = [\"../x\"]");
        assert_eq!(e.kind, PolicyErrorKind::InvalidPath, "{e}");
    }

    fn fs_error(body: &str) -> PolicyError {
        Policy::parse("t.toml", &format!("[agent]\nname = \"t\"\n[fs]\n{body}\n")).unwrap_err()
    }

    #[test]
    fn empty_grant_denies_everything() {
        let empty = FsGrant::default();
        assert!(empty.is_empty());
        for path in ["", "a", "a/b"] {
            assert!(
                !empty.allows_read(path)
                    && !empty.allows_write(path)
                    && !empty.allows_traverse(path)
            );
        }
        assert!(empty.mounts().is_empty());
        assert!(!grant(&["a"], &[]).is_empty());
        assert!(!grant(&[], &["a"]).is_empty());
    }

    /// (path, readable, writable) under read = docs/**, write = data/out/**
    #[test]
    fn read_write_twins() {
        let fs = grant(&["docs/**"], &["data/out/**"]);
        let cases = [
            ("docs/a.md", true, false),
            ("docs/sub/a.md", true, false),
            ("data/out/r.csv", true, true),
            ("data/in/r.csv", false, false),
            ("data/out", false, false),
            ("data/out/../../etc/passwd", false, false),
            ("secret", false, false),
        ];
        for (path, readable, writable) in cases {
            assert_eq!(fs.allows_read(path), readable, "read {path}");
            assert_eq!(fs.allows_write(path), writable, "write {path}");
        }
    }

    #[test]
    fn traversal_twins() {
        let fs = grant(&["docs/*.md"], &["data/out/**"]);
        let cases = [
            ("", true),
            ("docs", true),
            ("docs/sub", false),
            ("data", true),
            ("data/out", true),
            ("data/out/deep/er", true),
            ("data/in", false),
            ("etc", false),
        ];
        for (dir, allowed) in cases {
            assert_eq!(fs.allows_traverse(dir), allowed, "{dir:?}");
        }
    }

    #[test]
    fn mounts_table() {
        let mount = |dir: &str, writable| Mount {
            dir: dir.to_owned(),
            writable,
        };
        let cases: Vec<(&[&str], &[&str], Vec<Mount>)> = vec![
            (&["data/**"], &[], vec![mount("data", false)]),
            (&["data/**"], &["data/out/**"], vec![mount("data", true)]),
            (
                &["data/in/**"],
                &["data/out/**"],
                vec![mount("data/in", false), mount("data/out", true)],
            ),
            (
                &["data/a.txt", "data/b.txt"],
                &[],
                vec![mount("data", false)],
            ),
            (&["notes.md", "data/**"], &[], vec![mount("", false)]),
            (&["*.md"], &["out/**"], vec![mount("", true)]),
            (
                &["a/b/**", "a/**", "a/b/c/**"],
                &[],
                vec![mount("a", false)],
            ),
            (
                &["ab/**", "a/**"],
                &[],
                vec![mount("a", false), mount("ab", false)],
            ),
            (
                &["x/**"],
                &["y/z.txt"],
                vec![mount("x", false), mount("y", true)],
            ),
        ];
        for (read, write, expected) in cases {
            assert_eq!(
                grant(read, write).mounts(),
                expected,
                "read {read:?} write {write:?}"
            );
        }
    }

    #[test]
    fn list_errors_are_located() {
        let error = fs_error("read = [\"a/**\", \"b/**\", \"a/**\"]");
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::Duplicate, 4, 25)
        );

        // Located at the second occurrence in the file, whichever list that is.
        let error = fs_error("read = [\"a/**\"]\nwrite = [\"a/**\"]");
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::Contradiction, 5, 10)
        );
        assert!(error.message.contains("write implies read"), "{error}");
        let error = fs_error("write = [\"a/**\"]\nread = [\"a/**\"]");
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::Contradiction, 5, 9)
        );

        let error = fs_error("write = [\"ok/**\", \"/etc\"]");
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::InvalidPath, 4, 19)
        );
        assert!(error.message.contains("absolute"), "{error}");
        assert!(error.expected.is_some());
    }
}
