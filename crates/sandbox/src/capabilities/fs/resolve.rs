//! Where a guest path really leads: the one walk that every path-naming file call goes through
//! before the gate judges it. It follows the path the way the kernel does, one component at a
//! time from the folder the path is named from: `..` goes to the parent of where the walk *is*
//! (after any symlink it followed), a symlink's target is spliced in and walked on. The walk
//! never leaves its mount: `..` above the mount's root, or a symlink with an absolute target,
//! stops it with a [`Stop`] that the gate turns into the out-of-scope kill, the same one a `..`
//! written in the path gets. So `link/..`, a chain of links and a link to `..` end alike.
//!
//! Every walk is bounded, so that one call cannot make the host work for long on the guest's
//! behalf: a path of at most [`MAX_PATH_BYTES`], at most [`MAX_STEPS`] components walked (those
//! of followed links included), at most [`MAX_LINKS`] links, at most [`MAX_DEPTH`] folders deep.
//! Past a bound the guest gets the error the kernel gives for the same excess (`name-too-long`,
//! `loop`), not a kill: a deep tree is not an escape.
//!
//! The walk examines entries through [`Entries`]: a mount's folder as it is ([`Plain`]), or the
//! staging overlay, which materializes each entry from the workspace as the walk reaches it.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Longest guest path accepted, in bytes (the kernel's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Most components one walk processes, counting those of the links it follows.
pub const MAX_STEPS: usize = 256;
/// Most symlinks one walk follows (the kernel's `ELOOP` limit).
pub const MAX_LINKS: usize = 40;
/// Most folders between a mount's root and an entry a walk reaches.
pub const MAX_DEPTH: usize = 64;

/// What a directory entry is, as far as a walk cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing there (or nothing a guest may reach: sockets, FIFOs and devices in the overlay).
    Missing,
    /// A regular file (or another non-directory).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
}

/// One directory on a walk, below the mount's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// Its name.
    pub name: String,
    /// The overlay's bookkeeping: the workspace has a real directory at the same path whose
    /// entries still show through. Always false outside the overlay.
    pub original: bool,
}

/// Why a walk stopped short.
#[derive(Debug)]
pub enum Stop {
    /// `..` above the mount's root; `via` is the last symlink followed before it, if any.
    ClimbsOut {
        /// The link (mount-relative) whose target led there.
        via: Option<String>,
    },
    /// A symlink with an absolute target.
    Absolute {
        /// The link, mount-relative.
        link: String,
        /// Its target.
        target: String,
    },
    /// A symlink whose target is not UTF-8: it cannot be judged.
    Unreadable,
    /// Past [`MAX_PATH_BYTES`], [`MAX_STEPS`] or [`MAX_DEPTH`].
    TooLong,
    /// Past [`MAX_LINKS`].
    Loop,
    /// A component in the middle does not exist.
    NotFound,
    /// A component in the middle is not a directory.
    NotADirectory,
    /// The file system failed.
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

impl Stop {
    /// Whether the walk tried to leave its mount (a kill), rather than fail (an error).
    pub fn escapes(&self) -> bool {
        matches!(self, Stop::ClimbsOut { .. } | Stop::Absolute { .. })
    }

    /// For an escape: the sentence the kill reports, naming the path, the mount and the link.
    pub fn describe(&self, path: &str, mount: &str) -> String {
        let path = path.escape_debug();
        match self {
            Stop::ClimbsOut { via: None } => format!("`{path}` climbs out of `{mount}` with `..`"),
            Stop::ClimbsOut { via: Some(link) } => format!(
                "`{path}` climbs out of `{mount}` with `..` once the symlink `{}` is followed",
                link.escape_debug()
            ),
            Stop::Absolute { link, target } => format!(
                "`{path}` leads out of `{mount}` through the symlink `{}` (to {})",
                link.escape_debug(),
                target.escape_debug()
            ),
            other => format!("`{path}` cannot be resolved: {other:?}"),
        }
    }
}

/// Where a walk looks up entries.
pub trait Entries {
    /// What `name` in the directory `at` is, and (for a directory) its [`Level::original`].
    ///
    /// # Errors
    ///
    /// I/O errors other than the entry's absence.
    fn entry(&mut self, at: &[Level], name: &str) -> io::Result<(Kind, bool)>;

    /// The target of the symlink `name` in the directory `at`.
    ///
    /// # Errors
    ///
    /// I/O errors.
    fn link(&mut self, at: &[Level], name: &str) -> io::Result<PathBuf>;
}

/// A mount's folder on the host, examined as it is with `lstat`.
#[derive(Debug)]
pub struct Plain<'a> {
    /// The folder.
    pub root: &'a Path,
}

impl Entries for Plain<'_> {
    fn entry(&mut self, at: &[Level], name: &str) -> io::Result<(Kind, bool)> {
        match fs::symlink_metadata(self.root.join(path_of(at, Some(name)))) {
            Ok(meta) => Ok((kind_of(&meta), false)),
            Err(e) if is_absent(&e) => Ok((Kind::Missing, false)),
            Err(e) => Err(e),
        }
    }

    fn link(&mut self, at: &[Level], name: &str) -> io::Result<PathBuf> {
        fs::read_link(self.root.join(path_of(at, Some(name))))
    }
}

/// How a walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At the directory on top of the walk.
    Dir,
    /// At this entry of the directory on top of the walk (not a directory, a link not
    /// followed, or missing).
    Leaf(String, Kind),
}

/// A walk in progress: where it is and what it has used of its bounds.
#[derive(Debug, Clone, Default)]
pub struct Walker {
    /// The directories entered, from the mount's root.
    pub at: Vec<Level>,
    steps: usize,
    links: usize,
    via: Option<String>,
}

