//! `GET /metrics`: what the server has run, in the OpenMetrics text format that Prometheus
//! scrapes (`prometheus-client`'s registry and encoder). Behind the bearer token like `/v1`: the
//! counts name agents and say how often they were killed, which is not for anyone who can reach
//! the port — unless the host sets `[server] metrics_without_token = true` for a scraper on a
//! trusted network (then anyone who reaches the port reads them).
//!
//! The families (every label value is a name the host chose: an agent's validated name, an
//! outcome, a kill reason, an escalation trigger — never a user's text):
//!
//! - `warden_runs_total{agent, outcome}`: runs the server finished; `outcome` is `completed`,
//!   `agent-error`, `escalated`, `killed`, or `not-started` (the run could not start: the input
//!   broke the contract, the workspace or the ledger failed); a cascade is agent `cascade`, its
//!   outcome `verified`, `escalated`, `stopped` or `not-started`;
//! - `warden_kills_total{reason}`: killed runs by kill reason (`not-granted`, `cpu-limit`, …);
//! - `warden_escalations_total{trigger}`: runs that ended for a person to decide, by trigger;
//! - `warden_run_duration_seconds`: a histogram of the runs' wall time from start to end,
//!   buckets from 100 µs to 60 s;
//! - `warden_tasks_running`: tasks started and not yet ended;
//! - `warden_tasks_queued`: tasks acknowledged and waiting in the queue (its depth);
//! - `warden_http_too_many_requests_total{code}`: every `429` the server answered, on any route
//!   (`/v1`, `/a2a`, `/mcp`), by its stable error code (`queue-full`, `user-busy`,
//!   `too-many-streams`, …; `other` for a `429` that carried none), counted by [`count_busy`];
//! - from the ledger (`metrics/tally.rs`, its whole history): `warden_trust_promotions_total`
//!   and `warden_trust_demotions_total{agent}`, `warden_model_tokens_total{model, kind}`,
//!   `warden_model_cost_micro_usd_total{model}`, `warden_model_cache_hit_ratio{model}`, and
//!   `warden_approvals_pending`.

mod tally;

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{ApiError, ServerState};
use crate::Outcome;

/// The upper bounds of `warden_run_duration_seconds`' buckets: 100 µs to 60 s, about three per
/// decade (a trivial run takes ~100 µs, a run at a default wall limit up to a minute).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 25.0, 60.0,
];

/// The media type of the answer: OpenMetrics text, which Prometheus asks for and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    agent: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KillLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusyLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

/// How a run the server started ended, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// The run ended with an outcome.
    Ended(&'a Outcome),
    /// The run could not start (a [`crate::RunError`]).
    NotStarted,
    /// The run was stopped by a cancellation (`DELETE /v1/tasks/{id}`, MCP, A2A).
    Cancelled,
}

