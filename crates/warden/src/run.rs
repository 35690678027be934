//! The run path of a host: one task of a [`LoadedAgent`] — its ledger records opened
//! (`record.rs`), a fresh instance in the sandbox, its staged writes applied, proposed or
//! discarded by the agent's trust level, the records closed — and the [`RunReport`] it returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::calls::Place;
use crate::output::CapturedOutput;
use crate::record::{LedgerHold, Usage};
use crate::runtime::LoadedAgent;
use crate::staging::AppliedChanges;
use crate::store::TrustRecord;
use warden_orchestra::model::Spend;
use warden_sandbox::{Execution, Outcome, RunError, outcome_name};

/// Everything about one finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The task's number in this host process.
    pub task: u64,
    /// The agent's name.
    pub agent: String,
    /// How it ended.
    pub outcome: Outcome,
    /// stdout, stderr and log records.
    pub output: CapturedOutput,
    /// File changes applied to the workspace (only for completed runs).
    pub applied: Option<AppliedChanges>,
    /// What became of the task's staged writes.
    pub staging: StagingDisposition,
    /// The agent's trust level for the task (on a host with a ledger).
    pub level: Option<u8>,
    /// Wall-clock time from the start of the run (JSON: `elapsed_us`).
    #[serde(rename = "elapsed_us", serialize_with = "micros")]
    pub elapsed: Duration,
    /// CPU time of the task, the guest's and the host's on its behalf, from the thread CPU
    /// clock (JSON: `cpu_us`).
    #[serde(rename = "cpu_us", serialize_with = "micros")]
    pub cpu: Duration,
    /// What the task's model calls used (when its policy grants a model on a host with
    /// providers): calls, tokens, cached tokens, cost, the models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Spend>,
    /// The task's row as the ledger stored it at its end (on a host with a ledger), for a
    /// caller that hands it on without reading it back.
    #[serde(skip)]
    pub row: Option<Arc<crate::store::TaskRecord>>,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What became of a task's staged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StagingDisposition {
    /// Nothing was written.
    None,
    /// Applied to the workspace.
    Applied,
    /// Kept for a reviewer: `warden task diff | apply | discard`.
    Proposed,
    /// Thrown away (the task did not complete).
    Discarded,
}

impl StagingDisposition {
    /// Its name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            StagingDisposition::None => "none",
            StagingDisposition::Applied => "applied",
            StagingDisposition::Proposed => "proposed",
            StagingDisposition::Discarded => "discarded",
        }
    }
}

/// Options for one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The workspace folder the policy's `[fs]` paths are relative to.
    pub workspace: Option<PathBuf>,
    /// The user the agent acts for: its grant is then intersected with the user's roles.
    pub user: Option<Arc<crate::user::User>>,
    /// Told the task's id as soon as it has one (on a host with a ledger: once its row is
    /// stored), before the instance starts; a server acknowledges a task then. Only the root
    /// task of a run is told, never the tasks it calls. `None` by default.
    pub on_begin: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// The `queued` task row the run starts from (a server's durable queue): the root task
    /// keeps that id instead of getting a new row. `None` by default.
    pub queued: Option<u64>,
    /// The MCP client that called the tool this run serves (its `provider = "mcp-client"`
    /// models ask it). Only the root task of a run has it, never the tasks it calls. `None`
    /// by default (the CLI, the HTTP API, A2A).
    pub client: Option<crate::mcp::client::ClientHandle>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("workspace", &self.workspace)
            .field("user", &self.user)
            .field("on_begin", &self.on_begin.as_ref().map(|_| "Fn(u64)"))
            .field("queued", &self.queued)
            .field("client", &self.client)
            .finish()
    }
}

impl LoadedAgent {
    /// Run `task` in a fresh instance.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the run cannot start; everything the guest does ends in an [`Outcome`].
    pub async fn run(&self, task: &str, options: &RunOptions) -> Result<RunReport, RunError> {
        // The contract first: its describe takes an instance slot of its own.
        self.contract().await?;
        let _slot = self.prepared.sandbox().slot().await?;
        self.run_in(task, options, None).await
    }

