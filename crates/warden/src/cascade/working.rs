//! A cascade's working copy: the workspace copied once into the data directory, where every
//! stage's writes land; its listing for the stages' inputs, its difference from the workspace
//! (what the cascade would change), a reset to the workspace, and throwaway copies for the gate.
//!
//! Copies are bounded ([`MAX_FILES`], [`MAX_BYTES`]); links are not copied (a link planted in a
//! workspace must not pull host files into a stage's reach or the gate's jail), and neither is a
//! `.git` folder (no stage needs history, and it would dominate the copy).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Most files a workspace may hold to be worked on.
pub(crate) const MAX_FILES: usize = 10_000;
/// Most bytes a workspace may hold to be worked on.
pub(crate) const MAX_BYTES: u64 = 256 << 20;
/// Most paths listed in a stage's input.
const MAX_LISTED: usize = 200;
/// Deepest folder nesting copied.
const MAX_DEPTH: usize = 32;

/// A workspace and its working copy.
#[derive(Debug, Clone)]
pub(crate) struct WorkingCopy {
    workspace: PathBuf,
    copy: PathBuf,
}

/// Files under `root` (relative, `/`-separated, sorted), links and `.git` left out.
fn walk(root: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(too_big(format!(
                "folders nest deeper than {MAX_DEPTH} levels"
            )));
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == ".git" {
                continue;
            }
            let path = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((entry.path(), path, depth + 1));
            } else if kind.is_file() {
                let len = entry.metadata()?.len();
                bytes += len;
                out.push((path, len));
                if out.len() > MAX_FILES || bytes > MAX_BYTES {
                    return Err(too_big(format!(
                        "it holds more than {MAX_FILES} files or {} MiB",
                        MAX_BYTES >> 20
                    )));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn too_big(why: String) -> io::Error {
    io::Error::other(format!("the workspace is too large to work on: {why}"))
}

/// Copy the files of `from` into `to` (which must not exist).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let files = walk(from)?;
    fs::create_dir_all(to)?;
    for (rel, _) in files {
        let dest = to.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from.join(&rel), &dest)?;
    }
    Ok(())
}

/// Whether two files have the same bytes (read in bounded chunks).
fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (ma, mb) = (fs::metadata(a)?, fs::metadata(b)?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

impl WorkingCopy {
    /// Copy `workspace` into `copy` (created; it must not exist yet).
    ///
    /// # Errors
    ///
    /// I/O errors, or a workspace over the bounds.
    pub(crate) fn create(workspace: &Path, copy: &Path) -> io::Result<WorkingCopy> {
        if copy.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", copy.display()),
            ));
        }
        copy_tree(workspace, copy)?;
        Ok(WorkingCopy::open(workspace, copy))
    }

    /// The working copy at `copy` of `workspace`, made earlier.
    pub(crate) fn open(workspace: &Path, copy: &Path) -> WorkingCopy {
        WorkingCopy {
            workspace: workspace.to_path_buf(),
            copy: copy.to_path_buf(),
        }
    }

    /// The working copy's folder.
    pub(crate) fn path(&self) -> &Path {
        &self.copy
    }

    /// The workspace.
    pub(crate) fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Its files for a stage's input: sorted, hidden ones left out, at most 200.
    pub(crate) fn files(&self) -> Vec<String> {
        walk(&self.copy)
            .unwrap_or_default()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !p.split('/').any(|c| c.starts_with('.')) && !p.contains("__pycache__"))
            .take(MAX_LISTED)
            .collect()
    }

    /// The paths the working copy creates, changes or removes, sorted. Python's byte-code
    /// caches are not changes.
    ///
    /// # Errors
    ///
    /// I/O errors reading either tree.
    pub(crate) fn changed(&self) -> io::Result<Vec<String>> {
        let ours = walk(&self.copy)?;
        let theirs = walk(&self.workspace)?;
        let mut out = Vec::new();
        for (rel, _) in &ours {
            let original = self.workspace.join(rel);
            if !original.is_file() || !same_file(&original, &self.copy.join(rel))? {
                out.push(rel.clone());
            }
        }
        for (rel, _) in &theirs {
            if !self.copy.join(rel).is_file() {
                out.push(rel.clone());
            }
        }
        out.retain(|p| !p.contains("__pycache__/"));
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Put the working copy back to the workspace's state.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn reset(&self) -> io::Result<()> {
        if self.copy.exists() {
            fs::remove_dir_all(&self.copy)?;
        }
        copy_tree(&self.workspace, &self.copy)
    }

    /// A throwaway copy of the working copy, for the gate (what the checks write there is
    /// never part of the change).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn throwaway(&self) -> io::Result<tempfile::TempDir> {
        let dir = tempfile::Builder::new().prefix("warden-gate-").tempdir()?;
        // The jail's unprivileged user must be able to reach `w` (it owns only `w` itself).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))?;
        }
        copy_tree(&self.copy, &dir.path().join("w"))?;
        Ok(dir)
    }

    /// Delete the working copy.
    pub(crate) fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.copy) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_lists_diffs_and_resets() {
        let ws = tempfile::tempdir().unwrap();
        fs::write(
            ws.path().join("calc.py"),
            "def add(a, b):\n    return a - b\n",
        )
        .unwrap();
        fs::create_dir_all(ws.path().join("docs")).unwrap();
        fs::write(ws.path().join("docs/x.md"), "x").unwrap();
        fs::write(ws.path().join(".hidden"), "h").unwrap();
        fs::create_dir_all(ws.path().join(".git")).unwrap();
        fs::write(ws.path().join(".git/HEAD"), "ref").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", ws.path().join("link")).unwrap();
        let data = tempfile::tempdir().unwrap();
        let w = WorkingCopy::create(ws.path(), &data.path().join("work")).unwrap();
        assert_eq!(w.files(), ["calc.py", "docs/x.md"]);
        assert!(!w.path().join(".git").exists() && !w.path().join("link").exists());
        assert!(w.changed().unwrap().is_empty());
        fs::write(
            w.path().join("calc.py"),
            "def add(a, b):\n    return a + b\n",
        )
        .unwrap();
        fs::write(w.path().join("new.py"), "").unwrap();
        fs::remove_file(w.path().join("docs/x.md")).unwrap();
        fs::create_dir_all(w.path().join("__pycache__")).unwrap();
        fs::write(w.path().join("__pycache__/calc.pyc"), "b").unwrap();
        assert_eq!(w.changed().unwrap(), ["calc.py", "docs/x.md", "new.py"]);
        let gate = w.throwaway().unwrap();
        assert!(gate.path().join("w/new.py").is_file());
        w.reset().unwrap();
        assert!(w.changed().unwrap().is_empty());
        assert!(WorkingCopy::create(ws.path(), w.path()).is_err());
    }
}
