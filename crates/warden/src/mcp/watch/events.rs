//! The kernel's word that an agents folder changed: one inotify instance (`inotify(7)`, through
//! rustix) watching each folder for entries created, removed or renamed, its descriptor on
//! tokio's reactor. Which entries changed is not kept: any event means "list again". A folder
//! that cannot be watched (missing, unreadable, or no inotify instance left for this user) is
//! tried again at each [`FolderEvents::rewatch`]; until then only the poll notices changes.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use tokio::io::unix::AsyncFd;

/// What is watched in a folder: entries appearing, disappearing or renamed (a component or a
/// policy copied in, removed, or moved in and out), and the folder itself going away.
fn watched() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

/// Events of a set of folders.
pub(super) struct FolderEvents {
    /// The inotify instance; `None` when none could be made (then only the poll works).
    fd: Option<AsyncFd<OwnedFd>>,
    folders: Vec<PathBuf>,
    /// Each folder's watch descriptor, when it is watched.
    watches: Vec<Option<i32>>,
}

impl FolderEvents {
    /// Watch `folders` (those that can be watched now).
    pub(super) fn new(folders: &[PathBuf]) -> Self {
        let fd = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
            Ok(fd) => on_reactor(fd),
            Err(e) => {
                tracing::warn!(error = %e, "no inotify instance: the agents folder is polled only");
                None
            }
        };
        let mut events = FolderEvents {
            fd,
            folders: folders.to_vec(),
            watches: vec![None; folders.len()],
        };
        events.rewatch();
        events
    }

    /// Watch again the folders not watched (missing before, or gone and back since).
    pub(super) fn rewatch(&mut self) {
        let Some(fd) = &self.fd else {
            return;
        };
        for (folder, watch) in self.folders.iter().zip(&mut self.watches) {
            if watch.is_none() {
                *watch = inotify::add_watch(fd.get_ref(), folder, watched()).ok();
            }
        }
    }

    /// Wait for the next event (forever when nothing is watched, or the instance broke: then
    /// the poll alone notices changes).
    pub(super) async fn changed(&mut self) {
        let FolderEvents { fd, watches, .. } = self;
        let Some(fd) = fd.as_ref() else {
            return std::future::pending().await;
        };
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return std::future::pending().await;
            };
            let (any, stopped) = read_queued(ready.get_inner(), watches);
            if stopped == Errno::WOULDBLOCK {
                ready.clear_ready();
            } else if stopped != Errno::INTR && !any {
                tracing::warn!(error = %stopped, "the agents folder's inotify instance cannot be read: polled only");
                return std::future::pending().await;
            }
            if any {
                return;
            }
        }
    }

    /// Read every event queued (the rest of a burst, once it settled).
    pub(super) fn drain(&mut self) {
        if let Some(fd) = &self.fd {
            read_queued(fd.get_ref(), &mut self.watches);
        }
    }
}

/// The inotify instance `fd` on tokio's reactor (`None`, said in the log, when it cannot be).
#[allow(unsafe_code)]
fn on_reactor(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, an open descriptor no one else holds: it stays open and
    // names the same inotify instance until the `AsyncFd` is dropped, and `as_raw_fd` always
    // returns it.
    match unsafe { AsyncFd::register(fd) } {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(error = %e, "inotify not on the reactor: the agents folder is polled only");
            None
        }
    }
}

/// Read the events queued on `fd` until none is left (`WOULDBLOCK`) or reading fails: whether
/// any was read, and the error that stopped it. A folder whose watch ended (removed, moved
/// away, unmounted) is marked unwatched in `watches`, to be watched again at the next
/// [`FolderEvents::rewatch`].
fn read_queued(fd: &OwnedFd, watches: &mut [Option<i32>]) -> (bool, Errno) {
    // Room for at least one event with the longest name (NAME_MAX is 255).
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    let gone = ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF;
    let mut any = false;
    loop {
        match reader.next() {
            Ok(event) => {
                any = true;
                if !event.events().intersects(gone) {
                    continue;
                }
                let wd = event.wd();
                for watch in watches.iter_mut().filter(|w| **w == Some(wd)) {
                    // A folder moved away keeps its watch: drop it, so that the folder now at
                    // the path is the one watched. Already dropped (IGNORED): nothing to do.
                    let _ = inotify::remove_watch(fd, wd);
                    *watch = None;
                }
            }
            Err(stopped) => return (any, stopped),
        }
    }
}
