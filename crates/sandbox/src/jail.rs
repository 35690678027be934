//! The OS jail: how the host runs a program it does not trust on the host itself — the
//! verification gate's test command (code an agent wrote) and every host tool that runs a
//! command. Built on bubblewrap (`bwrap`): every namespace unshared (network included), the host's
//! `/usr` read-only, a fresh `/proc`, a minimal `/dev`, a private size-bounded `/tmp`, one writable
//! folder at `/workspace`, and nothing else of the host. Under it: rlimits (CPU, address space,
//! processes, file size, open files, no core dumps), an unprivileged uid when the host is root,
//! and, from the host, a wall-clock deadline and a bound on output. Never a fallback that runs a
//! command bare: without a working bubblewrap, [`Jail::locate`] fails and nothing runs.
//!
//! `mounts` builds bubblewrap's arguments, `supervise` starts and watches the process.

mod mounts;
mod supervise;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use mounts::JailBind;

/// The uid and gid a jail runs as when the host runs as root: `nobody`, which owns nothing on
/// the host, so that the process limit (not enforced for root) holds and a file the jail can
/// reach by mistake is only reachable through its "other" permission bits.
pub const JAIL_UID: u32 = 65534;

/// Where `writable` appears inside the jail (also the jail's working directory and `HOME`).
pub const WORKSPACE: &str = "/workspace";

/// The limits of one jailed run.
///
/// Defaults ([`JailLimits::default`]): 60 s of CPU per process, 1 GiB of address space per
/// process, 64 processes, files of at most 64 MiB, 256 open files per process, 1 MiB of
/// stdout + stderr kept, 120 s of wall time, a 64 MiB `/tmp`. Always, whatever the limits: no
/// core dumps, and the lowest CPU priority (nice 19), so the host's own work comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JailLimits {
    /// CPU time per process (`RLIMIT_CPU`): at it the process gets `SIGXCPU`, one second later
    /// `SIGKILL`. Many processes together are bounded by `wall`.
    pub cpu: Duration,
    /// Address space per process, in bytes (`RLIMIT_AS`): past it, allocations fail.
    pub memory: u64,
    /// Processes (and threads) of the jail's user (`RLIMIT_NPROC`); a fork past it fails.
    pub processes: u32,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`): past it, `SIGXFSZ`.
    pub file_size: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Bytes of stdout + stderr kept; one more and the jail is killed ([`JailEnd::OutputLimit`]).
    pub output: usize,
    /// Wall-clock time, enforced by the host: the whole jail is killed at it
    /// ([`JailEnd::WallLimit`]).
    pub wall: Duration,
    /// Size of the private `/tmp` (a tmpfs, which counts against the host's memory), in bytes.
    pub tmp: u64,
}

impl Default for JailLimits {
    fn default() -> Self {
        JailLimits {
            cpu: Duration::from_secs(60),
            memory: 1 << 30,
            processes: 64,
            file_size: 64 << 20,
            open_files: 256,
            output: 1 << 20,
            wall: Duration::from_secs(120),
            tmp: 64 << 20,
        }
    }
}

/// How a jailed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailEnd {
    /// The command exited on its own (its code is [`JailRun::status`]).
    Exited,
    /// The host killed the jail at [`JailLimits::wall`].
    WallLimit,
    /// The host killed the jail when its output passed [`JailLimits::output`].
    OutputLimit,
    /// The command was ended by this signal: `SIGXCPU` (24) is the CPU limit, `SIGXFSZ` (25) the
    /// file-size limit. bubblewrap reports a signal as exit code 128 + n, like a shell, so a
    /// command that exits with such a code on its own reads the same.
    Signalled(i32),
}

impl JailEnd {
    /// The limit the run reached, if any: `"wall"`, `"output"`, `"cpu"` (`SIGXCPU`) or
    /// `"file-size"` (`SIGXFSZ`). The memory and process limits show inside the command (an
    /// allocation or a fork fails), not here; a `SIGKILL` is not attributed to any limit.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            JailEnd::Exited => None,
            JailEnd::WallLimit => Some("wall"),
            JailEnd::OutputLimit => Some("output"),
            JailEnd::Signalled(24) => Some("cpu"),
            JailEnd::Signalled(25) => Some("file-size"),
            JailEnd::Signalled(_) => None,
        }
    }
}

/// The result of one jailed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailRun {
    /// The command's exit code when it exited on its own ([`JailEnd::Exited`]), else `None`.
    pub status: Option<i32>,
    /// How it ended.
    pub ended: JailEnd,
    /// What it wrote to stdout (with `stderr`, at most [`JailLimits::output`] bytes).
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Wall time from start to the end of the last process of the jail.
    pub elapsed: Duration,
}

impl JailRun {
    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.ended == JailEnd::Exited && self.status == Some(0)
    }
}

/// Why the jail could not run a command (the command itself did not run).
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// bubblewrap is not installed.
    #[error(
        "bubblewrap (`bwrap`) is not installed (looked in /usr/bin and PATH); Warden runs test \
         commands and host tools only inside it: install it (`apt-get install bubblewrap`, or \
         `scripts/setup`)"
    )]
    NotInstalled,
    /// bubblewrap is installed but cannot build a sandbox here.
    #[error(
        "bubblewrap ({bwrap}) cannot create a sandbox on this host: {detail}; enable unprivileged \
         user namespaces (`sysctl kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04 and later \
         also `sysctl kernel.apparmor_restrict_unprivileged_userns=0`), or in a container allow \
         them (for Docker, a seccomp profile that permits `unshare`/`clone`)"
    )]
    Unusable {
        /// The bwrap used.
        bwrap: PathBuf,
        /// What the trial run said.
        detail: String,
    },
    /// No command was given.
    #[error("the jail was given an empty command")]
    EmptyCommand,
    /// The writable folder (or a bind) is not usable.
    #[error("cannot prepare {} for the jail: {source}", path.display())]
    Prepare {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// bubblewrap could not be started or watched.
    #[error("cannot run bubblewrap: {0}")]
    Spawn(std::io::Error),
}

