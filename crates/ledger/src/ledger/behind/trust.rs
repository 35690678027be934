//! The trust records the run path reads, kept by the write-behind: as this process last wrote
//! or read them, dropped when another process commits to the store (SQLite's `data_version`),
//! which the writer checks after every batch and a reader when the last look is older than
//! [`FOREIGN_CHECK`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Behind, lock};
use crate::store::TrustRecord;

/// How long a trust record read through the cache may miss a change another process committed.
pub(super) const FOREIGN_CHECK: Duration = Duration::from_millis(2);

/// Trust records as this process last wrote or read them.
pub(super) struct TrustCache {
    pub(super) records: HashMap<String, TrustRecord>,
    pub(super) version: Option<i64>,
    pub(super) checked: Instant,
}

impl Behind {
    /// `agent_id`'s trust record as this process last wrote or read it, unless another
    /// process committed to the store since (checked at most every [`FOREIGN_CHECK`]).
    /// The writer looks after every batch, so under load the run path never does.
    pub(in crate::ledger) fn cached_trust(&self, agent_id: &str) -> Option<TrustRecord> {
        let mut cache = lock(&self.trust);
        if cache.checked.elapsed() >= FOREIGN_CHECK {
            self.check_foreign(&mut cache);
        }
        cache.records.get(agent_id).cloned()
    }

    /// Drop the cached trust records if another process committed to the store since the
    /// last look.
    pub(super) fn check_foreign(&self, cache: &mut TrustCache) {
        cache.checked = Instant::now();
        match self.store.data_version() {
            Ok(v) if cache.version == Some(v) => {}
            Ok(v) => {
                cache.records.clear();
                cache.version = Some(v);
            }
            Err(_) => cache.records.clear(),
        }
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
