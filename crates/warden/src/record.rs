//! A task's records in the ledger: opened before the instance exists (trust record for this
//! module, task row, `task-started`), closed after it ended (kill and staging records, the
//! ladder's verdict, `task-ended` binding the trace by its hash, then the task row and trust
//! record in one commit); and the ledger as the place irreversible tool calls are held.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sha2::Digest;

use crate::audit::AuditEvent;
use crate::calls::Place;
use crate::capabilities::tools::{ActionHold, HeldAction, HeldCall};
use crate::ledger::Ledger;
use crate::policy::Policy;
use crate::run::{RunOptions, StagingDisposition};
use crate::runtime::LoadedAgent;
use crate::store::{TaskEnd, TaskRecord, TrustRecord, now_ms};
use crate::trust::{Ladder, Verdict};
use warden_sandbox::{Outcome, RunError, outcome_name};

/// What one task used: wall time, guest CPU time, peak linear memory, model calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage<'a> {
    pub elapsed: Duration,
    pub cpu: Duration,
    pub memory: u64,
    pub model: Option<&'a warden_orchestra::model::Spend>,
    /// Killed for a wall limit that its caller or task tree imposed, not its own: no demotion.
    pub spared: bool,
}

/// The ledger, as the sandbox's place to hold irreversible tool calls for approval.
pub(crate) struct LedgerHold(pub Arc<Ledger>);

impl ActionHold for LedgerHold {
    fn hold(&self, call: &HeldCall<'_>, ttl: Duration) -> Result<HeldAction, String> {
        self.0
            .hold_action(call.task, call.agent, call.user, call.tool, call.input, ttl)
            .map(|a| HeldAction {
                id: a.id,
                hash: a.hash,
                expires_ms: a.expires_ms,
            })
            .map_err(|e| e.to_string())
    }
}

/// A summary of the effective grant of one task, for its record.
fn grant_summary(
    policy: &Policy,
    user: Option<&crate::user::User>,
    level: u8,
    place: &Place,
) -> serde_json::Value {
    let strings =
        |v: &[crate::policy::PathPattern]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "policy": policy.source,
        "user": user.map(|u| u.subject.clone()),
        "roles": user.map(|u| u.roles.clone()),
        // A callee's grant is also bounded by the policy of every caller up to the root.
        "called_by": place.parent(),
        "level": level,
        "fs": {"read": strings(&policy.fs.read), "write": strings(&policy.fs.write)},
        "net": policy.net.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "tools": policy.tools.allow,
        "write_level": policy.trust.write_level(),
        "limits": {
            "memory": policy.limits.memory,
            "cpu_ms": policy.limits.cpu.as_millis() as u64,
            "wall_ms": policy.limits.wall.as_millis() as u64,
            "output": policy.limits.output,
        },
    })
}

/// How long a task may run with its start unwritten: past this, `writing_after` writes it, so
/// a task that runs for a while is in the store (`warden task list`) and interrupted, not
/// missing, if the host is killed.
const DEFER_AT_MOST: Duration = Duration::from_millis(5);

/// Await `run` (task `id`'s execution), writing the task's deferred start if it has not ended
/// after [`DEFER_AT_MOST`]. `run` is borrowed where its caller pinned it: taken by value it was
/// stored twice in this future (the argument and its pinned copy), and every future around it is
/// moved whole at each layer of a run (`run_in`'s future: 11.6 KB then, 7.7 KB now).
pub(crate) async fn writing_after<F: std::future::Future>(
    ledger: &Ledger,
    id: u64,
    mut run: std::pin::Pin<&mut F>,
) -> Result<F::Output, RunError> {
    tokio::select! {
        biased;
        done = &mut run => Ok(done),
        () = tokio::time::sleep(DEFER_AT_MOST) => {
            ledger
                .write_deferred_async(id)
                .await
                .map_err(|e| RunError::Ledger(e.to_string()))?;
            Ok(run.await)
        }
    }
}

/// Writes a task's deferred start when dropped before its end (a run dropped so leaves its
/// `running` row, as a run whose start was written does).
pub(crate) struct WriteOnDrop<'a>(pub &'a Ledger, pub u64);

impl Drop for WriteOnDrop<'_> {
    fn drop(&mut self) {
        if !self.0.is_deferred(self.1) {
            return;
        }
        if let Err(e) = self.0.write_deferred(self.1) {
            tracing::error!(target: "warden::run", task = self.1, error = %e, "could not write a deferred task start");
        }
    }
}

