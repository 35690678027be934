//! What the CLI's commands over the host's data directory share (`warden task`, `trust`,
//! `approve`, `audit`: `cli/task.rs`, `trust.rs`, `approve.rs`, `audit.rs`): where the data
//! directory is, opening the ledger, the roles file, and the person a key belongs to.

use std::path::{Path, PathBuf};

use warden::identity::SecretKey;
use warden::ledger::Ledger;
use warden::policy::keys::Domain;
use warden::policy::{HostConfig, Person, Roles};

use super::{Failure, bad_input, host_failure};

/// The data directory: `--data-dir`, `host.data_dir`, `$XDG_STATE_HOME/warden` or
/// `~/.local/state/warden`.
pub fn data_dir(flag: Option<PathBuf>, config: &HostConfig) -> PathBuf {
    flag.or_else(|| config.data_dir.clone())
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|x| PathBuf::from(x).join("warden")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/warden")))
        .unwrap_or_else(|| PathBuf::from(".warden"))
}

/// Open the ledger of `dir`.
pub fn open(dir: &Path, config: &HostConfig) -> Result<Ledger, Failure> {
    Ledger::open(dir, config.checkpoint_every).map_err(host_failure)
}

pub fn roles(file: Option<&Path>, config: &HostConfig) -> Result<Roles, Failure> {
    super::load_roles(file.or(config.roles.as_deref()))
}

/// The person whose secret key is at `key`, proven by a signature their public key verifies.
pub fn person(key: &Path, roles: &Roles, what: &str) -> Result<Person, Failure> {
    let key = SecretKey::read(key).map_err(bad_input)?;
    let public = key.public();
    // Prove possession the same way a remote reviewer would: sign, then verify.
    let sig = key.sign(Domain::Review, what.as_bytes());
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(what.as_bytes()).into();
    let signature: [u8; 64] = warden::policy::keys::from_hex(&sig.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| host_failure(anyhow::anyhow!("signing failed")))?;
    if !public.verifies(Domain::Review, &digest, &signature) {
        return Err(host_failure(anyhow::anyhow!("signing failed")));
    }
    roles.person_with_key(&public).cloned().ok_or_else(|| {
        bad_input(anyhow::anyhow!(
            "key {public} belongs to no person in the roles file; add it as [person.<name>] key = \"{public}\""
        ))
    })
}
