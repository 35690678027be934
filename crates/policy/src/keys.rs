//! Ed25519 public keys as policies and host configuration write them (`ed25519:` followed by 64
//! hex digits), and strict signature verification over a domain-separated message.
//!
//! Strict means: a key of small order (a "weak" key, which verifies signatures on many messages)
//! is refused when parsed, and a signature is checked with `verify_strict`, which refuses
//! non-canonical (malleable) encodings.

use ed25519_dalek::{Signature, VerifyingKey};

/// What a signature covers. The domain is part of the signed message, so a signature made for
/// one kind of artifact is never valid for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// An agent component.
    Agent,
    /// A policy file.
    Policy,
    /// A person's approval of one irreversible action.
    Approval,
    /// A reviewer's reinstatement of a demoted agent, or their apply of a proposed change.
    Review,
}

impl Domain {
    /// The domain's name as written in signature files.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Agent => "agent",
            Domain::Policy => "policy",
            Domain::Approval => "approval",
            Domain::Review => "review",
        }
    }

    /// The message actually signed: a versioned domain tag, then the artifact's SHA-256.
    pub fn message(self, sha256: &[u8; 32]) -> Vec<u8> {
        let mut m = format!("warden/v1/{}\0", self.as_str()).into_bytes();
        m.extend_from_slice(sha256);
        m
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `ed25519:` followed by 64 hex digits.
    #[error("expected `ed25519:` followed by 64 hex digits, as `warden keygen` prints")]
    Format,
    /// Not a point on the curve.
    #[error("not a valid ed25519 public key")]
    Invalid,
    /// A small-order key, which would verify forged signatures.
    #[error("a weak (small-order) ed25519 key, refused")]
    Weak,
}

/// An ed25519 public key that passed the strict checks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ed25519:{}", to_hex(self.0.as_bytes()))
    }
}

impl PublicKey {
    /// Parse `ed25519:<64 hex digits>`.
    ///
    /// # Errors
    ///
    /// [`KeyError`] for a malformed, invalid or weak key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let hex = text
            .trim()
            .strip_prefix("ed25519:")
            .ok_or(KeyError::Format)?;
        let bytes: [u8; 32] = from_hex(hex)
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyError::Format)?;
        Self::from_bytes(&bytes)
    }

    /// A key from its 32 bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] or [`KeyError::Weak`].
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::Invalid)?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey(key))
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Whether `signature` (64 bytes) is this key's strict signature of `domain` over `sha256`.
    pub fn verifies(&self, domain: Domain, sha256: &[u8; 32], signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.0
            .verify_strict(&domain.message(sha256), &signature)
            .is_ok()
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    // One allocation (a `format!` per byte made one each: ~1% of a ledgered run, which hashes
    // its trace and every audit record).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Bytes from hex (either case); `None` if it is not whole bytes of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn hex_is_lowercase_two_digits_a_byte_and_reads_back() {
        let all: Vec<u8> = (0..=255).collect();
        let text = to_hex(&all);
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(text, expected);
        assert_eq!(from_hex(&text).unwrap(), all);
        assert_eq!(to_hex(&[]), "");
    }

    fn signing() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn round_trip_and_verify() {
        let sk = signing();
        let pk = PublicKey::parse(&format!(
            "ed25519:{}",
            to_hex(sk.verifying_key().as_bytes())
        ))
        .unwrap();
        assert_eq!(PublicKey::parse(&pk.to_string()).unwrap(), pk);
        let digest = [1u8; 32];
        let sig = sk.sign(&Domain::Agent.message(&digest)).to_bytes();
        assert!(pk.verifies(Domain::Agent, &digest, &sig));
        // Another domain, another digest, another byte: all refused.
        assert!(!pk.verifies(Domain::Policy, &digest, &sig));
        assert!(!pk.verifies(Domain::Agent, &[2u8; 32], &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!pk.verifies(Domain::Agent, &digest, &bad));
    }

    #[test]
    fn malleable_signatures_are_refused() {
        // s + L (the group order) is the same signature in a non-canonical encoding.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let sk = signing();
        let pk = PublicKey::from_bytes(sk.verifying_key().as_bytes()).unwrap();
        let digest = [3u8; 32];
        let sig = sk.sign(&Domain::Agent.message(&digest)).to_bytes();
        let mut malleated = sig;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(malleated[32 + i]) + u16::from(L[i]) + carry;
            malleated[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(pk.verifies(Domain::Agent, &digest, &sig));
        assert!(!pk.verifies(Domain::Agent, &digest, &malleated));
    }

    #[test]
    fn malformed_invalid_and_weak_keys_are_refused() {
        let identity_point = format!("ed25519:01{}", "00".repeat(31));
        let cases = [
            ("", KeyError::Format),
            ("ed25519:", KeyError::Format),
            ("ed25519:zz", KeyError::Format),
            ("rsa:00", KeyError::Format),
            (&*format!("ed25519:{}", "ab".repeat(31)), KeyError::Format),
            (&*identity_point, KeyError::Weak),
        ];
        for (text, want) in cases {
            assert_eq!(PublicKey::parse(text), Err(want), "{text}");
        }
    }
}