/// The server's metrics: its registry and the handles its tasks record through.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    kills: Family<KillLabels, Counter>,
    escalations: Family<TriggerLabels, Counter>,
    duration: Histogram,
    running: Gauge,
    tally: tally::Tally,
    queued: Gauge,
    busy: Family<BusyLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<RunLabels, Counter>::default();
        let kills = Family::<KillLabels, Counter>::default();
        let escalations = Family::<TriggerLabels, Counter>::default();
        let duration = Histogram::new(DURATION_BUCKETS);
        let running = Gauge::default();
        let queued = Gauge::default();
        let busy = Family::<BusyLabels, Counter>::default();
        // The encoder adds `_total` to a counter's name.
        registry.register(
            "warden_runs",
            "Runs the server finished, by agent and outcome",
            runs.clone(),
        );
        registry.register(
            "warden_kills",
            "Runs the host killed, by kill reason",
            kills.clone(),
        );
        registry.register(
            "warden_escalations",
            "Runs that ended for a person to decide, by trigger",
            escalations.clone(),
        );
        registry.register(
            "warden_run_duration_seconds",
            "Wall time of a run, from its start to its end",
            duration.clone(),
        );
        registry.register(
            "warden_tasks_running",
            "Tasks started and not yet ended",
            running.clone(),
        );
        let tally = tally::Tally::default();
        tally.register(&mut registry);
        registry.register(
            "warden_tasks_queued",
            "Tasks acknowledged and waiting in the queue",
            queued.clone(),
        );
        registry.register(
            "warden_http_too_many_requests",
            "Requests answered 429 (Retry-After), by the error's stable code",
            busy.clone(),
        );
        Metrics {
            busy,
            tally,
            registry,
            runs,
            kills,
            escalations,
            duration,
            running,
            queued,
        }
    }

    /// Set the queue depth gauge to `queued` tasks waiting.
    pub fn set_queued(&self, queued: usize) {
        self.queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Count a run of `agent` that ended as `end` after `elapsed`.
    pub fn record_run(&self, agent: &str, end: RunEnd<'_>, elapsed: Duration) {
        let outcome = match end {
            RunEnd::NotStarted => "not-started",
            RunEnd::Cancelled => "cancelled",
            RunEnd::Ended(Outcome::Completed { .. }) => "completed",
            RunEnd::Ended(Outcome::AgentError { .. }) => "agent-error",
            RunEnd::Ended(Outcome::Escalated { reason, .. }) => {
                self.escalation(reason);
                "escalated"
            }
            RunEnd::Ended(Outcome::Killed { reason, .. }) => {
                self.kills
                    .get_or_create(&KillLabels {
                        reason: reason.as_str(),
                    })
                    .inc();
                "killed"
            }
        };
        self.runs
            .get_or_create(&RunLabels {
                agent: agent.to_owned(),
                outcome,
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Count a cascade (agent `cascade`) that ended with `status` (`verified`, `escalated`,
    /// `stopped`, `cancelled`, or `not-started`) and, when escalated, `trigger`, after `elapsed`.
    pub fn record_cascade(&self, status: &str, trigger: Option<&str>, elapsed: Duration) {
        let outcome = match status {
            "verified" => "verified",
            "escalated" => "escalated",
            "stopped" => "stopped",
            "cancelled" => "cancelled",
            _ => "not-started",
        };
        if let Some(trigger) = trigger {
            self.escalation(trigger);
        }
        self.runs
            .get_or_create(&RunLabels {
                agent: crate::cascade::CASCADE_AGENT.to_owned(),
                outcome,
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Count a `429` answered with the stable error `code` (a code the host chose, never a
    /// caller's text).
    pub fn record_busy(&self, code: &'static str) {
        self.busy.get_or_create(&BusyLabels { code }).inc();
    }

    /// Count an escalation by its trigger (a host-chosen name such as `budget-cap`).
    pub fn escalation(&self, trigger: &str) {
        self.escalations
            .get_or_create(&TriggerLabels {
                trigger: trigger.to_owned(),
            })
            .inc();
    }

    /// The exposition, with `running` tasks running now.
    ///
    /// # Errors
    ///
    /// [`ApiError`] (500) if the encoder fails (it writes to a string: it does not).
    pub fn encode(&self, running: usize) -> Result<String, ApiError> {
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| ApiError::internal(format!("the metrics cannot be encoded: {e}")))?;
        Ok(text)
    }
}

/// A layer over every route: a `429` answer is counted by the [`super::error::ErrorCode`] it
/// carries (`other` without one), so no refusal for load goes uncounted whichever door it came
/// by.
pub(crate) async fn count_busy(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
        let code = response
            .extensions()
            .get::<super::error::ErrorCode>()
            .map_or("other", |c| c.0);
        metrics.record_busy(code);
    }
    response
}

/// `GET /metrics`: the exposition, for a caller with a valid token (or anyone, when the host
/// sets `[server] metrics_without_token`).
pub(crate) async fn metrics(
    State(state): State<ServerState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.runtime.host_config().server.metrics_without_token {
        state.authority.caller(&headers)?;
    }
    let ledger = super::offload::ledger(&state)?;
    let metrics = state.metrics.clone();
    super::offload::blocking(move || {
        metrics
            .tally
            .catch_up(&ledger)
            .map_err(|e| ApiError::internal(format!("the ledger's metrics cannot be read: {e}")))
    })
    .await?;
    state.metrics.set_queued(state.queue.depth().0);
    let text = state.metrics.encode(state.running.count())?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::KillReason;

    #[test]
    fn runs_kills_and_escalations_are_counted_by_their_labels() {
        let m = Metrics::new();
        let done = Outcome::Completed {
            output: "hi".into(),
        };
        let killed = Outcome::Killed {
            reason: KillReason::CpuLimit,
            capability: "limits.cpu".into(),
            detail: "ran too long".into(),
        };
        let paused = Outcome::Escalated {
            reason: "budget-cap".into(),
            detail: "over budget".into(),
        };
        m.record_run("hello", RunEnd::Ended(&done), Duration::from_micros(50));
        m.record_run("hello", RunEnd::Ended(&done), Duration::from_millis(3));
        m.record_run("probe", RunEnd::Ended(&killed), Duration::from_secs(2));
        m.record_run("ask", RunEnd::Ended(&paused), Duration::from_secs(90));
        m.record_run("hello", RunEnd::NotStarted, Duration::ZERO);
        m.record_cascade(
            "escalated",
            Some("skeptic-rejected"),
            Duration::from_secs(1),
        );
        m.record_cascade("verified", None, Duration::from_secs(1));
        m.record_cascade("cancelled", None, Duration::from_secs(1));
        m.record_busy("queue-full");
        m.record_busy("queue-full");
        m.record_busy("user-busy");
        let text = m.encode(3).unwrap();
        for line in [
            "# TYPE warden_runs counter",
            r#"warden_runs_total{agent="hello",outcome="completed"} 2"#,
            r#"warden_runs_total{agent="probe",outcome="killed"} 1"#,
            r#"warden_runs_total{agent="ask",outcome="escalated"} 1"#,
            r#"warden_runs_total{agent="hello",outcome="not-started"} 1"#,
            r#"warden_kills_total{reason="cpu-limit"} 1"#,
            r#"warden_escalations_total{trigger="budget-cap"} 1"#,
            r#"warden_escalations_total{trigger="skeptic-rejected"} 1"#,
            r#"warden_runs_total{agent="cascade",outcome="escalated"} 1"#,
            r#"warden_runs_total{agent="cascade",outcome="verified"} 1"#,
            r#"warden_runs_total{agent="cascade",outcome="cancelled"} 1"#,
            "# TYPE warden_run_duration_seconds histogram",
            r#"warden_run_duration_seconds_bucket{le="0.0001"} 2"#,
            r#"warden_run_duration_seconds_bucket{le="0.005"} 3"#,
            r#"warden_run_duration_seconds_bucket{le="60.0"} 7"#,
            r#"warden_run_duration_seconds_bucket{le="+Inf"} 8"#,
            "warden_run_duration_seconds_count 8",
            "# TYPE warden_tasks_running gauge",
            "warden_tasks_running 3",
            "# TYPE warden_http_too_many_requests counter",
            r#"warden_http_too_many_requests_total{code="queue-full"} 2"#,
            r#"warden_http_too_many_requests_total{code="user-busy"} 1"#,
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // A reason never seen has no sample (its deny twin: no kill counted for a completed run).
        assert!(!text.contains("not-granted"), "{text}");
        assert!(!text.contains("too-many-streams"), "{text}");
    }

    async fn answered(code: Option<&'static str>, status: u16) -> Arc<Metrics> {
        use axum::routing::get;
        use tower::ServiceExt;
        let metrics = Arc::new(Metrics::new());
        let app = axum::Router::new()
            .route(
                "/x",
                get(move || async move {
                    let status = axum::http::StatusCode::from_u16(status).unwrap();
                    match code {
                        Some(code) => ApiError::new(status, code, "wait").into_response(),
                        None => status.into_response(),
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                count_busy,
            ));
        let request = axum::http::Request::get("/x")
            .body(axum::body::Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap();
        metrics
    }

    #[tokio::test]
    async fn every_429_is_counted_by_its_code_and_nothing_else_is() {
        let text = answered(Some("user-busy"), 429).await.encode(0).unwrap();
        assert!(
            text.contains(r#"warden_http_too_many_requests_total{code="user-busy"} 1"#),
            "{text}"
        );
        // A 429 without a code (a layer's own) is still counted.
        let text = answered(None, 429).await.encode(0).unwrap();
        assert!(
            text.contains(r#"warden_http_too_many_requests_total{code="other"} 1"#),
            "{text}"
        );
        // Its deny twin: another refusal is not a 429.
        let text = answered(Some("bad-body"), 400).await.encode(0).unwrap();
        assert!(
            !text.contains("warden_http_too_many_requests_total{"),
            "{text}"
        );
    }
}
