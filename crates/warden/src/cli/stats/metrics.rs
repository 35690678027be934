//! Every figure of `warden stats`, per agent and per model, from the task rows, the cascades'
//! saved stages and the audit records read ([`collect`]).
//!
//! **Per model.** A task's row says which models it called (`usage.model.models`) but not how
//! its calls, tokens and cost split between them, so a task that called several models gives
//! each an even share (remainders to the first, by name, so the shares add up exactly); most
//! tasks — every roster stage — call one model, and get exact figures. A cascade's own row sums
//! its stages' usage, so it is left out of the models' usage (its stages are counted) but gives
//! its cascade figures (escalations, first try or rework, a reviewer's call on its proposal) to
//! every model it used. Decisions and trust changes count whole for each model of their task.

use std::collections::{BTreeMap, HashMap};

use warden::audit::AuditRecord;
use warden::cascade::CASCADE_AGENT;
use warden::orchestra::cascade::StageNote;
use warden::store::TaskRecord;

use super::cascade::{Quality, escalation, quality};
use super::figures::{Figures, usage_of};
use super::trust::{TrustDay, change, timeline};

/// All the figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Metrics {
    /// Per agent, by name.
    pub agents: BTreeMap<String, Figures>,
    /// Per model, by name.
    pub models: BTreeMap<String, Figures>,
    /// Promotions and demotions per day and agent.
    pub trust: Vec<TrustDay>,
}

impl Metrics {
    /// The cascades counted (the `cascade` agent's row).
    pub fn cascade(&self) -> Option<&Figures> {
        self.agents.get(CASCADE_AGENT)
    }
}

/// The figures of `tasks`, with `saved` (a cascade task's saved stages, by task id) and
/// `audit` (the audit records read: escalations of those cascades, trust changes).
pub fn collect(
    tasks: &[TaskRecord],
    saved: &HashMap<u64, Vec<StageNote>>,
    audit: &[AuditRecord],
) -> Metrics {
    let mut m = Metrics::default();
    let mut models_of: HashMap<u64, Vec<String>> = HashMap::new();
    let mut roots: HashMap<u64, ()> = HashMap::new();
    for t in tasks {
        let usage = usage_of(t).unwrap_or_default();
        let agent = m.agents.entry(t.agent.clone()).or_default();
        agent.tasks += 1;
        agent.escalated += u64::from(t.status == "escalated");
        agent.add_usage(&usage, 0, 1);
        agent.add_decisions(t);
        let root = t.agent == CASCADE_AGENT;
        let verdict = if root {
            roots.insert(t.id, ());
            agent.cascades += 1;
            let verdict = saved
                .get(&t.id)
                .filter(|_| t.status == "completed")
                .and_then(|s| quality(s));
            add_quality(agent, verdict);
            verdict
        } else {
            None
        };
        let k = usage.models.len();
        for (i, name) in usage.models.iter().enumerate() {
            let model = m.models.entry(name.clone()).or_default();
            if root {
                model.cascades += 1;
                add_quality(model, verdict);
            } else {
                model.tasks += 1;
                model.escalated += u64::from(t.status == "escalated");
                model.add_usage(&usage, i, k);
            }
            model.add_decisions(t);
        }
        models_of.insert(t.id, usage.models);
    }
    let none = Vec::new();
    for r in audit {
        if let Some((task, trigger)) = escalation(r) {
            if !roots.contains_key(&task) {
                continue;
            }
            *m.agents
                .entry(CASCADE_AGENT.into())
                .or_default()
                .triggers
                .entry(trigger.clone())
                .or_default() += 1;
            for name in models_of.get(&task).unwrap_or(&none) {
                *m.models
                    .entry(name.clone())
                    .or_default()
                    .triggers
                    .entry(trigger.clone())
                    .or_default() += 1;
            }
        } else if let Some(up) = change(r) {
            let agent = r.agent.clone().unwrap_or_else(|| "-".into());
            add_change(m.agents.entry(agent).or_default(), up);
            let task_models = r.task.and_then(|t| models_of.get(&t)).unwrap_or(&none);
            for name in task_models {
                add_change(m.models.entry(name.clone()).or_default(), up);
            }
        }
    }
    m.trust = timeline(audit);
    m
}

fn add_quality(f: &mut Figures, q: Option<Quality>) {
    match q {
        Some(Quality::FirstTry) => f.first_try += 1,
        Some(Quality::Rework) => f.rework += 1,
        None => {}
    }
}

