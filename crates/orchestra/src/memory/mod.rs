//! The curated memory (`[memory]` in a policy, `warden:agent/memory` in WIT, `warden memory` on
//! the command line): institutional knowledge that curator agents write and other agents read.
//!
//! - [`Memory`] (`store.rs`): `memory.db` in the host's data directory; every change a new
//!   version; per-user visibility unless general; expiry at the horizon unless pinned; bounded
//!   lists, histories and texts. `curate.rs`: revert, forget, pin (a reviewer only).
//! - [`Filter`] (`filter.rs`): every write passes it first — host secrets, personal data,
//!   private keys, the gitleaks rules for API keys and tokens — as written, decoded from base64
//!   and hex, and joined with the task's earlier writes.
//! - [`TaskMemory`] (`access.rs`): one task's view (its user, agent, task, the horizon, the
//!   host's secrets, an observer for audit records), the sandbox's `MemoryAccess`.
//! - [`Memory::context`]: layer 2 of the model's context stack.
//!
//! Defaults, in writing: nothing is readable or writable unless the policy's `[memory]` and the
//! user's roles grant the namespace (the sandbox's gate); a write lives for the host's horizon
//! (30 days unless `warden.toml` says otherwise) or a shorter ttl; an entry is visible only in
//! its user's tasks unless written `general`; nothing is permanent unless a reviewer pins it.

mod access;
mod curate;
pub mod filter;
mod history;
mod store;

use std::path::PathBuf;

use serde::Serialize;
use warden_sandbox::capabilities::memory::MemoryEntry;

pub use access::{MAX_WRITES, MemoryEvent, MemoryObserver, MemoryScope, TaskMemory};
pub use filter::{Filter, Found, Refusal};
pub use store::{
    Change, MAX_HISTORY, MAX_KEY, MAX_LIST, MAX_TAG, MAX_TAGS, MAX_TEXT, Memory, NewVersion,
    check_name, now_ms,
};

/// One stored version of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// Its namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// Its number (from 1, per namespace and key).
    pub version: u32,
    /// What made it.
    pub change: Change,
    /// Its text (empty for a forget).
    pub text: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The user it belongs to (a token's subject; `-` without one).
    pub owner: String,
    /// Readable in every user's tasks.
    pub general: bool,
    /// When it was written (ms since the Unix epoch).
    pub written_ms: u64,
    /// When it expires (`None`: pinned, or a forget).
    pub expires_ms: Option<u64>,
    /// Made permanent by a reviewer.
    pub pinned: bool,
    /// Who wrote it: the agent, `reviewer <name>`, or the operator's name for a change.
    pub agent: String,
    /// The task that wrote it.
    pub task: Option<u64>,
}

impl Version {
    /// Readable at `now_ms`: not a forget, and pinned or not yet expired.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.change != Change::Forget
            && (self.pinned || self.expires_ms.is_some_and(|e| e > now_ms))
    }

    /// The entry as an agent sees it.
    pub fn into_entry(self) -> MemoryEntry {
        MemoryEntry {
            namespace: self.namespace,
            key: self.key,
            text: self.text,
            tags: self.tags,
            version: self.version,
            expires_ms: if self.pinned { None } else { self.expires_ms },
            general: self.general,
        }
    }
}

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// `memory.db` cannot be opened.
    #[error("cannot open the memory store {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The store failed.
    #[error("the memory store failed: {0}")]
    Store(#[from] rusqlite::Error),
    /// A name, tag, text or ttl outside its bounds.
    #[error("{0}")]
    Invalid(String),
    /// The filter refused the write.
    #[error(transparent)]
    Refused(Refusal),
    /// The filter's rules cannot be built: writes are refused until they can.
    #[error("the memory filter cannot be built, so no write is accepted: {0}")]
    Filter(String),
    /// No such entry.
    #[error("no memory entry {namespace}/{key}: `warden memory list` shows the entries")]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its key.
        key: String,
    },
    /// No such version.
    #[error(
        "{namespace}/{key} has no version {version}: `warden memory history {namespace} {key}` shows them"
    )]
    NoVersion {
        /// Its namespace.
        namespace: String,
        /// Its key.
        key: String,
        /// The version asked for.
        version: u32,
    },
    /// Pinning needs a reviewer.
    #[error("{person} holds no role with review = true; only a reviewer may pin a memory entry")]
    NotReviewer {
        /// Who tried.
        person: String,
    },
}
