//! The file capability's checkpoint: every call that names a path passes [`GatedFsView::guard`]
//! before it is delegated. A path is judged twice, as written and as the kernel will walk it:
//! - as written ([`FsScope::resolve`]): an absolute path, a NUL byte or a `..` that climbs out
//!   of the folder kills;
//! - as walked ([`resolve::name`]), from the open directory it is named from, following symlinks
//!   and applying `..` to where the walk really is: leaving the mount kills with the same
//!   out-of-scope reason, whichever way it was tried (`..`, `link/..`, a chain of links, a link
//!   to `..`, an absolute link); the entry reached, and what a link there points at, must be
//!   granted for the access.
//!
//! On a writable mount the walk materializes what it reaches in the staging folder (see
//! [`super::overlay`]), so the kernel then finds what the workspace has. A walk is bounded (see
//! [`resolve`]) and its CPU is the task's: the host checks the task's CPU limit after every call.

use std::io;
use std::sync::Arc;

use wasmtime_wasi::p2::FsError;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;

use super::host::{FsState, GatedFsView};
use super::overlay::{Need, Overlay, Staged, join};
use super::resolve::{self, Kind, MAX_PATH_BYTES, Named, Plain, Stop};
use super::scope::{Access, MountPoint};
use crate::gate::{KillReason, Violation};

/// How a call uses the path it names.
#[derive(Debug, Clone, Copy)]
pub(super) struct Use {
    /// Read or write.
    pub access: Access,
    /// Whether the path names a folder, when the call says so (a new folder, `directory`).
    pub dir_hint: Option<bool>,
    /// What of the workspace the overlay must stage before the call.
    pub need: Need,
}

impl Use {
    pub fn read() -> Self {
        Use {
            access: Access::Read,
            dir_hint: None,
            need: Need::Entry,
        }
    }

    pub fn write() -> Self {
        Use {
            access: Access::Write,
            ..Use::read()
        }
    }

    pub fn dir(mut self, is_dir: bool) -> Self {
        self.dir_hint = Some(is_dir);
        self
    }

    pub fn needs(mut self, need: Need) -> Self {
        self.need = need;
        self
    }
}

/// A path the gate allowed.
pub(super) struct Guarded {
    /// The mount it is in.
    pub mount: MountPoint,
    /// The entry it names (last component not followed), mount-relative.
    pub entry: String,
    /// Where a link there leads (or the entry itself), mount-relative.
    pub target: Option<String>,
    /// Where it was staged (only on a writable mount served through the overlay).
    spot: Option<Spot>,
}

impl Guarded {
    /// The guest path of what a descriptor opened at this path refers to.
    pub fn guest(&self) -> String {
        let inner = self.target.as_deref().unwrap_or(&self.entry);
        format!("/{}", join(&self.mount.rel, inner))
    }

    /// Before the call changes the file: give it its own copy if it is still the workspace's
    /// (the entry the path names, or with `follow` what a link there points at).
    pub fn copy_up(&self, follow: bool) -> io::Result<()> {
        let Some(spot) = &self.spot else {
            return Ok(());
        };
        let path = if follow {
            &spot.staged.target
        } else {
            &spot.staged.entry
        };
        match path {
            Some(p) => spot.overlay.copy_up(spot.folder, p),
            None => Ok(()),
        }
    }

    /// After the call removed the entry or renamed it away (or renamed something over it).
    pub fn removed(&self) {
        if let Some(spot) = &self.spot
            && let Some(p) = &spot.staged.entry
        {
            spot.overlay.remove(spot.folder, p);
        }
    }
}

/// Where a guarded path was staged.
struct Spot {
    overlay: Arc<Overlay>,
    folder: usize,
    staged: Staged,
}

impl FsState {
    /// The overlay folder a writable mount is served from, if any.
    pub(super) fn staging(&self, mount: &MountPoint) -> Option<(Arc<Overlay>, usize)> {
        let overlay = self.overlay.as_ref().filter(|_| mount.writable)?;
        Some((overlay.clone(), overlay.folder_of(&mount.rel)?))
    }
}

