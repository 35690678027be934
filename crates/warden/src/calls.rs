//! Agent-to-agent calls (`[agents] call` in a policy, `warden:agent/agents` in WIT): the host's
//! side of one task's calls ([`TaskCalls`], the sandbox's [`AgentCalls`]) and each task's place
//! in its task tree ([`Place`]).
//!
//! The sandbox's gate has already killed a caller that names an agent its policy does not list.
//! A call that passes it is a hop:
//!
//! 1. The tree's limits (`[agents]` in `warden.toml`): the task's calls so far (`max_fanout`),
//!    the callee's depth below the task a user started (`max_depth`; the root is depth 0) and the
//!    time left to the caller and to the tree (`tree_wall` from the root's start). Past any of
//!    them the call is refused and nothing runs.
//! 2. The callee is found by name in the agents directory (`directory.rs`) and run as a child
//!    task: a fresh instance of its own component under its own policy, for the same user
//!    (subject and roles) with the grant narrowed by the caller's policy
//!    ([`UserGrant::delegated_within`]; with no user, [`UserGrant::of_policy_within`]), and with the
//!    caller's wall limit in that bound lowered to the time left — so it may do at most what its
//!    policy, the user's roles and every caller allow, and ends no later than its caller and its
//!    tree. Its model budget is a node below the caller's (`budget.rs`).
//! 3. The child runs inside its caller's host call, on the same thread (`inline.rs`: its
//!    instance's CPU is charged to its own account, not the caller's, and the host's work for
//!    the call to the caller's; if the caller goes away first it is finished in a task of its own), and takes an instance slot only if one is free at once, otherwise the call is refused: a tree
//!    never waits for a slot its own callers hold, so it cannot deadlock the host, and live
//!    instances never pass the slots (the engine's pool is sized by them). The first call of an
//!    agent reads its contract first (`describe`, in an instance of its own), in a slot that must
//!    be free at once too.
//! 4. Only the child's result comes back (never its output streams or trace): `completed` →
//!    the output; `agent-error` → `failed`; killed → `killed` (the child is demoted by its own
//!    run, the caller is not killed), a contract breach → `contract-breach`; escalated →
//!    `escalated`; an input its contract refuses → `invalid-input`; a run that could not start
//!    → `refused`. A child killed for its wall limit when the time left to its caller or tree was
//!    shorter than its own limit is not demoted: the deadline was not its own.
//! 5. Every hop leaves an `agent-call` audit record in the caller's task (caller and callee
//!    tasks, callee agent, user, depth, outcome); the child's task row names its caller as
//!    parent.

mod budget;
mod directory;
mod inline;
mod stage;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde_json::json;
use warden_sandbox::capabilities::agents::{AgentCalls, CallFailure, CallFuture};
use warden_sandbox::{KillReason, Outcome, RunError};

pub(crate) use budget::{TreeBudget, TreeModels, own_budget};
pub(crate) use directory::{AgentDirectory, is_agent_name};
pub(crate) use inline::stopping;
pub(crate) use stage::{HostTree, StageRun};

use crate::audit::AuditEvent;
use crate::policy::{Policy, TreeLimits, UserGrant};
use crate::run::{RunOptions, RunReport};
use crate::runtime::{LoadedAgent, Runtime};
use crate::user::User;

/// What every task of one tree shares.
#[derive(Debug)]
struct Tree {
    /// The host the root task runs on (its ledger, models, sandbox and agents directory).
    runtime: Runtime,
    directory: Arc<AgentDirectory>,
    limits: TreeLimits,
    /// The root's start plus `tree_wall`.
    deadline: Instant,
}

/// A task's place in its tree: its caller, depth, deadline and budget node.
#[derive(Debug)]
pub(crate) struct Place {
    /// `None` on a host without an agents directory (calls are refused).
    tree: Option<Arc<Tree>>,
    /// The caller's task.
    parent: Option<u64>,
    depth: u32,
    /// When the task's wall limit ends (policy ∩ user ∩ callers ∩ host, from its start).
    deadline: Instant,
    /// Whether its wall limit was lowered to the time its caller or tree had left.
    cut: bool,
    budget: Arc<TreeBudget>,
    /// The task's id once the ledger gave it one (its caller reads it for the hop's record).
    id: Arc<OnceLock<u64>>,
    /// Its workspace is a working copy the host owns (a cascade's): a completed run's writes
    /// are applied to it whatever the agent's level (the host decides later what reaches the
    /// real workspace).
    working_copy: bool,
}

