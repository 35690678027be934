//! One task's view of the memory ([`TaskMemory`], the sandbox's [`MemoryAccess`]): whom it reads
//! and writes for (the task's user), who writes (agent and task, kept with every version), how
//! long a write lives (the host's horizon, or a shorter ttl), the filter every write passes, and
//! an observer the host turns into audit records (`memory-write`, `memory-refused` naming the
//! rule — never the text).
//!
//! A write is filtered alone and joined with what the same agent wrote before: the task's
//! earlier writes (at most 64) and its newest 16 writes to the namespace in other tasks, so a
//! secret split into pieces — in one task or across several — is refused at its last piece.
//! Pieces written by different agents, or interleaved with more than 16 other writes, are out
//! of its reach: the filter raises the cost of smuggling, it does not make it impossible.
//!
//! The sandbox's gate has already decided that the agent and the user may use the namespace;
//! everything here happens after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use warden_identity::secrets::SecretStore;
use warden_sandbox::capabilities::memory::{MemoryAccess, MemoryEntry, MemoryWrite};

use super::filter::Candidate;
use super::store::{Change, Memory, NewVersion, now_ms};
use super::{MemoryError, Version};

/// Most writes one task may make.
pub const MAX_WRITES: usize = 256;
/// How many of a task's earlier writes the filter joins with a new one.
const REMEMBERED: usize = 64;
/// How many of the agent's newest writes to the namespace in other tasks it joins too.
const RECENT_ELSEWHERE: usize = 16;

/// What the host learns of each write, for its audit log. Holds no text.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum MemoryEvent<'a> {
    /// A version was stored.
    Written {
        /// Its namespace.
        namespace: &'a str,
        /// Its key (it passed the filter).
        key: &'a str,
        /// Its version.
        version: u32,
        /// Readable by every user.
        general: bool,
        /// When it expires (ms since the Unix epoch).
        expires_ms: u64,
        /// The text's length in bytes.
        bytes: usize,
    },
    /// A write was refused: by the filter (`rule` names it, `found` says where) or for a bound
    /// (`rule` is `bounds`). The key is not named: it may be what the filter refused.
    Refused {
        /// Its namespace.
        namespace: &'a str,
        /// The rule.
        rule: &'a str,
        /// Where the rule fired.
        found: String,
    },
}

impl MemoryEvent<'_> {
    /// The audit record's kind: `memory-write` or `memory-refused`.
    pub fn kind(&self) -> &'static str {
        match self {
            MemoryEvent::Written { .. } => "memory-write",
            MemoryEvent::Refused { .. } => "memory-refused",
        }
    }
}

/// Called with every write and refusal, as it happens.
pub type MemoryObserver = Arc<dyn Fn(&MemoryEvent<'_>) + Send + Sync>;

/// Who a task is, as the memory needs it.
pub struct MemoryScope {
    /// The user the task acts for (the token's subject; `-` without one): whose entries it sees
    /// and whom its writes belong to.
    pub user: String,
    /// The agent (kept with every version it writes).
    pub agent: String,
    /// The task (kept with every version it writes).
    pub task: u64,
    /// The host's horizon (`[memory] horizon`): the longest any write lives unless pinned.
    pub horizon: Duration,
    /// The host's secrets: a write holding one is refused.
    pub secrets: Arc<SecretStore>,
    /// Told of every write and refusal.
    pub observer: Option<MemoryObserver>,
}

/// One task's memory.
pub struct TaskMemory {
    memory: Arc<Memory>,
    scope: MemoryScope,
    /// The texts this task wrote, oldest first (at most [`REMEMBERED`]), and how many writes.
    written: Mutex<(Vec<String>, usize)>,
}

impl std::fmt::Debug for TaskMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMemory")
            .field("agent", &self.scope.agent)
            .field("task", &self.scope.task)
            .finish()
    }
}

impl TaskMemory {
    /// The view of `memory` of the task `scope` describes.
    pub fn new(memory: Arc<Memory>, scope: MemoryScope) -> TaskMemory {
        TaskMemory {
            memory,
            scope,
            written: Mutex::new((Vec::new(), 0)),
        }
    }

    fn tell(&self, event: &MemoryEvent<'_>) {
        if let Some(observer) = &self.scope.observer {
            observer(event);
        }
    }