    /// Run `task` in a fresh instance, as the root of a task tree (`place` is `None`) or as a
    /// callee at `place` (an agent call, `calls.rs`: the caller holds the instance slot).
    pub(crate) async fn run_in(
        &self,
        task: &str,
        options: &RunOptions,
        place: Option<Place>,
    ) -> Result<RunReport, RunError> {
        // A task a user starts: their roles must list the agent (its callees are checked per hop).
        if place.is_none()
            && let Some(user) = &options.user
            && !user.grant.allows_agent(&self.prepared.policy().agent.name)
        {
            return Err(self.refuse_not_granted(user)?);
        }
        let user = options.user.as_ref().map(|u| u.subject.as_str());
        let span = crate::telemetry::task_span(&self.prepared.policy().agent.name, user, None);
        tracing::Instrument::instrument(self.run_spanned(task, options, place), span).await
    }

    /// [`LoadedAgent::run_in`] inside the task's span.
    async fn run_spanned(
        &self,
        task: &str,
        options: &RunOptions,
        place: Option<Place>,
    ) -> Result<RunReport, RunError> {
        // The input against the agent's contract: a task that breaks it never starts an instance.
        let contract = self.contract().await?;
        if let Some(Err(detail)) = contract.as_ref().map(|c| c.check_input(task)) {
            let agent = self.prepared.policy().agent.name.clone();
            if let Some(ledger) = &self.runtime.ledger {
                let user = options.user.as_ref().map_or("-", |u| u.subject.as_str());
                ledger
                    .record(
                        crate::audit::AuditEvent::new("task-refused")
                            .agent(&agent)
                            .user(user)
                            .detail(serde_json::json!({"why": "input-contract", "detail": detail})),
                    )
                    .map_err(|e| RunError::Ledger(e.to_string()))?;
            }
            return Err(RunError::InputContract { agent, detail });
        }
        let started = Instant::now();
        let ledger = self.runtime.ledger.clone();
        let root = place.is_none();
        let place = place.unwrap_or_else(|| Place::root(self, options, started));
        let (mut trust, begun) = match &ledger {
            Some(l) => {
                let (trust, row) = self.begin(l, options, &place).await?;
                (trust, Some(row))
            }
            None => (
                TrustRecord::new(&self.identity.agent_id, &self.identity.module_hash),
                None,
            ),
        };
        let id = begun.as_ref().map_or_else(
            || self.runtime.tasks.fetch_add(1, Ordering::Relaxed) + 1,
            |row| row.id,
        );
        place.set_id(id);
        tracing::Span::current().record("task", id);
        if let Some(told) = options.on_begin.as_ref().filter(|_| root) {
            told(id);
        }
        let level = trust.level;
        let session = self.model_session(id, options, ledger.clone(), place.budget());
        let execution = Execution {
            task: id,
            started,
            workspace: options.workspace.as_deref(),
            user: options.user.clone(),
            staging_root: ledger.as_ref().map(|l| l.staging_root(id)),
            level,
            hold: ledger.clone().map(|l| {
                Arc::new(LedgerHold(l)) as Arc<dyn crate::capabilities::tools::ActionHold>
            }),
            model: session
                .clone()
                .map(|s| s as Arc<dyn crate::capabilities::model::ModelSession>),
            agents: place.calls(self, id, options, session.clone()),
            memory: self
                .memory_access(id, options, ledger.clone())
                .map(|m| m as Arc<dyn crate::capabilities::memory::MemoryAccess>),
            human: Some(Arc::new(crate::mcp::elicit::RunPerson::new(
                options.client.clone(),
                ledger.clone(),
                id,
                &self.prepared.policy().agent.name,
                options.user.as_ref().map_or("-", |u| u.subject.as_str()),
            ))),
        };
        // A start left unwritten (`record.rs`, `defers_start`) is written if the run goes on
        // for long, or if it is dropped before its end. A callee in its caller's deferred tree
        // leaves the wait to the tree's root, which began first and writes the whole tree.
        let deferred = ledger
            .as_ref()
            .and_then(|l| Some((l, l.deferred_root(id)?)));
        let _unwritten = deferred.map(|(l, _)| crate::record::WriteOnDrop(l, id));
        let run = std::pin::pin!(self.prepared.execute(task, execution));
        let executed = match deferred {
            Some((l, root)) if root == id => crate::record::writing_after(l, id, run).await?,
            _ => run.await,
        };
        // The task's model spend is charged up its tree now, so its caller sees it.
        if let Some(s) = &session {
            s.settle();
        }
        let executed = match executed {
            Ok(e) => e,
            Err(e) => {
                if let Some(l) = &ledger {
                    self.abandon(l, id, &e).await?;
                }
                return Err(e);
            }
        };
        let mut outcome = executed.outcome;
        let policy = self.prepared.policy();
        // A result that breaks the agent's own output schema is a breach: recorded and demoted
        // like a violation, its staged writes discarded.
        if let Outcome::Completed { output } = &outcome
            && let Some(Err(detail)) = contract.as_ref().map(|c| c.check_output(output))
        {
            outcome = Outcome::Killed {
                reason: warden_sandbox::KillReason::ContractBreach,
                capability: "contract".into(),
                detail: format!("the result breaks the agent's output schema: {detail}"),
            };
        }

        // Staged writes: applied when the agent's level lets it commit them (always, on a host
        // without a ledger), proposed for a reviewer otherwise, discarded unless completed.
        let mut applied = None;
        let mut disposition = StagingDisposition::None;
        if let Some(staging) = executed.staging {
            if let Some((l, _)) = deferred {
                l.write_deferred_async(id)
                    .await
                    .map_err(|e| RunError::Ledger(e.to_string()))?;
            }
            let completed = matches!(outcome, Outcome::Completed { .. });
            let commits =
                ledger.is_none() || level >= policy.trust.write_level() || place.working_copy();
            let done = if !completed {
                disposition = StagingDisposition::Discarded;
                staging.discard()
            } else if commits {
                staging.apply().map(|changes| {
                    disposition = if changes.written.is_empty() && changes.removed.is_empty() {
                        StagingDisposition::None
                    } else {
                        StagingDisposition::Applied
                    };
                    applied = Some(changes);
                })
            } else {
                match staging.diff() {
                    Ok(diff) if diff.is_empty() => {
                        disposition = StagingDisposition::None;
                        staging.discard()
                    }
                    Ok(_) => {
                        disposition = StagingDisposition::Proposed;
                        staging.seal()
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = done {
                outcome = Outcome::AgentError {
                    kind: "failed",
                    message: format!("the host could not stage the agent's file changes: {e}"),
                };
            }
        }
        let elapsed = started.elapsed();
        let model = session.map(|s| s.spend());
        let mut row = None;
        if let (Some(l), Some(begun)) = (&ledger, begun) {
            let ended = self
                .finish(
                    l,
                    begun,
                    &outcome,
                    &executed.trace,
                    &mut trust,
                    disposition,
                    Usage {
                        elapsed,
                        cpu: executed.cpu,
                        memory: executed.memory,
                        model: model.as_ref(),
                        spared: place.spares(&outcome),
                    },
                )
                .await?;
            row = Some(Arc::new(ended));
        }
        let report = RunReport {
            task: id,
            agent: policy.agent.name.clone(),
            outcome,
            output: executed.output,
            applied,
            staging: disposition,
            level: ledger.as_ref().map(|_| level),
            elapsed,
            cpu: executed.cpu,
            model,
            row,
        };
        tracing::info!(
            target: "warden::run",
            agent = %report.agent,
            task = id,
            status = outcome_name(&report.outcome),
            elapsed_us = report.elapsed.as_micros() as u64,
            "run finished"
        );
        Ok(report)
    }
}

impl LoadedAgent {
    /// The error for a `user` whose roles do not list this agent, after its `task-refused`
    /// audit record (why `agent-not-granted`).
    fn refuse_not_granted(&self, user: &crate::user::User) -> Result<RunError, RunError> {
        let agent = self.prepared.policy().agent.name.clone();
        if let Some(ledger) = &self.runtime.ledger {
            ledger
                .record(
                    crate::audit::AuditEvent::new("task-refused")
                        .agent(&agent)
                        .user(&user.subject)
                        .detail(serde_json::json!({"why": "agent-not-granted"})),
                )
                .map_err(|e| RunError::Ledger(e.to_string()))?;
        }
        Ok(RunError::NotGranted {
            agent,
            user: user.subject.clone(),
        })
    }
}
