//! `[random]`: whether an agent may draw random bytes ([`RandomGrant`]).
//!
//! Deny by default: without a grant the agent gets no randomness.

use super::raw::{RawRandom, Table};

/// The randomness grant. Defaults to false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RandomGrant {
    /// `random.secure`: may draw cryptographically secure random bytes.
    pub secure: bool,
}

impl RandomGrant {
    pub(crate) fn from_raw(raw: Option<Table<RawRandom>>) -> RandomGrant {
        RandomGrant {
            secure: raw.and_then(|Table(raw)| raw.secure).unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_only_when_written_true() {
        let cases = [
            (None, false),
            (Some(None), false),
            (Some(Some(false)), false),
            (Some(Some(true)), true),
        ];
        for (raw, secure) in cases {
            let raw = raw.map(|secure| Table(RawRandom { secure }));
            assert_eq!(RandomGrant::from_raw(raw).secure, secure);
        }
    }
}