    fn refused(&self, namespace: &str, rule: &str, found: String) {
        self.tell(&MemoryEvent::Refused {
            namespace,
            rule,
            found,
        });
    }

    /// Store `w` for this task, or say why not.
    ///
    /// # Errors
    ///
    /// [`MemoryError`]: `Invalid` (a bound), `Refused` (the filter), `Filter`, `Store`.
    pub fn write(&self, w: &MemoryWrite) -> Result<u32, MemoryError> {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let horizon = u64::try_from(self.scope.horizon.as_millis()).unwrap_or(u64::MAX);
        let lifetime = match w.ttl_secs {
            None => Ok(horizon),
            Some(0) => Err(MemoryError::Invalid("a ttl is at least 1 second".into())),
            Some(s) => Ok(s.saturating_mul(1000).min(horizon)),
        };
        let now = now_ms();
        let version = NewVersion {
            namespace: &w.namespace,
            key: &w.key,
            change: Change::Write,
            text: &w.text,
            tags: &w.tags,
            owner: &self.scope.user,
            general: w.general,
            written_ms: now,
            expires_ms: lifetime.as_ref().ok().map(|l| now.saturating_add(*l)),
            pinned: false,
            agent: &self.scope.agent,
            task: Some(self.scope.task),
        };
        let checked = lifetime.and_then(|_| {
            if written.1 >= MAX_WRITES {
                return Err(MemoryError::Invalid(format!(
                    "a task may write at most {MAX_WRITES} entries"
                )));
            }
            super::store::check_version(&version)
        });
        if let Err(e) = checked {
            self.refused(&w.namespace, "bounds", e.to_string());
            return Err(e);
        }
        let candidate = Candidate {
            key: &w.key,
            tags: &w.tags,
            text: &w.text,
        };
        let filter = self.memory.filter().inspect_err(|e| {
            self.refused(&w.namespace, "filter-unavailable", e.to_string());
        })?;
        let mut earlier = self.memory.recent_writes(
            &w.namespace,
            &self.scope.agent,
            self.scope.task,
            RECENT_ELSEWHERE,
        )?;
        earlier.extend(written.0.iter().cloned());
        if let Err(refusal) = filter.check_write(candidate, &earlier, &self.scope.secrets) {
            self.refused(&w.namespace, &refusal.rule, refusal.found.to_string());
            return Err(MemoryError::Refused(refusal));
        }
        let number = self.memory.write(&version)?;
        written.1 += 1;
        written.0.push(w.text.clone());
        if written.0.len() > REMEMBERED {
            written.0.remove(0);
        }
        self.tell(&MemoryEvent::Written {
            namespace: &w.namespace,
            key: &w.key,
            version: number,
            general: w.general,
            expires_ms: version.expires_ms.unwrap_or(0),
            bytes: w.text.len(),
        });
        Ok(number)
    }
}

impl MemoryAccess for TaskMemory {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<MemoryEntry>, String> {
        self.memory
            .get(namespace, key, &self.scope.user, now_ms())
            .map(|v| v.map(Version::into_entry))
            .map_err(|e| e.to_string())
    }

    fn list(&self, namespace: &str, tag: Option<&str>) -> Result<Vec<MemoryEntry>, String> {
        // No stored tag is longer, or holds a control character: such a tag finds nothing.
        if tag.is_some_and(|t| t.len() > super::store::MAX_TAG || t.chars().any(char::is_control)) {
            return Ok(Vec::new());
        }
        self.memory
            .list(
                namespace,
                &self.scope.user,
                tag,
                now_ms(),
                super::store::MAX_LIST,
            )
            .map(|vs| vs.into_iter().map(Version::into_entry).collect())
            .map_err(|e| e.to_string())
    }

    fn put(&self, write: MemoryWrite) -> Result<u32, String> {
        self.write(&write).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Arc<Mutex<Vec<String>>>;

    fn task(memory: &Arc<Memory>, user: &str, horizon: Duration) -> (TaskMemory, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let observer: MemoryObserver = Arc::new(move |e: &MemoryEvent<'_>| {
            log.lock().unwrap().push(format!(
                "{} {}",
                e.kind(),
                serde_json::to_string(e).unwrap()
            ));
        });
        let scope = MemoryScope {
            user: user.into(),
            agent: "curator".into(),
            task: 42,
            horizon,
            secrets: Arc::default(),
            observer: Some(observer),
        };
        (TaskMemory::new(memory.clone(), scope), seen)
    }