/// The wall limit a task runs under: its policy's, lowered by its user's roles (and callers, in
/// the user's grant) and by the host's ceiling — the sandbox's rule for `limits.wall`.
fn wall_limit(runtime: &Runtime, policy: &Policy, user: Option<&User>) -> Duration {
    let own = user.map_or(policy.limits.wall, |u| u.grant.limit(&policy.limits).wall);
    runtime
        .config
        .limits
        .as_ref()
        .map_or(own, |ceiling| own.min(ceiling.wall))
}

impl Place {
    /// The place of a task a user started, at `started`.
    pub(crate) fn root(agent: &LoadedAgent, options: &RunOptions, started: Instant) -> Place {
        let runtime = &agent.runtime;
        let policy = agent.policy();
        let user = options.user.as_deref();
        let directory = runtime.agents.clone().or_else(|| {
            runtime
                .loaded_from
                .as_ref()
                .and_then(std::sync::Weak::upgrade)
        });
        let tree = directory.map(|directory| {
            Arc::new(Tree {
                runtime: runtime.clone(),
                directory,
                limits: runtime.config.tree,
                deadline: started + runtime.config.tree.wall,
            })
        });
        Place {
            tree,
            parent: None,
            depth: 0,
            deadline: started + wall_limit(runtime, policy, user),
            cut: false,
            budget: TreeBudget::root(own_budget(policy, user)),
            id: Arc::default(),
            working_copy: false,
        }
    }

    /// The caller's task, for a callee.
    pub(crate) fn parent(&self) -> Option<u64> {
        self.parent
    }

    /// The depth below the task a user started (0 for that task).
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }

    /// The task's budget node.
    pub(crate) fn budget(&self) -> &Arc<TreeBudget> {
        &self.budget
    }

    /// Whether the task works on a host-owned working copy (its writes are applied to it).
    pub(crate) fn working_copy(&self) -> bool {
        self.working_copy
    }

    /// Note the task's id.
    pub(crate) fn set_id(&self, id: u64) {
        let _ = self.id.set(id);
    }

    /// Whether `outcome` is a kill for a wall limit that was the tree's, not the task's own
    /// (such a kill does not demote).
    pub(crate) fn spares(&self, outcome: &Outcome) -> bool {
        self.cut
            && matches!(
                outcome,
                Outcome::Killed {
                    reason: KillReason::WallLimit,
                    ..
                }
            )
    }

    /// The calls of task `id` of `agent` (acting with `options`), when its policy may call
    /// agents and the host has an agents directory (otherwise the sandbox refuses every call,
    /// naming the setting).
    pub(crate) fn calls(
        &self,
        agent: &LoadedAgent,
        id: u64,
        options: &RunOptions,
        models: Option<Arc<TreeModels>>,
    ) -> Option<Arc<dyn AgentCalls>> {
        let tree = self.tree.clone()?;
        let policy = agent.policy();
        if policy.agents.is_empty() {
            return None;
        }
        Some(Arc::new(TaskCalls {
            tree,
            task: id,
            caller: Arc::new(policy.clone()),
            user: options.user.clone(),
            workspace: options.workspace.clone(),
            depth: self.depth,
            deadline: self.deadline,
            budget: self.budget.clone(),
            models,
            made: AtomicU32::new(0),
        }))
    }
}

/// The host's side of one task's calls to other agents.
pub(crate) struct TaskCalls {
    tree: Arc<Tree>,
    task: u64,
    /// The caller's policy: it bounds every callee.
    caller: Arc<Policy>,
    user: Option<Arc<User>>,
    workspace: Option<PathBuf>,
    depth: u32,
    deadline: Instant,
    budget: Arc<TreeBudget>,
    models: Option<Arc<TreeModels>>,
    /// Calls made so far (refused ones included).
    made: AtomicU32,
}

/// What a callee is given besides its input.
struct Hop {
    tree: Arc<Tree>,
    parent: u64,
    depth: u32,
    /// The caller's deadline or the tree's, whichever is first.
    deadline: Instant,
    budget: Arc<TreeBudget>,
    caller: Arc<Policy>,
    user: Option<Arc<User>>,
    workspace: Option<PathBuf>,
    id: Arc<OnceLock<u64>>,
}

