//! A reviewer's part on the trust ladder, shared by `warden trust review | reinstate | report`
//! and the server's `/v1/trust` routes: finding an agent's trust record by name, showing the
//! trace that demoted it with its review code (audited `trust-reviewed`), reinstating it on a
//! [`Reinstatement`] — a statement signed by a person whose role may review, naming the agent
//! and the review code, so that no bearer token alone can reinstate an agent — and demoting it
//! on a reported regression in a task's work ([`report`]).
//!
//! What is signed: the bytes `warden-reinstate-v1\n{agent_id}\n{code}\n{reviewer}\n`, as every
//! signature of this project is made ([`crate::identity::SecretKey::sign`]): ed25519 over
//! `"warden/v1/review\0" || SHA-256(those bytes)`. The code binds the statement to one demotion
//! (it hashes the demoting task and its trace), so a statement cannot be replayed after the
//! agent is demoted again.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::AuditEvent;
use crate::identity::SecretKey;
use crate::ledger::{Ledger, LedgerError};
use crate::policy::keys::{Domain, PublicKey, from_hex};
use crate::policy::{Person, Roles};
use crate::store::{StateStore, StoreError, TaskRecord, TrustRecord};
use crate::trust::{Ladder, TrustChange, TrustError};

/// A reviewer's signed statement that they reviewed the trace that demoted an agent and
/// reinstate it (what `warden trust reinstate --save FILE` writes and
/// `POST /v1/trust/{agent}/reinstate` takes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reinstatement {
    /// The agent's full trust id (`<publisher>/<name>`).
    pub agent_id: String,
    /// The review code of the trace that demoted it (`warden trust review` prints it).
    pub code: String,
    /// The reviewer's name in the roles file.
    pub reviewer: String,
    /// The reviewer's public key (`ed25519:…`).
    pub key: String,
    /// The signature (hex) over the statement's bytes (see the module docs).
    pub signature: String,
}

/// Why a review or a reinstatement was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No trust record for that name.
    #[error("no trust record for `{0}`; `warden trust list` (or GET /v1/trust) shows the agents")]
    NoAgent(String),
    /// The name matches several agents.
    #[error("`{0}` names several agents; give the full id (`warden trust list`)")]
    Ambiguous(String),
    /// The signature does not verify.
    #[error("the reinstatement's signature does not verify: it was forged or altered")]
    Forged,
    /// The key is not the named person's in the roles file.
    #[error(
        "key {0} belongs to no person of that name in the roles file; add it as [person.<name>] key = \"{0}\""
    )]
    UnknownKey(String),
    /// The person holds no reviewing role.
    #[error("{0} holds no role with review = true; only a reviewer may reinstate an agent")]
    NotReviewer(String),
    /// The statement names another agent than the one asked for.
    #[error("the reinstatement is for {statement}, not {agent}")]
    WrongAgent {
        /// What the statement names.
        statement: String,
        /// What it was presented for.
        agent: String,
    },
    /// No task of that id (a reported regression names the task whose work regressed).
    #[error("there is no task {0}; `warden task list` (or GET /v1/tasks/ID) shows the tasks")]
    NoTask(u64),
    /// A reported regression's reason is empty or too long.
    #[error(
        "a regression report says what regressed in 1 to {MAX_REPORT_REASON} bytes of text; {0}"
    )]
    BadReason(String),
    /// The ladder refused (not held, or the code is not the trace's).
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The store could not be read or written.
    #[error("the state store failed: {0}")]
    Store(#[from] StoreError),
    /// The audit log could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The longest reason a regression report may give (what `warden trust list` shows of a
/// demotion).
pub const MAX_REPORT_REASON: usize = 4096;

/// What a reviewer is shown: the agent's record, the task that demoted it (with its trace),
/// and the code a reinstatement must carry (`None` when the agent is not held).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// The agent's trust record.
    pub record: TrustRecord,
    /// The task that demoted it (`None` when it was demoted at load, with no task).
    pub task: Option<TaskRecord>,
    /// The trace the code is computed over (the task's, or the demotion's reason).
    pub trace: Value,
    /// The review code, when the agent is held.
    pub code: Option<String>,
}

