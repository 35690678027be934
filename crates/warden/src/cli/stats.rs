//! `warden stats`: what each agent's model calls cost, from the tasks in the ledger — tasks,
//! calls, tokens, cost per task and the share of prompt tokens the provider served from its
//! prefix cache. It reads each task's recorded usage (`outcome.usage.model`), newest first.

use std::collections::BTreeMap;

use serde::Serialize;
use warden::store::TaskRecord;
use warden::terminal::{self, line};

/// One agent's totals.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct AgentStats {
    /// The agent.
    pub agent: String,
    /// Tasks counted.
    pub tasks: u64,
    /// Tasks that made at least one model call.
    pub tasks_with_calls: u64,
    /// Model calls.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Of those, served from the provider's cache.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Total cost, millionths of a US dollar.
    pub cost_micro_usd: u64,
    /// Tasks that ended escalated.
    pub escalated: u64,
}

impl AgentStats {
    /// Cached share of prompt tokens (0 when there were none).
    pub fn cache_hit_rate(&self) -> f64 {
        if self.prompt_tokens == 0 {
            0.0
        } else {
            self.cached_tokens as f64 / self.prompt_tokens as f64
        }
    }

    /// Average cost of a task, millionths of a US dollar.
    pub fn cost_per_task(&self) -> u64 {
        self.cost_micro_usd.checked_div(self.tasks).unwrap_or(0)
    }
}

/// The model usage a task recorded, if any (`outcome.usage.model`).
pub fn task_model(t: &TaskRecord) -> Option<&serde_json::Value> {
    t.outcome
        .as_ref()
        .map(|o| &o["usage"]["model"])
        .filter(|m| m.is_object())
}

/// A cost in millionths of a dollar, as people read it.
pub fn dollars(micro: u64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// Per-agent totals over `tasks`.
pub fn summarize(tasks: &[TaskRecord]) -> Vec<AgentStats> {
    let mut by_agent: BTreeMap<&str, AgentStats> = BTreeMap::new();
    for t in tasks {
        let s = by_agent.entry(&t.agent).or_insert_with(|| AgentStats {
            agent: t.agent.clone(),
            ..AgentStats::default()
        });
        s.tasks += 1;
        if t.status == "escalated" {
            s.escalated += 1;
        }
        let Some(m) = task_model(t) else { continue };
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        if n("calls") > 0 {
            s.tasks_with_calls += 1;
        }
        s.calls += n("calls");
        s.prompt_tokens += n("prompt_tokens");
        s.cached_tokens += n("cached_tokens");
        s.completion_tokens += n("completion_tokens");
        s.cost_micro_usd += n("cost_micro_usd");
    }
    by_agent.into_values().collect()
}

/// `warden stats [--limit N] [--json]`.
pub fn stats(tasks: &[TaskRecord], json: bool) -> Result<u8, super::Failure> {
    let rows = summarize(tasks);
    if json {
        for r in &rows {
            let mut v = serde_json::to_value(r).map_err(super::host_failure)?;
            v["cache_hit_rate"] = serde_json::json!(r.cache_hit_rate());
            v["cost_per_task_micro_usd"] = serde_json::json!(r.cost_per_task());
            outln!("{}", terminal::json_line(&v).map_err(super::host_failure)?)?;
        }
        return Ok(0);
    }
    outln!(
        "{:<16} {:>6} {:>6} {:>10} {:>10} {:>10} {:>6} {:>12} {:>12} {:>5}",
        "agent",
        "tasks",
        "calls",
        "prompt",
        "cached",
        "completion",
        "cache",
        "cost",
        "cost/task",
        "esc."
    )?;
    for r in &rows {
        outln!(
            "{:<16} {:>6} {:>6} {:>10} {:>10} {:>10} {:>5.1}% {:>12} {:>12} {:>5}",
            line(&r.agent),
            r.tasks,
            r.calls,
            r.prompt_tokens,
            r.cached_tokens,
            r.completion_tokens,
            r.cache_hit_rate() * 100.0,
            dollars(r.cost_micro_usd),
            dollars(r.cost_per_task()),
            r.escalated
        )?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(agent: &str, status: &str, model: Option<serde_json::Value>) -> TaskRecord {
        let mut outcome = serde_json::json!({"status": status, "usage": {"cpu_us": 1}});
        if let Some(m) = model {
            outcome["usage"]["model"] = m;
        }
        TaskRecord {
            id: 1,
            agent: agent.into(),
            agent_id: "id".into(),
            module_hash: "h".into(),
            user: "-".into(),
            level: 1,
            grant: serde_json::json!({}),
            status: status.into(),
            outcome: Some(outcome),
            trace: None,
            staging: "none".into(),
            staging_path: None,
            started_ms: 0,
            ended_ms: Some(1),
            parent: None,
        }
    }

    #[test]
    fn sums_per_agent() {
        let m = |calls: u64, p: u64, c: u64, o: u64, cost: u64| {
            Some(
                serde_json::json!({"calls": calls, "prompt_tokens": p, "cached_tokens": c,
                "completion_tokens": o, "cost_micro_usd": cost, "models": ["small"]}),
            )
        };
        let tasks = vec![
            task("ask", "completed", m(2, 100, 50, 10, 300)),
            task("ask", "escalated", m(1, 100, 90, 0, 100)),
            task("ask", "killed", None),
            task("hello", "completed", None),
        ];
        let rows = summarize(&tasks);
        assert_eq!(rows.len(), 2);
        let ask = &rows[0];
        assert_eq!(
            (ask.tasks, ask.tasks_with_calls, ask.calls, ask.escalated),
            (3, 2, 3, 1)
        );
        assert_eq!((ask.prompt_tokens, ask.cached_tokens), (200, 140));
        assert!((ask.cache_hit_rate() - 0.7).abs() < 1e-9);
        assert_eq!((ask.cost_micro_usd, ask.cost_per_task()), (400, 133));
        let hello = &rows[1];
        assert_eq!(
            (hello.tasks, hello.calls, hello.cache_hit_rate()),
            (1, 0, 0.0)
        );
        assert_eq!(dollars(1_234_567), "$1.234567");
        assert_eq!(dollars(5), "$0.000005");
    }
}
