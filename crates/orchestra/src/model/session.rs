//! One task's model calls ([`TaskModels`], the host's [`ModelSession`]): the budget it draws on
//! (see [`super::budget`] for when a call is refused and what it is charged), the accounting
//! after each call, and the record of every call.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_sandbox::capabilities::model::{
    ChatFuture, ChatReply, ChatRequest, ModelFailure, ModelSession, ModelUsage,
};

use super::budget::Budget;
use super::client::CallerModel;
use super::context::{ContextStack, content_bytes};
use super::registry::{ClientServed, Providers};

/// The escalation a budget refusal sets.
pub const BUDGET_CAP: &str = "budget-cap";

/// Called right after each call with its record (the host writes one audit record per call).
pub type CallObserver = Arc<dyn Fn(&CallRecord) + Send + Sync>;

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    /// The model answered.
    Ok,
    /// Refused before sending: over the budget.
    BudgetExceeded,
    /// The provider failed, timed out or is not configured.
    ProviderError,
    /// Not a request this host sends (a schema the model cannot honour).
    Invalid,
    /// Sent, then abandoned before the answer (the task was killed or ran out of time): its
    /// usage and cost are the estimate, which the budget was charged.
    Abandoned,
}

/// One model call as the host accounts for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The model's name (as policies use it).
    pub model: String,
    /// The provider's model id (empty when the host has no such model).
    pub provider_model: String,
    /// Prompt tokens, the host's layers included.
    pub prompt_tokens: u64,
    /// Of those, served from the provider's prefix cache.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in millionths of a US dollar.
    pub cost_micro_usd: u64,
    /// Why the model stopped (empty when it did not answer).
    pub finish_reason: String,
    /// How the call ended.
    pub outcome: CallOutcome,
    /// Requests sent or tried (0 when nothing was sent; 1 for an abandoned call).
    pub attempts: u32,
    /// Whether the token counts are the provider's: `false` for a model the calling MCP client
    /// serves (`provider = "mcp-client"`), which reports none — its tokens are then 0 and the
    /// budget was charged an estimate (see `model/client.rs`).
    pub usage_reported: bool,
    /// The whole call, in microseconds.
    pub elapsed_us: u64,
    /// Of that, time spent connecting to the provider and waiting on it.
    pub provider_us: u64,
}

impl CallRecord {
    /// The record of a call to `model` that has not got anywhere yet.
    fn new(model: &str) -> CallRecord {
        CallRecord {
            model: model.to_owned(),
            provider_model: String::new(),
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            cost_micro_usd: 0,
            finish_reason: String::new(),
            outcome: CallOutcome::Abandoned,
            attempts: 0,
            usage_reported: true,
            elapsed_us: 0,
            provider_us: 0,
        }
    }
}

/// A task's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Spend {
    /// Model calls the guest made (refused and failed ones included).
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Of those, served from the provider's prefix cache.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in millionths of a US dollar.
    pub cost_micro_usd: u64,
    /// The models calls were sent to, sorted, each once.
    pub models: Vec<String>,
}

impl Spend {
    /// Add `other`'s calls, tokens and cost to these, and its models (kept sorted, each once).
    pub fn add(&mut self, other: &Spend) {
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_micro_usd += other.cost_micro_usd;
        self.models.extend(other.models.iter().cloned());
        self.models.sort();
        self.models.dedup();
    }

    /// Cached prompt tokens over prompt tokens (0 when there were none).
    pub fn cache_hit_rate(&self) -> f64 {
        if self.prompt_tokens == 0 {
            0.0
        } else {
            self.cached_tokens as f64 / self.prompt_tokens as f64
        }
    }
}

/// One task's model calls: the host's [`ModelSession`]. Made by [`super::Models::session`].
pub struct TaskModels {
    pub(crate) providers: Providers,
    pub(crate) clients: ClientServed,
    pub(crate) client: Option<Arc<dyn CallerModel>>,
    pub(crate) agent: String,
    pub(crate) stack: ContextStack,
    pub(crate) budget: Arc<Budget>,
    pub(crate) observer: Option<CallObserver>,
    pub(crate) escalation: OnceLock<&'static str>,
    pub(crate) calls: Mutex<Vec<CallRecord>>,
}

impl std::fmt::Debug for TaskModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskModels")
            .field("agent", &self.agent)
            .field("models", &self.providers.keys().collect::<Vec<_>>())
            .field("budget", &self.budget)
            .field("escalation", &self.escalation.get())
            .finish_non_exhaustive()
    }
}

impl TaskModels {
    /// The agent whose calls these are.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The budget this session draws on.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The stable layers of this agent's prompts.
    pub fn context(&self) -> &ContextStack {
        &self.stack
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock_calls().clone()
    }

