//! The host's data directory and everything durable in it: the state store ([`crate::store`]),
//! the audit log ([`crate::audit`]), the host's own signing key and the per-task staging areas.
//!
//! ```text
//! <data_dir>/
//!   host.key, host.pub   the host's key: signs audit checkpoints (created on first use, 0600)
//!   state.db             tasks, trust records, pending actions, checkpoints (SQLite, WAL)
//!   audit.log            the hash-chained audit log; audit.anchor its newest checkpoint
//!   staging/<task>/      a task's staged writes until applied or discarded
//!   owners/<id>.lock     one per open ledger (host or CLI process), locked while it lives
//! ```
//!
//! Opening a ledger recovers from a host that stopped mid-task: tasks left `running` by a process
//! that no longer holds its owner lock become `interrupted`, their staging is discarded, and both
//! are audited. Tasks of a host still running (a `warden task list` beside a `warden batch`) are
//! left alone. Every record goes to the
//! audit log before the state it describes is committed, and a failure to write the log is an
//! error the caller must not go past (irreversible actions fail closed on it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use crate::approval::{Approval, ApprovalError, action_hash};
use crate::audit::{AuditError, AuditEvent, AuditLog, Checkpoint, VerifyError, VerifyReport};
use crate::identity::{IdentityError, SecretKey};
use crate::policy::keys::PublicKey;
use crate::policy::{HostConfig, HostTool, Roles};
use crate::store::{
    ActionRecord, Durability, SqliteStore, StateStore, StoreError, StoredCheckpoint, now_ms,
};

/// Why the ledger could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The data directory could not be created or read.
    #[error(
        "cannot use the data directory {path}: {source}; set --data-dir or host.data_dir to a writable folder"
    )]
    Dir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The host key could not be read or created.
    #[error("the host key: {0}")]
    Key(#[from] IdentityError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be written or read.
    #[error("the audit log: {0}")]
    Audit(#[from] AuditError),
}

/// Why `warden audit verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditCheckError {
    /// The log itself is damaged.
    #[error(transparent)]
    Log(#[from] VerifyError),
    /// The checkpoint kept in the state store is not in the log: the log was rolled back or cut.
    #[error(
        "the state store holds a checkpoint at record {size} (head {head}) that the log does not contain: the log was truncated or rolled back"
    )]
    RolledBack {
        /// Records the checkpoint covers.
        size: u64,
        /// Its head hash.
        head: String,
    },
    /// Something could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The durable side of a host.
pub struct Ledger {
    dir: PathBuf,
    store: Box<dyn StateStore>,
    audit: AuditLog,
    key: SecretKey,
    checkpoint_every: u64,
    pending: Mutex<u64>,
    owner: String,
    owner_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("dir", &self.dir).finish()
    }
}

impl Ledger {
    /// Open (creating if needed) the data directory `dir`, signing a checkpoint every
    /// `checkpoint_every` audit records.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the directory, key, store or audit log cannot be used.
    pub fn open(dir: &Path, checkpoint_every: u64) -> Result<Ledger, LedgerError> {
        let dir_err = |source| LedgerError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(dir_err)?;
        create_private_dir(&dir.join("staging")).map_err(dir_err)?;
        let owners = dir.join("owners");
        create_private_dir(&owners).map_err(dir_err)?;
        sweep_owners(&owners);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let owner = format!("{}-{nanos}", std::process::id());
        let owner_lock = std::fs::File::create(owners.join(format!("{owner}.lock")))
            .and_then(|f| f.lock().map(|()| f))
            .map_err(dir_err)?;
        let key_path = dir.join("host.key");
        let key = if key_path.exists() {
            SecretKey::read(&key_path)?
        } else {
            let key = SecretKey::generate()?;
            key.write(&dir.join("host"))?;
            key
        };
        let store = SqliteStore::open(dir, Durability::Process)?;
        let audit = AuditLog::open(dir, key.signing_key().clone(), u64::MAX)?;
        let ledger = Ledger {
            dir: dir.to_path_buf(),
            store: Box::new(store),
            audit,
            key,
            checkpoint_every: checkpoint_every.max(1),
            pending: Mutex::new(0),
            owner,
            owner_lock: Some(owner_lock),
        };
        let alive = |owner: &str| owner == ledger.owner || owner_alive(&owners, owner);
        for task in ledger.store.recover(&alive)? {
            let staging = ledger.staging_root(task);
            let discarded = staging.exists() && std::fs::remove_dir_all(&staging).is_ok();
            ledger.record(
                AuditEvent::new("task-interrupted")
                    .task(task)
                    .detail(json!({ "staging_discarded": discarded })),
            )?;
            tracing::warn!(target: "warden::ledger", task, "task interrupted by a host stop");
        }
        Ok(ledger)
    }

