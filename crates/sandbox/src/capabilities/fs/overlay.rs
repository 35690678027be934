//! The copy-on-write overlay that a writable mount is served from: the guest sees a staging
//! folder that starts empty and is filled from the workspace folder on demand, just before the
//! gated host delegates a call that names a path in it. Staging therefore costs what the agent
//! touches, never the size of the workspace.
//!
//! What a call needs is *materialized* in the staging folder:
//! - the ancestors of the path, as empty directories (not listed);
//! - the entry itself: a regular file becomes a hard link to the original (no data copied; a
//!   copy when linking fails), a symlink is recreated as a symlink, a directory is created empty;
//! - a listing (`read-directory`, removing a directory) materializes one level of entries, and a
//!   renamed directory its whole subtree, since it moves.
//!
//! A file that is still a hard link to an original is *copied up* (copied beside itself, then
//! renamed over the link) before anything may change it, so the original's inode is never
//! written. Removals leave a *whiteout*: the original at that path no longer shows through.
//!
//! Materializing never follows a symlink on the host: every original path is examined with
//! `lstat`, one component at a time, as the gate's walk ([`super::resolve`]) reaches it, and a
//! link is recreated as a link and then resolved by name inside the mount (an absolute target, a
//! `..` past the mount root or a bound passed stop the walk, and the gate kills or refuses).
//! Nothing outside the mount is ever named.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub(crate) use self::walk::Folder;
use self::walk::{list, tree};
use super::resolve::{End, Kind, Level, Stop, Walker};

mod walk;

/// The staging folder of one writable folder: where the overlay serves it from. The staging
/// area ([`crate::staging`]) makes these; the overlay only reads the layout.
#[derive(Debug, Clone)]
pub struct StagedFolder {
    /// The folder in the workspace.
    pub original: PathBuf,
    /// The folder's workspace-relative path, used to name changes.
    pub rel: String,
    /// The staging folder the agent sees.
    pub staged: PathBuf,
}

/// How much of the original a call needs staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The path's ancestors and the entry it names (and what a link there points at).
    Entry,
    /// As `Entry`, and every entry of the directory the path resolves to.
    Listing,
    /// As `Entry`, and the whole subtree of the directory the path names (links not followed).
    Tree,
}

/// Where a staged path really is, inside its folder ("" = the folder itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staged {
    /// The entry the path names, the last component not followed; `None` when the path does not
    /// resolve inside the folder (a missing or non-directory ancestor, an escaping link).
    pub entry: Option<String>,
    /// The entry after following a link in the last component as well.
    pub target: Option<String>,
}

/// The staging folders of one task and what the agent did to them.
#[derive(Debug)]
pub struct Overlay {
    folders: Vec<StagedFolder>,
    book: Mutex<Book>,
}

/// The overlay's bookkeeping; paths are workspace-relative.
#[derive(Debug, Default)]
struct Book {
    /// Paths whose original (and everything below it) was removed by the agent.
    whiteouts: BTreeSet<String>,
    /// Directories every original entry of which has been materialized.
    listed: BTreeSet<String>,
    /// (device, inode) of each original hard-linked into staging, and the path it was linked
    /// from: a staged file that is still that inode at that path is unchanged by definition,
    /// even if the workspace's file was replaced since.
    linked: HashMap<(u64, u64), String>,
}

/// The bookkeeping as a staging area's manifest keeps it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Workspace paths removed by the agent.
    pub whiteouts: BTreeSet<String>,
    /// Workspace folders listed in full.
    pub listed: BTreeSet<String>,
    /// Workspace path -> (device, inode) of the original hard-linked from there.
    pub linked: BTreeMap<String, (u64, u64)>,
}

impl Overlay {
    /// An overlay over `folders`, with nothing materialized or removed yet.
    pub fn new(folders: Vec<StagedFolder>) -> Self {
        Self::restore(folders, Record::default())
    }

    /// An overlay with its bookkeeping reloaded from a manifest.
    pub(crate) fn restore(folders: Vec<StagedFolder>, record: Record) -> Self {
        Overlay {
            folders,
            book: Mutex::new(Book {
                whiteouts: record.whiteouts,
                listed: record.listed,
                linked: record.linked.into_iter().map(|(p, id)| (id, p)).collect(),
            }),
        }
    }

    /// The staged folders.
    pub fn folders(&self) -> &[StagedFolder] {
        &self.folders
    }

    /// The folder mounted at the workspace-relative `rel`.
    pub fn folder_of(&self, rel: &str) -> Option<usize> {
        self.folders.iter().position(|f| f.rel == rel)
    }

