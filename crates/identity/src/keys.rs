//! Identity of code and of reviewers: ed25519 key pairs (`warden keygen`), detached signatures
//! over the exact bytes of an agent component or a policy file (`warden sign`,
//! `warden policy sign`), and their verification before anything is compiled or parsed.
//!
//! A signature file sits beside the artifact (`agent.wasm.sig`, `policy.toml.sig`):
//!
//! ```toml
//! kind = "agent"
//! key = "ed25519:…"        # who signed
//! sha256 = "…"             # of the exact bytes signed
//! signature = "…"          # ed25519 over "warden/v1/agent\0" + sha256
//! ```
//!
//! Any changed, added or removed byte changes the SHA-256 and breaks the signature; a signature
//! for a policy is never valid for an agent. Verification is strict (see [`crate::policy::keys`]).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::policy::HostConfig;
use crate::policy::keys::{Domain, PublicKey, from_hex, to_hex};

/// Why a signature was refused, or a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No signature file beside the artifact.
    #[error("{artifact} is not signed (no {sig}); sign it with `warden sign {artifact} --key KEY`")]
    Unsigned {
        /// The artifact.
        artifact: String,
        /// Where its signature was looked for.
        sig: String,
    },
    /// The signature file is not one `warden sign` wrote.
    #[error("{sig} is not a valid signature file: {why}")]
    Malformed {
        /// The signature file.
        sig: String,
        /// What is wrong.
        why: String,
    },
    /// Signed for another kind of artifact.
    #[error("{sig} signs a {found}, not a {expected}")]
    WrongKind {
        /// The signature file.
        sig: String,
        /// What it signs.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The bytes changed after signing.
    #[error(
        "{artifact} was changed after it was signed (its SHA-256 is {actual}, the signature covers {signed})"
    )]
    Tampered {
        /// The artifact.
        artifact: String,
        /// SHA-256 now.
        actual: String,
        /// SHA-256 signed.
        signed: String,
    },
    /// The signature does not verify.
    #[error("the signature of {artifact} does not verify with {key}: forged or corrupted")]
    BadSignature {
        /// The artifact.
        artifact: String,
        /// The key it claims.
        key: String,
    },
    /// Signed by a key that is not trusted for this artifact.
    #[error("{artifact} is signed by {key}, which is not trusted here (trusted: {trusted})")]
    Untrusted {
        /// The artifact.
        artifact: String,
        /// The signer.
        key: String,
        /// The keys that would have been accepted.
        trusted: String,
    },
    /// Signed by a revoked key.
    #[error("{artifact} is signed by {key}, which the host configuration revokes")]
    Revoked {
        /// The artifact.
        artifact: String,
        /// The signer.
        key: String,
    },
    /// A key file could not be read or written.
    #[error("key file {path}: {why}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// A signing key, held only by whoever signs (never by the host at run time).
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    ///
    /// When the OS has no randomness to give.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::KeyFile {
            path: PathBuf::new(),
            why: format!("no randomness: {e}"),
        })?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// The 64-byte key pair (secret seed, then public key), as token libraries take it.
    pub fn keypair_bytes(&self) -> [u8; 64] {
        self.0.to_keypair_bytes()
    }

    /// The ed25519 signing key itself (for the host's own audit checkpoints).
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_bytes(self.0.verifying_key().as_bytes())
            .expect("a key generated from a seed is never weak")
    }

    /// Write `<stem>.key` (the secret seed in hex, mode 0600, never overwritten) and `<stem>.pub`
    /// (the public key on one line). Returns both paths.
    ///
    /// # Errors
    ///
    /// [`IdentityError::KeyFile`] when a file exists or cannot be written.
    pub fn write(&self, stem: &Path) -> Result<(PathBuf, PathBuf), IdentityError> {
        let key = stem.with_extension("key");
        let public = stem.with_extension("pub");
        let err = |path: &Path, why: String| IdentityError::KeyFile {
            path: path.to_path_buf(),
            why,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&key)
            .map_err(|e| err(&key, format!("cannot create (it must not exist yet): {e}")))?;
        std::io::Write::write_all(
            &mut file,
            format!("{}\n", to_hex(self.0.as_bytes())).as_bytes(),
        )
        .map_err(|e| err(&key, e.to_string()))?;
        std::fs::write(&public, format!("{}\n", self.public()))
            .map_err(|e| err(&public, e.to_string()))?;
        Ok((key, public))
    }

    /// Read a `.key` file written by [`SecretKey::write`].
    ///
    /// # Errors
    ///
    /// [`IdentityError::KeyFile`] when it cannot be read or is not a key.
    pub fn read(path: &Path) -> Result<Self, IdentityError> {
        let text =
            crate::bounded::read_to_string(path, crate::bounded::Limit::KEY).map_err(|e| {
                IdentityError::KeyFile {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                }
            })?;
        let seed: [u8; 32] = from_hex(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| IdentityError::KeyFile {
                path: path.to_path_buf(),
                why: "not a warden secret key (64 hex digits, as `warden keygen` writes)".into(),
            })?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Sign `bytes` as a `domain` artifact.
    pub fn sign(&self, domain: Domain, bytes: &[u8]) -> SignatureFile {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let signature = self.0.sign(&domain.message(&digest));
        SignatureFile {
            kind: domain.as_str().to_string(),
            key: self.public().to_string(),
            sha256: to_hex(&digest),
            signature: to_hex(&signature.to_bytes()),
        }
    }
}