    /// This process's owner id, recorded with every task it begins.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state store.
    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// The host's public key (verifies audit checkpoints).
    pub fn host_key(&self) -> PublicKey {
        self.key.public()
    }

    /// Where task `task` stages its writes.
    pub fn staging_root(&self, task: u64) -> PathBuf {
        self.dir.join("staging").join(task.to_string())
    }

    /// Append one audit record, signing a checkpoint when one is due.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Audit`] when the log cannot be written: the caller must not go on.
    pub fn record(&self, event: AuditEvent) -> Result<u64, LedgerError> {
        let seq = self.audit.append(event)?;
        let due = {
            let mut n = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n >= self.checkpoint_every
        };
        if due {
            self.checkpoint()?;
        }
        Ok(seq)
    }

    /// Sign a checkpoint now (also kept in the state store).
    ///
    /// # Errors
    ///
    /// When the log or the store cannot be written.
    pub fn checkpoint(&self) -> Result<Checkpoint, LedgerError> {
        let c = self.audit.checkpoint()?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        self.store.put_checkpoint(&StoredCheckpoint {
            size: c.size,
            head: c.head.clone(),
            key: c.key.clone(),
            signature: c.signature.clone(),
        })?;
        Ok(c)
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> &Path {
        self.audit.path()
    }

    /// Hold an irreversible tool call as a pending action and audit it. If the audit record
    /// cannot be written the action is marked failed and the error returned: fail closed.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] when the action cannot be stored or audited.
    pub fn hold_action(
        &self,
        task: u64,
        agent: &str,
        user: &str,
        tool: &str,
        params: &str,
        ttl: std::time::Duration,
    ) -> Result<ActionRecord, LedgerError> {
        let created_ms = now_ms();
        let action = self.store.add_action(
            &ActionRecord {
                id: 0,
                task,
                agent: agent.to_owned(),
                user: user.to_owned(),
                tool: tool.to_owned(),
                params: params.to_owned(),
                hash: String::new(),
                status: "pending".into(),
                created_ms,
                expires_ms: created_ms.saturating_add(ttl.as_millis() as u64),
                approver: None,
                result: None,
            },
            &action_hash,
        )?;
        let audited = self.record(
            AuditEvent::new("action-pending")
                .task(task)
                .agent(agent)
                .user(user)
                .detail(json!({
                    "action": action.id,
                    "tool": tool,
                    "hash": action.hash,
                    "expires_ms": action.expires_ms,
                })),
        );
        if let Err(e) = audited {
            self.store.settle_action(
                action.id,
                "pending",
                "failed",
                "-",
                "the audit log could not be written",
            )?;
            return Err(e);
        }
        Ok(action)
    }

    /// Check `approval` and, if it holds, perform the action with the host tool declared in
    /// `config`, through `perform` (the sandbox's `capabilities::tools::perform`). Every step is audited before it happens; an approval works once.
    ///
    /// # Errors
    ///
    /// [`ApproveError`]: the refusal (audited too), or the tool's failure.
    pub fn approve(
        &self,
        approval: &Approval,
        roles: &Roles,
        config: &HostConfig,
        perform: impl FnOnce(&HostTool, &str) -> Result<String, String>,
    ) -> Result<String, ApproveError> {
        let action = self
            .store
            .action(approval.action)
            .map_err(LedgerError::from)?;
        let approver = match crate::approval::check(approval, &action, roles, now_ms()) {
            Ok(name) => name,
            Err(refusal) => {
                self.record(
                    AuditEvent::new("approval-refused")
                        .task(action.task)
                        .agent(&action.agent)
                        .user(&action.user)
                        .detail(json!({
                            "action": action.id,
                            "approver": approval.approver,
                            "key": approval.key,
                            "why": refusal.to_string(),
                        })),
                )?;
                return Err(ApproveError::Refused(refusal));
            }
        };
        let tool = config
            .tool(&action.tool)
            .ok_or_else(|| ApproveError::NoTool(action.tool.clone()))?;
        // Audited before anything happens; no record, no action.
        self.record(
            AuditEvent::new("action-approved")
                .task(action.task)
                .agent(&action.agent)
                .user(&action.user)
                .detail(json!({"action": action.id, "approver": approver, "hash": action.hash})),
        )?;
        if !self
            .store
            .settle_action(action.id, "pending", "performing", &approver, "")
            .map_err(LedgerError::from)?
        {
            return Err(ApproveError::Refused(ApprovalError::NotPending(
                action.id,
                "already taken".into(),
            )));
        }
        let result = perform(tool, &action.params);
        let (status, text) = match &result {
            Ok(out) => ("performed", out.clone()),
            Err(why) => ("failed", why.clone()),
        };
        self.store
            .settle_action(action.id, "performing", status, &approver, &text)
            .map_err(LedgerError::from)?;
        self.record(
            AuditEvent::new(format!("action-{status}"))
                .task(action.task)
                .agent(&action.agent)
                .user(&action.user)
                .detail(json!({"action": action.id, "approver": approver, "result": text})),
        )?;
        result.map_err(ApproveError::Failed)
    }
}

/// Why `warden approve` did not perform an action.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// The approval was refused.
    #[error("approval refused: {0}")]
    Refused(ApprovalError),
    /// The host config no longer declares the tool.
    #[error(
        "the host configuration declares no tool `{0}`; add it under [[tools]] to perform this action"
    )]
    NoTool(String),
    /// The tool ran and failed.
    #[error("the action was approved but the tool failed: {0}")]
    Failed(String),
    /// The ledger failed (nothing was performed unless audited).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Close with a checkpoint so that cutting records off the end is detectable.
        let idle = *self.pending.lock().unwrap_or_else(|p| p.into_inner()) == 0;
        if !idle && let Err(e) = self.checkpoint() {
            tracing::error!(target: "warden::ledger", error = %e, "could not sign the closing audit checkpoint");
        }
        if self.owner_lock.take().is_some() {
            let _ =
                std::fs::remove_file(self.dir.join("owners").join(format!("{}.lock", self.owner)));
        }
    }
}

