//! The overlay's side of a walk (see [`crate::capabilities::fs::resolve`]): each component
//! examined with `lstat` and materialized from the original, links recreated as links and
//! followed by name inside the folder, never by the host. Listings of a folder the walk reached.

use std::fs;
use std::io;
use std::path::Path;

use super::StagedFolder;
use super::{Book, copy_new, file_id, join, workspace_path};
use crate::capabilities::fs::resolve::{Entries, Kind, Level, is_absent, kind_of, path_of};

/// The entries of one staged folder, as a walk sees them: each materialized from the workspace
/// when the walk reaches it.
pub(crate) struct Folder<'a> {
    pub(super) f: &'a StagedFolder,
    pub(super) book: &'a mut Book,
}

impl Entries for Folder<'_> {
    fn entry(&mut self, at: &[Level], name: &str) -> io::Result<(Kind, bool)> {
        let parent_original = at.last().is_none_or(|l| l.original);
        ensure(self.f, self.book, &path_of(at, Some(name)), parent_original)
    }

    fn link(&mut self, at: &[Level], name: &str) -> io::Result<std::path::PathBuf> {
        fs::read_link(self.f.staged.join(path_of(at, Some(name))))
    }
}

/// Make sure `inner` is in the staging folder if the original has it; returns what is staged
/// there and whether it is a directory whose original entries still show through.
fn ensure(
    f: &StagedFolder,
    book: &mut Book,
    inner: &str,
    parent_original: bool,
) -> io::Result<(Kind, bool)> {
    let staged = f.staged.join(inner);
    let shows = parent_original && !book.whiteouts.contains(&workspace_path(&f.rel, inner));
    match fs::symlink_metadata(&staged) {
        Ok(meta) => {
            let kind = kind_of(&meta);
            let original = kind == Kind::Dir
                && shows
                && fs::symlink_metadata(f.original.join(inner)).is_ok_and(|m| m.is_dir());
            Ok((kind, original))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && shows => materialize(f, book, inner),
        Err(e) if is_absent(&e) => Ok((Kind::Missing, false)),
        Err(e) => Err(e),
    }
}

/// Copy the original entry at `inner` into staging: link, symlink or empty directory.
fn materialize(f: &StagedFolder, book: &mut Book, inner: &str) -> io::Result<(Kind, bool)> {
    let original = f.original.join(inner);
    let staged = f.staged.join(inner);
    let meta = match fs::symlink_metadata(&original) {
        Ok(m) => m,
        Err(e) if is_absent(&e) => return Ok((Kind::Missing, false)),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        fs::create_dir(&staged)?;
        Ok((Kind::Dir, true))
    } else if kind.is_symlink() {
        copy_link(&original, &staged)
    } else if kind.is_file() {
        match fs::hard_link(&original, &staged) {
            Ok(()) => {
                if let Some(id) = file_id(&fs::symlink_metadata(&staged)?) {
                    book.linked.insert(id, workspace_path(&f.rel, inner));
                }
            }
            // Another file system, a link count limit, protected hard links: copy instead.
            Err(_) => {
                copy_new(&original, &staged)?;
            }
        }
        Ok((Kind::File, false))
    } else {
        // Sockets, FIFOs and devices are never staged: an agent has no business with them.
        Ok((Kind::Missing, false))
    }
}

#[cfg(unix)]
fn copy_link(original: &Path, staged: &Path) -> io::Result<(Kind, bool)> {
    std::os::unix::fs::symlink(fs::read_link(original)?, staged)?;
    Ok((Kind::Link, false))
}

#[cfg(not(unix))]
fn copy_link(_: &Path, _: &Path) -> io::Result<(Kind, bool)> {
    Ok((Kind::Missing, false))
}

/// List the directory at the top of `at`: every original entry not staged yet is materialized.
pub(super) fn list(f: &StagedFolder, book: &mut Book, at: &[Level]) -> io::Result<()> {
    if !at.last().is_none_or(|l| l.original) {
        return Ok(());
    }
    let inner = path_of(at, None);
    let key = workspace_path(&f.rel, &inner);
    if book.listed.contains(&key) {
        return Ok(());
    }
    for entry in fs::read_dir(f.original.join(&inner))? {
        // Names that are not UTF-8 cannot be named by a guest; they are never staged.
        let Ok(name) = entry?.file_name().into_string() else {
            continue;
        };
        ensure(f, book, &join(&inner, &name), true)?;
    }
    book.listed.insert(key);
    Ok(())
}

/// List the directory at the top of `at` and, recursively, every original directory below it.
pub(super) fn tree(f: &StagedFolder, book: &mut Book, at: &mut Vec<Level>) -> io::Result<()> {
    if !at.last().is_none_or(|l| l.original) {
        return Ok(());
    }
    list(f, book, at)?;
    let inner = path_of(at, None);
    let mut dirs = Vec::new();
    for entry in fs::read_dir(f.staged.join(&inner))? {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
        {
            dirs.push(name);
        }
    }
    for name in dirs {
        let (kind, original) = ensure(f, book, &join(&inner, &name), true)?;
        if kind == Kind::Dir && original {
            at.push(Level { name, original });
            let done = tree(f, book, at);
            at.pop();
            done?;
        }
    }
    Ok(())
}
