//! What the jail sees: bubblewrap's arguments (namespaces, mounts, environment) and the
//! preparation of the writable folder (given to the jail's user when the host is root).

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{JailLimits, WORKSPACE};

/// One more host path visible in the jail, at the same path. Read-only unless `writable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailBind {
    /// The host path (absolute).
    pub path: PathBuf,
    /// Whether the jail may write under it.
    pub writable: bool,
}

impl JailBind {
    /// `path`, read-only.
    pub fn read_only(path: impl Into<PathBuf>) -> Self {
        JailBind {
            path: path.into(),
            writable: false,
        }
    }

    /// `path`, writable.
    pub fn writable(path: impl Into<PathBuf>) -> Self {
        JailBind {
            path: path.into(),
            writable: true,
        }
    }
}

/// The environment inside: nothing of the host's.
pub(super) const ENVIRONMENT: [(&str, &str); 3] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", WORKSPACE),
    ("LANG", "C.UTF-8"),
];

/// bubblewrap's arguments for one run (everything after the program's name).
///
/// Namespaces: all of them (user, mount, pid, network, ipc, uts, cgroup), and no new user
/// namespace inside. Mounts: `/usr` read-only with the merged-`/usr` links `/bin`, `/sbin`,
/// `/lib`, `/lib64`; a fresh `/proc` (of the jail's own pid namespace); bubblewrap's minimal
/// `/dev` (null, zero, full, random, urandom, tty, pts, shm); a private tmpfs `/tmp` of
/// `limits.tmp` bytes; `writable` at [`WORKSPACE`]; then `binds`. No `/etc`, `/home`, `/root`,
/// `/var`, `/run`: Python and POSIX tools start without them.
pub(super) fn arguments(
    limits: &JailLimits,
    command: &[String],
    writable: &Path,
    binds: &[JailBind],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&[
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        &limits.tmp.to_string(),
        "--tmpfs",
        "/tmp",
        "--clearenv",
    ]);
    for (k, v) in ENVIRONMENT {
        push(&["--setenv", k, v]);
    }
    a.push("--bind".into());
    a.push(writable.into());
    a.push(WORKSPACE.into());
    for b in binds {
        a.push(if b.writable { "--bind" } else { "--ro-bind" }.into());
        a.push(b.path.clone().into());
        a.push(b.path.clone().into());
    }
    // The root is bubblewrap's own tmpfs: read-only, so that nothing but /tmp and the
    // workspace takes a write.
    a.extend(["--remount-ro", "/", "--chdir", WORKSPACE].map(OsString::from));
    a.push("--".into());
    a.extend(command.iter().map(OsString::from));
    a
}

/// Give every file and folder under `root` (links themselves, never their targets) to `uid`
/// (and the same gid), so that the unprivileged jail can write its workspace, after checking
/// that `uid` can reach `root` at all.
///
/// # Errors
///
/// The path that could not be reached or changed, and why.
pub(super) fn give_tree(root: &Path, uid: u32) -> Result<(), (PathBuf, io::Error)> {
    reachable_by_others(root)?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| (path.clone(), e))?;
        if meta.uid() != uid || meta.gid() != uid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid))
                .map_err(|e| (path.clone(), e))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| (path.clone(), e))? {
                stack.push(entry.map_err(|e| (path.clone(), e))?.path());
            }
        }
    }
    Ok(())
}

/// Every folder above `path` must be searchable by others: bubblewrap opens the mount sources
/// as the jail's user, before any namespace.
pub(super) fn reachable_by_others(path: &Path) -> Result<(), (PathBuf, io::Error)> {
    let full = std::fs::canonicalize(path).map_err(|e| (path.to_path_buf(), e))?;
    for dir in full.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| (dir.to_path_buf(), e))?;
        if meta.mode() & 0o001 == 0 {
            return Err((
                dir.to_path_buf(),
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the jail's user (uid {}) cannot pass through it to reach {}: make every \
                         folder above it searchable by others (chmod o+x) or use a folder under \
                         the system's temporary folder",
                        super::JAIL_UID,
                        path.display()
                    ),
                ),
            ));
        }
    }
    Ok(())
}
