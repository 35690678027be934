//! One row of `warden stats` ([`Figures`]: an agent's or a model's totals) and what a single task
//! row adds to it: its model usage (whole, or a share of it for a model), its decisions (a
//! skeptic's verdict, a reviewer's call on a proposal) and the disagreements among them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use warden::store::TaskRecord;

/// The totals of one agent or one model.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Tasks counted (for a model: the tasks that called it, cascades' own rows left out).
    pub tasks: u64,
    /// Tasks that made at least one model call.
    pub tasks_with_calls: u64,
    /// Model calls.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Of those, served from the provider's prefix cache.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Total cost, millionths of a US dollar.
    pub cost_micro_usd: u64,
    /// Tasks that ended escalated (and are still so).
    pub escalated: u64,
    /// Cascades counted (the `cascade` agent's rows; for a model, the cascades that used it).
    pub cascades: u64,
    /// Escalations of those cascades by trigger (every pause, also those a person resumed).
    pub triggers: BTreeMap<String, u64>,
    /// Verified cascades whose first change passed the gate.
    pub first_try: u64,
    /// Verified cascades that needed rework (a failed gate, or a second implementation).
    pub rework: u64,
    /// Skeptic verdicts.
    pub skeptic_reviews: u64,
    /// Of those, rejections.
    pub skeptic_rejections: u64,
    /// Proposals a reviewer decided (`warden task apply | discard`).
    pub reviewed_proposals: u64,
    /// Of those, discarded: a reviewer reversed the agents' decision.
    pub reversals: u64,
    /// Promotions on the trust ladder.
    pub promotions: u64,
    /// Demotions on the trust ladder.
    pub demotions: u64,
}

impl Figures {
    /// Cached share of prompt tokens (0 when there were none).
    pub fn cache_hit_rate(&self) -> f64 {
        ratio(self.cached_tokens, self.prompt_tokens)
    }

    /// Average cost of a task, millionths of a US dollar.
    pub fn cost_per_task(&self) -> u64 {
        self.cost_micro_usd.checked_div(self.tasks).unwrap_or(0)
    }

    /// Decisions: skeptic verdicts and reviewed proposals.
    pub fn decisions(&self) -> u64 {
        self.skeptic_reviews + self.reviewed_proposals
    }

    /// Disagreements (skeptic rejections and reviewer reversals) over decisions.
    pub fn disagreement_rate(&self) -> f64 {
        ratio(self.skeptic_rejections + self.reversals, self.decisions())
    }

    /// Escalations of all triggers.
    pub fn escalations(&self) -> u64 {
        self.triggers.values().sum()
    }

    /// Verified cascades that passed on the first try, over all verified cascades.
    pub fn first_try_rate(&self) -> f64 {
        ratio(self.first_try, self.first_try + self.rework)
    }

    /// Add `usage`'s share `part` of `parts` (see [`share`]).
    pub fn add_usage(&mut self, usage: &Usage, part: usize, parts: usize) {
        let s = |x: u64| share(x, part, parts);
        if usage.calls > 0 {
            self.tasks_with_calls += 1;
        }
        self.calls += s(usage.calls);
        self.prompt_tokens += s(usage.prompt_tokens);
        self.cached_tokens += s(usage.cached_tokens);
        self.completion_tokens += s(usage.completion_tokens);
        self.cost_micro_usd += s(usage.cost_micro_usd);
    }

    /// Add a task row's own decisions: a skeptic's verdict, a reviewer's call on its proposal.
    pub fn add_decisions(&mut self, t: &TaskRecord) {
        match skeptic_verdict(t) {
            Some(true) => {
                self.skeptic_reviews += 1;
                self.skeptic_rejections += 1;
            }
            Some(false) => self.skeptic_reviews += 1,
            None => {}
        }
        match reviewed(t) {
            Some(true) => {
                self.reviewed_proposals += 1;
                self.reversals += 1;
            }
            Some(false) => self.reviewed_proposals += 1,
            None => {}
        }
    }
}

/// `n / d`, 0 when `d` is 0.
pub fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Share `part` (0-based) of `x` split in `parts`: `x / parts`, the remainder going one unit
/// each to the first shares, so the shares add up to `x` exactly.
pub fn share(x: u64, part: usize, parts: usize) -> u64 {
    let parts = parts.max(1) as u64;
    let part = part as u64;
    x / parts + u64::from(part < x % parts)
}

/// A task's recorded model usage (`outcome.usage.model`): what its session spent.
pub use warden::orchestra::model::Spend as Usage;