/// A located, working bubblewrap and the limits every run gets. Locate it once at start-up
/// ([`Jail::locate`]) and share it: [`Jail::run`] takes `&self` and may run on many threads at
/// once (it blocks; from async code call it in `spawn_blocking`).
#[derive(Debug, Clone)]
pub struct Jail {
    bwrap: PathBuf,
    limits: JailLimits,
    /// The uid (and gid) to drop to before bubblewrap starts: [`JAIL_UID`] when the host is root.
    drop_to: Option<u32>,
}

impl Jail {
    /// Find bubblewrap (`/usr/bin/bwrap`, else the first `bwrap` on `PATH`) and check, with one
    /// trial run of `true` in a throwaway workspace, that it can build the jail on this host.
    ///
    /// # Errors
    ///
    /// [`JailError::NotInstalled`] or [`JailError::Unusable`], each saying what to install or
    /// enable. There is no fallback that runs commands without the jail.
    pub fn locate(limits: JailLimits) -> Result<Jail, JailError> {
        let bwrap = find_bwrap().ok_or(JailError::NotInstalled)?;
        let drop_to = rustix::process::geteuid().is_root().then_some(JAIL_UID);
        let jail = Jail {
            bwrap,
            limits,
            drop_to,
        };
        let trial = JailLimits {
            wall: Duration::from_secs(20),
            ..limits
        };
        let probe = Jail {
            limits: trial,
            ..jail.clone()
        };
        let dir = tempfile::tempdir().map_err(|e| JailError::Prepare {
            path: std::env::temp_dir(),
            source: e,
        })?;
        let unusable = |detail: String| JailError::Unusable {
            bwrap: jail.bwrap.clone(),
            detail,
        };
        let run = probe
            .run(&["true".to_owned()], dir.path(), b"")
            .map_err(|e| unusable(e.to_string()))?;
        if !run.success() {
            let said = String::from_utf8_lossy(&run.stderr);
            return Err(unusable(format!(
                "a trial run ended {:?} with status {:?}: {}",
                run.ended,
                run.status,
                said.trim().escape_debug()
            )));
        }
        Ok(jail)
    }

    /// The bubblewrap this jail runs.
    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    /// The limits every run gets.
    pub fn limits(&self) -> &JailLimits {
        &self.limits
    }

    /// The same jail with other limits (no new trial run: the host is the same).
    pub fn with_limits(&self, limits: JailLimits) -> Jail {
        Jail {
            limits,
            ..self.clone()
        }
    }

    /// Run `command` (no shell: the program and its arguments; a bare name is looked up in the
    /// jail's `PATH`) in the jail, `writable` mounted at [`WORKSPACE`] (its working directory and
    /// `HOME`), `stdin` on its standard input. Blocks until the last process of the jail has
    /// ended.
    ///
    /// Environment: only `PATH=/usr/local/bin:/usr/bin:/bin`, `HOME=/workspace`, `LANG=C.UTF-8`.
    ///
    /// When the host runs as root, the tree under `writable` is first given to [`JAIL_UID`] (so
    /// the unprivileged jail can write it): pass a throwaway copy, never a folder whose owners
    /// matter — the verification gate runs on a copy of the staged workspace.
    ///
    /// # Errors
    ///
    /// [`JailError`] when the command could not be started in the jail. A command that fails, or
    /// is killed at a limit, is an `Ok` [`JailRun`] that says so.
    pub fn run(
        &self,
        command: &[String],
        writable: &Path,
        stdin: &[u8],
    ) -> Result<JailRun, JailError> {
        self.run_with(command, writable, stdin, &[])
    }

    /// [`Jail::run`] with more of the host visible: each [`JailBind`] mounts one host path at the
    /// same path inside, read-only unless it says writable (the only ambient authority a caller
    /// can add; host tools use it for their executable and their configured `writable` folders).
    ///
    /// # Errors
    ///
    /// As [`Jail::run`]; also [`JailError::Prepare`] when a bind's path does not exist.
    pub fn run_with(
        &self,
        command: &[String],
        writable: &Path,
        stdin: &[u8],
        binds: &[JailBind],
    ) -> Result<JailRun, JailError> {
        if command.first().is_none_or(|c| c.is_empty()) {
            return Err(JailError::EmptyCommand);
        }
        let prepare = |path: &Path, source| JailError::Prepare {
            path: path.to_owned(),
            source,
        };
        if !writable.is_dir() {
            return Err(prepare(
                writable,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            ));
        }
        for b in binds {
            std::fs::symlink_metadata(&b.path).map_err(|e| prepare(&b.path, e))?;
            if self.drop_to.is_some() {
                mounts::reachable_by_others(&b.path).map_err(|(path, e)| prepare(&path, e))?;
            }
        }
        if let Some(uid) = self.drop_to {
            mounts::give_tree(writable, uid).map_err(|(path, e)| prepare(&path, e))?;
        }
        let args = mounts::arguments(&self.limits, command, writable, binds);
        supervise::run(&self.bwrap, &args, &self.limits, self.drop_to, stdin)
    }
}

/// `/usr/bin/bwrap`, else the first executable `bwrap` on `PATH`.
fn find_bwrap() -> Option<PathBuf> {
    let standard = PathBuf::from("/usr/bin/bwrap");
    if is_executable(&standard) {
        return Some(standard);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_absolute() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