impl Walker {
    /// A walk from `base` (a normalized mount-relative folder: the open directory a path is
    /// named from), each of whose components must still be a directory.
    ///
    /// # Errors
    ///
    /// [`Stop::NotFound`] when `base` is no longer a folder, or past [`MAX_DEPTH`].
    pub fn from(tree: &mut impl Entries, base: &str) -> Result<Walker, Stop> {
        let mut w = Walker::default();
        for name in base.split('/').filter(|c| !c.is_empty()) {
            if w.at.len() >= MAX_DEPTH {
                return Err(Stop::TooLong);
            }
            match tree.entry(&w.at, name)? {
                (Kind::Dir, original) => w.at.push(Level {
                    name: name.to_string(),
                    original,
                }),
                _ => return Err(Stop::NotFound),
            }
        }
        Ok(w)
    }

    /// Walk `path` from where the walk is. Links in the middle are followed; the last
    /// component is followed only if `follow_last`.
    ///
    /// # Errors
    ///
    /// A [`Stop`]: an escape, a bound passed, or a component that cannot be walked through.
    pub fn walk(
        &mut self,
        tree: &mut impl Entries,
        path: &str,
        follow_last: bool,
    ) -> Result<End, Stop> {
        if path.len() > MAX_PATH_BYTES {
            return Err(Stop::TooLong);
        }
        let mut queue = components(path);
        while let Some(name) = queue.pop_front() {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(Stop::TooLong);
            }
            let last = queue.is_empty();
            match name.as_str() {
                "." => continue,
                ".." => {
                    if self.at.pop().is_none() {
                        return Err(Stop::ClimbsOut {
                            via: self.via.clone(),
                        });
                    }
                    continue;
                }
                _ => {}
            }
            if self.at.len() >= MAX_DEPTH {
                return Err(Stop::TooLong);
            }
            let (kind, original) = tree.entry(&self.at, &name)?;
            match kind {
                Kind::Dir => self.at.push(Level { name, original }),
                Kind::Link if !last || follow_last => {
                    self.links += 1;
                    if self.links > MAX_LINKS {
                        return Err(Stop::Loop);
                    }
                    let link = path_of(&self.at, Some(&name));
                    let target = tree.link(&self.at, &name)?;
                    let Some(text) = target.to_str() else {
                        return Err(Stop::Unreadable);
                    };
                    if text.starts_with('/') || target.is_absolute() {
                        return Err(Stop::Absolute {
                            link,
                            target: text.to_string(),
                        });
                    }
                    if text.len() > MAX_PATH_BYTES {
                        return Err(Stop::TooLong);
                    }
                    self.via = Some(link);
                    for c in components(text).into_iter().rev() {
                        queue.push_front(c);
                    }
                }
                _ if last => return Ok(End::Leaf(name, kind)),
                Kind::Missing => return Err(Stop::NotFound),
                _ => return Err(Stop::NotADirectory),
            }
        }
        Ok(End::Dir)
    }

    /// The mount-relative path of the directory on top of the walk, or of `name` in it.
    pub fn path(&self, name: Option<&str>) -> String {
        path_of(&self.at, name)
    }
}

/// What a guest path names, once walked.
#[derive(Debug, Clone)]
pub struct Named {
    /// The entry the path names, its last component not followed: mount-relative, and what
    /// it is.
    pub entry: (String, Kind),
    /// Where the entry leads once a link in the last component is followed (the entry itself
    /// when it is not a link); `None` when such a link dangles in the middle of its target.
    pub target: Option<(String, Kind)>,
    /// The walk, standing in the directory the path resolves to (following a last link).
    pub dir: Option<Walker>,
}

/// Walk `path` from `base` (see [`Walker::from`]) and, when it names a symlink, on through it.
///
/// # Errors
///
/// The [`Stop`] of either walk, except a link that dangles in the middle of its target (its
/// [`Named::target`] is then `None`: following it fails with the kernel's own error).
pub fn name(tree: &mut impl Entries, base: &str, path: &str) -> Result<Named, Stop> {
    let mut w = Walker::from(tree, base)?;
    let (name, kind) = match w.walk(tree, path, false)? {
        End::Dir => {
            let here = (w.path(None), Kind::Dir);
            return Ok(Named {
                entry: here.clone(),
                target: Some(here),
                dir: Some(w),
            });
        }
        End::Leaf(name, kind) => (name, kind),
    };
    let entry = (w.path(Some(&name)), kind);
    if kind != Kind::Link {
        return Ok(Named {
            target: Some(entry.clone()),
            entry,
            dir: None,
        });
    }
    // Walk the link's name again, now following it: bounds and the escape rule carry on.
    match w.walk(tree, &name, true) {
        Ok(End::Dir) => Ok(Named {
            entry,
            target: Some((w.path(None), Kind::Dir)),
            dir: Some(w),
        }),
        Ok(End::Leaf(name, kind)) => Ok(Named {
            entry,
            target: Some((w.path(Some(&name)), kind)),
            dir: None,
        }),
        Err(Stop::NotFound | Stop::NotADirectory) => Ok(Named {
            entry,
            target: None,
            dir: None,
        }),
        Err(stop) => Err(stop),
    }
}

fn components(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// `at` and then `name`, joined with `/` ("" for the mount's root).
pub fn path_of(at: &[Level], name: Option<&str>) -> String {
    let mut parts: Vec<&str> = at.iter().map(|l| l.name.as_str()).collect();
    parts.extend(name);
    parts.join("/")
}

/// The walk's kind of an entry, from its `lstat`.
pub fn kind_of(meta: &fs::Metadata) -> Kind {
    let t = meta.file_type();
    if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Link
    } else {
        Kind::File
    }
}

/// Whether `e` says the entry is not there.
pub fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(all(test, unix))]
mod tests;
