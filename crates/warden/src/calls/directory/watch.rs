//! What tells the agents directory that its files may have changed, without a stat of each file
//! at every call: inotify watches ([`Watch`]) on its folders (files created, deleted, renamed in
//! or out, written through their name there) and on each loaded agent's files themselves (their
//! contents or attributes changed through any name: a hard link elsewhere is the same file).
//! Each lookup reads the pending events (one non-blocking `read`, where two stats walked two
//! paths); any event moves the watch's epoch, and an agent whose stamps were compared at an
//! older epoch is stamped again.
//!
//! A watch sees what happens to the folders and files it watches, and nothing else, so it is
//! trusted only where that is everything: it is not made for a folder reached through a symbolic
//! link (re-pointing the link is no event in the folder), the directory does not trust it for a
//! file that is itself a link or that could not be watched, and once a watched folder is moved or
//! deleted, or the kernel's event queue overflowed, it is dead and every lookup stats again. What
//! no watched event shows at all — an ancestor folder renamed and replaced, a file system
//! mounted over the directory, a change another machine made on a network or FUSE file system
//! (which reports only the changes made through this kernel) — is seen by the stats the
//! directory still makes every [`RESTAT_EVERY`] per agent. (The MCP server's `mcp/watch` listens
//! to the same kind of events for another end: the names of the agents, awaited on tokio's
//! reactor.)

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

/// How long an agent's stamps are trusted to a live watch before they are compared again anyway.
pub(crate) const RESTAT_EVERY: Duration = Duration::from_secs(1);

/// Inotify watches on the agents directory's folders and its agents' files (see the module
/// docs).
#[derive(Debug)]
pub(crate) struct Watch {
    fd: OwnedFd,
    /// The watch descriptors of the folders (a file's own watch ends with its file, harmlessly).
    folders: Vec<i32>,
    /// Moved by every batch of events read.
    epoch: AtomicU64,
    /// Set once the watch cannot be trusted any more.
    dead: AtomicBool,
    /// One reader of the events at a time (a reader that finds events moves the epoch before
    /// another can read the epoch as it was).
    reading: Mutex<()>,
}

/// Every event of a folder that may mean a file of an agent changed: written, its attributes
/// changed, created, deleted, renamed in or out; and the folder itself moved or deleted.
fn folder_changes() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
}

/// Every event of a file that may mean it changed: written, its attributes or links changed,
/// deleted or renamed.
fn file_changes() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::DONT_FOLLOW
}

/// Events of a folder after which the watch no longer sees the folders the directory names.
fn fatal() -> ReadFlags {
    ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::UNMOUNT
}

impl Watch {
    /// A watch on `folders`, or `None` when one of them is reached through a symbolic link or a
    /// `..`, or the kernel gives no watch (no inotify, its per-user limit reached): then the
    /// directory stats every lookup, as before.
    pub(crate) fn new(folders: &[&Path]) -> Option<Watch> {
        for folder in folders {
            let canonical = std::fs::canonicalize(folder).ok()?;
            if canonical != std::path::absolute(folder).ok()? {
                return None;
            }
        }
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
        let folders = folders
            .iter()
            .map(|folder| inotify::add_watch(&fd, *folder, folder_changes()).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Watch {
            fd,
            folders,
            epoch: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            reading: Mutex::new(()),
        })
    }

    /// Watch `files` themselves, so that a change made through another name of one (a hard link
    /// elsewhere) is an event too. Call it before they are stamped. `false` when one that exists
    /// could not be watched (the kernel's per-user limit of watches): the agent is then stamped
    /// at every lookup.
    pub(crate) fn files(&self, files: &[&Path]) -> bool {
        files.iter().all(
            |file| match inotify::add_watch(&self.fd, *file, file_changes()) {
                Ok(_) | Err(Errno::NOENT) => true,
                Err(_) => false,
            },
        )
    }