fn add_change(f: &mut Figures, up: bool) {
    if up {
        f.promotions += 1;
    } else {
        f.demotions += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::figures::tests::row;
    use super::*;
    use serde_json::{Value, json};

    fn spend(models: &[&str], calls: u64, prompt: u64, cached: u64, cost: u64) -> Value {
        json!({"calls": calls, "prompt_tokens": prompt, "cached_tokens": cached,
               "completion_tokens": calls * 10, "cost_micro_usd": cost, "models": models})
    }

    fn stage(
        id: u64,
        agent: &str,
        status: &str,
        model: &str,
        cost: u64,
        output: Value,
    ) -> TaskRecord {
        let mut t = row(
            id,
            agent,
            json!({"status": status, "output": output.to_string(),
                   "usage": {"model": spend(&[model], 1, 100, 50, cost)}}),
        );
        t.parent = Some(1);
        t
    }

    fn note(agent: &str, outcome: &str) -> StageNote {
        StageNote {
            agent: agent.into(),
            outcome: outcome.into(),
            detail: None,
        }
    }

    fn audit(kind: &str, task: u64, agent: &str, detail: Value) -> AuditRecord {
        AuditRecord {
            seq: 1,
            time_ms: 86_400_000,
            kind: kind.into(),
            task: Some(task),
            agent: Some(agent.into()),
            user: None,
            detail,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// Two cascades: 1 verified after rework (small then large), proposed and discarded by a
    /// reviewer; 10 escalated by the skeptic (small only), once by budget before.
    fn scene() -> Metrics {
        let mut root = row(
            1,
            "cascade",
            json!({"status": "completed", "usage": {"model": spend(&["large", "small"], 4, 400, 200, 1_000)}}),
        );
        root.staging = "discarded".into();
        root.staging_path = Some("/data/staging/1".into());
        let escalated = row(
            10,
            "cascade",
            json!({"status": "escalated", "trigger": "skeptic-rejected",
                   "usage": {"model": spend(&["small"], 2, 200, 0, 20)}}),
        );
        let verdict = |v: &str| json!({"verdict": v, "reasons": []});
        let tasks = vec![
            root,
            stage(2, "router", "completed", "small", 10, json!({})),
            stage(3, "implementer", "completed", "small", 10, json!({})),
            stage(4, "skeptic", "completed", "large", 100, verdict("reject")),
            stage(5, "skeptic", "completed", "large", 100, verdict("accept")),
            stage(6, "implementer", "completed", "large", 780, json!({})),
            escalated,
            stage(11, "skeptic", "completed", "small", 10, verdict("reject")),
            stage(12, "skeptic", "escalated", "small", 10, json!({})),
        ];
        let saved = HashMap::from([(
            1,
            vec![
                note("router", "completed"),
                note("implementer", "completed"),
                note("gate", "failed"),
                note("skeptic", "completed"),
                note("skeptic", "completed"),
                note("implementer", "completed"),
                note("gate", "passed"),
            ],
        )]);
        let trigger = |t: &str| json!({"status": "escalated", "outcome": {"trigger": t}});
        let records = vec![
            audit("task-escalated", 10, "cascade", trigger("budget")),
            audit("task-escalated", 10, "cascade", trigger("skeptic-rejected")),
            // Not a cascade in view: left out.
            audit("task-escalated", 99, "cascade", trigger("budget")),
            audit("trust-promoted", 3, "implementer", json!({})),
            audit("trust-demoted", 4, "skeptic", json!({})),
        ];
        collect(&tasks, &saved, &records)
    }

    #[test]
    fn per_agent() {
        let m = scene();
        let c = m.cascade().unwrap();
        assert_eq!((c.tasks, c.cascades, c.escalated), (2, 2, 1));
        assert_eq!((c.first_try, c.rework), (0, 1));
        assert_eq!(
            c.triggers,
            BTreeMap::from([("budget".into(), 1), ("skeptic-rejected".into(), 1)])
        );
        assert_eq!((c.reviewed_proposals, c.reversals), (1, 1));
        assert_eq!(c.cost_micro_usd, 1_020);
        let s = &m.agents["skeptic"];
        assert_eq!(
            (s.tasks, s.skeptic_reviews, s.skeptic_rejections),
            (4, 3, 2)
        );
        assert_eq!(s.escalated, 1);
        assert_eq!(s.demotions, 1);
        let i = &m.agents["implementer"];
        assert_eq!(
            (i.tasks, i.cost_micro_usd, i.cost_per_task()),
            (2, 790, 395)
        );
        assert_eq!((i.promotions, i.cascades, i.escalations()), (1, 0, 0));
        assert!((i.cache_hit_rate() - 0.5).abs() < 1e-9);
        assert_eq!(m.trust.len(), 2);
        assert_eq!(m.trust[0].day, "1970-01-02");
    }

    #[test]
    fn per_model() {
        let m = scene();
        let large = &m.models["large"];
        // Its stages' usage only: the cascade's own row is their sum.
        assert_eq!(
            (large.tasks, large.calls, large.cost_micro_usd),
            (3, 3, 980)
        );
        assert_eq!((large.cascades, large.rework, large.first_try), (1, 1, 0));
        assert_eq!((large.skeptic_reviews, large.skeptic_rejections), (2, 1));
        // The cascade's proposal was discarded: its reviewer's call counts for both its models.
        assert_eq!((large.reviewed_proposals, large.reversals), (1, 1));
        assert_eq!((large.promotions, large.demotions), (0, 1));
        assert!(large.triggers.is_empty());
        let small = &m.models["small"];
        assert_eq!(
            (small.tasks, small.cost_micro_usd, small.escalated),
            (4, 40, 1)
        );
        assert_eq!((small.cascades, small.rework), (2, 1));
        assert_eq!(
            (small.escalations(), small.triggers.get("budget")),
            (2, Some(&1))
        );
        assert_eq!((small.promotions, small.reversals), (1, 1));
        // A rejection and a reversal over 2 decisions (a skeptic's verdict, a proposal).
        assert!((small.disagreement_rate() - 1.0).abs() < 1e-9, "{small:?}");
    }

    #[test]
    fn a_task_of_two_models_is_split_evenly() {
        let t = row(
            1,
            "ask",
            json!({"status": "completed", "usage": {"model": spend(&["b", "a"], 3, 101, 0, 7)}}),
        );
        let m = collect(&[t], &HashMap::new(), &[]);
        let (a, b) = (&m.models["a"], &m.models["b"]);
        assert_eq!(
            (a.tasks, a.calls, a.prompt_tokens, a.cost_micro_usd),
            (1, 2, 51, 4)
        );
        assert_eq!(
            (b.tasks, b.calls, b.prompt_tokens, b.cost_micro_usd),
            (1, 1, 50, 3)
        );
        assert_eq!(m.agents["ask"].cost_micro_usd, 7);
        assert!(m.cascade().is_none());
    }
}
