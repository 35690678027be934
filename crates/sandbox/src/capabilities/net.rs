//! The network capability (`[net]` in a policy, `wasi:http` in WIT, `warden_guest::http`).
//!
//! Two checks, both through the gate:
//! 1. when the guest sends a request (`outgoing-handler.handle`), its scheme, host and port must
//!    match an `allow` entry, or the instance is killed at that call;
//! 2. when the host connects, every address the name resolves to is checked again: loopback,
//!    private, link-local (cloud metadata), CGNAT, multicast and other special addresses are
//!    refused unless the policy names that very address. The host connects only to an address
//!    it checked, so a DNS answer cannot redirect the request.
//!
//! The host a request names is taken in one form for all of this (see
//! [`crate::policy::address::split_authority`]): `api.example.com.` is `api.example.com` when it
//! is matched, resolved, given its secrets and sent in the `Host` header.
//!
//! The exchange runs in a task of its own; its CPU (connecting, parsing the response, redacting
//! secrets) is charged to the instance's CPU account like its own.
//!
//! Redirects are not followed by the host: a 3xx reaches the guest, and a new request to the
//! new location is checked like any other. Raw sockets (`wasi:sockets`) are never granted.
//! This build speaks plain HTTP; an `https` request fails with a TLS error code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types as http_types};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{
    Error as HttpTransportError, RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks,
};

use crate::gate::{KillReason, KillSwitch, Violation};
use crate::instance::CpuAccount;
pub use crate::policy::address::{is_public, split_authority};
use crate::policy::{NetGrant, UserGrant};
use crate::secrets::SecretStore;

/// Connect timeout when the guest sets none (the wall-clock limit bounds everything anyway).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one instance may reach: its agent's grant, and the user's when it acts for one.
#[derive(Debug, Clone)]
pub struct NetScope {
    agent: Arc<NetGrant>,
    user: Option<Arc<UserGrant>>,
}

impl NetScope {
    /// The scope of an agent acting for `user` (or for nobody).
    pub fn new(agent: Arc<NetGrant>, user: Option<Arc<UserGrant>>) -> Self {
        NetScope { agent, user }
    }

    /// Decide `host:port`; the refusal says whose grant is missing.
    ///
    /// # Errors
    ///
    /// A sentence naming the host and port.
    pub fn decide(&self, host: &str, port: u16) -> Result<(), String> {
        if !self.agent.allows(host, port) {
            return Err(format!("{host}:{port} is not on the agent's allowlist"));
        }
        if self
            .user
            .as_ref()
            .is_some_and(|u| !u.allows_host(host, port))
        {
            return Err(format!(
                "{host}:{port} is not allowed to the user the agent acts for"
            ));
        }
        Ok(())
    }

    /// Whether both grants name the non-public address `ip:port` explicitly.
    pub fn names_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.agent.names_ip(ip, port) && self.user.as_ref().is_none_or(|u| u.names_ip(ip, port))
    }
}

/// The network scope of one instance, as the HTTP hooks use it.
#[derive(Debug, Clone)]
pub struct NetHooks {
    grant: Arc<NetScope>,
    kill: KillSwitch,
    secrets: Arc<SecretStore>,
    cpu: Arc<CpuAccount>,
}

impl NetHooks {
    /// Hooks for one instance; `secrets` are injected into the requests their rules name, and
    /// the CPU of each exchange is charged to `cpu`.
    pub(crate) fn new(
        grant: Arc<NetScope>,
        kill: KillSwitch,
        secrets: Arc<SecretStore>,
        cpu: Arc<CpuAccount>,
    ) -> Self {
        NetHooks {
            grant,
            kill,
            secrets,
            cpu,
        }
    }

    /// The scope these hooks enforce.
    pub fn scope(&self) -> Arc<NetScope> {
        self.grant.clone()
    }
}

/// The version of `wasi:http` this host links (any 0.2.x import resolves to it).
const WASI_HTTP: &str = "wasi:http/outgoing-handler@0.2.12";

/// Link `wasi:http/outgoing-handler.handle` with the allowlist check in front of wasmtime-wasi-http's
/// own implementation. `view` gives the instance's HTTP view, grant and kill switch.
///
/// # Errors
///
/// wasmtime's error if the function cannot be defined.
pub fn add_gated_handler<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> (WasiHttpCtxView<'_>, Arc<NetScope>, &KillSwitch),
) -> wasmtime::Result<()> {
    type Handled = (Result<Resource<HostFutureIncomingResponse>, http_types::ErrorCode>,);
    linker.instance(WASI_HTTP)?.func_wrap(
        "handle",
        move |mut store: StoreContextMut<'_, T>,
              (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<RequestOptions>>,
        )|
              -> wasmtime::Result<Handled> {
            let (mut http, grant, kill) = view(store.data_mut());
            check_request(http.table.get(&request)?, &grant, kill)?;
            match outgoing_handler::Host::handle(&mut http, request, options) {
                Ok(response) => Ok((Ok(response),)),
                // A guest-visible error code, or a trap if wasmtime-wasi-http raised one.
                Err(e) => Ok((Err(e.downcast()?),)),
            }
        },
    )
}

/// The call-time check of one request: scheme, then host and port against the allowlist.
fn check_request(
    req: &HostOutgoingRequest,
    grant: &NetScope,
    kill: &KillSwitch,
) -> wasmtime::Result<()> {
    let https = !matches!(req.scheme, Some(http_types::Scheme::Http));
    let authority = req.authority.clone().unwrap_or_default();
    let deny = |detail: String| kill.kill(Violation::new(KillReason::OutOfScope, "net", detail));
    if let Some(http_types::Scheme::Other(s)) = &req.scheme {
        return Err(deny(format!(
            "scheme `{s}` is not allowed (http and https only)"
        )));
    }
    let Some((host, port)) = split_authority(&authority, https) else {
        return Err(deny(format!("malformed authority `{authority}`")));
    };
    grant.decide(&host, port).map_err(deny)?;
    tracing::trace!(target: "warden::gate", capability = "net", %host, port, "allowed");
    kill.record(
        "net",
        &format!(
            "{:?} {host}:{port}{}",
            req.method,
            req.path_with_query.as_deref().unwrap_or("")
        ),
        "allowed",
        std::time::Duration::ZERO,
    );
    Ok(())
}

impl WasiHttpHooks for NetHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpTransportError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpTransportError>> + Send>,
                    ),
                    HttpTransportError,
                >,
            > + Send,
    > {
        let grant = self.grant.clone();
        let kill = self.kill.clone();
        let secrets = self.secrets.clone();
        let cpu = self.cpu.clone();
        Box::new(CpuAccount::on_behalf(self.cpu.clone(), async move {
            send_checked(request, options, &grant, &kill, &secrets, cpu).await
        }))
    }
}

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpTransportError>> + Send>,
);

async fn send_checked(
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
        let sent = connect(request, &addrs, https, options, cpu).await?;
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

async fn connect(
    request: http::Request<WasiBody>,
    addrs: &[SocketAddr],
    https: bool,
    options: Option<RequestOptions>,
    cpu: Arc<CpuAccount>,
) -> Result<Sent, HttpTransportError> {
    if https {
        tracing::warn!(target: "warden::net", "https requested but this host build speaks plain HTTP only");
        return Err(HttpTransportError::TlsProtocolError);
    }
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
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await?;
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
        return Ok((response, io));
    }
    Err(last)
}
