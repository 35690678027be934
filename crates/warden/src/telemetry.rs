//! The host's own logs and traces: the `tracing` subscriber every command installs ([`install`]),
//! the spans that give each log line its context ([`task_span`] around a task's run, a request
//! span around each HTTP request of `warden serve`), and the OpenTelemetry export of those spans
//! over OTLP/HTTP when the host configuration names a collector (`[telemetry] otlp`, off by
//! default).
//!
//! Logs go to stderr, one line per event, as text or JSON (`[log] format`, or `--log-format`),
//! filtered by `WARDEN_LOG` or else `[log] level` (default `warn`). Every event inside a task's
//! run carries that task's `task`, `agent` and `user` (the span's fields: in front of a text line,
//! under `span` / `spans` in a JSON one); a callee's or a cascade stage's span nests in its
//! caller's. Every line passes `crate::terminal`'s escaping (agent output, user subjects, paths
//! and refusals are untrusted). No span or event records a token, a secret or a request header.
//!
//! Export never slows or fails a task: finished spans go into a bounded queue
//! (`[telemetry] queue`) that a background thread sends in batches; a full queue drops spans, a
//! collector that is down costs a refused connection on that thread. [`flush`] sends what is
//! queued (at a graceful shutdown), [`Telemetry::shutdown`] at the end of the process.

mod export;
mod request;

use std::sync::OnceLock;
use std::time::Duration;

use tracing::Span;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::policy::{LogFormat, TelemetrySettings};
use crate::terminal;

pub use export::EXPORT_TIMEOUT;
pub use request::{name_route, trace_requests};

/// The target of every task span ([`task_span`]).
pub const TASK_TARGET: &str = "warden::task";

/// The target of every request span of `warden serve` ([`trace_requests`]).
pub const REQUEST_TARGET: &str = "warden::request";

/// How long [`Telemetry::shutdown`] waits for the last spans to be sent.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The exporting tracer provider, when one is installed (for [`flush`] and the shutdown).
static PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

/// Why the host's logs or traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `[log] level` (or `WARDEN_LOG`) is not a filter `tracing` accepts.
    #[error(
        "the log filter `{filter}` is invalid ({why}); use a level such as \"info\" or directives such as \"warn,warden::run=info\""
    )]
    Filter {
        /// The filter as given.
        filter: String,
        /// Why it was refused.
        why: String,
    },
    /// The OTLP exporter could not be built from `[telemetry]`.
    #[error(
        "cannot export traces to {endpoint}: {why}; check [telemetry] otlp in the host configuration"
    )]
    Exporter {
        /// The collector's URL.
        endpoint: String,
        /// Why.
        why: String,
    },
    /// A subscriber was already installed in this process.
    #[error("the host's logging is already set up in this process")]
    AlreadyInstalled,
}

/// The installed logs and traces of this process; [`Telemetry::shutdown`] sends the spans still
/// queued.
#[derive(Debug)]
#[must_use = "call shutdown() at the end of the process, or queued spans are lost"]
pub struct Telemetry {
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported (a collector is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Send the spans still queued (waiting at most a few seconds) and stop exporting. Blocks:
    /// call it outside the async runtime's tasks, with the runtime still alive (the export
    /// runs on it).
    pub fn shutdown(self) {
        if let Some(provider) = PROVIDER.get() {
            let _ = provider.shutdown_with_timeout(SHUTDOWN_WAIT);
        }
    }
}

/// Install the process's subscriber: log lines in `format` on stderr, filtered by `WARDEN_LOG`
/// or else `settings.log_level`, and, when `settings.otlp` names a collector, the task and
/// request spans (and warnings inside them) exported to it over OTLP/HTTP — the HTTP exchanges
/// run on `runtime`.
///
/// # Errors
///
/// [`TelemetryError`] for a filter that does not parse, an exporter that cannot be built, or a
/// second installation.
pub fn install(
    settings: &TelemetrySettings,
    format: LogFormat,
    runtime: tokio::runtime::Handle,
) -> Result<Telemetry, TelemetryError> {
    let logs = log_filter(settings)?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = matches!(format, LogFormat::Json);
    // Log events quote agent names, refusals and kill details: each line is escaped.
    let writer = move || terminal::LogStderr { ansi, json };
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(logs)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(logs)
            .boxed(),
    };
    let traces = match &settings.otlp {
        Some(endpoint) => {
            let provider = export::provider(endpoint, &settings.service, settings.queue, runtime)?;
            let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "warden");
            let _ = PROVIDER.set(provider);
            let spans = Targets::new()
                .with_target(TASK_TARGET, LevelFilter::INFO)
                .with_target(REQUEST_TARGET, LevelFilter::INFO)
                .with_target("warden", LevelFilter::WARN);
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(spans),
            )
        }
        None => None,
    };
    Registry::default()
        .with(lines)
        .with(traces)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry {
        exporting: settings.otlp.is_some(),
    })
}

/// The log lines' filter: `WARDEN_LOG` when it is set and valid, else `[log] level`, with the
/// task and request spans always on, so that a warning inside a task carries its ids whatever
/// the level (the spans themselves print nothing).
fn log_filter(settings: &TelemetrySettings) -> Result<EnvFilter, TelemetryError> {
    filter_of(std::env::var("WARDEN_LOG").ok(), settings)
}

/// [`log_filter`] with `variable` as the value of `WARDEN_LOG`.
fn filter_of(
    variable: Option<String>,
    settings: &TelemetrySettings,
) -> Result<EnvFilter, TelemetryError> {
    let parse = |text: &str| {
        EnvFilter::builder()
            .parse(text)
            .map_err(|e| TelemetryError::Filter {
                filter: terminal::line(text).into_owned(),
                why: e.to_string(),
            })
    };
    let filter = match variable {
        Some(text) if !text.trim().is_empty() => {
            parse(&text).or_else(|_| parse(&settings.log_level))
        }
        _ => parse(&settings.log_level),
    }?;
    let on = |target: &str| {
        format!("{target}=info")
            .parse()
            .map_err(
                |e: tracing_subscriber::filter::ParseError| TelemetryError::Filter {
                    filter: target.to_owned(),
                    why: e.to_string(),
                },
            )
    };
    Ok(filter
        .add_directive(on(TASK_TARGET)?)
        .add_directive(on(REQUEST_TARGET)?))
}

/// Send the spans queued so far to the collector (nothing without one). For a graceful
/// shutdown: it waits for the export, off the runtime's worker threads.
pub async fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let provider = provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }
}

/// The span of one task's run: `task` (recorded by [`Span::record`] once the ledger has given
/// the id, or at once when `task` is known), `agent`, and `user` (the user's subject, `-` for
/// none).
/// Entered around the run — `.instrument(span)` — so every event inside carries them; a
/// callee's span is a child of its caller's.
pub fn task_span(agent: &str, user: Option<&str>, task: Option<u64>) -> Span {
    let span = tracing::info_span!(
        target: TASK_TARGET,
        "task",
        task = tracing::field::Empty,
        agent = %agent,
        user = %user.unwrap_or("-"),
    );
    if let Some(id) = task {
        span.record("task", id);
    }
    span
}

#[cfg(test)]
mod tests;