impl Reinstatement {
    /// The bytes a reviewer signs.
    pub fn message(agent_id: &str, code: &str, reviewer: &str) -> Vec<u8> {
        format!("warden-reinstate-v1\n{agent_id}\n{code}\n{reviewer}\n").into_bytes()
    }

    /// `reviewer` reinstates `agent_id` having seen the trace whose review code is `code`.
    pub fn sign(agent_id: &str, code: &str, reviewer: &str, key: &SecretKey) -> Reinstatement {
        let sig = key.sign(
            Domain::Review,
            &Reinstatement::message(agent_id, code, reviewer),
        );
        Reinstatement {
            agent_id: agent_id.to_owned(),
            code: code.trim().to_owned(),
            reviewer: reviewer.to_owned(),
            key: sig.key,
            signature: sig.signature,
        }
    }

    /// The person who signed, if the signature verifies, the key is the named person's in
    /// `roles`, and one of their roles may review.
    ///
    /// # Errors
    ///
    /// [`ReviewError::Forged`], [`ReviewError::UnknownKey`] or [`ReviewError::NotReviewer`].
    pub fn signer<'r>(&self, roles: &'r Roles) -> Result<&'r Person, ReviewError> {
        let key = PublicKey::parse(&self.key).map_err(|_| ReviewError::Forged)?;
        let signature: [u8; 64] = from_hex(&self.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or(ReviewError::Forged)?;
        let message = Reinstatement::message(&self.agent_id, &self.code, &self.reviewer);
        let digest: [u8; 32] = Sha256::digest(&message).into();
        if !key.verifies(Domain::Review, &digest, &signature) {
            return Err(ReviewError::Forged);
        }
        let person = roles
            .person_with_key(&key)
            .filter(|p| p.name == self.reviewer)
            .ok_or_else(|| ReviewError::UnknownKey(self.key.clone()))?;
        if !roles.may_review(person) {
            return Err(ReviewError::NotReviewer(person.name.clone()));
        }
        Ok(person)
    }
}

/// The trust record of `agent`: its full id, or a name only one agent has.
///
/// # Errors
///
/// [`ReviewError::NoAgent`], [`ReviewError::Ambiguous`], or the store's failure.
pub fn find_trust(store: &dyn StateStore, agent: &str) -> Result<TrustRecord, ReviewError> {
    let mut matches: Vec<TrustRecord> = store
        .trust_all()?
        .into_iter()
        .filter(|r| r.agent_id == agent || r.agent_id.rsplit('/').next() == Some(agent))
        .collect();
    // A full id names one agent even if its name is another's too.
    if let Some(i) = matches.iter().position(|r| r.agent_id == agent) {
        return Ok(matches.swap_remove(i));
    }
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(ReviewError::NoAgent(agent.to_owned())),
        _ => Err(ReviewError::Ambiguous(agent.to_owned())),
    }
}

/// The trace that demoted `record` and its task (`None` when it was demoted at load: the
/// reason is then the whole trace).
///
/// # Errors
///
/// The store's failure.
pub fn demoting_trace(
    store: &dyn StateStore,
    record: &TrustRecord,
) -> Result<(Value, Option<TaskRecord>), ReviewError> {
    match record.demoted_by_task.filter(|t| *t > 0) {
        Some(id) => {
            let t = store.task(id)?;
            Ok((t.trace.clone().unwrap_or_default(), Some(t)))
        }
        None => Ok((json!(record.demoted_reason), None)),
    }
}

/// Show a reviewer what demoted `agent` (`warden trust review`): its record, the task and
/// trace, and the review code. A held agent's review is audited (`trust-reviewed`) before the
/// code is returned.
///
/// # Errors
///
/// As [`find_trust`]; the audit log's failure.
pub fn review(ledger: &Ledger, agent: &str) -> Result<Review, ReviewError> {
    let record = find_trust(ledger.store(), agent)?;
    if !record.held {
        return Ok(Review {
            record,
            task: None,
            trace: Value::Null,
            code: None,
        });
    }
    let (trace, task) = demoting_trace(ledger.store(), &record)?;
    let code = Ladder::review_code(&record, &trace);
    ledger.record(
        AuditEvent::new("trust-reviewed")
            .agent(&record.agent_id)
            .detail(json!({"task": record.demoted_by_task})),
    )?;
    Ok(Review {
        record,
        task,
        trace,
        code: Some(code),
    })
}

