//! Walking a path through the overlay: each component examined with `lstat` and materialized
//! from the original, links followed by name inside the folder and never by the host.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::Path;

use super::StagedFolder;
use super::{Book, MAX_LINKS, copy_new, file_id, join, workspace_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Missing,
    File,
    Dir,
    Link,
}

/// One directory on the walk; `original`: the workspace has a real directory at the same path
/// whose entries still show through (verified with `lstat`, not whited out).
pub(super) struct Level {
    pub(super) name: String,
    pub(super) original: bool,
}

pub(super) enum Walked {
    /// The path resolved to the directory at the top of the walk.
    Dir,
    /// The path ends in this entry of the directory at the top of the walk (not a directory,
    /// or a link not followed).
    Leaf(String, Kind),
    /// The path leaves the folder or cannot resolve.
    Stopped,
}

/// Walk `queue` from the directory at the top of `at`, materializing each component. Links in
/// the middle are followed by name; the last component is followed only if `follow_last`.
pub(super) fn walk(
    f: &StagedFolder,
    book: &mut Book,
    at: &mut Vec<Level>,
    mut queue: VecDeque<String>,
    follow_last: bool,
    links: &mut usize,
) -> io::Result<Walked> {
    while let Some(name) = queue.pop_front() {
        let last = queue.is_empty();
        match name.as_str() {
            "." => continue,
            ".." => {
                if at.pop().is_none() {
                    return Ok(Walked::Stopped);
                }
                continue;
            }
            _ => {}
        }
        let parent_original = at.last().is_none_or(|l| l.original);
        let inner = path_of(at, Some(&name));
        let (kind, original) = ensure(f, book, &inner, parent_original)?;
        match kind {
            Kind::Dir => at.push(Level { name, original }),
            Kind::Link if !last || follow_last => {
                *links += 1;
                if *links > MAX_LINKS {
                    return Ok(Walked::Stopped);
                }
                let Some(target) = link_components(&f.staged.join(&inner))? else {
                    return Ok(Walked::Stopped);
                };
                for c in target.into_iter().rev() {
                    queue.push_front(c);
                }
            }
            _ if last => return Ok(Walked::Leaf(name, kind)),
            _ => return Ok(Walked::Stopped),
        }
    }
    Ok(Walked::Dir)
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

/// The components of a staged link's target, if it is relative and readable as UTF-8.
pub(super) fn link_components(link: &Path) -> io::Result<Option<VecDeque<String>>> {
    let target = fs::read_link(link)?;
    let Some(target) = target.to_str() else {
        return Ok(None);
    };
    if target.starts_with('/') || Path::new(target).is_absolute() {
        return Ok(None);
    }
    let parts: VecDeque<String> = target
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    Ok((!parts.is_empty()).then_some(parts))
}

fn kind_of(meta: &fs::Metadata) -> Kind {
    let t = meta.file_type();
    if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Link
    } else {
        Kind::File
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

pub(super) fn path_of(at: &[Level], name: Option<&str>) -> String {
    let mut parts: Vec<&str> = at.iter().map(|l| l.name.as_str()).collect();
    parts.extend(name);
    parts.join("/")
}
