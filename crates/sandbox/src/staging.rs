//! Staged writes: an agent never writes the workspace directly. Each writable folder it is granted
//! is served from a private staging folder for the task, which starts empty and is filled from
//! the workspace only with what the agent touches (see [`crate::capabilities::fs::overlay`]):
//! files are hard links to the workspace's until the agent changes them, so a staging area costs
//! what the agent writes, not the size of the workspace.
//!
//! When the task completes, its changes are [applied](Staging::apply) back (files created,
//! changed or deleted under the folder), or kept for review ([`Staging::seal`], later
//! [`Staging::open`], [`Staging::diff`], [`Staging::apply`] or [`Staging::discard`], possibly in
//! another process); when it is killed or fails, the staging area is discarded and the workspace
//! is untouched.
//!
//! A staging area lives in one folder:
//!
//! ```text
//! <root>/manifest.json   the folders (workspace path and host path), removals, listed folders
//! <root>/tree/<i>/       the staging folder of the i-th writable folder
//! ```
//!
//! Symlinks are staged as symlinks and never followed, so a link planted in the workspace cannot
//! pull outside data into the staging area.

mod diff;
mod patch;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::diff::Diff;
use crate::capabilities::fs::Overlay;
pub use crate::capabilities::fs::overlay::StagedFolder;
use crate::capabilities::fs::overlay::{Need, Record};

const MANIFEST: &str = "manifest.json";
const TREE: &str = "tree";
const MANIFEST_VERSION: u32 = 1;

/// The staging area of one task.
///
/// One made by [`Staging::new`] lives in a temporary folder and is deleted when dropped; one
/// made by [`Staging::create`] or reopened by [`Staging::open`] stays on disk until
/// [`Staging::apply`] or [`Staging::discard`].
#[derive(Debug)]
pub struct Staging {
    root: Root,
    overlay: Arc<Overlay>,
    /// Reopened from a manifest that was never sealed: its task did not finish.
    unfinished: bool,
}

#[derive(Debug)]
enum Root {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

/// What applying a staging area changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedChanges {
    /// Files and links created or modified, and folders created (with a trailing `/`), relative
    /// to the workspace, sorted.
    pub written: Vec<String>,
    /// Files, links and folders (with a trailing `/`) removed, sorted.
    pub removed: Vec<String>,
}

/// What `manifest.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    /// Written when the task's run ended; until then the removals are not all recorded.
    sealed: bool,
    folders: Vec<ManifestFolder>,
    whiteouts: BTreeSet<String>,
    listed: BTreeSet<String>,
    /// Workspace path -> (device, inode) of the originals hard-linked into staging.
    linked: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFolder {
    original: PathBuf,
    rel: String,
}

impl Staging {
    /// A staging area in a fresh temporary folder, deleted when dropped, for each folder in
    /// `originals` (host path, workspace-relative path). Nothing is copied.
    ///
    /// # Errors
    ///
    /// I/O errors creating the folders; `InvalidInput` for a relative host path or a
    /// workspace path that is not normalized.
    pub fn new(originals: &[(PathBuf, String)]) -> io::Result<Self> {
        let root = tempfile::Builder::new().prefix("warden-stage-").tempdir()?;
        let folders = make_tree(root.path(), originals)?;
        Ok(Staging {
            root: Root::Temporary(root),
            overlay: Arc::new(Overlay::new(folders)),
            unfinished: false,
        })
    }

