//! The curated memory, through the host (`warden:agent/memory`, policy `[memory]`).
//!
//! Reading a namespace needs `[memory] read`; writing needs `[memory] write`, which only curator
//! agents hold. Using a namespace the policy (or the user's roles) does not grant kills the
//! instance. Every write is a new version and passes the host's secret and PII filter: a refused
//! write returns the rule that fired.

use crate::bindings::warden::agent::memory as raw;

pub use raw::{Entry, Write};

/// The entry `namespace`/`key`, if it exists, has not expired and this task may see it.
pub fn get(namespace: &str, key: &str) -> Option<Entry> {
    raw::get(namespace, key)
}

/// The entries of `namespace` this task may see (with `tag`, when given), newest first.
pub fn entries(namespace: &str, tag: Option<&str>) -> Vec<Entry> {
    raw::entries(namespace, tag)
}

/// Write a new version of `namespace`/`key` with `text` and `tags` (the host's horizon, this
/// user only); returns its version number.
///
/// # Errors
///
/// Why the host refused it (the filter's rule, a size bound).
pub fn put(namespace: &str, key: &str, text: &str, tags: &[&str]) -> Result<u32, String> {
    put_entry(&Write {
        namespace: namespace.to_string(),
        key: key.to_string(),
        text: text.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ttl_secs: None,
        general: false,
    })
}

/// Write a new version with every field given (a ttl, general visibility).
///
/// # Errors
///
/// Why the host refused it.
pub fn put_entry(entry: &Write) -> Result<u32, String> {
    raw::put(entry)
}
