//! Finding agents by name: the host configuration's `[agents] dir` holds `<name>.wasm` beside
//! `<name>.toml` (and, where the host requires signatures, `<name>.wasm.sig` and
//! `<name>.toml.sig`). A caller names an agent, never a file: a name is 1 to 64 of `a-z`, `0-9`
//! and `-` (the rule of a policy's `agent.name`), and the policy found under it must be that
//! agent's own (`[agent] name` equal to the name), so no name reaches outside the directory or
//! runs an agent under another's name.
//!
//! An agent is loaded the way `warden run` loads one ([`Runtime::load_policy`] then
//! [`Runtime::load_file`]: signatures checked before anything is parsed or compiled, refusals
//! audited) and kept per name. A lookup compares the stamps of its files with what was
//! loaded — the component and the policy, and each signature the host checked when it loaded
//! them — so an agent added or replaced is picked up without a restart. A stamp is the file's
//! size, modification time and, on Unix, its device, inode and change time: a file replaced by
//! one of the same size whose modification time was preserved (`cp -p`, `rsync -a`, `tar x`) is
//! a new inode or a new change time, which no one can set back. Loads of one name take turns
//! (a lock of [`LOAD_TURNS`], picked by the name's hash): a caller that finds a load of its
//! agent under way waits for it and takes what it kept, rather than loading the agent again —
//! which is what lets a server load its agents at start ([`crate::serve::ServerState::warm`])
//! while its first call arrives. The stamps are compared only when something may have changed
//! (`watch.rs`): inotify watches on the directory's folders and on each loaded agent's files are
//! read at each lookup (one non-blocking `read`), and an agent is stamped again after any event,
//! after [`RESTAT_EVERY`] in any case, and at every lookup where a watch cannot see every change
//! (a folder reached through a symbolic link, a file that is a link, a watch the kernel refused
//! or that died). Stamping is a stat per watched file (two in the common case): the paths are
//! joined once, at the load.

mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use crate::runtime::{LoadedAgent, Runtime};
use watch::{RESTAT_EVERY, Watch};

/// How many locks loads take turns on: two names share one at worst (their loads then wait for
/// each other), and the locks never grow with the names asked for.
const LOAD_TURNS: usize = 16;

/// The agents of one host's `[agents] dir`, loaded on first call and kept per name.
#[derive(Debug)]
pub(crate) struct AgentDirectory {
    dir: PathBuf,
    /// Where the policies are when they are not beside the components (a repository's built
    /// agents: `target/wasm32-wasip2/release/<name>.wasm`, `-` spelled `_`, under
    /// `policies/<name>.toml`).
    policies: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Kept>>,
    /// The turns of loads (see the module's docs).
    turns: [Mutex<()>; LOAD_TURNS],
    /// The watch on its folders, made at the first load (`None` inside: none could be made).
    watch: OnceLock<Option<Watch>>,
}

/// A loaded agent and the stamps of the files it was loaded from.
#[derive(Debug, Clone)]
struct Kept {
    /// Its files, as [`AgentDirectory::files`] names them.
    files: Arc<[PathBuf; 4]>,
    stamps: Stamps,
    /// Which of the four files it depends on (the signatures only where they were checked).
    watched: [bool; 4],
    agent: Arc<LoadedAgent>,
    /// Whether its files can be left to the watch (watched, and `watch::plain`).
    plain: bool,
    /// The watch's epoch when its stamps were last found unchanged, and when that was.
    checked: Option<(u64, Instant)>,
}

/// What tells a file's versions apart, `None` when it does not exist (or is not watched).
type Stamp = Option<FileStamp>;

/// Size and modification time of a file and, on Unix, its device, inode and change time (set by
/// the kernel on every write, rename or `utime`: a replacement that keeps the size and the
/// modification time still changes it or the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Device, inode, change time (seconds, nanoseconds); zeros off Unix.
    node: [i64; 4],
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        let node = {
            use std::os::unix::fs::MetadataExt;
            #[allow(clippy::cast_possible_wrap)]
            [
                meta.dev() as i64,
                meta.ino() as i64,
                meta.ctime(),
                meta.ctime_nsec(),
            ]
        };
        #[cfg(not(unix))]
        let node = [0; 4];
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            node,
        }
    }
}

/// The stamps of an agent's component, policy and their signatures, in that order.
type Stamps = [Stamp; 4];

/// Every file: what a first load stamps before it knows which signatures it will check.
const ALL: [bool; 4] = [true; 4];

/// The rule of an agent name, as a policy's `agent.name` has it: never a path.
pub(crate) fn is_agent_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(warden_policy::is_agent_name_byte)
}

