//! Irreversible actions and the signed approvals that release them.
//!
//! An agent that calls a tool the host config flags `irreversible` does not perform it: the host
//! records a pending [`ActionRecord`] with the exact input and returns a pending status. A person
//! approves it with their key ([`Approval::sign`], `warden approve <id>`); the host checks the
//! approval ([`check`]) — bound to the hash of the exact action, signed by a key the roles file
//! gives a role that may approve that tool, unexpired, for an action still pending — and only
//! then performs the action itself (with the performer the caller passes [`crate::ledger::Ledger::approve`]: the sandbox's host-tool runner). Settling the action is a compare-and-set on its
//! `pending` status, so an approval works once.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::SecretKey;
use crate::policy::Roles;
use crate::policy::keys::{Domain, PublicKey, from_hex, to_hex};
use crate::store::ActionRecord;
#[cfg(test)]
use crate::store::now_ms;

/// The hash an approval is bound to: every field that says what will be done, by whom, for whom.
pub fn action_hash(a: &ActionRecord) -> String {
    let mut h = Sha256::new();
    h.update(
        format!(
            "warden-action-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            a.id, a.task, a.agent, a.user, a.tool, a.created_ms, a.expires_ms
        )
        .as_bytes(),
    );
    h.update(a.params.as_bytes());
    to_hex(&h.finalize())
}

/// A person's signed approval of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The action id.
    pub action: u64,
    /// The hash of the action as the approver saw it.
    pub hash: String,
    /// The approver's name in the roles file.
    pub approver: String,
    /// The approver's public key.
    pub key: String,
    /// Unix ms after which the approval is void.
    pub expires_ms: u64,
    /// ed25519 signature over the fields above.
    pub signature: String,
}

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The action was already performed (or failed, or expired): approvals work once.
    #[error("action {0} is {1}, not pending: an approval works once and cannot be replayed")]
    NotPending(u64, String),
    /// Too late.
    #[error("the approval of action {0} has expired; the agent must ask again")]
    Expired(u64),
    /// The approval names another action.
    #[error("the approval is for action {approval}, not action {action}")]
    WrongAction {
        /// What the approval names.
        approval: u64,
        /// What it was presented for.
        action: u64,
    },
    /// The action's parameters differ from what was approved (or the stored action was edited).
    #[error(
        "action {0} is not the action that was approved: its parameters or context changed since; approve it again after checking `warden approve --show {0}`"
    )]
    Changed(u64),
    /// The signature does not verify.
    #[error("the approval's signature does not verify: it was forged or altered")]
    Forged,
    /// The key is not a person's in the roles file.
    #[error("key {0} belongs to no person in the roles file")]
    UnknownKey(String),
    /// The person may not approve this tool.
    #[error(
        "{person} holds no role that may approve `{tool}`; a role needs approve = [\"{tool}\"] in the roles file"
    )]
    NotAuthorised {
        /// Who.
        person: String,
        /// The tool.
        tool: String,
    },
}

impl Approval {
    /// The bytes an approver signs (ed25519 over `"warden/v1/approval\0"` and their SHA-256).
    pub fn message(action: u64, hash: &str, approver: &str, expires_ms: u64) -> Vec<u8> {
        format!("warden-approval-v1\n{action}\n{hash}\n{approver}\n{expires_ms}\n").into_bytes()
    }

    /// `approver` approves `action` with `key`; the approval expires with the action.
    pub fn sign(action: &ActionRecord, approver: &str, key: &SecretKey) -> Approval {
        let hash = action_hash(action);
        let message = Approval::message(action.id, &hash, approver, action.expires_ms);
        let sig = key.sign(Domain::Approval, &message);
        Approval {
            action: action.id,
            hash,
            approver: approver.to_owned(),
            key: sig.key,
            expires_ms: action.expires_ms,
            signature: sig.signature,
        }
    }
}

