//! Identity tokens already verified: checking a token's Ed25519 signature costs tens of
//! microseconds (measured 78 µs here), paid by every request of a client that sends the same
//! bearer token each time. A token that verified is remembered, under the SHA-256 of its text,
//! with the caller it names, until its own expiry (`exp`, to the second, never later) — the
//! issuers and roles of an [`Authority`](super::Authority) never change, so nothing else could
//! make it verify differently. Refused tokens are never remembered. Bounded: at most
//! [`CAPACITY`] tokens; when full, expired ones go first, then all of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::Caller;

/// The most tokens remembered at once.
pub(super) const CAPACITY: usize = 4096;

/// Remembered tokens, by the SHA-256 of their text.
#[derive(Debug, Default)]
pub(super) struct Verified {
    tokens: Mutex<HashMap<[u8; 32], (Caller, SystemTime)>>,
}

impl Verified {
    /// The key `token` is remembered under.
    pub(super) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The caller `key`'s token names, if it verified before and has not expired since.
    pub(super) fn get(&self, key: &[u8; 32], now: SystemTime) -> Option<Caller> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(key) {
            Some((caller, expires)) if now < *expires => Some(caller.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remember that `key`'s token verified as `caller`, until `expires`.
    pub(super) fn put(&self, key: [u8; 32], caller: &Caller, expires: SystemTime, now: SystemTime) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= CAPACITY && !tokens.contains_key(&key) {
            tokens.retain(|_, (_, e)| now < *e);
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(key, (caller.clone(), expires));
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
