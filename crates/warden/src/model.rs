//! The model session of one task, as the host opens it: the budget is the agent's policy bounded
//! by the user's roles, drawn from its task tree's (`calls/budget.rs`), the stable layers of the
//! context stack are the host's constitution, the policy's rules, the curated memory the agent and
//! its user may read (`memory.rs`) and the agent's tool schemas, and every call leaves a
//! `model-call` audit record
//! the moment it returns (tokens, cached tokens, cost, model — never the prompt or the key).

use std::sync::Arc;

use serde_json::json;
use warden_orchestra::model::{CallRecord, SessionScope};

use crate::audit::AuditEvent;
use crate::calls::{TreeBudget, TreeModels, own_budget};
use crate::ledger::Ledger;
use crate::run::RunOptions;
use crate::runtime::LoadedAgent;

impl LoadedAgent {
    /// The task's model session, when the host has providers and the policy grants a model;
    /// it spends from `budget`, the task's node of its tree's budget.
    pub(crate) fn model_session(
        &self,
        task: u64,
        options: &RunOptions,
        ledger: Option<Arc<Ledger>>,
        budget: &Arc<TreeBudget>,
    ) -> Option<Arc<TreeModels>> {
        let models = self.runtime.models.as_ref()?;
        let policy = self.prepared.policy();
        if policy.model.is_empty() {
            return None;
        }
        let (tokens, micro_usd) = own_budget(policy, options.user.as_deref());
        // Layer 4: the tools the policy grants, in the policy's order (stable per role).
        let registry = self.prepared.sandbox().tools();
        let tools = policy
            .tools
            .allow
            .iter()
            .map(|name| {
                let description = registry
                    .tools()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.description.clone())
                    .unwrap_or_default();
                (name.clone(), description)
            })
            .collect();
        let agent = policy.agent.name.clone();
        let observer = ledger.map(|ledger| {
            let agent = agent.clone();
            let user = options
                .user
                .as_ref()
                .map_or_else(|| "-".to_string(), |u| u.subject.clone());
            Arc::new(move |call: &CallRecord| {
                let event = AuditEvent::new("model-call")
                    .task(task)
                    .agent(&agent)
                    .user(&user)
                    .detail(json!(call));
                if let Err(e) = ledger.record(event) {
                    tracing::error!(target: "warden::model", task, error = %e, "cannot record a model call in the audit log");
                }
            }) as Arc<dyn Fn(&CallRecord) + Send + Sync>
        });
        let scope = SessionScope {
            agent,
            rules: policy.model.rules.clone(),
            memory: self.memory_layer(options),
            tools,
            tokens,
            micro_usd,
            observer,
            client: options
                .client
                .clone()
                .map(|c| Arc::new(c) as Arc<dyn warden_orchestra::model::CallerModel>),
        };
        Some(Arc::new(TreeModels::new(
            models.clone(),
            scope,
            budget.clone(),
        )))
    }
}
