//! The host side of model calls (`[[model]]` in `warden.toml`, `[model]` in a policy,
//! `warden:agent/model` in WIT): the providers ([`Models`]), the context stack every prompt is
//! built from ([`ContextStack`]), and one task's session — its budget, its refusals and its
//! accounting ([`TaskModels`], the sandbox's [`ModelSession`]).
//!
//! The sandbox's gate decides *whether* an agent may call a model; everything here happens after
//! it: which provider, the API key (the host's only; see [`REDACTED`]), the prompt's stable
//! layers, the budget, retries, the timeout, and one [`CallRecord`] per call.
//!
//! Defaults, in writing: no model unless `warden.toml` declares one; a session's budget is what
//! its caller passes (policy ∩ user); `max_tokens` is always sent; a provider marked
//! `json_schema = false` gets no request with a schema (the request is refused as invalid);
//! certificate and host-name checks of `https` providers cannot be turned off.
//!
//! [`ModelSession`]: warden_sandbox::capabilities::model::ModelSession

mod budget;
mod client;
mod context;
mod provider;
mod registry;
mod session;
pub mod stub;
#[cfg(test)]
mod testing;
mod wire;

pub use budget::{Budget, Spent};
pub use client::{CallerModel, ClientAnswer, ClientModelError, ClientSampling, SampleFuture};
pub use context::{ContextStack, WireMessage};
pub use provider::{MAX_REPLY_BYTES, REDACTED};
pub use registry::{Models, ModelsError, SessionScope};
pub use session::{BUDGET_CAP, CallObserver, CallOutcome, CallRecord, Spend, TaskModels};