/// Whether the process `owner` still holds its lock (an unknown owner is gone).
fn owner_alive(owners: &Path, owner: &str) -> bool {
    if owner.is_empty() || owner.contains(['/', '.']) {
        return false;
    }
    match std::fs::File::open(owners.join(format!("{owner}.lock"))) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Remove the lock files of processes that are gone.
fn sweep_owners(owners: &Path) {
    let Ok(entries) = std::fs::read_dir(owners) else {
        return;
    };
    for entry in entries.flatten() {
        if let Ok(f) = std::fs::File::open(entry.path())
            && f.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Verify the audit log of the data directory `dir`: the chain, every checkpoint's signature
/// under the host key (`key`, or `dir/host.pub`), the anchor file, and the newest checkpoint
/// kept in the state store.
///
/// # Errors
///
/// [`AuditCheckError`] naming the first bad record.
pub fn verify_dir(dir: &Path, key: Option<PublicKey>) -> Result<VerifyReport, AuditCheckError> {
    let key = match key {
        Some(k) => k,
        None => read_public(&dir.join("host.pub"))?,
    };
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes()).map_err(|e| {
        LedgerError::Key(IdentityError::KeyFile {
            path: dir.join("host.pub"),
            why: e.to_string(),
        })
    })?;
    let anchor = crate::audit::read_anchor(dir).map_err(LedgerError::from)?;
    let stored = if dir.join("state.db").exists() {
        SqliteStore::open(dir, Durability::Process)
            .and_then(|s| s.latest_checkpoint())
            .map_err(LedgerError::from)?
    } else {
        None
    };
    let log = dir.join("audit.log");
    let report = crate::audit::verify(&log, &verifying, anchor.as_ref())?;
    if let Some(c) = stored {
        let stored = Checkpoint {
            size: c.size,
            head: c.head.clone(),
            key: c.key.clone(),
            signature: c.signature.clone(),
        };
        crate::audit::verify(&log, &verifying, Some(&stored)).map_err(|_| {
            AuditCheckError::RolledBack {
                size: c.size,
                head: c.head,
            }
        })?;
    }
    Ok(report)
}

fn read_public(path: &Path) -> Result<PublicKey, LedgerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        LedgerError::Key(IdentityError::KeyFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    })?;
    PublicKey::parse(text.trim()).map_err(|e| {
        LedgerError::Key(IdentityError::KeyFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskRecord;

    fn running_task(ledger: &Ledger) -> u64 {
        let task = TaskRecord {
            id: 0,
            agent: "hello".into(),
            agent_id: "unsigned/hello".into(),
            module_hash: "h".into(),
            user: "-".into(),
            level: 1,
            grant: serde_json::json!({}),
            status: "running".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: now_ms(),
            ended_ms: None,
        };
        ledger.store().begin_task(&task, ledger.owner()).unwrap()
    }

    #[test]
    fn only_the_tasks_of_a_host_that_is_gone_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let host = Ledger::open(dir.path(), 1024).unwrap();
        let id = running_task(&host);
        // A CLI opening the same data directory while the host runs leaves its task alone.
        let cli = Ledger::open(dir.path(), 1024).unwrap();
        assert_eq!(cli.store().task(id).unwrap().status, "running");
        drop(cli);
        // Once the host is gone (its owner lock released), the task is interrupted and audited.
        drop(host);
        let after = Ledger::open(dir.path(), 1024).unwrap();
        assert_eq!(after.store().task(id).unwrap().status, "interrupted");
        drop(after);
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(log.matches("\"task-interrupted\"").count(), 1);
        verify_dir(dir.path(), None).unwrap();
        // No owner lock files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("owners"))
                .unwrap()
                .count(),
            0
        );
    }
}