/// A detached signature, as stored in `<artifact>.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// `agent` or `policy`.
    pub kind: String,
    /// The signer's public key.
    pub key: String,
    /// SHA-256 of the signed bytes, hex.
    pub sha256: String,
    /// The ed25519 signature, hex.
    pub signature: String,
}

/// Where the signature of `artifact` lives: `<artifact>.sig`.
pub fn signature_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

impl SignatureFile {
    /// Write it beside `artifact`.
    ///
    /// # Errors
    ///
    /// [`IdentityError::KeyFile`] when it cannot be written.
    pub fn write_beside(&self, artifact: &Path) -> Result<PathBuf, IdentityError> {
        let path = signature_path(artifact);
        // Every field is hex or a fixed word, so no value needs TOML escaping.
        let text = format!(
            "# warden signature\nkind = \"{}\"\nkey = \"{}\"\nsha256 = \"{}\"\nsignature = \"{}\"\n",
            self.kind, self.key, self.sha256, self.signature
        );
        std::fs::write(&path, text).map_err(|e| IdentityError::KeyFile {
            path: path.clone(),
            why: e.to_string(),
        })?;
        Ok(path)
    }
}

/// Verify that `bytes` (the artifact named `artifact`) carry a valid signature by one of
/// `trusted` that `config` does not revoke. The signature is read from `<artifact>.sig`.
/// Returns the signer.
///
/// # Errors
///
/// The [`IdentityError`] that says exactly what is wrong: unsigned, malformed, wrong kind,
/// tampered, forged, untrusted or revoked.
pub fn verify(
    domain: Domain,
    artifact: &Path,
    bytes: &[u8],
    trusted: &[PublicKey],
    config: &HostConfig,
) -> Result<PublicKey, IdentityError> {
    let name = artifact.display().to_string();
    let sig_path = signature_path(artifact);
    let sig = sig_path.display().to_string();
    let text = match crate::bounded::read_to_string(&sig_path, crate::bounded::Limit::SIGNATURE) {
        Ok(t) => t,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
            return Err(IdentityError::Unsigned {
                artifact: name,
                sig,
            });
        }
        Err(e) => {
            return Err(IdentityError::Malformed {
                sig,
                why: e.to_string(),
            });
        }
    };
    let file: SignatureFile = toml::from_str(&text).map_err(|e| IdentityError::Malformed {
        sig: sig.clone(),
        why: e.message().to_string(),
    })?;
    if file.kind != domain.as_str() {
        return Err(IdentityError::WrongKind {
            sig,
            found: file.kind,
            expected: domain.as_str(),
        });
    }
    let key = PublicKey::parse(&file.key).map_err(|e| IdentityError::Malformed {
        sig: sig.clone(),
        why: format!("key: {e}"),
    })?;
    let signature: [u8; 64] = from_hex(&file.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| IdentityError::Malformed {
            sig: sig.clone(),
            why: "signature: expected 128 hex digits".into(),
        })?;
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if !file.sha256.eq_ignore_ascii_case(&to_hex(&digest)) {
        return Err(IdentityError::Tampered {
            artifact: name,
            actual: to_hex(&digest),
            signed: file.sha256,
        });
    }
    if !key.verifies(domain, &digest, &signature) {
        return Err(IdentityError::BadSignature {
            artifact: name,
            key: key.to_string(),
        });
    }
    if config.is_revoked(&key) {
        return Err(IdentityError::Revoked {
            artifact: name,
            key: key.to_string(),
        });
    }
    if !trusted.contains(&key) {
        let trusted = if trusted.is_empty() {
            "none".to_string()
        } else {
            trusted
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(IdentityError::Untrusted {
            artifact: name,
            key: key.to_string(),
            trusted,
        });
    }
    Ok(key)
}

/// The keys that may sign the agent of `policy` on a host with `config`, and whether a signature
/// is required at all: the policy's `agent.publishers` (narrowed to the host's trusted publishers
/// when the host lists any), or, when the policy pins none, the host's publishers if the host
/// requires signed agents.
pub fn agent_signers(
    policy: &crate::policy::Policy,
    config: &HostConfig,
) -> Option<Vec<PublicKey>> {
    let pinned = &policy.agent.publishers;
    if !pinned.is_empty() {
        let keys = if config.publishers.is_empty() {
            pinned.clone()
        } else {
            pinned
                .iter()
                .filter(|k| config.publishers.contains(k))
                .copied()
                .collect()
        };
        return Some(keys);
    }
    config
        .require_signed_agents
        .then(|| config.publishers.clone())
}

#[cfg(test)]
mod tests;