/// Whether a task may keep its start unwritten until its end ([`Ledger::defer_task`]): its
/// grant reaches nothing outside the host's ledger but the files it reads and the agents it
/// calls (no writes, network, tools, model, memory writes or questions to a person, whose
/// effects or records would come before its start is written), and no one is told its id when
/// it begins.
fn defers_start(policy: &Policy, options: &RunOptions) -> bool {
    options.on_begin.is_none()
        && policy.fs.write.is_empty()
        && policy.net.is_empty()
        && policy.tools.is_empty()
        && policy.model.is_empty()
        && policy.memory.write.is_empty()
        && !policy.human.ask
}

impl LoadedAgent {
    /// Open the task in the ledger: the agent's trust record for this module, the task row and
    /// its first audit record (both naming the caller's task, for an agent call).
    pub(crate) async fn begin(
        &self,
        ledger: &Ledger,
        options: &RunOptions,
        place: &Place,
    ) -> Result<(TrustRecord, TaskRecord), RunError> {
        let fail = |e: crate::ledger::LedgerError| RunError::Ledger(e.to_string());
        let store = ledger.store();
        let policy = self.prepared.policy();
        let existing = ledger.trust(&self.identity.agent_id).map_err(fail)?;
        let (trust, change) = Ladder::for_module(
            existing,
            &self.identity.agent_id,
            &self.identity.module_hash,
            policy.trust.inherit,
        );
        if let Some(change) = change {
            ledger
                .record(
                    AuditEvent::new(change.kind())
                        .agent(&policy.agent.name)
                        .detail(json!({"agent_id": self.identity.agent_id, "change": change})),
                )
                .map_err(fail)?;
            store.put_trust(&trust).map_err(|e| fail(e.into()))?;
        }
        let user = options.user.as_deref();
        let subject = user.map_or("-", |u| u.subject.as_str());
        let grant = grant_summary(policy, user, trust.level, place);
        let row = TaskRecord {
            id: 0,
            agent: policy.agent.name.clone(),
            agent_id: self.identity.agent_id.clone(),
            module_hash: self.identity.module_hash.clone(),
            user: subject.to_owned(),
            level: trust.level,
            grant: grant.clone(),
            status: "running".into(),
            outcome: None,
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: now_ms(),
            ended_ms: None,
            parent: place.parent(),
        };
        let started = AuditEvent::new("task-started")
            .agent(&policy.agent.name)
            .user(subject)
            .detail(json!({
                "agent_id": self.identity.agent_id,
                "module_hash": self.identity.module_hash,
                "level": trust.level,
                "grant": grant,
                "parent": place.parent(),
                "depth": place.depth(),
            }));
        // The row as stored is kept: its end is written over it (`finish`), which then knows
        // the whole ended row without reading it back.
        let row = match options.queued.filter(|_| place.parent().is_none()) {
            // A task the server queued keeps the id it was acknowledged with.
            Some(id) => {
                let row = TaskRecord { id, ..row };
                store
                    .start_queued_task(&row, ledger.owner())
                    .map_err(|e| fail(e.into()))?;
                ledger.record(started.task(id)).map_err(fail)?;
                row
            }
            // Nothing it does can be seen outside before its end or a record naming it: the
            // start waits for them (`warden_ledger::ledger::defer`).
            None if defers_start(policy, options) => {
                ledger.defer_task(row, started).map_err(fail)?
            }
            // The row and its first record in one group commit (`warden_ledger::ledger`).
            None => ledger.begin_task_async(row, started).await.map_err(fail)?,
        };
        Ok((trust, row))
    }

    /// A task that could not start: record it as ended without running.
    pub(crate) async fn abandon(
        &self,
        ledger: &Ledger,
        id: u64,
        error: &RunError,
    ) -> Result<(), RunError> {
        let fail = |e: crate::ledger::LedgerError| RunError::Ledger(e.to_string());
        let trust = ledger
            .trust(&self.identity.agent_id)
            .map_err(fail)?
            .unwrap_or_else(|| {
                TrustRecord::new(&self.identity.agent_id, &self.identity.module_hash)
            });
        ledger
            .end_task_async(
                vec![
                    AuditEvent::new("task-failed-to-start")
                        .task(id)
                        .agent(&self.prepared.policy().agent.name)
                        .detail(json!({"why": error.to_string()})),
                ],
                TaskEnd {
                    id,
                    status: "failed-to-start".into(),
                    outcome: json!({"status": "failed-to-start", "why": error.to_string()}),
                    trace: json!({"events": [], "dropped": 0}),
                    staging: "none".into(),
                    staging_path: None,
                    ended_ms: now_ms(),
                    trust: Some(trust),
                },
            )
            .await
            .map(drop)
            .map_err(fail)
    }

