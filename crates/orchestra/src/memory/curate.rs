//! What people do to the memory, beside what agents write: revert to an older version, forget an
//! entry, pin one (a reviewer only). Each is a new version, so history keeps what was there.

use std::time::Duration;

use warden_identity::secrets::SecretStore;
use warden_policy::{Person, Roles};

use super::filter::Candidate;
use super::store::{Change, Memory, NewVersion};
use super::{MemoryError, Version};

fn newest_or_missing(memory: &Memory, namespace: &str, key: &str) -> Result<Version, MemoryError> {
    super::store::check_name(namespace, key)?;
    memory
        .newest(namespace, key)?
        .ok_or_else(|| MemoryError::NotFound {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        })
}

impl Memory {
    /// A new version equal to version `to` of `namespace`/`key` (its text, tags, owner and
    /// visibility), written by `by`. It lives as long as `to` was meant to (from now), at most
    /// `horizon`; it is not pinned. The text passes the filter again (the rules may have grown
    /// since it was written; host secrets were checked then).
    ///
    /// # Errors
    ///
    /// [`MemoryError::NoVersion`] when there is no such version, [`MemoryError::Invalid`] when
    /// it is a forget, [`MemoryError::Refused`] when the filter now refuses its text.
    pub fn revert(
        &self,
        namespace: &str,
        key: &str,
        to: u32,
        horizon: Duration,
        by: &str,
        now_ms: u64,
    ) -> Result<u32, MemoryError> {
        super::store::check_name(namespace, key)?;
        let old = self
            .version(namespace, key, to)?
            .ok_or_else(|| MemoryError::NoVersion {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                version: to,
            })?;
        if old.change == Change::Forget {
            return Err(MemoryError::Invalid(format!(
                "version {to} is a forget; there is nothing to revert to"
            )));
        }
        let candidate = Candidate {
            key,
            tags: &old.tags,
            text: &old.text,
        };
        self.filter()?
            .check_write(candidate, &[], &SecretStore::default())
            .map_err(MemoryError::Refused)?;
        let horizon_ms = u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX);
        let lifetime = match old.expires_ms {
            Some(e) if !old.pinned => e.saturating_sub(old.written_ms).min(horizon_ms),
            _ => horizon_ms,
        };
        self.write(&NewVersion {
            namespace,
            key,
            change: Change::Revert,
            text: &old.text,
            tags: &old.tags,
            owner: &old.owner,
            general: old.general,
            written_ms: now_ms,
            expires_ms: Some(now_ms.saturating_add(lifetime)),
            pinned: false,
            agent: by,
            task: None,
        })
    }

    /// A tombstone for `namespace`/`key`, written by `by`: general, so no reader sees any older
    /// version (a later write is seen again).
    ///
    /// # Errors
    ///
    /// [`MemoryError::NotFound`] when the entry does not exist, [`MemoryError::Invalid`] when it
    /// is already forgotten.
    pub fn forget(
        &self,
        namespace: &str,
        key: &str,
        by: &str,
        now_ms: u64,
    ) -> Result<u32, MemoryError> {
        let newest = newest_or_missing(self, namespace, key)?;
        if newest.change == Change::Forget {
            return Err(MemoryError::Invalid(format!(
                "the entry is already forgotten (version {})",
                newest.version
            )));
        }
        self.write(&NewVersion {
            namespace,
            key,
            change: Change::Forget,
            text: "",
            tags: &[],
            owner: "-",
            general: true,
            written_ms: now_ms,
            expires_ms: None,
            pinned: false,
            agent: by,
            task: None,
        })
    }

    /// Pin the newest version of `namespace`/`key`: a copy that never expires, written by
    /// `reviewer`, who must hold a role with `review = true` in `roles` (the caller proves they
    /// hold the person's key).
    ///
    /// # Errors
    ///
    /// [`MemoryError::NotReviewer`] without the review role; [`MemoryError::NotFound`];
    /// [`MemoryError::Invalid`] when the newest version is forgotten or expired (revert it
    /// first), or already pinned.
    pub fn pin(
        &self,
        namespace: &str,
        key: &str,
        reviewer: &Person,
        roles: &Roles,
        now_ms: u64,
    ) -> Result<u32, MemoryError> {
        if !roles.may_review(reviewer) {
            return Err(MemoryError::NotReviewer {
                person: reviewer.name.clone(),
            });
        }
        let newest = newest_or_missing(self, namespace, key)?;
        if newest.pinned {
            return Err(MemoryError::Invalid(format!(
                "version {} is already pinned",
                newest.version
            )));
        }
        if !newest.is_live(now_ms) {
            return Err(MemoryError::Invalid(format!(
                "version {} is {}; revert to a version first, then pin it",
                newest.version,
                if newest.change == Change::Forget {
                    "a forget"
                } else {
                    "expired"
                }
            )));
        }
        self.write(&NewVersion {
            namespace,
            key,
            change: Change::Pin,
            text: &newest.text,
            tags: &newest.tags,
            owner: &newest.owner,
            general: newest.general,
            written_ms: now_ms,
            expires_ms: None,
            pinned: true,
            agent: &format!("reviewer {}", reviewer.name),
            task: None,
        })
    }
}