impl TaskCalls {
    /// The tree's limits, before anything runs.
    fn hop(&self, callee: &str) -> Result<Hop, CallFailure> {
        let limits = self.tree.limits;
        let made = self.made.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if made > limits.max_fanout {
            return Err(CallFailure::Refused(format!(
                "this task has made the {} calls one task may make (agents.max_fanout in the host configuration)",
                limits.max_fanout
            )));
        }
        let depth = self.depth + 1;
        if depth > limits.max_depth {
            return Err(CallFailure::Refused(format!(
                "`{callee}` would run {depth} calls below the task its user started; this host allows {} (agents.max_depth)",
                limits.max_depth
            )));
        }
        if let Some(user) = self.user.as_ref().filter(|u| !u.grant.allows_agent(callee)) {
            return Err(CallFailure::Refused(format!(
                "user `{}` may not use agent `{callee}`: none of their roles lists it (`agents` in the roles file)",
                user.subject
            )));
        }
        let deadline = self.deadline.min(self.tree.deadline);
        if deadline <= Instant::now() {
            return Err(CallFailure::Refused(format!(
                "no wall time is left for a call: the caller's wall limit or the task tree's ({} s, agents.tree_wall) has run out",
                limits.wall.as_secs()
            )));
        }
        Ok(Hop {
            tree: self.tree.clone(),
            parent: self.task,
            depth,
            deadline,
            budget: self.budget.clone(),
            caller: self.caller.clone(),
            user: self.user.clone(),
            workspace: self.workspace.clone(),
            id: Arc::default(),
        })
    }

    /// Record the hop in the caller's task.
    fn record(&self, callee: &str, child: Option<u64>, result: &Result<String, CallFailure>) {
        let Some(ledger) = &self.tree.runtime.ledger else {
            return;
        };
        let (outcome, why) = match result {
            Ok(_) => ("completed", None),
            Err(f) => failure_kind(f),
        };
        let subject = self.user.as_ref().map_or("-", |u| u.subject.as_str());
        let mut detail = json!({
            "caller_task": self.task,
            "callee": callee,
            "callee_task": child,
            "depth": self.depth + 1,
            "outcome": outcome,
        });
        if let Some(why) = why {
            detail["why"] = json!(why);
        }
        let event = AuditEvent::new("agent-call")
            .task(self.task)
            .agent(&self.caller.agent.name)
            .user(subject)
            .detail(detail);
        // Written with the caller's deferred tree, if it has one (an outcome changes nothing
        // outside the host).
        if let Err(e) = ledger.record_deferred(event) {
            tracing::error!(target: "warden::calls", task = self.task, error = %e, "cannot record an agent call in the audit log");
        }
    }
}

/// The name of a failure as records give it, and its reason when it is the host's (a refusal).
fn failure_kind(f: &CallFailure) -> (&'static str, Option<String>) {
    match f {
        CallFailure::InvalidInput(_) => ("invalid-input", None),
        CallFailure::Refused(why) => ("refused", Some(why.clone())),
        CallFailure::Failed(_) => ("failed", None),
        CallFailure::Killed(_) => ("killed", None),
        CallFailure::ContractBreach(_) => ("contract-breach", None),
        CallFailure::Escalated(_) => ("escalated", None),
    }
}

impl AgentCalls for TaskCalls {
    fn call(&self, callee: String, input: String) -> CallFuture<'_> {
        Box::pin(async move {
            let hop = match self.hop(&callee) {
                Ok(hop) => hop,
                Err(refused) => {
                    let result = Err(refused);
                    self.record(&callee, None, &result);
                    return result;
                }
            };
            // The caller is blocked from here until the callee returns: what it spent on models
            // is charged now, so the callee's budget is what the tree has left.
            if let Some(models) = &self.models {
                models.settle();
            }
            let id = hop.id.clone();
            let name = callee.clone();
            // Polled in place, inside this host call (`inline.rs`): no thread hand-off, its CPU
            // still its own, and it ends by its own limits if the caller goes away.
            let result = inline::Inline::new(&callee, run_callee(hop, name, input)).await;
            self.record(&callee, id.get().copied(), &result);
            result
        })
    }
}

