//! One outbound exchange, after the handler's check: the name checked again, every address it
//! resolves to checked, the host's secrets injected, then TCP, TLS for `https` (the policy's host
//! name is the name the certificate must be valid for), HTTP/1.1, and the response screened for
//! secrets. A TLS failure is recorded in the task trace with its reason (`tls-failed`) and
//! reaches the guest as its `wasi:http` error code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error as HttpTransportError, RequestOptions, WasiBody};

use super::tls::connect_tls;
use super::{NetScope, is_public, split_authority};
use crate::gate::{KillReason, KillSwitch, Violation};
use crate::instance::CpuAccount;
use crate::secrets::SecretStore;

/// Connect timeout when the guest sets none (the wall-clock limit bounds everything anyway). It
/// bounds the TCP connection and, apart, the TLS handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response and the future that drives its connection.
pub(super) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpTransportError>> + Send>,
);

/// Check and send `request` for the instance whose scope is `grant`.
pub(super) async fn send_checked(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    grant: &NetScope,
    kill: &KillSwitch,
    secrets: &SecretStore,
    cpu: Arc<CpuAccount>,
) -> Result<Sent, HttpTransportError> {
    let uri = request.uri().clone();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let (host, port) =
        split_authority(authority, https).ok_or(HttpTransportError::HttpRequestUriInvalid)?;
    // The handler already checked the name; check it again here so that this function is safe
    // on its own, then check every address it resolves to.
    if let Err(why) = grant.decide(&host, port) {
        let _ = kill.kill(Violation::new(KillReason::OutOfScope, "net", why));
        return Err(HttpTransportError::HttpRequestDenied);
    }
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            // The resolver blocks, so it runs on a blocking thread; its CPU is the task's.
            let (name, account) = (host.clone(), cpu.clone());
            let resolved = tokio::task::spawn_blocking(move || {
                account.charge(|| std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port)))
            })
            .await;
            match resolved {
                Ok(Ok(found)) => found.collect(),
                _ => {
                    return Err(HttpTransportError::DnsError {
                        rcode: Some("lookup failed".into()),
                        info_code: None,
                    });
                }
            }
        }
    };
    let Some(forbidden) = addrs
        .iter()
        .find(|a| !is_public(a.ip()) && !grant.names_ip(a.ip(), port))
        .copied()
        .or(None)
    else {
        for (header, value, name) in secrets.headers_for(&host, port) {
            // The host's value replaces anything the guest put in that header.
            let (Ok(header), Ok(value)) = (
                http::HeaderName::from_bytes(header.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) else {
                continue;
            };
            request.headers_mut().insert(header, value);
            tracing::debug!(target: "warden::net", secret = name, %host, port, "secret injected");
        }
        // The guest's authority may differ in case or a trailing dot: the server gets the host
        // the policy matched and the resolver was asked for.
        let sent_as = crate::policy::address::authority(&host, port, https);
        if let Ok(value) = http::HeaderValue::from_str(&sent_as) {
            request.headers_mut().insert(http::header::HOST, value);
        }
        let request = request_with_path_only(&mut request);
        let tls = https.then(|| Tls {
            host: &host,
            config: grant.tls(),
            kill,
        });
        let sent = connect(request, &addrs, tls, options, cpu).await?;
        return if secrets.is_empty() {
            Ok(sent)
        } else {
            redact_response(sent, secrets).await
        };
    };
    let _ = kill.kill(Violation::new(
        KillReason::OutOfScope,
        "net",
        format!(
            "{host}:{port} resolves to {forbidden}, a non-public address the policy does not name"
        ),
    ));
    Err(HttpTransportError::DestinationIpProhibited)
}

/// Most bytes of a response the host reads to redact secrets from it.
const MAX_REDACTED_BODY: usize = 64 << 20;

