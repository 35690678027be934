//! The memory capability (`[memory]` in a policy, `warden:agent/memory` in WIT,
//! `warden_guest::memory`): the curated memory, through the host.
//!
//! The gate: reading a namespace needs `memory.read` (or `write`) in the policy **and** the user's
//! roles; writing needs `memory.write` in both — else the instance is killed at that call.
//! Requests over the size bounds are errors the guest sees (`put`) or find nothing (`get`).
//! Storage, versions, expiry, per-user isolation and the secret/PII filter belong to the host's
//! [`MemoryAccess`], implemented above the sandbox.

use std::time::Instant;

use crate::bindings::warden::agent::memory as wit;
use crate::gate::{KillReason, Violation};
use crate::instance::InstanceState;

/// Longest key.
pub const MAX_KEY: usize = 256;
/// Longest text of one entry.
pub const MAX_TEXT: usize = 64 * 1024;
/// Most tags of one entry, and the longest tag.
pub const MAX_TAGS: usize = 16;
/// Longest tag.
pub const MAX_TAG: usize = 64;
/// Most entries one `list` returns.
pub const MAX_LIST: usize = 100;

/// One entry, as the host returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// Its text.
    pub text: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its version (from 1).
    pub version: u32,
    /// When it expires (ms since the Unix epoch), unless pinned.
    pub expires_ms: Option<u64>,
    /// Readable in every user's tasks.
    pub general: bool,
}

/// One write, as the guest asks for it (after the gate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryWrite {
    /// Its namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// Its text.
    pub text: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// How long it lives (the host's horizon when absent).
    pub ttl_secs: Option<u64>,
    /// Readable in every user's tasks.
    pub general: bool,
}

/// The host's side of one task's memory: its store, the task's user, the filter.
pub trait MemoryAccess: Send + Sync {
    /// The latest visible version of `namespace`/`key`.
    ///
    /// # Errors
    ///
    /// A sentence when the store fails.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<MemoryEntry>, String>;
    /// The visible entries of `namespace` (with `tag`), newest first, at most [`MAX_LIST`].
    ///
    /// # Errors
    ///
    /// A sentence when the store fails.
    fn list(&self, namespace: &str, tag: Option<&str>) -> Result<Vec<MemoryEntry>, String>;
    /// Store a new version; returns its number.
    ///
    /// # Errors
    ///
    /// Why it was refused (the filter's rule, never the matched text) or the store failed.
    fn put(&self, write: MemoryWrite) -> Result<u32, String>;
}

impl InstanceState {
    fn memory_gate(&self, namespace: &str, write: bool) -> wasmtime::Result<()> {
        let (agent_ok, key) = if write {
            (self.policy.memory.allows_write(namespace), "memory.write")
        } else {
            (self.policy.memory.allows_read(namespace), "memory.read")
        };
        let shown: String = namespace.chars().take(64).collect();
        if !agent_ok {
            return Err(self.kill.kill(Violation::new(
                KillReason::OutOfScope,
                "memory",
                format!("namespace `{shown}` is not in the policy's {key}"),
            )));
        }
        let user_ok = self.user.as_ref().is_none_or(|u| {
            if write {
                u.allows_memory_write(namespace)
            } else {
                u.allows_memory_read(namespace)
            }
        });
        if !user_ok {
            return Err(self.kill.kill(Violation::new(
                KillReason::OutOfScope,
                "memory",
                format!(
                    "namespace `{shown}` is not allowed ({key}) to the user the agent acts for"
                ),
            )));
        }
        Ok(())
    }
}

fn to_wit(e: MemoryEntry) -> wit::Entry {
    wit::Entry {
        namespace: e.namespace,
        key: e.key,
        text: e.text,
        tags: e.tags,
        version: e.version,
        expires_ms: e.expires_ms,
        general: e.general,
    }
}

fn check_write(w: &wit::Write) -> Result<(), String> {
    if w.key.is_empty() || w.key.len() > MAX_KEY {
        return Err(format!("a key is 1 to {MAX_KEY} bytes"));
    }
    if w.text.len() > MAX_TEXT {
        return Err(format!("an entry's text is at most {MAX_TEXT} bytes"));
    }
    if w.tags.len() > MAX_TAGS || w.tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG) {
        return Err(format!(
            "at most {MAX_TAGS} tags of 1 to {MAX_TAG} bytes each"
        ));
    }
    Ok(())
}

impl wit::Host for InstanceState {
    fn get(&mut self, namespace: String, key: String) -> wasmtime::Result<Option<wit::Entry>> {
        let started = Instant::now();
        self.memory_gate(&namespace, false)?;
        let (Some(memory), true) = (self.memory.clone(), key.len() <= MAX_KEY) else {
            self.kill
                .record("memory", &namespace, "read (none)", started.elapsed());
            return Ok(None);
        };
        let found = memory.get(&namespace, &key);
        let decision = match &found {
            Ok(Some(_)) => "read",
            Ok(None) => "read (none)",
            Err(_) => "read (store error)",
        };
        self.kill.record(
            "memory",
            &format!("get {namespace}/{key}"),
            decision,
            started.elapsed(),
        );
        Ok(found.ok().flatten().map(to_wit))
    }

    fn entries(
        &mut self,
        namespace: String,
        tag: Option<String>,
    ) -> wasmtime::Result<Vec<wit::Entry>> {
        let started = Instant::now();
        self.memory_gate(&namespace, false)?;
        let Some(memory) = self.memory.clone() else {
            return Ok(Vec::new());
        };
        let found = memory.list(&namespace, tag.as_deref()).unwrap_or_default();
        self.kill.record(
            "memory",
            &format!("list {namespace}"),
            &format!("read ({} entries)", found.len()),
            started.elapsed(),
        );
        Ok(found.into_iter().take(MAX_LIST).map(to_wit).collect())
    }

    fn put(&mut self, entry: wit::Write) -> wasmtime::Result<Result<u32, String>> {
        let started = Instant::now();
        self.memory_gate(&entry.namespace, true)?;
        let target = format!("put {}/{}", entry.namespace, entry.key);
        if let Err(why) = check_write(&entry) {
            self.kill
                .record("memory", &target, "invalid", started.elapsed());
            return Ok(Err(why));
        }
        let Some(memory) = self.memory.clone() else {
            self.kill
                .record("memory", &target, "unavailable", started.elapsed());
            return Ok(Err(
                "this host keeps no memory (it has no data directory)".into()
            ));
        };
        let namespace = entry.namespace.clone();
        let result = memory.put(MemoryWrite {
            namespace: entry.namespace,
            key: entry.key,
            text: entry.text,
            tags: entry.tags,
            ttl_secs: entry.ttl_secs,
            general: entry.general,
        });
        // A refused write may carry a secret in its key: its trace names the namespace only.
        let (decision, target) = match &result {
            Ok(_) => ("written", target),
            Err(_) => ("refused", format!("put {}/…", namespace)),
        };
        self.kill
            .record("memory", &target, decision, started.elapsed());
        Ok(result)
    }
}