    /// The bookkeeping, to be kept in a manifest.
    pub(crate) fn record(&self) -> Record {
        let book = self.lock();
        Record {
            whiteouts: book.whiteouts.clone(),
            listed: book.listed.clone(),
            linked: book.linked.iter().map(|(id, p)| (p.clone(), *id)).collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // The bookkeeping stays consistent even if a holder panicked: every update is one insert.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn folder(&self, folder: usize) -> io::Result<&StagedFolder> {
        self.folders
            .get(folder)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such staged folder"))
    }

    /// Materialize what a call naming `inner` (a path inside `folder`, walked from its root)
    /// needs. A path that does not resolve inside the folder stages what the walk reached and
    /// returns `Staged::default()`.
    ///
    /// # Errors
    ///
    /// I/O errors while reading the original or writing the staging folder.
    pub fn stage(&self, folder: usize, inner: &str, need: Need) -> io::Result<Staged> {
        let f = self.folder(folder)?;
        let mut book = self.lock();
        let mut entries = Folder { f, book: &mut book };
        let mut w = Walker::default();
        let mut out = Staged::default();
        let stopped = |stop: Stop| match stop {
            Stop::Io(e) => Err(e),
            _ => Ok(Staged::default()),
        };
        match w.walk(&mut entries, inner, false) {
            Err(stop) => return stopped(stop),
            Ok(End::Dir) => out.entry = Some(w.path(None)),
            Ok(End::Leaf(name, Kind::Link)) => {
                out.entry = Some(w.path(Some(&name)));
                if need == Need::Tree {
                    // A renamed link moves as a link; what it points at stays.
                    return Ok(out);
                }
                match w.walk(&mut entries, &name, true) {
                    Err(Stop::Io(e)) => return Err(e),
                    Err(_) => return Ok(out),
                    Ok(End::Dir) => {}
                    Ok(End::Leaf(name, _)) => {
                        out.target = Some(w.path(Some(&name)));
                        return Ok(out);
                    }
                }
            }
            Ok(End::Leaf(name, _)) => {
                out.entry = Some(w.path(Some(&name)));
                out.target = out.entry.clone();
                return Ok(out);
            }
        }
        out.target = Some(w.path(None));
        fill(f, entries.book, &mut w.at, need)?;
        Ok(out)
    }

    /// Let `walk` examine the entries of `folder`, each materialized as it reaches it; the
    /// bookkeeping stays locked for the whole walk.
    ///
    /// # Errors
    ///
    /// When there is no such folder.
    pub(crate) fn walk<R>(
        &self,
        folder: usize,
        walk: impl FnOnce(&mut Folder<'_>) -> R,
    ) -> io::Result<R> {
        let f = self.folder(folder)?;
        let mut book = self.lock();
        Ok(walk(&mut Folder { f, book: &mut book }))
    }

    /// Materialize what `need` asks of the directory a walk of `folder` stands in: its entries
    /// (`Listing`) or its whole subtree (`Tree`).
    ///
    /// # Errors
    ///
    /// I/O errors while reading the original or writing the staging folder.
    pub(crate) fn fill(&self, folder: usize, at: &mut Vec<Level>, need: Need) -> io::Result<()> {
        let f = self.folder(folder)?;
        fill(f, &mut self.lock(), at, need)
    }

    /// Before `inner` (a path returned by [`Overlay::stage`]) is changed: if it is a file that
    /// is still a hard link to an original, replace it by a copy of its own.
    ///
    /// # Errors
    ///
    /// I/O errors while copying.
    pub fn copy_up(&self, folder: usize, inner: &str) -> io::Result<()> {
        let f = self.folder(folder)?;
        let book = self.lock();
        let staged = f.staged.join(inner);
        let meta = match fs::symlink_metadata(&staged) {
            Ok(m) if m.is_file() => m,
            _ => return Ok(()),
        };
        if !file_id(&meta).is_some_and(|id| book.linked.contains_key(&id)) {
            return Ok(());
        }
        let copy = beside(&staged, "warden-copy", |tmp| copy_new(&staged, tmp))?;
        fs::rename(&copy, &staged).inspect_err(|_| {
            let _ = fs::remove_file(&copy);
        })
    }

    /// After the agent removed `inner` (or renamed it away, or renamed something over it):
    /// the original there must not show through again.
    pub fn remove(&self, folder: usize, inner: &str) {
        let Ok(f) = self.folder(folder) else { return };
        let mut book = self.lock();
        if !covered(&book.whiteouts, &f.rel, inner) && original_meta(&f.original, inner).is_some() {
            book.whiteouts.insert(workspace_path(&f.rel, inner));
        }
    }

    /// Whether the original at `inner` (or one of its ancestors) was removed by the agent.
    pub fn is_removed(&self, folder: usize, inner: &str) -> bool {
        self.folder(folder)
            .is_ok_and(|f| covered(&self.lock().whiteouts, &f.rel, inner))
    }

    /// The names of the whited-out entries directly inside the directory `inner`.
    pub(crate) fn removed_children(&self, folder: usize, inner: &str) -> Vec<String> {
        let Ok(f) = self.folder(folder) else {
            return Vec::new();
        };
        let dir = workspace_path(&f.rel, inner);
        let prefix = if dir.is_empty() { dir } else { dir + "/" };
        self.lock()
            .whiteouts
            .range(prefix.clone()..)
            .take_while(|w| w.starts_with(&prefix))
            .filter_map(|w| Some(w[prefix.len()..].to_string()).filter(|n| !n.contains('/')))
            .collect()
    }

    /// Whether `file` is an original's inode: changing it would change the workspace.
    ///
    /// # Errors
    ///
    /// When the file's metadata cannot be read.
    pub fn is_original(&self, file: &fs::File) -> io::Result<bool> {
        let meta = file.metadata()?;
        Ok(file_id(&meta).is_some_and(|id| self.lock().linked.contains_key(&id)))
    }

    /// Whether the staged file at `inner` (with `meta`) is still the original hard-linked there:
    /// the agent did not change it.
    pub(crate) fn is_untouched(&self, folder: usize, inner: &str, meta: &fs::Metadata) -> bool {
        let (Ok(f), Some(id)) = (self.folder(folder), file_id(meta)) else {
            return false;
        };
        meta.is_file()
            && self
                .lock()
                .linked
                .get(&id)
                .is_some_and(|p| *p == workspace_path(&f.rel, inner))
    }
}

fn fill(f: &StagedFolder, book: &mut Book, at: &mut Vec<Level>, need: Need) -> io::Result<()> {
    match need {
        Need::Entry => Ok(()),
        Need::Listing => list(f, book, at),
        Need::Tree => tree(f, book, at),
    }
}

/// `inner` joined below `dir` (either may be empty).
pub(crate) fn join(dir: &str, inner: &str) -> String {
    match (dir.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{inner}"),
    }
}

/// The workspace-relative path of `inner` in the folder mounted at `rel`.
pub(crate) fn workspace_path(rel: &str, inner: &str) -> String {
    join(rel, inner)
}

/// Whether `inner` or one of its ancestors is whited out.
fn covered(whiteouts: &BTreeSet<String>, rel: &str, inner: &str) -> bool {
    let mut path = rel.to_string();
    inner.split('/').filter(|c| !c.is_empty()).any(|c| {
        path = join(&path, c);
        whiteouts.contains(&path)
    })
}

/// The original entry at `inner` below `root`, examined one component at a time without
/// following any link; `None` if it does not exist or an ancestor is not a real directory.
pub(crate) fn original_meta(root: &Path, inner: &str) -> Option<fs::Metadata> {
    let mut path = root.to_path_buf();
    let mut meta = fs::symlink_metadata(&path).ok()?;
    for c in inner.split('/').filter(|c| !c.is_empty()) {
        if !meta.is_dir() {
            return None;
        }
        path.push(c);
        meta = fs::symlink_metadata(&path).ok()?;
    }
    Some(meta)
}

/// Copy the regular file `src` to `dest`, which must not exist: the copy is created with
/// `O_EXCL`, so it never writes through a link (or anything else) already at `dest`.
pub(crate) fn copy_new(src: &Path, dest: &Path) -> io::Result<()> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)?;
    let copied = (|| {
        let mut input = fs::File::open(src)?;
        io::copy(&mut input, &mut out)?;
        out.set_permissions(input.metadata()?.permissions())
    })();
    if copied.is_err() {
        let _ = fs::remove_file(dest);
    }
    copied
}

/// Make a new entry beside `path` with `make` (which must fail with `AlreadyExists` when its
/// name is taken), under the first free name `.<name>.<tag><n>`; returns that name. An entry
/// already there is never reused or followed.
pub(crate) fn beside(
    path: &Path,
    tag: &str,
    mut make: impl FnMut(&Path) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    for n in 0..64 {
        let tmp = path.with_file_name(format!(".{name}.{tag}{n}"));
        match make(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
            Ok(()) => return Ok(tmp),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name beside {}", path.display()),
    ))
}

/// (device, inode): what makes two names the same file.
#[cfg(unix)]
pub(crate) fn file_id(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
pub(crate) fn file_id(_: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests;
