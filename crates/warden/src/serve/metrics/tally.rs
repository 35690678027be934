//! The metrics the ledger holds rather than the server's own runs: trust promotions and
//! demotions by agent, and model tokens (prompt, cached, completion), cost and prefix-cache hit
//! rate by model, counted from the audit log's `trust-promoted`, `trust-demoted` and
//! `model-call` records (the records `warden stats` reads too); and approvals pending, read from
//! the state store at each scrape.
//!
//! The log is followed with a cursor from its start, so these counters cover the ledger's whole
//! history (not only this process's), and each scrape reads only the records appended since the
//! last — at most [`MAX_PER_SCRAPE`], so a first scrape of a long log catches up over a few.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::audit::{AuditRecord, LogCursor};
use crate::ledger::Ledger;
use crate::store::now_ms;

/// The most audit records one scrape reads.
pub const MAX_PER_SCRAPE: usize = 100_000;
/// The most actions looked at for `warden_approvals_pending`.
const MAX_ACTIONS: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TokenLabels {
    model: String,
    kind: &'static str,
}

/// A label value from the ledger: a name of `A-Z a-z 0-9 . _ -` up to 64 long, else `other`
/// (a label is never a user's text, and never needs escaping).
fn label(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        name.to_owned()
    } else {
        "other".to_owned()
    }
}

/// The ledger's families and the cursor that feeds them.
#[derive(Debug, Default)]
pub(super) struct Tally {
    cursor: std::sync::Mutex<Option<LogCursor>>,
    pub(super) promotions: Family<AgentLabels, Counter>,
    pub(super) demotions: Family<AgentLabels, Counter>,
    pub(super) tokens: Family<TokenLabels, Counter>,
    pub(super) cost: Family<ModelLabels, Counter>,
    pub(super) cache_hit: Family<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(super) approvals_pending: Gauge,
}

impl Tally {
    /// Register the families in `registry`.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "warden_trust_promotions",
            "Trust promotions in the ledger, by agent",
            self.promotions.clone(),
        );
        registry.register(
            "warden_trust_demotions",
            "Trust demotions in the ledger, by agent",
            self.demotions.clone(),
        );
        registry.register(
            "warden_model_tokens",
            "Model tokens in the ledger, by model and kind (prompt, cached: of the prompt, served from the provider's prefix cache; completion)",
            self.tokens.clone(),
        );
        registry.register(
            "warden_model_cost_micro_usd",
            "Model cost in the ledger, in millionths of a US dollar, by model",
            self.cost.clone(),
        );
        registry.register(
            "warden_model_cache_hit_ratio",
            "Prompt tokens served from the provider's prefix cache over all prompt tokens, by model",
            self.cache_hit.clone(),
        );
        registry.register(
            "warden_approvals_pending",
            "Irreversible actions waiting for a person's approval (unexpired)",
            self.approvals_pending.clone(),
        );
    }

    /// Read what the ledger holds since the last call. Blocking (file and SQLite reads).
    ///
    /// # Errors
    ///
    /// A sentence when the log or the store cannot be read.
    pub(super) fn catch_up(&self, ledger: &Ledger) -> Result<(), String> {
        let mut guard = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(LogCursor::open(ledger.audit_path()).map_err(|e| e.to_string())?);
        }
        let cursor = guard.as_mut().expect("opened above");
        let mut read = 0;
        while read < MAX_PER_SCRAPE {
            let batch = cursor.next_batch(1000).map_err(|e| e.to_string())?;
            if batch.is_empty() {
                break;
            }
            read += batch.len();
            batch.iter().for_each(|r| self.count(r));
        }
        let now = now_ms();
        let pending = ledger
            .store()
            .actions(MAX_ACTIONS)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|a| a.status == "pending" && a.expires_ms >= now)
            .count();
        self.approvals_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Count one record.
    pub(super) fn count(&self, r: &AuditRecord) {
        // The agent's name (a record names the agent, or its `<publisher>/<name>` id).
        let agent = || {
            let name = r.agent.as_deref().unwrap_or("-");
            AgentLabels {
                agent: label(name.rsplit('/').next().unwrap_or(name)),
            }
        };
        match r.kind.as_str() {
            "trust-promoted" => {
                self.promotions.get_or_create(&agent()).inc();
            }
            "trust-demoted" => {
                self.demotions.get_or_create(&agent()).inc();
            }
            "model-call" => {
                let d = &r.detail;
                let model = label(d["model"].as_str().unwrap_or(""));
                let n = |k: &str| d[k].as_u64().unwrap_or(0);
                for (kind, key) in [
                    ("prompt", "prompt_tokens"),
                    ("cached", "cached_tokens"),
                    ("completion", "completion_tokens"),
                ] {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            model: model.clone(),
                            kind,
                        })
                        .inc_by(n(key));
                }
                let labels = ModelLabels { model };
                self.cost.get_or_create(&labels).inc_by(n("cost_micro_usd"));
                let of = |kind| {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            model: labels.model.clone(),
                            kind,
                        })
                        .get()
                };
                let (prompt, cached) = (of("prompt"), of("cached"));
                if prompt > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let ratio = cached as f64 / prompt as f64;
                    self.cache_hit.get_or_create(&labels).set(ratio);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(kind: &str, agent: Option<&str>, detail: serde_json::Value) -> AuditRecord {
        AuditRecord {
            seq: 1,
            time_ms: 0,
            kind: kind.into(),
            task: Some(1),
            agent: agent.map(Into::into),
            user: None,
            detail,
            prev: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn trust_changes_and_model_calls_are_counted_by_safe_labels() {
        let t = Tally::default();
        let mut registry = Registry::default();
        t.register(&mut registry);
        t.count(&record("trust-promoted", Some("hello"), json!(null)));
        t.count(&record(
            "trust-demoted",
            Some("unsigned/probe"),
            json!(null),
        ));
        t.count(&record("trust-demoted", Some("evil\"} 1\n"), json!(null)));
        t.count(&record("task-started", Some("hello"), json!(null)));
        let call = |prompt: u64, cached: u64| {
            json!({"model": "small", "prompt_tokens": prompt, "cached_tokens": cached,
                   "completion_tokens": 5, "cost_micro_usd": 70})
        };
        t.count(&record("model-call", Some("ask"), call(100, 0)));
        t.count(&record("model-call", Some("ask"), call(100, 100)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"warden_trust_promotions_total{agent="hello"} 1"#,
            r#"warden_trust_demotions_total{agent="probe"} 1"#,
            r#"warden_trust_demotions_total{agent="other"} 1"#,
            r#"warden_model_tokens_total{model="small",kind="prompt"} 200"#,
            r#"warden_model_tokens_total{model="small",kind="cached"} 100"#,
            r#"warden_model_tokens_total{model="small",kind="completion"} 10"#,
            r#"warden_model_cost_micro_usd_total{model="small"} 140"#,
            r#"warden_model_cache_hit_ratio{model="small"} 0.5"#,
            "warden_approvals_pending 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("evil"), "{text}");
        assert!(!text.contains(r#"agent="unsigned"#), "{text}");
    }
}