/// Find `name`, take an instance slot if one is free, and run it as a child task.
async fn run_callee(hop: Hop, name: String, input: String) -> Result<String, CallFailure> {
    let directory = hop.tree.directory.clone();
    let agent = match directory.kept(&name).map_err(CallFailure::Refused)? {
        Some(agent) => agent,
        None => {
            let runtime = hop.tree.runtime.clone();
            let (dir, n) = (directory.clone(), name.clone());
            tokio::task::spawn_blocking(move || dir.load(&runtime, &n))
                .await
                .map_err(|e| CallFailure::Refused(format!("loading `{name}` failed: {e}")))?
                .map_err(CallFailure::Refused)?
        }
    };
    let no_slot = || {
        CallFailure::Refused(
            "the host has no free instance slot for the call now; try again later".into(),
        )
    };
    if hop.deadline <= Instant::now() {
        return Err(CallFailure::Refused(
            "no wall time is left for the call".into(),
        ));
    }
    // Its contract, on its first call since it was loaded: `describe` runs in an instance with a
    // slot of its own, which must be free now — taken, then handed straight to it (only a run
    // starting on another thread in between can make it wait, and never past the time the tree
    // has left). The run's slot is taken after, so a call never needs two at once.
    if !agent.contract.initialized() {
        drop(free_slot(agent.prepared.sandbox()).ok_or_else(no_slot)?);
        let left = hop.deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, agent.contract()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(CallFailure::Refused(format!("`{name}` could not run: {e}"))),
            Err(_) => return Err(no_slot()),
        }
    }
    let Some(_slot) = free_slot(agent.prepared.sandbox()) else {
        return Err(no_slot());
    };
    let started = Instant::now();
    let left = hop.deadline.saturating_duration_since(started);
    if left.is_zero() {
        return Err(CallFailure::Refused(
            "no wall time is left for the call".into(),
        ));
    }
    let runtime = &hop.tree.runtime;
    let policy = agent.policy();
    // The same user, bounded by the caller's policy; in the bound the caller's wall limit is
    // lowered to the time left, so the callee ends no later than its caller and its tree.
    let user = User {
        subject: hop.user.as_ref().map_or("-", |u| &u.subject).to_owned(),
        roles: hop.user.as_ref().map_or_else(Vec::new, |u| u.roles.clone()),
        grant: Arc::new(match &hop.user {
            Some(u) => u.grant.delegated_within(&hop.caller, left),
            None => UserGrant::of_policy_within(&hop.caller, left),
        }),
    };
    let wall = wall_limit(runtime, policy, Some(&user));
    // Without the cut: the same bounds, with the caller's own wall limit.
    let own_wall = wall_limit(runtime, policy, hop.user.as_deref()).min(hop.caller.limits.wall);
    let place = Place {
        tree: Some(hop.tree.clone()),
        parent: Some(hop.parent),
        depth: hop.depth,
        deadline: started + wall,
        cut: wall < own_wall,
        budget: hop.budget.child(own_budget(policy, Some(&user))),
        id: hop.id,
        working_copy: false,
    };
    let options = RunOptions {
        workspace: hop.workspace,
        user: Some(Arc::new(user)),
        on_begin: None,
        queued: None,
        client: None,
    };
    let report = agent.run_in(&input, &options, Some(place)).await;
    result_of(&name, report)
}

/// An instance slot if one is free now; never waits (a tree's callers hold theirs). Polled
/// once, outside tokio's cooperative budget: a task that has used its budget would otherwise be
/// told no slot is free when one is.
fn free_slot(sandbox: &warden_sandbox::Sandbox) -> Option<tokio::sync::SemaphorePermit<'_>> {
    let mut slot = std::pin::pin!(tokio::task::unconstrained(sandbox.slot()));
    match slot.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(permit)) => Some(permit),
        _ => None,
    }
}

/// What the caller gets of the callee's run: its result, or an error it can handle (never its
/// output streams, logs or trace).
fn result_of(name: &str, report: Result<RunReport, RunError>) -> Result<String, CallFailure> {
    match report {
        Ok(report) => match report.outcome {
            Outcome::Completed { output } => Ok(output),
            Outcome::AgentError { kind, message } => {
                Err(CallFailure::Failed(format!("{kind}: {message}")))
            }
            Outcome::Killed {
                reason: KillReason::ContractBreach,
                detail,
                ..
            } => Err(CallFailure::ContractBreach(detail)),
            Outcome::Killed {
                reason, capability, ..
            } => Err(CallFailure::Killed(format!(
                "`{name}` was killed ({reason}, {capability}) in task {}",
                report.task
            ))),
            Outcome::Escalated { reason, detail } => {
                Err(CallFailure::Escalated(format!("{reason}: {detail}")))
            }
        },
        Err(RunError::InputContract { detail, .. }) => Err(CallFailure::InvalidInput(detail)),
        Err(e) => Err(CallFailure::Refused(format!("`{name}` could not run: {e}"))),
    }
}

#[cfg(test)]
mod tests;