    /// The totals of every call so far.
    pub fn spend(&self) -> Spend {
        let calls = self.lock_calls();
        let mut spend = Spend {
            calls: calls.len() as u64,
            ..Spend::default()
        };
        let mut models = BTreeSet::new();
        for c in calls.iter() {
            spend.prompt_tokens += c.prompt_tokens;
            spend.cached_tokens += c.cached_tokens;
            spend.completion_tokens += c.completion_tokens;
            spend.cost_micro_usd += c.cost_micro_usd;
            if c.attempts > 0 {
                models.insert(c.model.clone());
            }
        }
        spend.models = models.into_iter().collect();
        spend
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, Vec<CallRecord>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send `request` through the context stack and the budget, and account for it.
    ///
    /// # Errors
    ///
    /// [`ModelFailure`]: over the budget (nothing sent), a schema the model cannot honour, or
    /// the provider's failure after its retries.
    pub async fn call(&self, request: ChatRequest) -> Result<ChatReply, ModelFailure> {
        // Recorded when dropped: normally below, or when the caller abandons the call mid-flight.
        let mut pending = Pending {
            session: self,
            started: Instant::now(),
            record: CallRecord::new(&request.model),
        };
        let result = self.send(&request, &mut pending.record).await;
        pending.record.outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(ModelFailure::BudgetExceeded(_)) => CallOutcome::BudgetExceeded,
            Err(ModelFailure::InvalidRequest(_)) => CallOutcome::Invalid,
            Err(ModelFailure::Provider(_)) => CallOutcome::ProviderError,
        };
        drop(pending);
        result
    }

    /// Keep `record` and show it to the observer.
    fn finish(&self, record: CallRecord) {
        tracing::debug!(
            target: "warden::model",
            agent = %self.agent,
            model = %record.model,
            outcome = ?record.outcome,
            prompt = record.prompt_tokens,
            cached = record.cached_tokens,
            completion = record.completion_tokens,
            cost = record.cost_micro_usd,
            "model call"
        );
        if let Some(observer) = &self.observer {
            observer(&record);
        }
        self.lock_calls().push(record);
    }

    async fn send(
        &self,
        request: &ChatRequest,
        record: &mut CallRecord,
    ) -> Result<ChatReply, ModelFailure> {
        if let Some(served) = self.clients.get(&request.model) {
            return self.send_to_client(served, request, record).await;
        }
        let Some(provider) = self.providers.get(&request.model) else {
            return Err(ModelFailure::Provider(format!(
                "this host has no model `{}`",
                request.model
            )));
        };
        record.provider_model = provider.config.id.clone();
        let messages = self
            .stack
            .messages(request.knowledge.as_deref(), &request.messages);
        let body = provider.body(&messages, request)?;
        let price = provider.config.price;
        let prompt = (content_bytes(&messages) as u64).div_ceil(4);
        let completion = u64::from(request.max_tokens);
        let hold = self
            .budget
            .hold(prompt + completion, price.cost(prompt, 0, completion))
            .map_err(|why| {
                let _ = self.escalation.set(BUDGET_CAP);
                ModelFailure::BudgetExceeded(why)
            })?;
        drop(messages);
        // What an abandoned call is charged, until the provider's answer says otherwise.
        record.prompt_tokens = prompt;
        record.completion_tokens = completion;
        record.cost_micro_usd = price.cost(prompt, 0, completion);
        record.attempts = 1;
        let exchange = provider.complete(body).await;
        record.attempts = exchange.attempts;
        record.provider_us = micros(exchange.provider);
        let done = match exchange.result {
            Ok(done) => done,
            Err(why) => {
                hold.settle(0, 0);
                record.prompt_tokens = 0;
                record.completion_tokens = 0;
                record.cost_micro_usd = 0;
                return Err(ModelFailure::Provider(why));
            }
        };
        let cost = price.cost(
            done.prompt_tokens,
            done.cached_tokens,
            done.completion_tokens,
        );
        hold.settle(done.prompt_tokens + done.completion_tokens, cost);
        record.prompt_tokens = done.prompt_tokens;
        record.cached_tokens = done.cached_tokens;
        record.completion_tokens = done.completion_tokens;
        record.cost_micro_usd = cost;
        record.finish_reason.clone_from(&done.finish_reason);
        Ok(ChatReply {
            text: done.text,
            finish_reason: done.finish_reason,
            usage: ModelUsage {
                prompt_tokens: done.prompt_tokens,
                cached_tokens: done.cached_tokens,
                completion_tokens: done.completion_tokens,
                cost_micro_usd: cost,
            },
        })
    }
}

/// A call in flight; dropping it records the call (as [`CallOutcome::Abandoned`] unless the
/// call got to set its outcome).
struct Pending<'a> {
    session: &'a TaskModels,
    started: Instant,
    record: CallRecord,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut record = std::mem::replace(&mut self.record, CallRecord::new(""));
        record.elapsed_us = micros(self.started.elapsed());
        self.session.finish(record);
    }
}

impl ModelSession for TaskModels {
    fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
        Box::pin(self.call(request))
    }

    fn escalation(&self) -> Option<String> {
        self.escalation.get().map(|s| (*s).to_owned())
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