    /// A staging area in `root` (created if missing, and then empty) that outlives this value
    /// and this process: only [`Staging::apply`] and [`Staging::discard`] delete it. Writes an
    /// unsealed manifest at once, so a host that stops mid-task leaves a recognizable area.
    ///
    /// # Errors
    ///
    /// As [`Staging::new`]; `AlreadyExists` when `root` holds anything.
    pub fn create(root: &Path, originals: &[(PathBuf, String)]) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        if fs::read_dir(root)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not empty; refusing to stage into it", root.display()),
            ));
        }
        let folders = make_tree(root, originals)?;
        let staging = Staging {
            root: Root::Kept(root.to_path_buf()),
            overlay: Arc::new(Overlay::new(folders)),
            unfinished: false,
        };
        staging.write_manifest(false)?;
        Ok(staging)
    }

    /// Reopen the staging area at `root` from its manifest (in another process, say).
    ///
    /// # Errors
    ///
    /// I/O errors; `InvalidData` when the manifest is malformed or names a path that is not a
    /// normalized relative path inside one of its folders.
    pub fn open(root: &Path) -> io::Result<Self> {
        let text = fs::read_to_string(root.join(MANIFEST))?;
        let invalid = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", root.join(MANIFEST).display()),
            )
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if m.version != MANIFEST_VERSION {
            return Err(invalid(format!("unknown version {}", m.version)));
        }
        let mut folders = Vec::new();
        for (i, f) in m.folders.into_iter().enumerate() {
            check_folder(&f.original, &f.rel).map_err(|e| invalid(e.to_string()))?;
            let staged = root.join(TREE).join(i.to_string());
            if !fs::symlink_metadata(&staged).is_ok_and(|m| m.is_dir()) {
                return Err(invalid(format!("{} is missing", staged.display())));
            }
            folders.push(StagedFolder {
                original: f.original,
                rel: f.rel,
                staged,
            });
        }
        // `""` is the workspace root, listed when a folder is staged there.
        let inside = |p: &String| {
            (p.is_empty() && folders.iter().any(|f| f.rel.is_empty()))
                || is_normal(p)
                    && folders.iter().any(|f| {
                        f.rel.is_empty() || *p == f.rel || p.starts_with(&format!("{}/", f.rel))
                    })
        };
        let mut paths = m.whiteouts.iter().chain(&m.listed).chain(m.linked.keys());
        if let Some(bad) = paths.find(|p| !inside(p)) {
            return Err(invalid(format!(
                "`{bad}` is not a path inside a staged folder"
            )));
        }
        Ok(Staging {
            root: Root::Kept(root.to_path_buf()),
            overlay: Arc::new(Overlay::restore(
                folders,
                Record {
                    whiteouts: m.whiteouts,
                    listed: m.listed,
                    linked: m.linked,
                },
            )),
            unfinished: !m.sealed,
        })
    }

    /// The folder the staging area lives in.
    pub fn root(&self) -> &Path {
        match &self.root {
            Root::Temporary(t) => t.path(),
            Root::Kept(p) => p,
        }
    }

    /// The staged folders.
    pub fn folders(&self) -> &[StagedFolder] {
        self.overlay.folders()
    }

    /// Where `original` is staged, if it is.
    pub fn staged_path(&self, original: &Path) -> Option<&Path> {
        self.folders()
            .iter()
            .find(|f| f.original == original)
            .map(|f| f.staged.as_path())
    }

    /// The overlay the file capability serves the staged folders through
    /// ([`crate::capabilities::fs::FsState::with_overlay`]).
    pub fn overlay(&self) -> Arc<Overlay> {
        self.overlay.clone()
    }

    /// Record what the task did (its removals) in the manifest, once its run has ended, so that
    /// [`Staging::open`] can diff, apply or discard it later.
    ///
    /// # Errors
    ///
    /// I/O errors writing the manifest.
    pub fn seal(&self) -> io::Result<()> {
        self.write_manifest(true)
    }

    /// What applying would change in the workspace.
    ///
    /// # Errors
    ///
    /// I/O errors; `InvalidData` for a staging area whose task did not finish.
    pub fn diff(&self) -> io::Result<Diff> {
        self.refuse_unfinished()?;
        Ok(Diff::from_changes(&diff::changes(&self.overlay)?))
    }

    /// Apply every change back to the workspace, then discard the staging area. Files the agent
    /// did not change are skipped without being read; changed files are moved into place when
    /// they can be, each replacing its original in one rename.
    ///
    /// # Errors
    ///
    /// I/O errors (changes applied before the error stay applied, and the staging area stays);
    /// `InvalidData` for a staging area whose task did not finish.
    pub fn apply(self) -> io::Result<AppliedChanges> {
        self.refuse_unfinished()?;
        let changes = diff::changes(&self.overlay)?;
        let applied = diff::apply(&self.overlay, &changes)?;
        let root = self.root().to_path_buf();
        if let Err(e) = self.discard() {
            tracing::warn!(target: "warden::staging", root = %root.display(), error = %e, "applied, but the staging area could not be removed");
        }
        Ok(applied)
    }

    /// Delete the staging area; the workspace is untouched.
    ///
    /// # Errors
    ///
    /// I/O errors removing the folder.
    pub fn discard(self) -> io::Result<()> {
        match self.root {
            Root::Temporary(t) => t.close(),
            Root::Kept(p) => match fs::remove_dir_all(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Stage `content` as the new content of the workspace-relative file `rel` (created, with
    /// its folders, if absent) — the host's own change, as if an agent had written it there (a
    /// cascade's result is staged so), reviewable and applied like any task's.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a path that is not normalized or not inside a staged folder, or that
    /// passes through a link or a file; I/O errors writing.
    pub fn put_file(&self, rel: &str, content: &[u8]) -> io::Result<()> {
        let (folder, inner) = self.inside(rel)?;
        let f = &self.folders()[folder];
        if let Some((parent, _)) = inner.rsplit_once('/') {
            let staged = self.overlay.stage(folder, parent, Need::Entry)?;
            if staged.entry.as_deref().is_some_and(|e| e != parent) {
                return Err(invalid(format!("`{rel}` passes through a link")));
            }
            fs::create_dir_all(f.staged.join(parent))?;
        }
        let staged = self.overlay.stage(folder, &inner, Need::Entry)?;
        if staged.entry.as_deref().is_some_and(|e| e != inner) {
            return Err(invalid(format!("`{rel}` passes through a link")));
        }
        let path = f.staged.join(&inner);
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(invalid(format!("`{rel}` is not a file")));
        }
        self.overlay.copy_up(folder, &inner)?;
        fs::write(&path, content)
    }

    /// Stage the removal of the workspace-relative file `rel` (the host's own change, as
    /// [`Staging::put_file`]).
    ///
    /// # Errors
    ///
    /// As [`Staging::put_file`].
    pub fn remove_file(&self, rel: &str) -> io::Result<()> {
        let (folder, inner) = self.inside(rel)?;
        self.overlay.stage(folder, &inner, Need::Entry)?;
        let path = self.folders()[folder].staged.join(&inner);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.overlay.remove(folder, &inner);
        Ok(())
    }

    /// The staged folder holding the workspace-relative `rel`, and the path inside it.
    fn inside(&self, rel: &str) -> io::Result<(usize, String)> {
        if !is_normal(rel) {
            return Err(invalid(format!(
                "`{rel}` is not a normalized relative path"
            )));
        }
        let (i, f) = self
            .folders()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.rel.is_empty() || rel.starts_with(&format!("{}/", f.rel)))
            .max_by_key(|(_, f)| f.rel.len())
            .ok_or_else(|| invalid(format!("`{rel}` is not inside a staged folder")))?;
        Ok((i, rel[f.rel.len()..].trim_start_matches('/').to_owned()))
    }

    /// The workspace file and its staged counterpart for the workspace-relative `rel`.
    pub(crate) fn locate(&self, rel: &str) -> Option<(PathBuf, PathBuf)> {
        let f = self
            .folders()
            .iter()
            .filter(|f| f.rel.is_empty() || rel == f.rel || rel.starts_with(&format!("{}/", f.rel)))
            .max_by_key(|f| f.rel.len())?;
        let inner = rel[f.rel.len()..].trim_start_matches('/');
        Some((f.original.join(inner), f.staged.join(inner)))
    }

    fn refuse_unfinished(&self) -> io::Result<()> {
        if self.unfinished {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the task that staged {} did not finish (its manifest was never sealed); its changes can only be discarded",
                    self.root().display()
                ),
            ));
        }
        Ok(())
    }

    fn write_manifest(&self, sealed: bool) -> io::Result<()> {
        let Record {
            whiteouts,
            listed,
            linked,
        } = self.overlay.record();
        let m = Manifest {
            version: MANIFEST_VERSION,
            sealed,
            folders: self
                .folders()
                .iter()
                .map(|f| ManifestFolder {
                    original: f.original.clone(),
                    rel: f.rel.clone(),
                })
                .collect(),
            whiteouts,
            listed,
            linked,
        };
        let text = serde_json::to_string_pretty(&m).map_err(io::Error::other)?;
        let path = self.root().join(MANIFEST);
        let next = self.root().join(format!("{MANIFEST}.next"));
        fs::write(&next, text)?;
        fs::rename(&next, &path)
    }
}

/// Create `root/tree/<i>/`, empty, for each folder.
fn make_tree(root: &Path, originals: &[(PathBuf, String)]) -> io::Result<Vec<StagedFolder>> {
    let tree = root.join(TREE);
    fs::create_dir(&tree)?;
    let mut folders = Vec::new();
    for (i, (original, rel)) in originals.iter().enumerate() {
        check_folder(original, rel)?;
        let staged = tree.join(i.to_string());
        fs::create_dir(&staged)?;
        folders.push(StagedFolder {
            original: original.clone(),
            rel: rel.clone(),
            staged,
        });
    }
    Ok(folders)
}

fn check_folder(original: &Path, rel: &str) -> io::Result<()> {
    if !original.is_absolute() || !(rel.is_empty() || is_normal(rel)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot stage `{rel}` at {}: the host path must be absolute and the workspace path normalized",
                original.display()
            ),
        ));
    }
    Ok(())
}

/// A non-empty relative path without `.`, `..` or empty components.
fn is_normal(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}
