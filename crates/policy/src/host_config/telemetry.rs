//! The host configuration's `[log]` and `[telemetry]`: how the host writes its own logs (text or
//! JSON lines on stderr, and which levels), and where its traces go (an OpenTelemetry collector
//! over OTLP/HTTP — off unless named). See `docs/server.md`, "Logs and traces".
//!
//! ```toml
//! [log]
//! format = "json"        # "text" (default) or "json"; `--log-format` overrides it
//! level = "info"         # a filter such as "info" or "warn,warden::run=debug" (default "warn");
//!                        # the WARDEN_LOG environment variable overrides it
//! [telemetry]
//! otlp = "http://127.0.0.1:4318"   # an OTLP/HTTP collector: spans go to <otlp>/v1/traces
//! service = "warden"               # the service.name of the spans (default "warden")
//! queue = 2048                     # spans held for export at most; more are dropped (default 2048)
//! ```
//!
//! Without `[telemetry] otlp` nothing is exported and no connection is ever made. Only plain
//! `http://` is accepted: the exporter speaks to a collector on this host or beside it (a sidecar),
//! which forwards over TLS if it must.

use serde::Deserialize;
use toml::Spanned;

use super::values::whole;
use crate::diagnostic::Source;
use crate::{PolicyError, PolicyErrorKind};

/// The largest `telemetry.queue` a host may set.
const MAX_QUEUE: i64 = 1_000_000;

/// The default `telemetry.queue`.
pub const DEFAULT_SPAN_QUEUE: usize = 2048;

/// How the host's log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line of text per event, its span's fields in front (`task{task=3 agent=hello …}:`),
    /// untrusted text escaped. The default.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, and `span` / `spans`
    /// with the task, agent and user of the task the event belongs to).
    Json,
}

/// `[log]` and `[telemetry]`, validated. [`TelemetrySettings::default`] writes text lines at
/// level `warn` and exports nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `log.format` (default [`LogFormat::Text`]).
    pub log_format: LogFormat,
    /// `log.level`: a filter of levels and targets (default `"warn"`).
    pub log_level: String,
    /// `telemetry.otlp`: the collector spans are exported to; `None` (the default) exports none.
    pub otlp: Option<OtlpEndpoint>,
    /// `telemetry.service`: the `service.name` resource of every span (default `"warden"`).
    pub service: String,
    /// `telemetry.queue`: finished spans held for export at most; past it new ones are dropped
    /// (the run never waits for the collector). Default [`DEFAULT_SPAN_QUEUE`].
    pub queue: usize,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_format: LogFormat::Text,
            log_level: "warn".to_owned(),
            otlp: None,
            service: "warden".to_owned(),
            queue: DEFAULT_SPAN_QUEUE,
        }
    }
}

/// An OTLP/HTTP collector: a plain `http://` host and port, and the path traces are posted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The port (4318, OTLP/HTTP's, when the URL names none).
    pub port: u16,
    /// The path traces are posted to: the URL's own when it ends in `/v1/traces`, else the
    /// URL's path followed by `/v1/traces` (as the OTLP exporters' `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub path: String,
}

