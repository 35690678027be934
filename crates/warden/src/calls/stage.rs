//! Tasks the host itself starts below a task of its own: the cascade's stages. The root is not
//! an agent but the host (the cascade's task row), so nothing narrows a stage but its own policy
//! and the user's roles; the tree's wall time and model budget are the cascade's, shared by every
//! stage. Each stage is a child task like an agent call's callee — found by name in the agents
//! directory, a fresh instance under its own policy, its model budget a node below the root's —
//! and works on the cascade's working copy, where its completed writes are applied.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use warden_orchestra::model::Spend;
use warden_sandbox::RunError;

use super::{Place, Tree, TreeBudget, own_budget, wall_limit};
use crate::run::{RunOptions, RunReport};
use crate::runtime::Runtime;
use crate::user::User;

/// A task tree whose root is the host's own task.
#[derive(Debug)]
pub(crate) struct HostTree {
    tree: Arc<Tree>,
    root: u64,
    budget: Arc<TreeBudget>,
}

/// One stage's run: its task (when it started) and its report, or why it could not run.
#[derive(Debug)]
pub(crate) struct StageRun {
    /// The child task's id, once the ledger gave it one.
    pub task: Option<u64>,
    /// The run's report, or the error that kept it from running.
    pub report: Result<RunReport, RunError>,
    /// The paths its policy labels sensitive (`fs.sensitive`).
    pub sensitive: Vec<crate::policy::PathPattern>,
}

impl StageRun {
    /// What the stage's model calls used.
    pub(crate) fn spend(&self) -> Option<&Spend> {
        self.report.as_ref().ok().and_then(|r| r.model.as_ref())
    }
}

impl HostTree {
    /// The tree below the host's task `root`, which may run for `wall` from now and spend
    /// `budget` (tokens, micro-USD) on models over all its stages.
    ///
    /// # Errors
    ///
    /// A sentence when the host has no agents directory (the stages are found there).
    pub(crate) fn new(
        runtime: &Runtime,
        root: u64,
        wall: Duration,
        budget: (u64, u64),
    ) -> Result<HostTree, String> {
        let directory = runtime.agents.clone().ok_or_else(|| {
            "this host has no agents directory (`[agents] dir` in warden.toml): the cascade finds its stages there".to_string()
        })?;
        let mut limits = runtime.config.tree;
        limits.wall = wall;
        Ok(HostTree {
            tree: Arc::new(Tree {
                runtime: runtime.clone(),
                directory,
                limits,
                deadline: Instant::now() + wall,
            }),
            root,
            budget: TreeBudget::root(budget),
        })
    }

    /// What the tree may still spend on models (tokens, micro-USD), and the wall time left.
    pub(crate) fn left(&self) -> (u64, u64, Duration) {
        let (tokens, usd) = self.budget.available();
        let wall = self.tree.deadline.saturating_duration_since(Instant::now());
        (tokens, usd, wall)
    }

    /// Run agent `name` on `input` for `user` in `workspace` (the working copy) as a child of
    /// the root. Waits for an instance slot (the root holds none).
    pub(crate) async fn run(
        &self,
        name: &str,
        input: &str,
        user: Option<Arc<User>>,
        workspace: &Path,
    ) -> StageRun {
        let refused = |why: String| StageRun {
            task: None,
            report: Err(RunError::Setup(why)),
            sensitive: Vec::new(),
        };
        let directory = self.tree.directory.clone();
        let agent = match directory.kept(name) {
            Err(why) => return refused(why),
            Ok(Some(agent)) => agent,
            Ok(None) => {
                let runtime = self.tree.runtime.clone();
                let (dir, n) = (directory.clone(), name.to_owned());
                match tokio::task::spawn_blocking(move || dir.load(&runtime, &n)).await {
                    Ok(Ok(agent)) => agent,
                    Ok(Err(why)) => return refused(why),
                    Err(e) => return refused(format!("loading `{name}` failed: {e}")),
                }
            }
        };
        let sensitive = agent.policy().fs.sensitive.clone();
        if let Err(e) = agent.contract().await {
            return StageRun {
                task: None,
                report: Err(e),
                sensitive,
            };
        }
        let slot = match agent.prepared.sandbox().slot().await {
            Ok(slot) => slot,
            Err(e) => {
                return StageRun {
                    task: None,
                    report: Err(e),
                    sensitive,
                };
            }
        };
        let started = Instant::now();
        let left = self.tree.deadline.saturating_duration_since(started);
        if left.is_zero() {
            return refused("the cascade's wall time (`[cascade] wall`) has run out".into());
        }
        let runtime = &self.tree.runtime;
        let policy = agent.policy();
        let own = wall_limit(runtime, policy, user.as_deref());
        let id = Arc::new(OnceLock::new());
        let place = Place {
            tree: Some(self.tree.clone()),
            parent: Some(self.root),
            depth: 1,
            deadline: started + own.min(left),
            cut: left < own,
            budget: self.budget.child(own_budget(policy, user.as_deref())),
            id: id.clone(),
            working_copy: true,
        };
        let options = RunOptions {
            workspace: Some(workspace.to_path_buf()),
            user,
            on_begin: None,
            queued: None,
            client: None,
        };
        let report = agent.run_in(input, &options, Some(place)).await;
        drop(slot);
        StageRun {
            task: id.get().copied(),
            report,
            sensitive,
        }
    }
}
