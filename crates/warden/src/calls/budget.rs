//! The model budget of a task tree: every task has a [`TreeBudget`] node whose limit is its own
//! budget (policy ∩ user ∩ every caller), and whatever a task spends is charged to its node and
//! to every node above it — so the root task's budget is the one the whole tree spends from, and
//! a callee's own budget can only lower what it (and the agents it calls) may spend.
//!
//! A task's model calls go through its [`TreeModels`], which holds one orchestra session at a
//! time over a [`Budget`] of what is available *now*: the least, over the task's node and every
//! node above it, of limit minus spent. That is exact because a tree runs one task at a time: a
//! caller is blocked in its call while its callee runs, so while a session is open nothing else
//! in the tree spends. Before a call the caller's session is settled (its spend charged up the
//! tree, the session closed); its next model call opens a new session over what the callee left.
//! At the end of a task its session is settled too, so its caller sees what it spent.

use std::sync::{Arc, Mutex};

use warden_orchestra::model::{Budget, Models, SessionScope, Spend, Spent, TaskModels};
use warden_sandbox::capabilities::model::{ChatFuture, ChatRequest, ModelSession};

use crate::policy::Policy;
use crate::user::User;

/// A task's own model budget: its policy's `[model]` bounded by its user's roles (and, for a
/// callee, by every caller's policy, which its user's grant carries): (tokens, micro-USD).
pub(crate) fn own_budget(policy: &Policy, user: Option<&User>) -> (u64, u64) {
    match user {
        Some(user) => user.grant.model_budget(&policy.model),
        None => (policy.model.tokens, policy.model.micro_usd),
    }
}

/// One task's node of the tree's budget.
#[derive(Debug)]
pub(crate) struct TreeBudget {
    parent: Option<Arc<TreeBudget>>,
    tokens: u64,
    micro_usd: u64,
    /// What this task and the tasks below it spent, in settled sessions.
    spent: Mutex<Spent>,
}

impl TreeBudget {
    /// The node of a task a user started: its own budget is the tree's.
    pub(crate) fn root((tokens, micro_usd): (u64, u64)) -> Arc<TreeBudget> {
        Arc::new(TreeBudget {
            parent: None,
            tokens,
            micro_usd,
            spent: Mutex::new(Spent::default()),
        })
    }