/// `guest` (a guest folder path inside `mount`) relative to the mount's root.
fn inner_of<'a>(mount: &MountPoint, guest: &'a str) -> &'a str {
    guest
        .strip_prefix(mount.guest.as_str())
        .unwrap_or(guest)
        .trim_start_matches('/')
}

impl GatedFsView<'_> {
    /// Kill the instance: `detail` names what was tried.
    pub(super) fn deny(&self, detail: String) -> FsError {
        FsError::trap(
            self.kill
                .kill(Violation::new(KillReason::OutOfScope, "fs", detail)),
        )
    }

    /// After a call that may have worked for long on the guest's behalf: stop it at its CPU
    /// limit right there rather than at its next epoch tick.
    pub(super) fn metered<T>(&self, result: Result<T, FsError>) -> Result<T, FsError> {
        self.cpu.check(self.kill).map_err(FsError::trap)?;
        result
    }

    /// A walk that stopped: an escape kills, anything else is the error the kernel would give.
    fn stopped(&self, stop: Stop, path: &str, mount: &MountPoint) -> FsError {
        if stop.escapes() {
            return self.deny(stop.describe(path, &mount.guest));
        }
        match stop {
            Stop::TooLong => ErrorCode::NameTooLong.into(),
            Stop::Loop => ErrorCode::Loop.into(),
            Stop::NotFound => ErrorCode::NoEntry.into(),
            Stop::NotADirectory => ErrorCode::NotDirectory.into(),
            Stop::Unreadable => ErrorCode::IllegalByteSequence.into(),
            Stop::Io(e) => e.into(),
            Stop::ClimbsOut { .. } | Stop::Absolute { .. } => ErrorCode::Access.into(),
        }
    }

    /// Walk `path` from the open folder `base` inside `mount`, staging what the walk reaches.
    fn walk(&self, mount: &MountPoint, base: &str, path: &str) -> Result<Named, Stop> {
        let base = inner_of(mount, base);
        match self.state.staging(mount) {
            Some((overlay, folder)) => overlay.walk(folder, |t| resolve::name(t, base, path))?,
            None => resolve::name(&mut Plain { root: &mount.host }, base, path),
        }
    }

    /// Decide one path-naming operation, staging what it needs first.
    ///
    /// A refusal kills the instance before the guest sees anything of what was staged.
    pub(super) async fn guard(
        &mut self,
        fd: u32,
        path: &str,
        how: Use,
    ) -> Result<Guarded, FsError> {
        let started = std::time::Instant::now();
        let Some(base) = self.state.paths.get(&fd).cloned() else {
            return Err(self.deny(format!(
                "`{}` named from a descriptor that is not a granted folder",
                path.escape_debug()
            )));
        };
        if path.len() > MAX_PATH_BYTES {
            return Err(ErrorCode::NameTooLong.into());
        }
        let mount = match self.state.scope.resolve(&base, path) {
            Ok((_, mount)) => mount.clone(),
            Err(why) => return Err(self.deny(why)),
        };
        let named = self
            .walk(&mount, &base, path)
            .map_err(|stop| self.stopped(stop, path, &mount))?;
        let rel = |inner: &str| join(&mount.rel, inner);
        let (entry, entry_kind) = &named.entry;
        let scope = &self.state.scope;
        let is_dir = how.dir_hint.unwrap_or(*entry_kind == Kind::Dir);
        scope
            .decide(how.access, &rel(entry), is_dir)
            .map_err(|why| self.deny(why))?;
        if let Some((target, kind)) = &named.target
            && target != entry
            && let Err(why) = scope.decide(how.access, &rel(target), *kind == Kind::Dir)
        {
            return Err(self.deny(format!(
                "`{}` is a symlink to `{}`: {why}",
                rel(entry),
                rel(target)
            )));
        }
        let staging = self.state.staging(&mount);
        // A renamed link moves as a link: only a real folder brings its subtree.
        let fills = how.need == Need::Listing || *entry_kind == Kind::Dir;
        if let (Some((overlay, folder)), Some(mut w), true) = (&staging, named.dir.clone(), fills)
            && how.need != Need::Entry
        {
            let (overlay, folder, need) = (overlay.clone(), *folder, how.need);
            let account = self.cpu.account.clone();
            tokio::task::spawn_blocking(move || {
                account.charge(|| overlay.fill(folder, &mut w.at, need))
            })
            .await
            .map_err(io::Error::other)??;
        }
        tracing::trace!(target: "warden::gate", capability = "fs", path = %rel(entry), access = ?how.access, "allowed");
        let mode = match how.access {
            Access::Read => "read",
            Access::Write => "write",
        };
        self.kill.record(
            "fs",
            &format!("{mode} {}", rel(entry)),
            "allowed",
            started.elapsed(),
        );
        let target = named.target.map(|(t, _)| t);
        Ok(Guarded {
            spot: staging.map(|(overlay, folder)| Spot {
                overlay,
                folder,
                staged: Staged {
                    entry: Some(entry.clone()),
                    target: target.clone(),
                },
            }),
            entry: entry.clone(),
            target,
            mount,
        })
    }

    /// Stage the listing of the open folder `fd` (a writable mount served through the overlay).
    pub(super) async fn stage_listing(&mut self, fd: u32) -> Result<(), FsError> {
        let Some(base) = self.state.paths.get(&fd).cloned() else {
            return Ok(());
        };
        let Ok((_, mount)) = self.state.scope.resolve(&base, "") else {
            return Ok(());
        };
        let mount = mount.clone();
        let Some((overlay, folder)) = self.state.staging(&mount) else {
            return Ok(());
        };
        let named = self
            .walk(&mount, &base, "")
            .map_err(|stop| self.stopped(stop, "", &mount))?;
        let Some(mut w) = named.dir else {
            return Ok(());
        };
        let account = self.cpu.account.clone();
        tokio::task::spawn_blocking(move || {
            account.charge(|| overlay.fill(folder, &mut w.at, Need::Listing))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(())
    }

    /// The symlink `link` (just guarded, not yet made) may point at `target` only if the target,
    /// walked from the folder that will hold the link, stays in the mount and is readable.
    pub(super) fn check_link_target(&self, link: &Guarded, target: &str) -> Result<(), FsError> {
        if target.len() > MAX_PATH_BYTES {
            return Err(ErrorCode::NameTooLong.into());
        }
        let mount = &link.mount;
        let holder = link.entry.rsplit_once('/').map_or("", |(dir, _)| dir);
        let holder_guest = format!("/{}", join(&mount.rel, holder));
        let what = |why: String| {
            format!(
                "symlink `{}` -> `{}`: {why}",
                join(&mount.rel, &link.entry),
                target.escape_debug()
            )
        };
        // As written, then as walked.
        let (written, _) = self
            .state
            .scope
            .resolve(&holder_guest, target)
            .map_err(|why| self.deny(what(why)))?;
        let walked = match self.walk(mount, &holder_guest, target) {
            Ok(named) => named.target.map(|(t, kind)| (join(&mount.rel, &t), kind)),
            Err(stop) if stop.escapes() => {
                return Err(self.deny(what(stop.describe(target, &mount.guest))));
            }
            // A link that cannot be walked to its end yet (dangling, or through what does not
            // exist) is judged as written; using it is walked and judged again.
            Err(_) => None,
        };
        let readable = |rel: &str, kind: Option<Kind>| match kind {
            Some(kind) => self
                .state
                .scope
                .allows(Access::Read, rel, kind == Kind::Dir),
            None => {
                self.state.scope.allows(Access::Read, rel, false)
                    || self.state.scope.allows(Access::Read, rel, true)
            }
        };
        let (rel, kind) = match &walked {
            Some((rel, kind)) if *kind != Kind::Missing => (rel.as_str(), Some(*kind)),
            Some((rel, _)) => (rel.as_str(), None),
            None => (written.as_str(), None),
        };
        if !readable(rel, kind) {
            return Err(self.deny(what(format!(
                "it points at `{rel}`, which the policy does not grant"
            ))));
        }
        Ok(())
    }
}