impl AgentDirectory {
    /// The agents in `dir` (read when called, not now).
    pub(crate) fn new(dir: PathBuf) -> Self {
        AgentDirectory {
            dir,
            policies: None,
            loaded: Mutex::new(HashMap::new()),
            turns: std::array::from_fn(|_| Mutex::new(())),
            watch: OnceLock::new(),
        }
    }

    /// A repository's built agents: `components/<name>.wasm` (`-` spelled `_`, as cargo names
    /// them) under `policies/<name>.toml`, kept and checked for changes as a directory's are.
    pub(crate) fn built(components: PathBuf, policies: PathBuf) -> Self {
        AgentDirectory {
            policies: Some(policies),
            ..AgentDirectory::new(components)
        }
    }

    fn files(&self, name: &str) -> [PathBuf; 4] {
        let (wasm, toml) = match &self.policies {
            None => (
                self.dir.join(format!("{name}.wasm")),
                self.dir.join(format!("{name}.toml")),
            ),
            Some(policies) => (
                self.dir.join(format!("{}.wasm", name.replace('-', "_"))),
                policies.join(format!("{name}.toml")),
            ),
        };
        let sig = |p: &PathBuf| {
            let mut s = p.clone().into_os_string();
            s.push(".sig");
            PathBuf::from(s)
        };
        let (wasm_sig, toml_sig) = (sig(&wasm), sig(&toml));
        [wasm, toml, wasm_sig, toml_sig]
    }

    /// Stamp the `watched` files (a stat each: two for an agent whose signatures are not
    /// checked, which is what a call costs in the common case).
    fn stamps(files: &[PathBuf; 4], watched: [bool; 4]) -> Stamps {
        let mut stamps = [None; 4];
        for ((stamp, file), watch) in stamps.iter_mut().zip(files).zip(watched) {
            if watch {
                *stamp = std::fs::metadata(file).ok().as_ref().map(FileStamp::of);
            }
        }
        stamps
    }

    /// The agent `name` as its files are now, if it was loaded from them already.
    ///
    /// # Errors
    ///
    /// Why the name cannot be an agent's (a path, `..`, a capital letter, …).
    pub(crate) fn kept(&self, name: &str) -> Result<Option<Arc<LoadedAgent>>, String> {
        if !is_agent_name(name) {
            return Err(format!(
                "`{}` is not an agent name (1 to 64 of a-z, 0-9, '-', '_'); agents are called by name, never by path",
                name.chars().take(64).collect::<String>()
            ));
        }
        // Read before the stamps are: a change made after this read is the next lookup's event.
        let epoch = self.watch.get().and_then(|w| w.as_ref()?.epoch());
        let kept = {
            let mut loaded = self.lock();
            let Some(kept) = loaded.get_mut(name) else {
                return Ok(None);
            };
            if let (Some(now), Some((then, at))) = (epoch, kept.checked)
                && kept.plain
                && now == then
                && at.elapsed() < RESTAT_EVERY
            {
                return Ok(Some(kept.agent.clone()));
            }
            kept.clone()
        };
        let stamps = Self::stamps(&kept.files, kept.watched);
        if kept.stamps != stamps {
            return Ok(None);
        }
        if let Some(epoch) = epoch
            && let Some(now) = self.lock().get_mut(name)
            && Arc::ptr_eq(&now.agent, &kept.agent)
        {
            now.checked = Some((epoch, Instant::now()));
        }
        Ok(Some(kept.agent))
    }