impl OtlpEndpoint {
    /// Parse `http://HOST[:PORT][/PATH]`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: another scheme, no host, a bad port, a query or fragment.
    pub fn parse(text: &str) -> Result<OtlpEndpoint, String> {
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            "only plain http:// is supported (a collector on this host or a sidecar)".to_owned()
        })?;
        if rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_whitespace()) {
            return Err("a collector URL has no user, query, fragment or spaces".to_owned());
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("an unclosed `[` in the host")?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let host_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
        if host.is_empty() || !host.chars().all(host_ok) {
            return Err(format!("`{host}` is not a host name or address"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{p}` is not a port"))?,
            None => 4318,
        };
        let path = path.trim_end_matches('/');
        let path = if path.ends_with("/v1/traces") {
            path.to_owned()
        } else {
            format!("{path}/v1/traces")
        };
        Ok(OtlpEndpoint {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The URL traces are posted to.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    otlp: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
}

/// Whether `text` is a log filter: comma-separated directives, each a level or `target=level`
/// (a bare target, which `tracing` reads as `target=trace`, is refused: it is more often a
/// misspelt level).
fn is_filter(text: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level = |l: &str| LEVELS.contains(&l.to_ascii_lowercase().as_str());
    let target = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    };
    !text.trim().is_empty()
        && text.split(',').all(|d| match d.trim().split_once('=') {
            Some((t, l)) => target(t) && level(l),
            None => level(d.trim()),
        })
}

/// `[log]` and `[telemetry]` from their raw tables (the defaults without them).
pub(super) fn settings(
    source: &Source<'_>,
    log: Option<RawLog>,
    telemetry: Option<RawTelemetry>,
) -> Result<TelemetrySettings, PolicyError> {
    let mut s = TelemetrySettings::default();
    let invalid = |span, what: String, hint: &str| {
        source.error(
            span,
            PolicyErrorKind::InvalidName,
            what,
            Some(hint.to_owned()),
        )
    };
    if let Some(log) = log {
        if let Some(f) = log.format {
            s.log_format = match f.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        f.span(),
                        format!("log.format \"{other}\" is not a log format"),
                        "\"text\" or \"json\"",
                    ));
                }
            };
        }
        if let Some(l) = log.level {
            if !is_filter(l.get_ref()) {
                return Err(invalid(
                    l.span(),
                    format!("log.level \"{}\" is not a log filter", l.get_ref()),
                    "a level (off, error, warn, info, debug, trace) or directives such as \"warn,warden::run=info\"",
                ));
            }
            s.log_level = l.into_inner();
        }
    }
    if let Some(t) = telemetry {
        if let Some(url) = t.otlp {
            s.otlp = Some(OtlpEndpoint::parse(url.get_ref()).map_err(|why| {
                invalid(
                    url.span(),
                    format!("telemetry.otlp is not a collector URL: {why}"),
                    "an OTLP/HTTP collector such as \"http://127.0.0.1:4318\"",
                )
            })?);
        }
        if let Some(name) = t.service {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/');
            if name.get_ref().is_empty()
                || name.get_ref().len() > 128
                || !name.get_ref().chars().all(ok)
            {
                return Err(invalid(
                    name.span(),
                    "telemetry.service is not a service name".to_owned(),
                    "1 to 128 letters, digits, `.`, `-`, `_` or `/`, such as \"warden-prod\"",
                ));
            }
            s.service = name.into_inner();
        }
        if let Some(q) = t.queue {
            s.queue = whole(source, "telemetry.queue", q, MAX_QUEUE)? as usize;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::{LogFormat, OtlpEndpoint, TelemetrySettings};
    use crate::{HostConfig, PolicyErrorKind};

    #[test]
    fn defaults_log_text_at_warn_and_export_nothing() {
        let c = HostConfig::parse("w.toml", "").unwrap();
        assert_eq!(c.telemetry, TelemetrySettings::default());
        assert_eq!(c.telemetry.log_format, LogFormat::Text);
        assert_eq!(c.telemetry.log_level, "warn");
        assert_eq!(c.telemetry.otlp, None);
    }

    #[test]
    fn parses_both_tables() {
        let c = HostConfig::parse(
            "w.toml",
            "[log]\nformat = \"json\"\nlevel = \"warn,warden::run=info\"\n[telemetry]\notlp = \"http://127.0.0.1:4318\"\nservice = \"warden-test\"\nqueue = 16\n",
        )
        .unwrap();
        let t = &c.telemetry;
        assert_eq!(t.log_format, LogFormat::Json);
        assert_eq!(t.log_level, "warn,warden::run=info");
        assert_eq!(
            t.otlp.as_ref().map(OtlpEndpoint::url).as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!((t.service.as_str(), t.queue), ("warden-test", 16));
    }

    #[test]
    fn collector_urls() {
        for (text, url) in [
            ("http://collector", "http://collector:4318/v1/traces"),
            ("http://127.0.0.1:9/", "http://127.0.0.1:9/v1/traces"),
            ("http://h:1/otel", "http://h:1/otel/v1/traces"),
            ("http://h:1/x/v1/traces", "http://h:1/x/v1/traces"),
            ("http://[::1]:4318", "http://[::1]:4318/v1/traces"),
        ] {
            assert_eq!(
                OtlpEndpoint::parse(text).map(|e| e.url()),
                Ok(url.to_owned()),
                "{text}"
            );
        }
        for text in [
            "https://collector:4318",
            "collector:4318",
            "http://:4318",
            "http://h:0",
            "http://h:99999",
            "http://h:1?x=1",
            "http://user@h:1",
            "http://h h:1",
            "http://[::1:4318",
        ] {
            assert!(OtlpEndpoint::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn mistakes_are_located() {
        for (text, line, kind) in [
            ("[log]\nformat = \"xml\"\n", 2, PolicyErrorKind::InvalidName),
            (
                "[log]\n\nlevel = \"loud\"\n",
                3,
                PolicyErrorKind::InvalidName,
            ),
            (
                "[log]\nlevel = \"warden=shout\"\n",
                2,
                PolicyErrorKind::InvalidName,
            ),
            ("[log]\ncolour = true\n", 2, PolicyErrorKind::UnknownKey),
            (
                "[telemetry]\notlp = \"https://c:4318\"\n",
                2,
                PolicyErrorKind::InvalidName,
            ),
            (
                "[telemetry]\nservice = \"a b\"\n",
                2,
                PolicyErrorKind::InvalidName,
            ),
            ("[telemetry]\nqueue = 0\n", 2, PolicyErrorKind::OutOfRange),
            (
                "[telemetry]\nendpoint = \"x\"\n",
                2,
                PolicyErrorKind::UnknownKey,
            ),
        ] {
            let e = HostConfig::parse("w.toml", text).unwrap_err();
            assert_eq!((e.line, e.kind), (line, kind), "{text}: {e}");
        }
    }
}
