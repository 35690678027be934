//! The `requestState` of a paused run: `w1.<id>.<round>.<tag>`, where `id` is the pause's
//! random 128-bit name (hex), `round` how many answers it has had, and `tag` an HMAC-SHA-256
//! (hex) under a key made at the server's start over the id, the round, the caller's subject and
//! the tool. It carries no data a client could use: the run itself waits in memory
//! ([`super::Pauses`]). A changed byte, another caller's state or another tool's fails the tag
//! (checked in constant time by `ring`); an earlier round's state passes the tag but names a
//! round the pause has left, and is refused there.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::policy::keys::{from_hex, to_hex};

/// The format's prefix (a later format gets another).
const VERSION: &str = "w1";
/// What the tag signs first: nothing signed for another purpose can pass as a state.
const DOMAIN: &[u8] = b"warden/mcp/request-state/v1\0";

/// What a state names: a pause and its round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Named {
    /// The pause.
    pub(crate) id: u128,
    /// The answers it has had so far.
    pub(crate) round: u32,
}

/// Why a state is refused before any pause is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// Not of this server's format.
    #[error("`requestState` is not one this server made")]
    Malformed,
    /// The tag does not match: changed, or made for another caller or tool.
    #[error(
        "`requestState` failed its integrity check: it was changed, or it was given to another caller or for another tool"
    )]
    Forged,
}

/// Makes and checks states with one secret key.
pub(crate) struct StateKey {
    key: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<secret>)")
    }
}

impl StateKey {
    /// A new random key (it lives as long as the server: a restart forgets every pause anyway).
    ///
    /// # Panics
    ///
    /// When the OS has no randomness to give (the server cannot run safely without it).
    pub(crate) fn generate() -> StateKey {
        let random = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &random)
            .expect("the operating system's random source failed");
        StateKey { key, random }
    }

    /// A fresh random pause id.
    ///
    /// # Panics
    ///
    /// When the OS has no randomness to give.
    pub(crate) fn fresh_id(&self) -> u128 {
        let mut bytes = [0u8; 16];
        self.random
            .fill(&mut bytes)
            .expect("the operating system's random source failed");
        u128::from_be_bytes(bytes)
    }

    fn signed(named: Named, subject: &str, tool: &str) -> Vec<u8> {
        let mut message = Vec::with_capacity(DOMAIN.len() + 36 + subject.len() + tool.len());
        message.extend_from_slice(DOMAIN);
        message.extend_from_slice(&named.id.to_be_bytes());
        message.extend_from_slice(&named.round.to_be_bytes());
        // Lengths first, so that no two (subject, tool) pairs sign the same bytes.
        for part in [subject, tool] {
            message.extend_from_slice(&(part.len() as u64).to_be_bytes());
            message.extend_from_slice(part.as_bytes());
        }
        message
    }

    /// The state of `named` for `subject` calling `tool`.
    pub(crate) fn seal(&self, named: Named, subject: &str, tool: &str) -> String {
        let tag = hmac::sign(&self.key, &Self::signed(named, subject, tool));
        format!(
            "{VERSION}.{}.{}.{}",
            to_hex(&named.id.to_be_bytes()),
            named.round,
            to_hex(tag.as_ref())
        )
    }

    /// What `state` names, if this key made it for `subject` calling `tool`.
    ///
    /// # Errors
    ///
    /// [`StateError::Malformed`] for anything not of the format, [`StateError::Forged`] when the
    /// tag does not match.
    pub(crate) fn open(&self, state: &str, subject: &str, tool: &str) -> Result<Named, StateError> {
        // Bounded before any work: a real state is under 120 bytes.
        if state.len() > 256 {
            return Err(StateError::Malformed);
        }
        let mut parts = state.split('.');
        let (Some(VERSION), Some(id), Some(round), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(StateError::Malformed);
        };
        let id: [u8; 16] = from_hex(id)
            .and_then(|b| b.try_into().ok())
            .ok_or(StateError::Malformed)?;
        let round: u32 = match round.parse() {
            // Only the canonical decimal form (no sign, no leading zero) is one this key made.
            Ok(r) if round == format!("{r}") => r,
            _ => return Err(StateError::Malformed),
        };
        let tag = from_hex(tag).ok_or(StateError::Malformed)?;
        let named = Named {
            id: u128::from_be_bytes(id),
            round,
        };
        hmac::verify(&self.key, &Self::signed(named, subject, tool), &tag)
            .map_err(|_| StateError::Forged)?;
        Ok(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_opens_for_its_caller_and_tool_only() {
        let key = StateKey::generate();
        let named = Named {
            id: key.fresh_id(),
            round: 2,
        };
        let state = key.seal(named, "alice", "echo");
        assert_eq!(key.open(&state, "alice", "echo"), Ok(named));
        assert_eq!(key.open(&state, "bob", "echo"), Err(StateError::Forged));
        assert_eq!(key.open(&state, "alice", "other"), Err(StateError::Forged));
        // The subject and tool are length-prefixed: moving a byte across them changes the tag.
        assert_eq!(key.open(&state, "alicee", "cho"), Err(StateError::Forged));
        // Another server's key (a restart) made another tag.
        assert_eq!(
            StateKey::generate().open(&state, "alice", "echo"),
            Err(StateError::Forged)
        );
    }

    #[test]
    fn every_changed_part_is_refused() {
        let key = StateKey::generate();
        let named = Named { id: 7, round: 0 };
        let state = key.seal(named, "u", "t");
        let parts: Vec<&str> = state.split('.').collect();
        let with = |i: usize, value: &str| {
            let mut p = parts.clone();
            p[i] = value;
            p.join(".")
        };
        // Another round or id, re-tagged by no one: the tag fails.
        assert_eq!(key.open(&with(2, "1"), "u", "t"), Err(StateError::Forged));
        let other_id = to_hex(&8u128.to_be_bytes());
        assert_eq!(
            key.open(&with(1, &other_id), "u", "t"),
            Err(StateError::Forged)
        );
        let mut flipped = parts[3].to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            key.open(&with(3, &flipped), "u", "t"),
            Err(StateError::Forged)
        );
        // Not the format at all.
        for bad in [
            String::new(),
            format!("{state}-TAMPERED"),
            format!("{state}.x"),
            with(0, "w2"),
            with(2, "00"),
            with(2, "+0"),
            with(1, "zz"),
            "w1.00.0.00".to_owned(),
            "x".repeat(300),
        ] {
            assert!(key.open(&bad, "u", "t").is_err(), "{bad}");
        }
        assert_eq!(
            key.open(&format!("{state}-TAMPERED"), "u", "t"),
            Err(StateError::Malformed)
        );
    }

    #[test]
    fn ids_are_random() {
        let key = StateKey::generate();
        assert_ne!(key.fresh_id(), key.fresh_id());
    }
}
