//! The run path: one task in a fresh instance of a [`PreparedAgent`], with its own store, limits
//! (policy ∩ user ∩ host), kill switch, captured output and staged writes. What the host does
//! with the result (trust, ledger, applying or proposing the writes) is decided above.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_identity::credential::{TaskClaims, TaskContext};
use warden_identity::user::User;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::warden::agent::types as wit;
use crate::capabilities::fs::{FsScope, FsState};
use crate::capabilities::model::ModelSession;
use crate::capabilities::net::{NetHooks, NetScope};
use crate::capabilities::tools::ActionHold;
use crate::gate::{KillReason, KillSwitch, Trace, Violation};
use crate::instance::{CpuMeter, InstanceState, TaskLimiter};
use crate::outcome::{Description, MAX_HANDLES, Outcome, RunError, classify_trap, killed};
use crate::output::{CapturedOutput, OutputBudget, Stream};
use crate::prepare::PreparedAgent;
use crate::staging::Staging;

/// What one run is given besides its task.
#[derive(Clone)]
pub struct Execution<'a> {
    /// The task's id (in the ledger, or in this process).
    pub task: u64,
    /// When the run started (its wall-clock limit counts from here).
    pub started: Instant,
    /// The workspace folder the policy's `[fs]` paths are relative to.
    pub workspace: Option<&'a Path>,
    /// The user the agent acts for: its grant is intersected with the user's roles.
    pub user: Option<Arc<User>>,
    /// Where the staging area goes (`None`: a temporary folder).
    pub staging_root: Option<PathBuf>,
    /// The agent's trust level for the task (gates tools by their required level).
    pub level: u8,
    /// Where calls to irreversible tools are held (`None`: they are refused).
    pub hold: Option<Arc<dyn ActionHold>>,
    /// The task's model session (`None`: model calls get an error saying no provider is set).
    pub model: Option<Arc<dyn ModelSession>>,
    /// The task's calls to other agents (`None`: calls get an error saying the host runs none).
    pub agents: Option<Arc<dyn crate::capabilities::agents::AgentCalls>>,
    /// The task's view of the curated memory (`None`: reads find nothing, writes are refused).
    pub memory: Option<Arc<dyn crate::capabilities::memory::MemoryAccess>>,
    /// Whom the agent's questions go to (`None`: `ask` answers `unavailable`).
    pub human: Option<Arc<dyn crate::capabilities::human::HumanChannel>>,
}

impl std::fmt::Debug for Execution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("task", &self.task)
            .field("workspace", &self.workspace)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Executed {
    /// How it ended.
    pub outcome: Outcome,
    /// Its staged writes, if the policy grants writable folders: the caller applies, seals or
    /// discards them.
    pub staging: Option<Staging>,
    /// stdout, stderr and log records.
    pub output: CapturedOutput,
    /// CPU time of the task, the guest's and the host's on its behalf (thread CPU clock).
    pub cpu: Duration,
    /// The largest linear memory the instance grew to, in bytes.
    pub memory: u64,
    /// Every gate decision of the run.
    pub trace: Trace,
}

