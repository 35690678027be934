//! The OTLP/HTTP span exporter: `opentelemetry-otlp`'s protobuf exporter behind the SDK's batch
//! processor (a background thread, a bounded queue), posting through [`RuntimeHttp`] — hyper's
//! HTTP/1 client run on the host's tokio runtime.
//!
//! Why a client of our own: the exporter's stock clients are reqwest (not otherwise in the build)
//! or a hyper client that must be driven by the SDK's experimental async-runtime processor. The
//! batch thread instead hands each request to the runtime the host already runs and waits for
//! its answer, bounded by [`EXPORT_TIMEOUT`]; the collector's answer is read with a bound too.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

use super::TelemetryError;
use crate::policy::OtlpEndpoint;

/// How long one export may take (connect, send, answer) before it is given up.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the batch thread sends what is queued.
const BATCH_EVERY: Duration = Duration::from_millis(500);

/// The largest collector answer read (an OTLP answer is a few bytes, or a short error).
const MAX_ANSWER: usize = 64 * 1024;

/// A tracer provider exporting to `endpoint` as service `service`, holding at most `queue`
/// finished spans; its HTTP exchanges run on `runtime`.
pub(super) fn provider(
    endpoint: &OtlpEndpoint,
    service: &str,
    queue: usize,
    runtime: tokio::runtime::Handle,
) -> Result<SdkTracerProvider, TelemetryError> {
    let url = endpoint.url();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(RuntimeHttp { runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: url,
            why: e.to_string(),
        })?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(queue)
        .with_max_export_batch_size(queue.min(512))
        .with_scheduled_delay(BATCH_EVERY)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batches)
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// An HTTP/1 client whose exchanges run on a tokio runtime, whichever thread asks.
#[derive(Debug, Clone)]
pub(super) struct RuntimeHttp {
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The timer belongs to the runtime: made inside the task, not on the batch thread.
        let exchange = async move { tokio::time::timeout(EXPORT_TIMEOUT, exchange(request)).await };
        match self.runtime.spawn(exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(format!(
                "the collector did not answer within {} s",
                EXPORT_TIMEOUT.as_secs()
            )
            .into()),
            Err(e) => Err(Box::new(e)),
        }
    }
}

/// One request on a fresh connection to the request's host and port (an export every half a
/// second at most: no pool to keep).
async fn exchange(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .uri
        .authority()
        .cloned()
        .ok_or("the collector URL names no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    // Origin form on the request line, the authority in `host`.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    parts.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(authority.as_str())?,
    );
    let answer = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = answer.into_parts();
    let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
