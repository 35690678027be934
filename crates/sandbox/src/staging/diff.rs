//! What a staging area changes in the workspace, how it is shown and how it is applied.
//!
//! Only the staging folders are walked (what the agent touched), each entry beside its original:
//! a file still hard-linked to its original is unchanged without being read, a copy equal byte
//! for byte to its original is unchanged too. Originals show as removed where the agent left a
//! whiteout (see [`crate::capabilities::fs::overlay`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::patch::render_file;
use super::{AppliedChanges, Staging};
use crate::capabilities::fs::Overlay;
use crate::capabilities::fs::overlay::{
    beside, copy_new, file_id, join, original_meta, workspace_path,
};

/// What applying a staging area would change: workspace-relative paths, sorted, folders with a
/// trailing `/`. A path in both `removed` and `created` changed kind (a folder became a file).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// Files, links and folders that are new.
    pub created: Vec<String>,
    /// Files and links whose content or target changed.
    pub modified: Vec<String>,
    /// Files, links and folders deleted.
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    File,
    Dir,
    Link,
    /// A socket, FIFO or device in the workspace (never staged, never read).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Removed(Entry),
    Created(Entry),
    Modified(Entry),
}

/// One change, in the order applying needs (removals before what replaces them, folders before
/// their content).
#[derive(Debug)]
pub(super) struct Changed {
    folder: usize,
    inner: String,
    rel: String,
    change: Change,
}

impl Diff {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    pub(super) fn from_changes(changes: &[Changed]) -> Self {
        let mut diff = Diff::default();
        for c in changes {
            let (list, entry) = match c.change {
                Change::Created(e) => (&mut diff.created, e),
                Change::Modified(e) => (&mut diff.modified, e),
                Change::Removed(e) => (&mut diff.removed, e),
            };
            list.push(shown(&c.rel, entry));
        }
        diff.created.sort();
        diff.modified.sort();
        diff.removed.sort();
        diff
    }

    /// The diff as text for a person: a unified diff for each created or modified text file
    /// under 64 KiB, one line for every other change. Reads `staging` (which must
    /// be the staging area this diff was made from) and the workspace.
    pub fn render(&self, staging: &Staging) -> String {
        let mut all: Vec<(&str, &str)> = Vec::new();
        all.extend(self.removed.iter().map(|p| (p.as_str(), "removed")));
        all.extend(self.created.iter().map(|p| (p.as_str(), "created")));
        all.extend(self.modified.iter().map(|p| (p.as_str(), "modified")));
        all.sort_by(|a, b| a.0.trim_end_matches('/').cmp(b.0.trim_end_matches('/')));
        let mut out = String::new();
        for (path, what) in all {
            match (what, path.strip_suffix('/')) {
                (_, Some(dir)) => {
                    let _ = writeln!(out, "{what} folder {dir}/");
                }
                ("removed", None) => {
                    let _ = writeln!(out, "--- a/{path}\n+++ /dev/null\nremoved {path}");
                }
                _ => match staging.locate(path) {
                    Some((old, new)) => {
                        let old = (what == "modified").then_some(old.as_path());
                        render_file(path, old, &new, &mut out);
                    }
                    None => {
                        let _ = writeln!(out, "{what} {path}");
                    }
                },
            }
        }
        out
    }
}

fn shown(rel: &str, entry: Entry) -> String {
    if entry == Entry::Dir {
        format!("{rel}/")
    } else {
        rel.to_string()
    }
}

/// Every change the overlay's staging folders make, in the order [`apply`] needs.
pub(super) fn changes(overlay: &Overlay) -> io::Result<Vec<Changed>> {
    let mut out = Vec::new();
    for (i, _) in overlay.folders().iter().enumerate() {
        walk(overlay, i, "", Some(false), &mut out)?;
    }
    Ok(out)
}

