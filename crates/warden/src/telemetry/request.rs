//! The request span of `warden serve`: one span per HTTP request with its method, the route it
//! matched (`/v1/tasks/{id}`, never the raw path, so a trace names no task id or stray input),
//! the status answered and the latency to the answer's head; then an event `answered`
//! (`warden::http`) with the status and latency for the log: `warn` for a 5xx, `info`
//! otherwise. Headers — the bearer token among them — and bodies are never recorded.
//!
//! Two middlewares: [`trace_requests`] wraps the whole router (every request, a 404 too) and
//! [`name_route`] is a route layer, run only once a route matched, which records that route.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::REQUEST_TARGET;

/// Middleware (`axum::middleware::from_fn`) around every request: its span and the closing
/// `answered` event.
pub async fn trace_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        target: REQUEST_TARGET,
        "request",
        method = %method,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("status", status);
    span.record("latency_us", latency_us);
    // A host failure shows at the default level (`warn`); everything else is `info`.
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
        tracing::warn!(target: "warden::http", parent: &span, status, latency_us, "answered");
    } else {
        tracing::info!(target: "warden::http", parent: &span, status, latency_us, "answered");
    }
    response
}

/// Route layer (`axum::middleware::from_fn`, added with `Router::route_layer`): records the
/// matched route on the request span, and names the span after it (`POST /v1/tasks`).
pub async fn name_route(request: Request, next: Next) -> Response {
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        let span = tracing::Span::current();
        span.record("route", route.as_str());
        // The exported span's name: `otel.name` is read only when a span starts, and the route
        // is known only now (a no-op without an exporter).
        let name = format!("{} {}", request.method(), route.as_str());
        OpenTelemetrySpanExt::context(&span)
            .span()
            .update_name(name);
    }
    next.run(request).await
}