/// Read the whole response and replace every host secret in its headers and body, so a server
/// that echoes a secret back cannot hand it to the guest.
async fn redact_response(sent: Sent, secrets: &SecretStore) -> Result<Sent, HttpTransportError> {
    let (response, io) = sent;
    let (mut parts, body) = response.into_parts();
    let bytes = http_body_util::Limited::new(body, MAX_REDACTED_BODY)
        .collect()
        .await
        .map_err(|_| HttpTransportError::HttpResponseBodySize(Some(MAX_REDACTED_BODY as u64)))?
        .to_bytes();
    let body = secrets
        .redact(&bytes)
        .map(bytes::Bytes::from)
        .unwrap_or(bytes);
    for value in parts.headers.values_mut() {
        if let Some(r) = secrets.redact(value.as_bytes())
            && let Ok(v) = http::HeaderValue::from_bytes(&r)
        {
            *value = v;
        }
    }
    let body = http_body_util::Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok((http::Response::from_parts(parts, body), io))
}

fn request_with_path_only(request: &mut http::Request<WasiBody>) -> http::Request<WasiBody> {
    // On the wire, a request to an origin server carries only the path and query.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let mut taken = std::mem::replace(request, http::Request::new(empty_body()));
    *taken.uri_mut() = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    taken
}

fn empty_body() -> WasiBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What an `https` connection needs: the host name the certificate must be valid for, whom to
/// trust, and where to record a failure.
struct Tls<'a> {
    host: &'a str,
    config: Arc<ClientConfig>,
    kill: &'a KillSwitch,
}

/// Connect to the first of `addrs` that answers (TLS on top when `tls` is given) and send
/// `request` on it.
async fn connect(
    request: http::Request<WasiBody>,
    addrs: &[SocketAddr],
    tls: Option<Tls<'_>>,
    options: Option<RequestOptions>,
    cpu: Arc<CpuAccount>,
) -> Result<Sent, HttpTransportError> {
    let timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let mut last = HttpTransportError::DestinationUnavailable;
    for addr in addrs {
        let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = HttpTransportError::Connect(e);
                continue;
            }
            Err(_) => {
                last = HttpTransportError::ConnectionTimeout;
                continue;
            }
        };
        let Some(tls) = &tls else {
            return exchange(stream, request, cpu).await;
        };
        // A certificate refused at one address is not retried at the next: it is the name's
        // certificate that failed, and the guest learns it at once.
        let started = Instant::now();
        let failure =
            match tokio::time::timeout(timeout, connect_tls(stream, tls.host, tls.config.clone()))
                .await
            {
                Ok(Ok(stream)) => return exchange(stream, request, cpu).await,
                Ok(Err(failure)) => (failure.to_string(), failure.kind(), failure.error_code()),
                Err(_) => (
                    format!(
                        "the TLS handshake with {} did not finish within {} ms",
                        tls.host,
                        timeout.as_millis()
                    ),
                    "timeout",
                    HttpTransportError::ConnectionTimeout,
                ),
            };
        let (reason, kind, code) = failure;
        tls.kill
            .record("net", &reason, "tls-failed", started.elapsed());
        tracing::warn!(target: "warden::net", host = tls.host, %addr, kind, %reason, "tls failed");
        return Err(code);
    }
    Err(last)
}

/// HTTP/1.1 on an open connection: the connection is driven in a task of its own, charged to
/// the instance's CPU.
async fn exchange<IO>(
    io: IO,
    request: http::Request<WasiBody>,
    cpu: Arc<CpuAccount>,
) -> Result<Sent, HttpTransportError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(io)).await?;
    let driver: Box<dyn Future<Output = Result<(), HttpTransportError>> + Send> =
        Box::new(async move { conn.await.map_err(HttpTransportError::from) });
    let driver = tokio::spawn(CpuAccount::on_behalf(cpu, Box::into_pin(driver)));
    let response = sender.send_request(request).await?;
    let io: Box<dyn Future<Output = Result<(), HttpTransportError>> + Send> =
        Box::new(async move {
            driver
                .await
                .map_err(|e| HttpTransportError::InternalError(Some(e.to_string())))?
        });
    let response = response.map(|body| body.map_err(HttpTransportError::from).boxed_unsync());
    Ok((response, io))
}