    /// The watch on the directory's folders, made on first use.
    fn watch(&self) -> Option<&Watch> {
        self.watch
            .get_or_init(|| match &self.policies {
                None => Watch::new(&[&self.dir]),
                Some(policies) => Watch::new(&[&self.dir, policies]),
            })
            .as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Load the agent `name` from its files now, through `runtime`, and keep it. Blocking
    /// (reads, signature checks, maybe a compile): call it off the async workers.
    ///
    /// # Errors
    ///
    /// A sentence saying why it cannot be called: no such agent, a policy or component refused
    /// (the same errors as `warden run`), or a policy for another agent.
    pub(crate) fn load(&self, runtime: &Runtime, name: &str) -> Result<Arc<LoadedAgent>, String> {
        if !is_agent_name(name) {
            return Err(format!("`{name}` is not an agent name"));
        }
        let turn = {
            use std::hash::{BuildHasher, RandomState};
            static HASHER: std::sync::LazyLock<RandomState> =
                std::sync::LazyLock::new(RandomState::new);
            &self.turns[HASHER.hash_one(name) as usize % LOAD_TURNS]
        };
        let _turn = turn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Loaded by the load this one waited for, from the files as they are now.
        if let Ok(Some(agent)) = self.kept(name) {
            return Ok(agent);
        }
        let files = Arc::new(self.files(name));
        let [wasm, toml, ..] = &*files;
        // Watched, then stamped, before reading: a file replaced while it loads is loaded again
        // next time.
        let paths = files.iter().map(PathBuf::as_path).collect::<Vec<_>>();
        let watch = self.watch();
        let files_watched = watch.is_some_and(|w| w.files(&paths));
        let epoch = watch.and_then(Watch::epoch);
        let mut stamps = Self::stamps(&files, ALL);
        if stamps[0].is_none() || stamps[1].is_none() {
            return Err(format!(
                "this host has no agent `{name}` (its agents directory holds no {name}.wasm beside {name}.toml)"
            ));
        }
        let policy = runtime
            .load_policy(toml)
            .map_err(|e| format!("the policy of agent `{name}` is refused: {e}"))?;
        if policy.agent.name != name {
            let place = match &self.policies {
                None => format!("{name}.toml in the agents directory"),
                Some(_) => format!("policies/{name}.toml"),
            };
            return Err(format!(
                "{place} is the policy of agent `{}`, not of `{name}`; an agent is found by its own name",
                policy.agent.name
            ));
        }
        // The agent keeps a host without the directory: the directory keeps the agent, and the
        // agent must not keep the directory (the task tree carries it instead).
        // It reaches the directory weakly, so that as a task's root (a server runs agents of the
        // directory) its calls still find agents there.
        let loader = Runtime {
            agents: None,
            loaded_from: runtime
                .agents
                .as_ref()
                .map(Arc::downgrade)
                .or_else(|| runtime.loaded_from.clone()),
            ..runtime.clone()
        };
        let watched = [
            true,
            true,
            crate::identity::agent_signers(&policy, &runtime.config).is_some(),
            runtime.config.require_signed_policies,
        ];
        for (stamp, watch) in stamps.iter_mut().zip(watched) {
            if !watch {
                *stamp = None;
            }
        }
        let agent = Arc::new(
            loader
                .load_file(wasm, policy)
                .map_err(|e| format!("agent `{name}` cannot be loaded: {e}"))?,
        );
        let plain = files_watched && watch::plain(&paths);
        self.lock().insert(
            name.to_owned(),
            Kept {
                files: files.clone(),
                stamps,
                watched,
                agent: agent.clone(),
                plain,
                checked: epoch.map(|epoch| (epoch, Instant::now())),
            },
        );
        Ok(agent)
    }

    /// Where the agents are.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::{ALL, AgentDirectory, is_agent_name};

    /// A file replaced by one of the same size with its modification time preserved (`cp -p`,
    /// `rsync -a`): in place or by a rename over it, the stamps differ; unchanged, they match.
    #[test]
    fn a_replacement_that_keeps_size_and_mtime_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let directory = AgentDirectory::new(dir.path().to_path_buf());
        let files = directory.files("hello");
        let [wasm, toml, ..] = &files;
        std::fs::write(wasm, b"version-1").unwrap();
        std::fs::write(toml, b"[agent]").unwrap();
        let mtime = std::fs::metadata(wasm).unwrap().modified().unwrap();
        let before = AgentDirectory::stamps(&files, ALL);
        assert!(before[0].is_some() && before[1].is_some() && before[2].is_none());
        assert_eq!(
            AgentDirectory::stamps(&files, ALL),
            before,
            "unchanged files"
        );
        // By a rename over it, the new file's mtime set back to the old one's.
        let new = dir.path().join("new.wasm");
        std::fs::write(&new, b"version-2").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&new, wasm).unwrap();
        let renamed = AgentDirectory::stamps(&files, ALL);
        assert_eq!(renamed[0].unwrap().len, before[0].unwrap().len);
        assert_eq!(renamed[0].unwrap().modified, before[0].unwrap().modified);
        assert_ne!(renamed[0], before[0], "a rename over the component");
        // In place, the mtime set back: the change time moved (sleep past its granularity).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let file = std::fs::File::options().write(true).open(wasm).unwrap();
        std::io::Write::write_all(&mut &file, b"version-3").unwrap();
        file.set_modified(mtime).unwrap();
        drop(file);
        let rewritten = AgentDirectory::stamps(&files, ALL);
        assert_eq!(rewritten[0].unwrap().modified, before[0].unwrap().modified);
        assert_ne!(rewritten[0], renamed[0], "an in-place rewrite");
    }

    #[test]
    fn names_never_paths() {
        for good in [
            "hello",
            "a",
            "tester-2",
            "test_simple_text",
            &"x".repeat(64),
        ] {
            assert!(is_agent_name(good), "{good}");
        }
        for bad in [
            "",
            "../hello",
            "..",
            "a/b",
            "/etc/passwd",
            "Hello",
            "hello.wasm",
            "a\0b",
            "a b",
            "é",
            "%2e%2e",
            &"x".repeat(65),
        ] {
            assert!(!is_agent_name(bad), "{bad:?}");
        }
    }
}