/// Check `approval` against `action` as stored now. Returns the approver's name.
///
/// # Errors
///
/// [`ApprovalError`] saying which check failed.
pub fn check(
    approval: &Approval,
    action: &ActionRecord,
    roles: &Roles,
    now_ms: u64,
) -> Result<String, ApprovalError> {
    if approval.action != action.id {
        return Err(ApprovalError::WrongAction {
            approval: approval.action,
            action: action.id,
        });
    }
    if action.status != "pending" {
        return Err(ApprovalError::NotPending(action.id, action.status.clone()));
    }
    let key = PublicKey::parse(&approval.key).map_err(|_| ApprovalError::Forged)?;
    let signature: [u8; 64] = from_hex(&approval.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or(ApprovalError::Forged)?;
    let message = Approval::message(
        approval.action,
        &approval.hash,
        &approval.approver,
        approval.expires_ms,
    );
    let digest: [u8; 32] = Sha256::digest(&message).into();
    if !key.verifies(Domain::Approval, &digest, &signature) {
        return Err(ApprovalError::Forged);
    }
    // Both the stored hash and a recomputation must match what was signed: an edited action row
    // fails the recomputation, an approval of different parameters fails the comparison.
    if approval.hash != action.hash || action_hash(action) != action.hash {
        return Err(ApprovalError::Changed(action.id));
    }
    if now_ms > approval.expires_ms || now_ms > action.expires_ms {
        return Err(ApprovalError::Expired(action.id));
    }
    let person = roles
        .person_with_key(&key)
        .filter(|p| p.name == approval.approver)
        .ok_or_else(|| ApprovalError::UnknownKey(approval.key.clone()))?;
    if !roles.may_approve(person, &action.tool) {
        return Err(ApprovalError::NotAuthorised {
            person: person.name.clone(),
            tool: action.tool.clone(),
        });
    }
    Ok(person.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> ActionRecord {
        let mut a = ActionRecord {
            id: 7,
            task: 3,
            agent: "deployer".into(),
            user: "dev".into(),
            tool: "deploy".into(),
            params: "{\"env\":\"prod\"}".into(),
            hash: String::new(),
            status: "pending".into(),
            created_ms: 1000,
            expires_ms: now_ms() + 60_000,
            approver: None,
            result: None,
        };
        a.hash = action_hash(&a);
        a
    }

    fn roles(alice: &SecretKey, bob: &SecretKey) -> Roles {
        Roles::parse(
            "r.toml",
            &format!(
                "[person.alice]\nkey = \"{}\"\nroles = [\"release\"]\n[person.bob]\nkey = \"{}\"\nroles = [\"dev\"]\n[role.release]\napprove = [\"deploy\"]\n[role.dev]\nfs.read = [\"**\"]\n",
                alice.public(),
                bob.public()
            ),
        )
        .unwrap()
    }

    #[test]
    fn a_valid_approval_passes_and_every_tampering_fails() {
        let alice = SecretKey::generate().unwrap();
        let bob = SecretKey::generate().unwrap();
        let roles = roles(&alice, &bob);
        let a = action();
        let ok = Approval::sign(&a, "alice", &alice);
        assert_eq!(check(&ok, &a, &roles, now_ms()), Ok("alice".into()));

        // Parameters changed after approval (the stored row edited, hash left alone).
        let mut edited = a.clone();
        edited.params = "{\"env\":\"everything\"}".into();
        assert_eq!(
            check(&ok, &edited, &roles, now_ms()),
            Err(ApprovalError::Changed(7))
        );
        // The approval altered to claim another hash.
        let mut forged = ok.clone();
        forged.hash = "00".repeat(32);
        assert_eq!(
            check(&forged, &a, &roles, now_ms()),
            Err(ApprovalError::Forged)
        );
        // Used already.
        let mut done = a.clone();
        done.status = "performed".into();
        assert!(matches!(
            check(&ok, &done, &roles, now_ms()),
            Err(ApprovalError::NotPending(7, _))
        ));
        // Expired.
        assert_eq!(
            check(&ok, &a, &roles, a.expires_ms + 1),
            Err(ApprovalError::Expired(7))
        );
        // A person without the right.
        let by_bob = Approval::sign(&a, "bob", &bob);
        assert!(matches!(
            check(&by_bob, &a, &roles, now_ms()),
            Err(ApprovalError::NotAuthorised { .. })
        ));
        // A stranger's key claiming to be alice.
        let stranger = SecretKey::generate().unwrap();
        let fake = Approval::sign(&a, "alice", &stranger);
        assert!(matches!(
            check(&fake, &a, &roles, now_ms()),
            Err(ApprovalError::UnknownKey(_))
        ));
    }
}