impl PreparedAgent {
    /// Run `task` in a fresh instance. The caller holds an instance slot
    /// ([`crate::Sandbox::slot`]).
    ///
    /// # Errors
    ///
    /// [`RunError`] when the run cannot start; everything the guest does ends in an [`Outcome`].
    pub async fn execute(&self, task: &str, run: Execution<'_>) -> Result<Executed, RunError> {
        let (mut store, staging) = self.new_store(Some(&run))?;
        store.data_mut().level = run.level;
        store.data_mut().hold = run.hold.clone();
        store.data_mut().model = run.model.clone();
        store.data_mut().agents = run.agents.clone();
        store.data_mut().memory = run.memory.clone();
        store.data_mut().human = run.human.clone();
        // The effective wall limit (policy ∩ user ∩ host), as the instance's meter holds it.
        let wall = store
            .data()
            .meter
            .wall_deadline
            .saturating_duration_since(Instant::now());
        let kill = store.data().kill.clone();
        let output = store.data().output.clone();
        let account = store.data().meter.account.clone();

        let call = async {
            let agent = self.pre.instantiate_async(&mut store).await?;
            agent.call_run(&mut store, task).await
        };
        let result = match tokio::time::timeout(wall, account.run(call)).await {
            Ok(r) => r,
            Err(_) => Err(kill.kill(Violation::new(
                KillReason::WallLimit,
                "limits.wall",
                "the task ran past its wall-clock limit",
            ))),
        };
        let cpu = store.data().meter.used();
        let memory = store.data().limiter.peak_memory;
        // A guest that returned after spending past its limit in its last stretch (a long host
        // call, a bulk-memory instruction) gets no epoch tick to be stopped at: it ends the same
        // way as one that was stopped (the check records the violation, which wins below).
        if result.is_ok() && !kill.is_killed() {
            let _ = store.data().meter.check(&kill);
        }
        drop(store);

        // A violation recorded outside a host call (the address check after DNS) wins over
        // whatever the guest managed to return before its next tick.
        let result = match (kill.violation(), result) {
            (Some(v), Ok(_)) => Err(wasmtime::Error::new(v)),
            (_, r) => r,
        };
        let outcome = match result {
            Ok(Ok(out)) => match output
                .charge(out.len(), "the result")
                .and_then(|()| output.screen(out.as_bytes(), "the result"))
            {
                Ok(()) => Outcome::Completed { output: out },
                Err(_) => killed(kill.violation()),
            },
            Ok(Err(wit::AgentError::InvalidInput(message))) => Outcome::AgentError {
                kind: "invalid-input",
                message,
            },
            Ok(Err(wit::AgentError::Failed(message))) => Outcome::AgentError {
                kind: "failed",
                message,
            },
            Err(err) => classify_trap(&kill, &err),
        };
        // A call refused for the task's budget ends the task for a person, whatever the guest
        // did next; a kill still wins (it is a violation, the budget is not).
        let escalation = run.model.as_ref().and_then(|m| m.escalation());
        let outcome = match (escalation, outcome) {
            (Some(reason), outcome) if !matches!(outcome, Outcome::Killed { .. }) => {
                Outcome::Escalated {
                    reason,
                    detail: "a model call would have exceeded the task's budget; a person decides whether to raise it and resume".into(),
                }
            }
            (_, outcome) => outcome,
        };
        Ok(Executed {
            outcome,
            staging,
            output: output.snapshot(),
            cpu,
            memory,
            trace: kill.trace(),
        })
    }

    /// Ask the agent to describe itself (in a fresh instance, like any run, with no folder).
    ///
    /// # Errors
    ///
    /// [`RunError`] when the instance cannot be set up, or a kill outcome as `RunError::Setup`.
    pub async fn describe(&self) -> Result<Description, RunError> {
        let _slot = self.sandbox.slot().await?;
        let (mut store, _staging) = self.new_store(None)?;
        let kill = store.data().kill.clone();
        let account = store.data().meter.account.clone();
        let call = async {
            let agent = self.pre.instantiate_async(&mut store).await?;
            agent.call_describe(&mut store).await
        };
        match tokio::time::timeout(self.policy.limits.wall, account.run(call)).await {
            Ok(Ok(d)) => Ok(Description {
                name: d.name,
                version: d.version,
                summary: d.summary,
                input_schema: d.input_schema,
                output_schema: d.output_schema,
            }),
            Ok(Err(e)) => Err(RunError::Setup(format!(
                "describe failed: {:?}",
                classify_trap(&kill, &e)
            ))),
            Err(_) => Err(RunError::Setup(
                "describe ran past the wall-clock limit".into(),
            )),
        }
    }

