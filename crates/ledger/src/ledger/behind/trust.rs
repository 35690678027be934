//! The trust records the run path reads, kept by the write-behind: as this process last wrote
//! or read them, dropped when another process commits to the store (SQLite's `data_version`),
//! which the writer checks after every batch and a reader when the last look is older than
//! [`FOREIGN_CHECK`] — unless the store's connection is busy then (the writer in a batch, or
//! another read or write of this process): the reader does not wait for it (a batch can take a
//! millisecond, and the trust lock would be held the while, stopping every task that starts).
//! The writer looks as soon as its batch is written, and the next reader that finds the
//! connection free looks too; a reader whose last look is older than [`FOREIGN_WAIT`] waits
//! for the connection, so a long use of it (a long read) delays the look no further. A change
//! another process commits is seen within [`FOREIGN_CHECK`] while the connection is free, and
//! within [`FOREIGN_WAIT`] whatever holds it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Behind, lock};
use crate::store::{StoreError, TrustRecord};

/// How long a trust record read through the cache may miss a change another process committed
/// while the store's connection is free.
pub(super) const FOREIGN_CHECK: Duration = Duration::from_millis(2);

/// How long it may miss one whatever holds the connection: past this a reader waits for it.
pub(super) const FOREIGN_WAIT: Duration = Duration::from_millis(250);

/// Trust records as this process last wrote or read them.
pub(super) struct TrustCache {
    pub(super) records: HashMap<String, TrustRecord>,
    pub(super) version: Option<i64>,
    pub(super) checked: Instant,
}

impl Behind {
    /// `agent_id`'s trust record as this process last wrote or read it, unless another
    /// process committed to the store since (checked at most every [`FOREIGN_CHECK`], see the
    /// module docs for a busy connection).
    /// The writer looks after every batch, so under load the run path never does.
    pub(in crate::ledger) fn cached_trust(&self, agent_id: &str) -> Option<TrustRecord> {
        let mut cache = lock(&self.trust);
        let since = cache.checked.elapsed();
        if since >= FOREIGN_WAIT {
            self.check_foreign(&mut cache);
        } else if since >= FOREIGN_CHECK {
            // `None`: the connection is busy (the writer looks itself once its batch is in; or
            // the next read that finds it free does).
            if let Some(version) = self.store.data_version_now() {
                see_version(&mut cache, version);
            }
        }
        cache.records.get(agent_id).cloned()
    }

    /// Drop the cached trust records if another process committed to the store since the
    /// last look.
    pub(super) fn check_foreign(&self, cache: &mut TrustCache) {
        see_version(cache, self.store.data_version());
    }

    /// Keep `record` as the agent's newest trust record (`read`: as read from the store, so
    /// a newer one written meanwhile is kept instead).
    pub(in crate::ledger) fn cache_trust(&self, record: &TrustRecord, read: bool) {
        let mut cache = lock(&self.trust);
        if read {
            cache
                .records
                .entry(record.agent_id.clone())
                .or_insert_with(|| record.clone());
        } else {
            cache
                .records
                .insert(record.agent_id.clone(), record.clone());
        }
    }
}

/// Keep `cache` if the store's `data_version` is the one it was filled at, else empty it (and
/// on an error: nothing read is trusted then).
fn see_version(cache: &mut TrustCache, version: Result<i64, StoreError>) {
    cache.checked = Instant::now();
    match version {
        Ok(v) if cache.version == Some(v) => {}
        Ok(v) => {
            cache.records.clear();
            cache.version = Some(v);
        }
        Err(_) => cache.records.clear(),
    }
}