/// Compare the staged folder `inner` with the workspace. `original`: `None` when the workspace
/// has no folder there that counts; `Some(removed)` when it has one, `removed` when the agent
/// removed it (or an ancestor) and everything in it not staged is gone.
fn walk(
    overlay: &Overlay,
    folder: usize,
    inner: &str,
    original: Option<bool>,
    out: &mut Vec<Changed>,
) -> io::Result<()> {
    let f = &overlay.folders()[folder];
    let mut staged = BTreeMap::new();
    for e in fs::read_dir(f.staged.join(inner))? {
        let e = e?;
        if let Ok(name) = e.file_name().into_string() {
            staged.insert(name, fs::symlink_metadata(e.path())?);
        }
    }
    let push = |out: &mut Vec<Changed>, name: &str, change| {
        let inner = join(inner, name);
        out.push(Changed {
            rel: workspace_path(&f.rel, &inner),
            inner,
            folder,
            change,
        });
    };
    if let Some(removed) = original {
        // Names that are not UTF-8 were never staged and are left alone.
        let gone: Vec<String> = if removed {
            fs::read_dir(f.original.join(inner))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        } else {
            overlay.removed_children(folder, inner)
        };
        for name in gone.iter().filter(|n| !staged.contains_key(*n)) {
            if let Some(meta) = original_meta(&f.original, &join(inner, name)) {
                push(out, name, Change::Removed(entry_of(&meta)));
            }
        }
    }
    for (name, meta) in &staged {
        let child = join(inner, name);
        if overlay.is_untouched(folder, &child, meta) {
            continue;
        }
        let old = original.and_then(|_| fs::symlink_metadata(f.original.join(&child)).ok());
        let (src, dest) = (f.staged.join(&child), f.original.join(&child));
        match (entry_of(meta), old.as_ref()) {
            (Entry::Dir, Some(o)) if o.is_dir() => {
                let removed = original == Some(true) || overlay.is_removed(folder, &child);
                walk(overlay, folder, &child, Some(removed), out)?;
            }
            (Entry::File, Some(o)) if o.is_file() => {
                if !same_file(meta, o, &src, &dest)? {
                    push(out, name, Change::Modified(Entry::File));
                }
            }
            (Entry::Link, Some(o)) if o.is_symlink() => {
                if fs::read_link(&src)? != fs::read_link(&dest)? {
                    push(out, name, Change::Modified(Entry::Link));
                }
            }
            (Entry::Other, _) => {}
            (new, old) => {
                if let Some(old) = old {
                    push(out, name, Change::Removed(entry_of(old)));
                }
                push(out, name, Change::Created(new));
                if new == Entry::Dir {
                    walk(overlay, folder, &child, None, out)?;
                }
            }
        }
    }
    Ok(())
}

fn entry_of(meta: &fs::Metadata) -> Entry {
    let t = meta.file_type();
    if t.is_dir() {
        Entry::Dir
    } else if t.is_symlink() {
        Entry::Link
    } else if t.is_file() {
        Entry::File
    } else {
        Entry::Other
    }
}

/// Whether the staged file `src` still holds what `dest` holds: the same inode (a hard link
/// never copied up) without reading either, or the same bytes.
fn same_file(
    src_meta: &fs::Metadata,
    dest_meta: &fs::Metadata,
    src: &Path,
    dest: &Path,
) -> io::Result<bool> {
    if file_id(src_meta).is_some() && file_id(src_meta) == file_id(dest_meta) {
        return Ok(true);
    }
    if src_meta.len() != dest_meta.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (fs::File::open(src)?, fs::File::open(dest)?);
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y)? == 0);
        }
        b.read_exact(&mut y[..n])
            .map_err(|_| io::Error::other("file changed size"))?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// Make the workspace match the staging folders, change by change.
pub(super) fn apply(overlay: &Overlay, changes: &[Changed]) -> io::Result<AppliedChanges> {
    let mut applied = AppliedChanges::default();
    for c in changes {
        let f = &overlay.folders()[c.folder];
        let (src, dest) = (f.staged.join(&c.inner), f.original.join(&c.inner));
        match c.change {
            Change::Removed(entry) => {
                remove(&dest)?;
                applied.removed.push(shown(&c.rel, entry));
            }
            Change::Created(Entry::Dir) => {
                match fs::create_dir(&dest) {
                    Err(e) if !(e.kind() == io::ErrorKind::AlreadyExists && dest.is_dir()) => {
                        return Err(e);
                    }
                    _ => {}
                }
                applied.written.push(shown(&c.rel, Entry::Dir));
            }
            Change::Created(Entry::Link) | Change::Modified(Entry::Link) => {
                install_link(&src, &dest)?;
                applied.written.push(c.rel.clone());
            }
            Change::Created(_) | Change::Modified(_) => {
                install_file(&src, &dest)?;
                applied.written.push(c.rel.clone());
            }
        }
    }
    applied.written.sort();
    applied.removed.sort();
    Ok(applied)
}

fn remove(path: &Path) -> io::Result<()> {
    let done = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match done {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Replace `dest` by the staged file `src` in one rename: the staged file itself when it has no
/// other name (so nothing is copied), else a copy. `dest` gets a new inode either way, so other
/// names of the old file (hard links elsewhere) are not written through.
fn install_file(src: &Path, dest: &Path) -> io::Result<()> {
    if sole_name(&fs::symlink_metadata(src)?) && fs::rename(src, dest).is_ok() {
        return Ok(());
    }
    let tmp = beside(dest, "warden-apply", |tmp| copy_new(src, tmp))?;
    fs::rename(&tmp, dest).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(unix)]
fn sole_name(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.nlink() == 1
}

#[cfg(not(unix))]
fn sole_name(_: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn install_link(src: &Path, dest: &Path) -> io::Result<()> {
    let target = fs::read_link(src)?;
    let tmp = beside(dest, "warden-apply", |tmp| {
        std::os::unix::fs::symlink(&target, tmp)
    })?;
    fs::rename(&tmp, dest).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(not(unix))]
fn install_link(_: &Path, _: &Path) -> io::Result<()> {
    Ok(())
}