    /// A fresh store for one run (`None`: for `describe`, which gets no folder).
    fn new_store(
        &self,
        run: Option<&Execution<'_>>,
    ) -> Result<(Store<InstanceState>, Option<Staging>), RunError> {
        let sandbox = &self.sandbox;
        let policy = &self.policy;
        let started = run.map_or_else(Instant::now, |r| r.started);
        let id = run.map_or(0, |r| r.task);
        let acting_for = run.and_then(|r| r.user.clone());
        let user = acting_for.as_ref().map(|u| u.grant.clone());
        let limits = match &user {
            Some(u) => u.limit(&policy.limits),
            None => policy.limits.clone(),
        };
        let limits = &match &sandbox.ceiling {
            Some(ceiling) => limits.capped_by(ceiling),
            None => limits,
        };
        let kill = KillSwitch::new(policy.agent.name.as_str().into(), id);
        let task = TaskContext::new(
            sandbox.minter.clone(),
            TaskClaims {
                task: id,
                agent: policy.agent.name.clone(),
                user: acting_for
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |u| u.subject.clone()),
            },
            limits.wall,
        )
        .map_err(|e| RunError::Setup(e.to_string()))?;
        let output = OutputBudget::new(limits.output, kill.clone(), sandbox.secrets.clone());

        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.writer(Stream::Stdout))
            .stderr(output.writer(Stream::Stderr))
            .max_random_size(crate::capabilities::random::MAX_RANDOM_BYTES)
            // File operations run on the task's own thread, where its CPU meter sees them: on
            // a blocking thread a listing or a deep path walk would cost the guest nothing.
            // Each one is bounded (path length and depth, symlink hops, read sizes).
            .allow_blocking_current_thread(true);

        let mut staging = None;
        // Without mounts (describe) the file capability is still linked if granted, but it has
        // no folder: any use of it kills.
        let mut fs = FsState::new(FsScope::unbound(&policy.fs));
        if let (false, Some(run)) = (policy.fs.is_empty(), run) {
            let workspace = run
                .workspace
                .ok_or_else(|| RunError::NoWorkspace(policy.agent.name.clone()))?;
            let mut scope = FsScope::bind(&policy.fs, workspace)?.for_user(user.clone());
            let writable: Vec<(PathBuf, String)> = scope
                .mounts()
                .iter()
                .filter(|m| m.writable)
                .map(|m| (m.host.clone(), m.rel.clone()))
                .collect();
            // Each writable folder is served from an empty staging folder that the overlay fills
            // on demand: nothing of the workspace is copied up front. With a ledger the staging
            // area is kept in its data directory, so a proposed change outlives the process.
            if !writable.is_empty() {
                let stage = match &run.staging_root {
                    Some(root) => Staging::create(root, &writable)?,
                    None => Staging::new(&writable)?,
                };
                for f in stage.folders() {
                    scope.restage(&f.original, &f.staged)?;
                }
                staging = Some(stage);
            }
            for m in scope.mounts() {
                let perms = if m.writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                wasi.preopened_dir(&m.host, &m.guest, perms).map_err(|e| {
                    RunError::Setup(format!("cannot open {}: {e}", m.host.display()))
                })?;
            }
            fs = FsState::new(scope);
            if let Some(stage) = &staging {
                fs = fs.with_overlay(stage.overlay());
            }
        }

        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let meter = CpuMeter::new(limits.cpu, started, limits.wall);
        let state = InstanceState {
            wasi: wasi.build(),
            table,
            http: WasiHttpCtx::new(),
            net: NetHooks::new(
                Arc::new(NetScope::new(self.net.clone(), user.clone())),
                kill.clone(),
                sandbox.secrets.clone(),
                meter.account.clone(),
            ),
            fs,
            tools: sandbox.tools.clone(),
            policy: policy.clone(),
            user,
            task,
            limiter: TaskLimiter {
                memory: limits.memory,
                tables: limits.tables,
                kill: kill.clone(),
                peak_memory: 0,
            },
            meter,
            kill,
            output,
            level: 1,
            hold: None,
            model: None,
            agents: None,
            memory: None,
            human: None,
            _ticking: sandbox.engine.ticking(),
        };
        let mut store = Store::new(sandbox.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.meter.on_deadline(&state.kill)
        });
        Ok((store, staging))
    }
}