    /// The node of a task this node's task called, with its own budget.
    pub(crate) fn child(self: &Arc<Self>, (tokens, micro_usd): (u64, u64)) -> Arc<TreeBudget> {
        Arc::new(TreeBudget {
            parent: Some(self.clone()),
            tokens,
            micro_usd,
            spent: Mutex::new(Spent::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spent> {
        // Every update is two additions: a panic elsewhere cannot leave it half-done.
        self.spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn chain(&self) -> impl Iterator<Item = &TreeBudget> {
        std::iter::successors(Some(self), |n| n.parent.as_deref())
    }

    /// What this task may spend now: the least, over this node and every node above it, of
    /// its limit minus what its subtree has spent.
    pub(crate) fn available(&self) -> (u64, u64) {
        self.chain().fold((u64::MAX, u64::MAX), |(t, u), node| {
            let spent = *node.lock();
            (
                t.min(node.tokens.saturating_sub(spent.tokens)),
                u.min(node.micro_usd.saturating_sub(spent.micro_usd)),
            )
        })
    }

    /// Charge `spent` to this node and every node above it.
    pub(crate) fn charge(&self, spent: Spent) {
        for node in self.chain() {
            let mut s = node.lock();
            s.tokens = s.tokens.saturating_add(spent.tokens);
            s.micro_usd = s.micro_usd.saturating_add(spent.micro_usd);
        }
    }
}

/// One task's model calls in its tree: the sandbox's [`ModelSession`], one orchestra session at
/// a time over what the tree has left for it (see the module's docs).
pub(crate) struct TreeModels {
    models: Arc<Models>,
    scope: SessionScope,
    node: Arc<TreeBudget>,
    /// The open session, and the settled ones (for the task's totals and its escalation).
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    open: Option<Arc<TaskModels>>,
    settled: Vec<Arc<TaskModels>>,
}

impl std::fmt::Debug for TreeModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeModels")
            .field("agent", &self.scope.agent)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl TreeModels {
    /// The model calls of a task whose budget node is `node` (`scope`'s own budget is not used:
    /// the node's limit is).
    pub(crate) fn new(models: Arc<Models>, scope: SessionScope, node: Arc<TreeBudget>) -> Self {
        TreeModels {
            models,
            scope,
            node,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open session, opened now over what is available if there is none.
    fn session(&self) -> Arc<TaskModels> {
        let mut sessions = self.lock();
        if let Some(open) = &sessions.open {
            return open.clone();
        }
        let (tokens, micro_usd) = self.node.available();
        let open = self
            .models
            .session_sharing(self.scope.clone(), Budget::new(tokens, micro_usd));
        sessions.open = Some(open.clone());
        open
    }

    /// Close the open session and charge what it spent up the tree (before the task calls
    /// another agent, and when it ends). Its calls have all returned: a task that calls an
    /// agent, or has ended, is not in a model call.
    pub(crate) fn settle(&self) {
        let mut sessions = self.lock();
        if let Some(open) = sessions.open.take() {
            self.node.charge(open.budget().spent());
            sessions.settled.push(open);
        }
    }

    /// The totals of this task's own model calls (not its callees').
    pub(crate) fn spend(&self) -> Spend {
        let sessions = self.lock();
        let mut total = Spend::default();
        for s in sessions.settled.iter().chain(&sessions.open) {
            total.add(&s.spend());
        }
        total
    }
}

impl ModelSession for TreeModels {
    fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
        let session = self.session();
        Box::pin(async move { session.call(request).await })
    }

    fn escalation(&self) -> Option<String> {
        let sessions = self.lock();
        sessions
            .settled
            .iter()
            .chain(&sessions.open)
            .find_map(|s| s.escalation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(tokens: u64, micro_usd: u64) -> Spent {
        Spent { tokens, micro_usd }
    }

    #[test]
    fn a_subtree_spends_from_every_budget_above_it() {
        let root = TreeBudget::root((1_000, 10_000));
        // A callee with a budget of its own larger than the tree's: the tree bounds it.
        let child = root.child((5_000, 50_000));
        root.charge(spent(600, 1_000));
        assert_eq!(child.available(), (400, 9_000));
        // A callee whose own budget is smaller: its own bounds it.
        let small = root.child((100, 100_000));
        assert_eq!(small.available(), (100, 9_000));
        // What a grandchild spends is spent by its caller and by the root.
        let grandchild = child.child((u64::MAX, u64::MAX));
        grandchild.charge(spent(300, 2_000));
        assert_eq!(root.available(), (100, 7_000));
        assert_eq!(child.available(), (100, 7_000));
        assert_eq!(small.available(), (100, 7_000));
        assert_eq!(grandchild.available(), (100, 7_000));
        // Spent past a limit (a call can end a little over its estimate): nothing is left.
        grandchild.charge(spent(500, 0));
        assert_eq!(root.available(), (0, 7_000));
        assert_eq!(small.available(), (0, 7_000));
        // The sibling's own limit is charged only by its own subtree.
        let sibling = root.child((100, 100));
        sibling.charge(spent(0, 100));
        assert_eq!(sibling.available(), (0, 0));
        assert_eq!(root.available(), (0, 6_900));
    }

    #[test]
    fn a_budget_is_policy_bounded_by_user_and_callers() {
        let policy = crate::policy::Policy::parse(
            "p.toml",
            "[agent]\nname = \"a\"\n[model]\nallow = [\"small\"]\ntokens = 1000\nusd = 0.5\n",
        )
        .unwrap();
        assert_eq!(own_budget(&policy, None), (1_000, 500_000));
        let roles = crate::policy::Roles::parse(
            "roles.toml",
            "[role.r]\nmodel.allow = [\"small\"]\nmodel.tokens = 300\nmodel.usd = 1.0\n",
        )
        .unwrap();
        let user = User::new("alice", vec!["r".into()], &roles).unwrap();
        assert_eq!(own_budget(&policy, Some(&user)), (300, 500_000));
        let caller = crate::policy::Policy::parse(
            "c.toml",
            "[agent]\nname = \"c\"\n[model]\nallow = [\"small\"]\ntokens = 200\nusd = 0.1\n",
        )
        .unwrap();
        let through = User {
            grant: Arc::new(user.grant.delegated_by(&caller)),
            ..user
        };
        assert_eq!(own_budget(&policy, Some(&through)), (200, 100_000));
    }
}