    /// Close the task in the ledger: kill and staging records, the ladder's verdict, the end
    /// record (binding the trace by its hash), then the task row and trust record in one commit.
    ///
    /// Returns the task's row as it now stands in the store: `begun` (as [`LoadedAgent::begin`]
    /// stored it) with its end.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish(
        &self,
        ledger: &Ledger,
        begun: TaskRecord,
        outcome: &Outcome,
        trace: &crate::gate::Trace,
        trust: &mut TrustRecord,
        disposition: StagingDisposition,
        usage: Usage<'_>,
    ) -> Result<TaskRecord, RunError> {
        let fail = |e: crate::ledger::LedgerError| RunError::Ledger(e.to_string());
        let id = begun.id;
        let policy = self.prepared.policy();
        let agent = policy.agent.name.as_str();
        let event = |kind: &str| AuditEvent::new(kind).task(id).agent(agent);
        // Every record of the end, written with the row in one group commit.
        let mut records = Vec::with_capacity(2);
        let verdict = match outcome {
            Outcome::Completed { .. } => Verdict::Clean,
            // An escalation (the budget cap) is not a violation: no demotion, the streak restarts.
            Outcome::AgentError { .. } | Outcome::Escalated { .. } => Verdict::AgentError,
            Outcome::Killed {
                reason,
                capability,
                detail,
            } => {
                records.push(event("task-killed").detail(json!({
                    "reason": reason,
                    "capability": capability,
                    "detail": detail,
                    "demotes": !usage.spared,
                })));
                if usage.spared {
                    // Its caller or tree left it less time than its own limit.
                    Verdict::AgentError
                } else {
                    Verdict::Demote(format!("killed ({reason}) by {capability}: {detail}"))
                }
            }
        };
        let staging_path = (disposition == StagingDisposition::Proposed)
            .then(|| ledger.staging_root(id).display().to_string());
        if disposition != StagingDisposition::None {
            records.push(
                event(&format!("staging-{}", disposition.as_str())).detail(json!({
                    "level": trust.level,
                    "write_level": policy.trust.write_level(),
                })),
            );
        }
        let level = trust.level;
        if let Some(change) = Ladder::after_task(trust, &verdict, policy.trust.promote_after, id) {
            records.push(event(change.kind()).detail(json!({
                "agent_id": trust.agent_id,
                "change": change,
            })));
        }
        let trace_json = serde_json::to_value(trace).unwrap_or_default();
        let trace_hash =
            crate::policy::keys::to_hex(&sha2::Sha256::digest(trace_json.to_string().as_bytes()));
        let mut outcome_json = serde_json::to_value(outcome).unwrap_or_default();
        outcome_json["usage"] = json!({
            "elapsed_us": usage.elapsed.as_micros() as u64,
            "cpu_us": usage.cpu.as_micros() as u64,
            "peak_memory": usage.memory,
        });
        if let Some(spend) = usage.model {
            outcome_json["usage"]["model"] = json!(spend);
        }
        let status = outcome_name(outcome);
        records.push(event("task-ended").detail(json!({
                "status": status,
                "level": level,
                "trace_sha256": trace_hash,
                "trace_events": trace.events.len(),
                "elapsed_us": usage.elapsed.as_micros() as u64,
                "cpu_us": usage.cpu.as_micros() as u64,
                "peak_memory": usage.memory,
                "model": usage.model,
        })));
        let end = TaskEnd {
            id,
            status: status.to_owned(),
            outcome: outcome_json,
            trace: trace_json,
            staging: disposition.as_str().to_owned(),
            staging_path,
            ended_ms: now_ms(),
            trust: Some(trust.clone()),
        };
        let end = ledger.end_task_async(records, end).await.map_err(fail)?;
        Ok(TaskRecord {
            status: end.status,
            outcome: Some(end.outcome),
            trace: Some(end.trace),
            staging: end.staging,
            staging_path: end.staging_path,
            ended_ms: Some(end.ended_ms),
            ..begun
        })
    }
}