/// Reinstate `agent` on `statement` (`warden trust reinstate`, `POST
/// /v1/trust/{agent}/reinstate`): the statement must be signed by a reviewer of `roles`, name
/// this agent, and carry the review code of the trace that demoted it. The change is audited
/// before it is stored. Returns the record as stored and the change.
///
/// # Errors
///
/// [`ReviewError`] saying which check failed; nothing is changed then.
pub fn reinstate(
    ledger: &Ledger,
    agent: &str,
    statement: &Reinstatement,
    roles: &Roles,
) -> Result<(TrustRecord, TrustChange), ReviewError> {
    let who = statement.signer(roles)?;
    let mut record = find_trust(ledger.store(), agent)?;
    if record.agent_id != statement.agent_id {
        return Err(ReviewError::WrongAgent {
            statement: statement.agent_id.clone(),
            agent: record.agent_id,
        });
    }
    let (trace, _) = demoting_trace(ledger.store(), &record)?;
    let change = Ladder::reinstate(&mut record, &trace, &statement.code, &who.name)?;
    ledger.record(
        AuditEvent::new(change.kind())
            .agent(&record.agent_id)
            .detail(json!({"change": change})),
    )?;
    ledger.store().put_trust(&record)?;
    Ok((record, change))
}

/// Report a regression found in the work of `task` (`warden trust report`, `POST
/// /v1/trust/{agent}/report`): its agent is demoted to level 1 and held until a reviewer
/// reinstates it. The demotion is audited (`trust-demoted`, naming the task, the change and
/// `reported_by` — the reporter when known) before it is stored. Returns the record as stored
/// and the change.
///
/// # Errors
///
/// [`ReviewError::BadReason`] for an empty or overlong `why`, [`ReviewError::NoTask`] for no
/// such task (nothing is changed then); the store's or the audit log's failure.
pub fn report(
    ledger: &Ledger,
    task: u64,
    why: &str,
    by: Option<&str>,
) -> Result<(TrustRecord, TrustChange), ReviewError> {
    if why.trim().is_empty() {
        return Err(ReviewError::BadReason("this one is empty".into()));
    }
    if why.len() > MAX_REPORT_REASON {
        return Err(ReviewError::BadReason(format!(
            "this one is {} bytes",
            why.len()
        )));
    }
    let store = ledger.store();
    let t = store.task(task).map_err(|e| match e {
        StoreError::NotFound(_) => ReviewError::NoTask(task),
        e => ReviewError::Store(e),
    })?;
    let mut record = store
        .trust(&t.agent_id)?
        .unwrap_or_else(|| TrustRecord::new(&t.agent_id, &t.module_hash));
    let verdict = crate::trust::Verdict::Demote(format!("regression reported: {why}"));
    let change = Ladder::after_task(&mut record, &verdict, u32::MAX, task)
        .ok_or_else(|| ReviewError::BadReason("the ladder made no change of it".into()))?;
    ledger.record(
        AuditEvent::new(change.kind())
            .task(task)
            .agent(&t.agent)
            .detail(json!({"agent_id": record.agent_id, "change": change, "reported_by": by})),
    )?;
    store.put_trust(&record)?;
    Ok((record, change))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(rita: &SecretKey, dan: &SecretKey) -> Roles {
        Roles::parse(
            "roles.toml",
            &format!(
                "[person.rita]\nkey = \"{}\"\nroles = [\"reviewer\"]\n[person.dan]\nkey = \"{}\"\nroles = [\"dev\"]\n[role.reviewer]\nreview = true\n[role.dev]\nfs.read = [\"**\"]\n",
                rita.public(),
                dan.public()
            ),
        )
        .unwrap()
    }

    #[test]
    fn only_a_reviewers_own_signature_passes() {
        let rita = SecretKey::generate().unwrap();
        let dan = SecretKey::generate().unwrap();
        let roles = roles(&rita, &dan);
        let ok = Reinstatement::sign("unsigned/probe", "abc123", "rita", &rita);
        assert_eq!(ok.signer(&roles).unwrap().name, "rita");
        // Altered after signing: the code, the agent, the name.
        for altered in [
            Reinstatement {
                code: "000000".into(),
                ..ok.clone()
            },
            Reinstatement {
                agent_id: "unsigned/other".into(),
                ..ok.clone()
            },
            Reinstatement {
                signature: "00".repeat(64),
                ..ok.clone()
            },
        ] {
            assert!(matches!(altered.signer(&roles), Err(ReviewError::Forged)));
        }
        // Signed by rita's key under dan's name: not dan's key.
        let claimed = Reinstatement::sign("unsigned/probe", "abc123", "dan", &rita);
        assert!(matches!(
            claimed.signer(&roles),
            Err(ReviewError::UnknownKey(_))
        ));
        // Dan's own, but dan may not review.
        let by_dan = Reinstatement::sign("unsigned/probe", "abc123", "dan", &dan);
        assert!(matches!(
            by_dan.signer(&roles),
            Err(ReviewError::NotReviewer(n)) if n == "dan"
        ));
        // A stranger.
        let stranger = SecretKey::generate().unwrap();
        let fake = Reinstatement::sign("unsigned/probe", "abc123", "rita", &stranger);
        assert!(matches!(
            fake.signer(&roles),
            Err(ReviewError::UnknownKey(_))
        ));
    }

    fn begun(ledger: &Ledger, agent: &str) -> u64 {
        ledger
            .store()
            .begin_task(
                &TaskRecord {
                    id: 0,
                    agent: agent.into(),
                    agent_id: format!("unsigned/{agent}"),
                    module_hash: "h".into(),
                    user: "dan".into(),
                    level: 2,
                    grant: json!({}),
                    status: "running".into(),
                    outcome: None,
                    trace: None,
                    staging: "none".into(),
                    staging_path: None,
                    started_ms: crate::store::now_ms(),
                    ended_ms: None,
                    parent: None,
                },
                ledger.owner(),
            )
            .unwrap()
    }

    #[test]
    fn a_reported_regression_demotes_and_holds_the_tasks_agent_audited() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), 1024).unwrap();
        let task = begun(&ledger, "probe");
        let mut earned = TrustRecord::new("unsigned/probe", "h");
        earned.level = 3;
        ledger.store().put_trust(&earned).unwrap();
        let (record, change) = report(&ledger, task, "broke the build", Some("rita")).unwrap();
        assert_eq!(
            (
                record.level,
                record.held,
                record.level_before,
                record.demoted_by_task
            ),
            (1, true, 3, Some(task))
        );
        assert!(matches!(change, TrustChange::Demoted { from: 3, .. }));
        let stored = ledger.store().trust("unsigned/probe").unwrap().unwrap();
        assert_eq!(stored, record);
        assert_eq!(
            stored.demoted_reason.as_deref(),
            Some("regression reported: broke the build")
        );
        let log = std::fs::read_to_string(ledger.audit_path()).unwrap();
        let demoted: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["kind"] == "trust-demoted")
            .collect();
        assert_eq!(demoted.len(), 1, "{log}");
        assert_eq!(demoted[0]["task"], task);
        assert_eq!(demoted[0]["detail"]["reported_by"], "rita");
        assert_eq!(demoted[0]["detail"]["agent_id"], "unsigned/probe");
    }

    #[test]
    fn a_report_without_a_task_or_a_reason_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), 1024).unwrap();
        let task = begun(&ledger, "probe");
        let long = "x".repeat(MAX_REPORT_REASON + 1);
        for (task, why) in [(task + 7, "broke"), (task, " \n"), (task, long.as_str())] {
            let e = report(&ledger, task, why, None).unwrap_err();
            assert!(
                matches!(e, ReviewError::NoTask(_) | ReviewError::BadReason(_)),
                "{e}"
            );
        }
        assert!(matches!(
            report(&ledger, task + 7, "broke", None),
            Err(ReviewError::NoTask(t)) if t == task + 7
        ));
        assert_eq!(ledger.store().trust_all().unwrap(), Vec::new());
        let log = std::fs::read_to_string(ledger.audit_path()).unwrap_or_default();
        assert!(!log.contains("trust-demoted"), "{log}");
    }
}