    /// The epoch once every pending event is read, or `None` when the watch is dead. Events of
    /// a change made before this call are read by it.
    pub(crate) fn epoch(&self) -> Option<u64> {
        if self.dead.load(Ordering::Acquire) {
            return None;
        }
        let _reading = self
            .reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Room for several events, and at least one with the longest name (16 + 256 bytes).
        let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut changed = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    changed = true;
                    let folder = self.folders.contains(&event.wd());
                    if event.events().contains(ReadFlags::QUEUE_OVERFLOW)
                        || (folder && event.events().intersects(fatal()))
                    {
                        self.dead.store(true, Ordering::Release);
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(_) => {
                    self.dead.store(true, Ordering::Release);
                    break;
                }
            }
        }
        if changed {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        if self.dead.load(Ordering::Acquire) {
            return None;
        }
        Some(self.epoch.load(Ordering::Acquire))
    }
}

/// Whether the files of an agent can be left to a watch: each one that exists is a regular file,
/// not a link (a link re-pointed further along its path would be no event).
pub(crate) fn plain(files: &[&Path]) -> bool {
    files
        .iter()
        .all(|file| match std::fs::symlink_metadata(file) {
            Ok(meta) => meta.file_type().is_file(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> (tempfile::TempDir, Watch) {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        let watch = Watch::new(&[&path]).expect("a watch on a plain folder");
        (dir, watch)
    }

    #[test]
    fn every_kind_of_change_moves_the_epoch_and_nothing_else_does() {
        let (dir, watch) = watched();
        let file = dir.path().join("hello.wasm");
        let quiet = watch.epoch().unwrap();
        assert_eq!(watch.epoch(), Some(quiet), "nothing happened");
        let mut last = quiet;
        let mut moved = |what: &str| {
            let now = watch.epoch().unwrap();
            assert!(now > last, "{what} was not seen");
            assert_eq!(watch.epoch(), Some(now), "{what}: read twice");
            last = now;
        };
        std::fs::write(&file, b"one").unwrap();
        moved("a new file");
        std::fs::write(&file, b"two").unwrap();
        moved("a rewrite in place");
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        moved("a modification time set back");
        let other = dir.path().join("new.wasm");
        std::fs::write(&other, b"three").unwrap();
        std::fs::rename(&other, &file).unwrap();
        moved("a rename over it");
        std::fs::remove_file(&file).unwrap();
        moved("a delete");
        let _ = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(watch.epoch(), Some(last), "a listing is no change");
    }

    #[test]
    fn a_folder_moved_or_deleted_kills_the_watch() {
        let (dir, watch) = watched();
        let gone = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &gone).unwrap();
        assert_eq!(watch.epoch(), None, "moved");
        std::fs::rename(&gone, dir.path()).unwrap();
        assert_eq!(watch.epoch(), None, "a dead watch stays dead");
        let (dir, watch) = watched();
        std::fs::remove_dir(dir.path()).unwrap();
        assert_eq!(watch.epoch(), None, "deleted");
    }

    #[test]
    #[cfg(unix)]
    fn no_watch_through_a_link_no_trust_in_a_linked_file_and_a_file_seen_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let real = base.join("release-1");
        std::fs::create_dir(&real).unwrap();
        let link = base.join("current");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(
            Watch::new(&[&link]).is_none(),
            "a re-pointed link is no event"
        );
        assert!(Watch::new(&[&base.join("release-1/../release-1")]).is_none());
        assert!(Watch::new(&[&real]).is_some());
        let file = real.join("hello.wasm");
        std::fs::write(&file, b"x").unwrap();
        let missing = real.join("hello.wasm.sig");
        assert!(plain(&[&file, &missing]));
        // A second name elsewhere: a write through it is an event of the file's own watch.
        let watch = Watch::new(&[&real]).unwrap();
        assert!(watch.files(&[&file, &missing]));
        let elsewhere = base.join("hello-too.wasm");
        std::fs::hard_link(&file, &elsewhere).unwrap();
        let linked = watch.epoch().unwrap();
        std::fs::write(&elsewhere, b"y").unwrap();
        assert!(
            watch.epoch().unwrap() > linked,
            "a write through another name"
        );
        // The old file replaced: its watch ends with it, the folder's goes on.
        let other = real.join("other.wasm");
        std::fs::write(&other, b"z").unwrap();
        std::fs::rename(&other, &file).unwrap();
        std::fs::remove_file(&elsewhere).unwrap();
        assert!(
            watch.epoch().is_some(),
            "a file's watch ended: not the folder's"
        );
        std::os::unix::fs::symlink(&file, &other).unwrap();
        assert!(!plain(&[&other]), "a link");
    }
}
