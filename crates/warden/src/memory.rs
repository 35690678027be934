//! The curated memory of one task, as the host opens it: a [`TaskMemory`] for the task's user,
//! agent and task, bounded by the host's horizon, checked against the host's secrets, with a
//! `memory-write` / `memory-refused` audit record per write (the rule that fired, never the
//! text); and layer 2 of the model's context stack, read from the same memory.

use std::sync::Arc;

use serde_json::json;
use warden_orchestra::memory::{MemoryEvent, MemoryObserver, MemoryScope, TaskMemory, now_ms};

use crate::audit::AuditEvent;
use crate::ledger::Ledger;
use crate::run::RunOptions;
use crate::runtime::LoadedAgent;

/// Most bytes of memory in front of an agent's prompts (layer 2).
pub const MAX_LAYER: usize = 8 * 1024;

fn subject(options: &RunOptions) -> String {
    options
        .user
        .as_ref()
        .map_or_else(|| "-".to_string(), |u| u.subject.clone())
}

impl LoadedAgent {
    /// The task's memory, when the host keeps one (and a ledger to audit it in) and the policy
    /// has `[memory]`. The gate in the sandbox decides which namespaces it may use.
    pub(crate) fn memory_access(
        &self,
        task: u64,
        options: &RunOptions,
        ledger: Option<Arc<Ledger>>,
    ) -> Option<Arc<TaskMemory>> {
        let memory = self.runtime.memory.as_ref()?;
        let ledger = ledger?;
        let policy = self.prepared.policy();
        if policy.memory.is_empty() {
            return None;
        }
        let (agent, user) = (policy.agent.name.clone(), subject(options));
        let observer: MemoryObserver = {
            let (agent, user) = (agent.clone(), user.clone());
            Arc::new(move |event: &MemoryEvent<'_>| {
                let record = AuditEvent::new(event.kind())
                    .task(task)
                    .agent(&agent)
                    .user(&user)
                    .detail(json!(event));
                if let Err(e) = ledger.record(record) {
                    tracing::error!(target: "warden::memory", task, error = %e, "cannot record a memory write in the audit log");
                }
            })
        };
        Some(Arc::new(TaskMemory::new(
            memory.clone(),
            MemoryScope {
                user,
                agent,
                task,
                horizon: self.runtime.config.memory_horizon,
                secrets: self.runtime.secrets.clone(),
                observer: Some(observer),
            },
        )))
    }

    /// Layer 2 of the context stack: the live entries of the namespaces the agent may read
    /// (its policy's, bounded by the user's roles) that the user may see, by namespace and key,
    /// at most [`MAX_LAYER`] bytes. Empty without a memory or `[memory]`.
    pub(crate) fn memory_layer(&self, options: &RunOptions) -> String {
        let Some(memory) = self.runtime.memory.as_ref() else {
            return String::new();
        };
        let grant = &self.prepared.policy().memory;
        let namespaces: Vec<String> = grant
            .read
            .iter()
            .chain(&grant.write)
            .filter(|ns| {
                options
                    .user
                    .as_ref()
                    .is_none_or(|u| u.grant.allows_memory_read(ns))
            })
            .cloned()
            .collect();
        if namespaces.is_empty() {
            return String::new();
        }
        memory
            .context(&namespaces, &subject(options), now_ms(), MAX_LAYER)
            .unwrap_or_else(|e| {
                tracing::warn!(target: "warden::memory", error = %e, "cannot read memory for the context stack");
                String::new()
            })
    }
}
