//! The task span's fields on every JSON log line inside it (a callee's nested in its caller's),
//! the log filter's defaults and refusals, and an exporter whose collector is down: spans are
//! dropped past the bounded queue, never waited for.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer, TracerProvider};
use serde_json::Value;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

use super::{TelemetryError, filter_of, task_span};
use crate::policy::{OtlpEndpoint, TelemetrySettings};

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn every_line_inside_a_task_carries_its_task_agent_and_user() {
    let lines = Lines::default();
    let writer = lines.clone();
    let settings = TelemetrySettings::default();
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || writer.clone()),
        filter_of(None, &settings).unwrap(),
    ));
    let _default = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(
        async {
            // The id is known only once the ledger stores the row: recorded then.
            tracing::Span::current().record("task", 7u64);
            tracing::warn!(target: "warden::run", "in the root");
            async { tracing::warn!(target: "warden::run", "in the callee") }
                .instrument(task_span("hello", Some("alice"), Some(8)))
                .await;
            // Below the level (warn): not written, though its span is on.
            tracing::info!(target: "warden::run", "quiet");
        }
        .instrument(task_span("router", Some("alice"), None)),
    );
    tracing::warn!(target: "warden::run", "outside");
    let lines = lines.json();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let span = |l: &Value| {
        (
            l["span"]["task"].as_u64(),
            l["span"]["agent"].as_str().map(str::to_owned),
            l["span"]["user"].as_str().map(str::to_owned),
        )
    };
    assert_eq!(lines[0]["fields"]["message"], "in the root");
    assert_eq!(
        span(&lines[0]),
        (Some(7), Some("router".into()), Some("alice".into()))
    );
    assert_eq!(lines[1]["fields"]["message"], "in the callee");
    assert_eq!(
        span(&lines[1]),
        (Some(8), Some("hello".into()), Some("alice".into()))
    );
    // The caller's span encloses the callee's.
    let tasks: Vec<_> = lines[1]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["task"].as_u64())
        .collect();
    assert_eq!(tasks, [Some(7), Some(8)]);
    assert_eq!(lines[2]["fields"]["message"], "outside");
    assert!(lines[2].get("span").is_none(), "{}", lines[2]);
}

#[test]
fn a_bad_level_is_refused_with_what_to_write() {
    let settings = TelemetrySettings {
        log_level: "warden=[".into(),
        ..TelemetrySettings::default()
    };
    match filter_of(None, &settings) {
        Err(TelemetryError::Filter { filter, .. }) => assert_eq!(filter, "warden=["),
        other => panic!("{other:?}"),
    }
    // WARDEN_LOG wins when it parses; a bad one falls back to the configuration's level.
    let settings = TelemetrySettings::default();
    let info = filter_of(Some("info".into()), &settings).unwrap();
    assert_eq!(
        info.max_level_hint(),
        Some(tracing::level_filters::LevelFilter::INFO)
    );
    let fallback = filter_of(Some("warden=[".into()), &settings).unwrap();
    assert_eq!(
        fallback.to_string(),
        filter_of(None, &settings).unwrap().to_string()
    );
}

#[test]
fn a_collector_that_is_down_never_holds_up_a_span() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = OtlpEndpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let provider =
        super::export::provider(&endpoint, "warden-test", 16, rt.handle().clone()).unwrap();
    let tracer = provider.tracer("test");
    let started = Instant::now();
    for _ in 0..20_000 {
        tracer.in_span("task", |_| {});
    }
    // Ending 20,000 spans with a queue of 16 and no collector: a few ms, never an export's wait.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A flush tries the dead collector once more: a refused connection, not a hang.
    let flushed = Instant::now();
    let _ = provider.force_flush();
    assert!(
        flushed.elapsed() < super::EXPORT_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        flushed.elapsed()
    );
    // The collector comes up: the exporter, still alive after every failure, delivers to it.
    let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
        return; // the port was taken meanwhile: nothing more to check here
    };
    let collector = std::thread::spawn(move || answer_one(&listener));
    tracer.in_span("after", |_| {});
    provider
        .force_flush()
        .expect("delivered once the collector is up");
    let request = collector.join().unwrap();
    assert!(
        request.starts_with("POST /v1/traces HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("content-type: application/x-protobuf"),
        "{request}"
    );
    let _ = provider.shutdown();
}

/// Accept one HTTP request on `listener`, answer `200`, and return its head.
fn answer_one(listener: &std::net::TcpListener) -> String {
    use std::io::{BufRead, Read};
    let (stream, _) = listener.accept().unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    reader
        .get_mut()
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
    head
}