/// The usage `t` recorded, if any (read leniently: a missing count is 0).
pub fn usage_of(t: &TaskRecord) -> Option<Usage> {
    let m = super::task_model(t)?;
    let n = |k: &str| m[k].as_u64().unwrap_or(0);
    let mut models: Vec<String> = m["models"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    models.sort();
    models.dedup();
    Some(Usage {
        calls: n("calls"),
        prompt_tokens: n("prompt_tokens"),
        cached_tokens: n("cached_tokens"),
        completion_tokens: n("completion_tokens"),
        cost_micro_usd: n("cost_micro_usd"),
        models,
    })
}

/// A completed skeptic's verdict: `Some(true)` when it rejected.
fn skeptic_verdict(t: &TaskRecord) -> Option<bool> {
    if t.agent != "skeptic" || t.status != "completed" {
        return None;
    }
    let output = t.outcome.as_ref()?.get("output")?.as_str()?;
    let out: Value = serde_json::from_str(output).ok()?;
    match out.get("verdict")?.as_str()? {
        "reject" => Some(true),
        "accept" => Some(false),
        _ => None,
    }
}

/// A reviewer's call on a proposal: `Some(true)` when discarded. Only a proposed change has a
/// staging path, and `apply` / `discard` keep it, so a change the host discarded itself (a
/// failed run's) is no reviewer's decision.
fn reviewed(t: &TaskRecord) -> Option<bool> {
    t.staging_path.as_ref()?;
    match t.staging.as_str() {
        "discarded" => Some(true),
        "applied" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A task row of `agent` with `outcome` (status taken from it).
    pub fn row(id: u64, agent: &str, outcome: Value) -> TaskRecord {
        let status = outcome["status"].as_str().unwrap_or("completed").to_owned();
        TaskRecord {
            id,
            agent: agent.into(),
            agent_id: format!("unsigned/{agent}"),
            module_hash: "h".into(),
            user: "-".into(),
            level: 1,
            grant: json!({}),
            status,
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
    fn shares_add_up_to_the_whole() {
        for (x, parts) in [(0, 1), (7, 1), (7, 2), (10, 3), (2, 5), (1_000_001, 4)] {
            let sum: u64 = (0..parts).map(|p| share(x, p, parts)).sum();
            assert_eq!(sum, x, "{x} in {parts}");
        }
        assert_eq!(
            (share(10, 0, 3), share(10, 1, 3), share(10, 2, 3)),
            (4, 3, 3)
        );
        assert_eq!(share(5, 0, 0), 5, "no models: the whole");
    }

    #[test]
    fn decisions_and_disagreements() {
        let skeptic = |verdict: &str| {
            row(
                1,
                "skeptic",
                json!({"status": "completed", "output": json!({"verdict": verdict, "reasons": []}).to_string()}),
            )
        };
        let proposal = |staging: &str, path: bool| {
            let mut t = row(2, "cascade", json!({"status": "completed"}));
            t.staging = staging.into();
            t.staging_path = path.then(|| "/x".into());
            t
        };
        // (row, skeptic reviews, rejections, reviewed proposals, reversals)
        let table: Vec<(TaskRecord, [u64; 4])> = vec![
            (skeptic("accept"), [1, 0, 0, 0]),
            (skeptic("reject"), [1, 1, 0, 0]),
            (skeptic("maybe"), [0, 0, 0, 0]),
            (
                row(3, "skeptic", json!({"status": "agent-error"})),
                [0, 0, 0, 0],
            ),
            (
                row(
                    4,
                    "planner",
                    json!({"status": "completed", "output": "{\"verdict\":\"reject\"}"}),
                ),
                [0, 0, 0, 0],
            ),
            (proposal("discarded", true), [0, 0, 1, 1]),
            (proposal("applied", true), [0, 0, 1, 0]),
            (proposal("proposed", true), [0, 0, 0, 0]),
            // The host discarded a failed run's writes, or applied at the agent's level.
            (proposal("discarded", false), [0, 0, 0, 0]),
            (proposal("applied", false), [0, 0, 0, 0]),
        ];
        let mut all = Figures::default();
        for (t, want) in &table {
            let mut f = Figures::default();
            f.add_decisions(t);
            let got = [
                f.skeptic_reviews,
                f.skeptic_rejections,
                f.reviewed_proposals,
                f.reversals,
            ];
            assert_eq!(&got, want, "{t:?}");
            all.add_decisions(t);
        }
        assert_eq!(all.decisions(), 4);
        assert!((all.disagreement_rate() - 0.5).abs() < 1e-9);
        assert_eq!(Figures::default().disagreement_rate(), 0.0);
    }

    #[test]
    fn usage_is_read_from_the_outcome() {
        let t = row(
            1,
            "ask",
            json!({"status": "completed", "usage": {"model": {"calls": 2, "prompt_tokens": 10,
                "cached_tokens": 4, "completion_tokens": 3, "cost_micro_usd": 9,
                "models": ["small", "large", "small"]}}}),
        );
        let u = usage_of(&t).unwrap();
        assert_eq!(u.models, ["large", "small"]);
        let mut f = Figures::default();
        f.add_usage(&u, 0, 2);
        assert_eq!(
            (f.calls, f.prompt_tokens, f.cached_tokens, f.cost_micro_usd),
            (1, 5, 2, 5)
        );
        assert_eq!(
            usage_of(&row(2, "hello", json!({"status": "completed"}))),
            None
        );
    }
}
