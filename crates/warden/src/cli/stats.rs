//! `warden stats`: the figures the manifesto names, per agent and per model, from the ledger —
//! tasks, model calls, tokens, cost per task, prefix-cache hit rate, escalations by trigger,
//! disagreement rate (skeptic rejections and reviewer reversals over decisions), decision quality
//! (cascades verified on the first try or after rework) and promotions and demotions over time.
//!
//! It reads the newest `--limit` task rows, the saved stages of the cascades among them, and the
//! last [`AUDIT_WINDOW`] audit records (escalations, trust changes). The figures are computed in
//! `stats/metrics.rs` (see there how a task's usage is split between models); this file reads and
//! prints them. `docs/cascade.md` ("Metrics") defines each figure.

#[path = "stats/cascade.rs"]
mod cascade;
#[path = "stats/figures.rs"]
mod figures;
#[path = "stats/metrics.rs"]
mod metrics;
#[path = "stats/trust.rs"]
mod trust;

use std::collections::HashMap;

use serde_json::json;
use warden::cascade::CASCADE_AGENT;
use warden::ledger::Ledger;
use warden::store::TaskRecord;
use warden::terminal::{self, line};

pub use figures::Figures;
pub use metrics::{Metrics, collect};

/// How many of the newest audit records are read for escalations and trust changes (a bound on
/// the read: older ones are not counted).
pub const AUDIT_WINDOW: usize = 50_000;

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

/// Read what the figures of `tasks` need from `ledger` (the cascades' saved stages, the last
/// audit records) and compute them.
pub fn gather(ledger: &Ledger, tasks: &[TaskRecord]) -> Result<Metrics, super::Failure> {
    let store = ledger.store();
    let mut saved = HashMap::new();
    for t in tasks.iter().filter(|t| t.agent == CASCADE_AGENT) {
        let text = store.cascade(t.id).map_err(super::host_failure)?;
        if let Some(stages) = text.as_deref().and_then(cascade::saved_stages) {
            saved.insert(t.id, stages);
        }
    }
    let audit = match warden::audit::read_tail(ledger.audit_path(), AUDIT_WINDOW) {
        Ok(records) => records,
        Err(e) => return Err(super::host_failure(e)),
    };
    Ok(collect(tasks, &saved, &audit))
}

/// One row as a JSON object: its figures and the rates derived from them.
fn row_json(kind: &str, name: &str, f: &Figures) -> serde_json::Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    v["kind"] = json!(kind);
    v[kind] = json!(name);
    v["cache_hit_rate"] = json!(f.cache_hit_rate());
    v["cost_per_task_micro_usd"] = json!(f.cost_per_task());
    v["decisions"] = json!(f.decisions());
    v["disagreement_rate"] = json!(f.disagreement_rate());
    v["escalations"] = json!(f.escalations());
    v["first_try_rate"] = json!(f.first_try_rate());
    v
}

/// `warden stats [--limit N] [--json]`: with `--json`, one object per line — `kind` `agent`
/// (with `agent`), `model` (with `model`), or `trust` (a day's changes of one agent).
pub fn stats(ledger: &Ledger, tasks: &[TaskRecord], json: bool) -> Result<u8, super::Failure> {
    let m = gather(ledger, tasks)?;
    if json {
        let rows = m.agents.iter().map(|(n, f)| row_json("agent", n, f));
        let models = m.models.iter().map(|(n, f)| row_json("model", n, f));
        let days = m.trust.iter().map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["kind"] = json!("trust");
            v
        });
        for v in rows.chain(models).chain(days) {
            outln!("{}", terminal::json_line(&v).map_err(super::host_failure)?)?;
        }
        return Ok(0);
    }
    table("agent", &m.agents)?;
    outln!("")?;
    table("model", &m.models)?;
    escalations(&m)?;
    if !m.trust.is_empty() {
        outln!("")?;
        outln!("promotions and demotions (UTC days):")?;
        for d in &m.trust {
            outln!(
                "  {}  {:<16} +{} -{}",
                d.day,
                line(&d.agent),
                d.promotions,
                d.demotions
            )?;
        }
    }
    Ok(0)
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn table(
    what: &str,
    rows: &std::collections::BTreeMap<String, Figures>,
) -> Result<(), super::Failure> {
    outln!(
        "{:<16} {:>6} {:>6} {:>10} {:>10} {:>10} {:>6} {:>12} {:>12} {:>5} {:>9} {:>7} {:>6} {:>5}",
        what,
        "tasks",
        "calls",
        "prompt",
        "cached",
        "completion",
        "cache",
        "cost",
        "cost/task",
        "esc.",
        "disagree",
        "1st/rw",
        "up/dn",
        "casc."
    )?;
    for (name, r) in rows {
        outln!(
            "{:<16} {:>6} {:>6} {:>10} {:>10} {:>10} {:>6} {:>12} {:>12} {:>5} {:>9} {:>7} {:>6} {:>5}",
            line(name),
            r.tasks,
            r.calls,
            r.prompt_tokens,
            r.cached_tokens,
            r.completion_tokens,
            percent(r.cache_hit_rate()),
            dollars(r.cost_micro_usd),
            dollars(r.cost_per_task()),
            r.escalated,
            if r.decisions() == 0 {
                "-".to_string()
            } else {
                format!("{}/{}", r.skeptic_rejections + r.reversals, r.decisions())
            },
            format!("{}/{}", r.first_try, r.rework),
            format!("{}/{}", r.promotions, r.demotions),
            r.cascades
        )?;
    }
    Ok(())
}

/// Escalations by trigger over the cascades: the cascades' own, then per model.
fn escalations(m: &Metrics) -> Result<(), super::Failure> {
    let rows = m
        .cascade()
        .map(|c| ("cascades".to_string(), c))
        .into_iter()
        .chain(
            m.models
                .iter()
                .map(|(n, f)| (format!("model {}", line(n)), f)),
        );
    let mut first = true;
    for (label, f) in rows.filter(|(_, f)| f.cascades > 0) {
        if first {
            outln!("")?;
            outln!("escalations by trigger (a resumed cascade counts each pause):")?;
            first = false;
        }
        let list: Vec<String> = f
            .triggers
            .iter()
            .map(|(t, n)| {
                format!(
                    "{} {n} ({})",
                    line(t),
                    percent(figures::ratio(*n, f.cascades))
                )
            })
            .collect();
        outln!(
            "  {label}: {} over {} cascades{}{}",
            f.escalations(),
            f.cascades,
            if list.is_empty() { "" } else { ": " },
            list.join(", ")
        )?;
    }
    Ok(())
}