    fn write(key: &str, text: &str, ttl_secs: Option<u64>, general: bool) -> MemoryWrite {
        MemoryWrite {
            namespace: "lessons".into(),
            key: key.into(),
            text: text.into(),
            tags: vec![],
            ttl_secs,
            general,
        }
    }

    #[test]
    fn writes_are_the_users_filtered_bounded_and_observed() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::open(dir.path()).unwrap());
        let hour = Duration::from_secs(3600);
        let (alice, seen) = task(&memory, "alice", hour);
        let (bob, _) = task(&memory, "bob", hour);
        assert_eq!(
            alice.put(write("k", "retry with jitter", None, false)),
            Ok(1)
        );
        assert_eq!(alice.get("lessons", "k").unwrap().unwrap().version, 1);
        assert_eq!(bob.get("lessons", "k"), Ok(None));
        assert!(bob.list("lessons", None).unwrap().is_empty());
        assert_eq!(alice.put(write("g", "for everyone", None, true)), Ok(1));
        assert_eq!(bob.list("lessons", None).unwrap().len(), 1);
        // A ttl longer than the horizon is capped by it; a ttl of 0 is refused.
        alice.put(write("t", "x", Some(10 * 3600), false)).unwrap();
        let v = memory.newest("lessons", "t").unwrap().unwrap();
        assert_eq!(v.expires_ms.unwrap() - v.written_ms, 3_600_000);
        assert_eq!(
            (v.agent.as_str(), v.task, v.owner.as_str()),
            ("curator", Some(42), "alice")
        );
        assert!(alice.put(write("t", "x", Some(0), false)).is_err());
        // The filter, and its rule in the error and the audit event, never the text.
        // Assembled here so that this file (a clean-text sample of the filter's tests) holds none.
        let email = format!("reach me at jane.doe@{}", "corp.example.com");
        let refused = alice.put(write("p", &email, None, false)).unwrap_err();
        assert!(refused.contains("`pii:email`"), "{refused}");
        let key = ["AKIA", "Z3MHF4KQ", "7XBVNL2W"].concat();
        alice.put(write("a", &key[..9], None, false)).unwrap();
        let split = alice.put(write("b", &key[9..], None, false)).unwrap_err();
        assert!(split.contains("joined together"), "{split}");
        let seen = seen.lock().unwrap().join("\n");
        assert!(
            seen.contains("memory-refused") && seen.contains("pii:email"),
            "{seen}"
        );
        assert!(
            seen.contains("memory-write") && seen.contains("\"version\":1"),
            "{seen}"
        );
        assert!(
            !seen.contains("jane.doe") && !seen.contains(&key[9..]),
            "{seen}"
        );
    }

    #[test]
    fn a_secret_split_across_tasks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::open(dir.path()).unwrap());
        let key = ["AKIA", "Z3MHF4KQ", "7XBVNL2W"].concat();
        let (first, _) = task(&memory, "alice", Duration::from_secs(60));
        first.put(write("a", &key[..9], None, false)).unwrap();
        let second = TaskMemory::new(
            memory.clone(),
            MemoryScope {
                task: 43,
                ..first.scope_clone()
            },
        );
        let e = second.put(write("b", &key[9..], None, false)).unwrap_err();
        assert!(e.contains("gitleaks:aws-access-token"), "{e}");
        // Another agent's pieces are its own.
        let other = TaskMemory::new(
            memory.clone(),
            MemoryScope {
                task: 44,
                agent: "other".into(),
                ..first.scope_clone()
            },
        );
        assert!(other.put(write("b", &key[9..], None, false)).is_ok());
    }

    impl TaskMemory {
        fn scope_clone(&self) -> MemoryScope {
            MemoryScope {
                user: self.scope.user.clone(),
                agent: self.scope.agent.clone(),
                task: self.scope.task,
                horizon: self.scope.horizon,
                secrets: self.scope.secrets.clone(),
                observer: None,
            }
        }
    }

    #[test]
    fn a_task_writes_at_most_max_writes() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::open(dir.path()).unwrap());
        let (t, _) = task(&memory, "alice", Duration::from_secs(60));
        for i in 0..MAX_WRITES {
            t.put(write(&format!("k{i}"), "x", None, false)).unwrap();
        }
        let e = t.put(write("one-more", "x", None, false)).unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }
}
