//! Staged writes: an agent never writes the workspace directly. Each writable folder it is granted
//! is copied into a private staging folder for the task; the agent works on the copy. When the
//! task completes, the changes are applied back (files created, changed or deleted under the
//! folder); when it is killed or fails, the copy is discarded and the workspace is untouched.
//!
//! The copy preserves symlinks as symlinks and never follows them, so a link planted in the
//! workspace cannot pull outside data into the staging folder.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// A staged copy of one writable folder.
#[derive(Debug)]
pub struct StagedFolder {
    /// The folder in the workspace.
    pub original: PathBuf,
    /// The folder's workspace-relative path, used to name changes.
    pub rel: String,
    /// The staging copy the agent sees.
    pub staged: PathBuf,
}

/// The staging area of one task; dropping it discards everything not applied.
#[derive(Debug)]
pub struct Staging {
    _root: tempfile::TempDir,
    folders: Vec<StagedFolder>,
}

/// What applying a staging area changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedChanges {
    /// Files created or modified, relative to the workspace.
    pub written: Vec<String>,
    /// Files or folders removed.
    pub removed: Vec<String>,
}

impl Staging {
    /// Copy each folder in `originals` (host path, workspace-relative path) into a fresh
    /// staging area.
    ///
    /// # Errors
    ///
    /// I/O errors while copying.
    pub fn new(originals: &[(PathBuf, String)]) -> io::Result<Self> {
        let root = tempfile::Builder::new().prefix("warden-stage-").tempdir()?;
        let mut folders = Vec::new();
        for (i, (original, rel)) in originals.iter().enumerate() {
            let staged = root.path().join(i.to_string());
            copy_tree(original, &staged)?;
            folders.push(StagedFolder {
                original: original.clone(),
                rel: rel.clone(),
                staged,
            });
        }
        Ok(Staging {
            _root: root,
            folders,
        })
    }

    /// The staged folders.
    pub fn folders(&self) -> &[StagedFolder] {
        &self.folders
    }

    /// Where `original` is staged, if it is.
    pub fn staged_path(&self, original: &Path) -> Option<&Path> {
        self.folders
            .iter()
            .find(|f| f.original == original)
            .map(|f| f.staged.as_path())
    }

    /// Apply every change back to the workspace, then discard the staging area.
    ///
    /// # Errors
    ///
    /// I/O errors; changes applied before the error stay applied.
    pub fn apply(self) -> io::Result<AppliedChanges> {
        let mut changes = AppliedChanges::default();
        for f in &self.folders {
            sync_tree(&f.staged, &f.original, Path::new(&f.rel), &mut changes)?;
        }
        Ok(changes)
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_symlink() {
            copy_link(&entry.path(), &dest)?;
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
        // Sockets, FIFOs and devices are not copied: an agent has no business with them.
    }
    Ok(())
}

#[cfg(unix)]
fn copy_link(from: &Path, to: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
}

#[cfg(not(unix))]
fn copy_link(_: &Path, _: &Path) -> io::Result<()> {
    Ok(())
}

/// Make `dest` match `src` (files, folders and links), recording what changed.
fn sync_tree(src: &Path, dest: &Path, rel: &Path, changes: &mut AppliedChanges) -> io::Result<()> {
    let names = |dir: &Path| -> io::Result<BTreeSet<std::ffi::OsString>> {
        match std::fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.map(|e| e.file_name())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(e),
        }
    };
    let in_src = names(src)?;
    let in_dest = names(dest)?;
    for gone in in_dest.difference(&in_src) {
        let path = dest.join(gone);
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        changes
            .removed
            .push(rel.join(gone).to_string_lossy().into_owned());
    }
    for name in &in_src {
        let s = src.join(name);
        let d = dest.join(name);
        let r = rel.join(name);
        let smeta = std::fs::symlink_metadata(&s)?;
        let dmeta = std::fs::symlink_metadata(&d).ok();
        if smeta.is_dir() {
            if dmeta.as_ref().is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(&d)?;
            }
            std::fs::create_dir_all(&d)?;
            sync_tree(&s, &d, &r, changes)?;
        } else if smeta.file_type().is_symlink() {
            let target = std::fs::read_link(&s)?;
            if std::fs::read_link(&d).ok().as_ref() != Some(&target) {
                remove_any(&d, dmeta.as_ref())?;
                copy_link(&s, &d)?;
                changes.written.push(r.to_string_lossy().into_owned());
            }
        } else if smeta.is_file() {
            let same = dmeta
                .as_ref()
                .is_some_and(|m| m.is_file() && m.len() == smeta.len())
                && std::fs::read(&s)? == std::fs::read(&d)?;
            if !same {
                remove_any(&d, dmeta.as_ref().filter(|m| !m.is_file()))?;
                std::fs::copy(&s, &d)?;
                changes.written.push(r.to_string_lossy().into_owned());
            }
        }
    }
    Ok(())
}

fn remove_any(path: &Path, meta: Option<&std::fs::Metadata>) -> io::Result<()> {
    match meta {
        Some(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Some(_) => std::fs::remove_file(path),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_writes_back_and_drop_discards() {
        let ws = tempfile::tempdir().unwrap();
        let out = ws.path().join("out");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("keep.txt"), "same").unwrap();
        std::fs::write(out.join("change.txt"), "old").unwrap();
        std::fs::write(out.join("sub/delete.txt"), "bye").unwrap();

        let discarded = Staging::new(&[(out.clone(), "out".to_string())]).unwrap();
        let staged = discarded.staged_path(&out).unwrap().to_path_buf();
        std::fs::write(staged.join("change.txt"), "never applied").unwrap();
        drop(discarded);
        assert_eq!(
            std::fs::read_to_string(out.join("change.txt")).unwrap(),
            "old"
        );
        assert!(!staged.exists());

        let staging = Staging::new(&[(out.clone(), "out".to_string())]).unwrap();
        let staged = staging.staged_path(&out).unwrap().to_path_buf();
        std::fs::write(staged.join("change.txt"), "new").unwrap();
        std::fs::write(staged.join("created.txt"), "hi").unwrap();
        std::fs::remove_file(staged.join("sub/delete.txt")).unwrap();
        let changes = staging.apply().unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("change.txt")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("created.txt")).unwrap(),
            "hi"
        );
        assert!(!out.join("sub/delete.txt").exists());
        assert_eq!(changes.written, vec!["out/change.txt", "out/created.txt"]);
        assert_eq!(changes.removed, vec!["out/sub/delete.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn links_are_copied_as_links_not_followed() {
        let ws = tempfile::tempdir().unwrap();
        let secret = ws.path().join("secret.txt");
        std::fs::write(&secret, "top secret").unwrap();
        let out = ws.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink(&secret, out.join("leak")).unwrap();
        let staging = Staging::new(&[(out.clone(), "out".to_string())]).unwrap();
        let staged = staging.staged_path(&out).unwrap();
        let meta = std::fs::symlink_metadata(staged.join("leak")).unwrap();
        assert!(meta.file_type().is_symlink());
    }
}
