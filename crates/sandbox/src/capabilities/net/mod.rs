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
//! is matched, resolved, given its secrets, sent in the `Host` header and, for `https`, checked
//! against the server's certificate.
//!
//! `https` runs over TLS ([`tls`]) after the address check: the certificate must chain to a
//! trusted authority (the web PKI, plus `[tls] ca` of the host configuration) and be valid for
//! that host name, now. These checks cannot be turned off. A failed check reaches the guest as
//! a `wasi:http` TLS error code and is recorded, with its reason, in the task trace.
//!
//! The exchange (`send.rs`) runs in a task of its own; its CPU (connecting, the TLS handshake,
//! parsing the response, redacting secrets) is charged to the instance's CPU account like its
//! own.
//!
//! Redirects are not followed by the host: a 3xx reaches the guest, and a new request to the
//! new location is checked like any other. Raw sockets (`wasi:sockets`) are never granted.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig;
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

mod send;
pub mod tls;

/// The network capability of one prepared agent: its `[net]` grant, and the TLS client
/// configuration its `https` requests use (the sandbox's, [`crate::Sandbox::tls`], as it was
/// when the agent was prepared).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// What the agent's policy allows.
    pub grant: Arc<NetGrant>,
    /// Whom its `https` connections trust.
    pub tls: Arc<ClientConfig>,
}

/// What one instance may reach (its agent's grant, and the user's when it acts for one), and
/// whom it trusts to be the host it reached.
#[derive(Debug, Clone)]
pub struct NetScope {
    agent: Arc<NetGrant>,
    user: Option<Arc<UserGrant>>,
    tls: Arc<ClientConfig>,
}

impl NetScope {
    /// The scope of an agent acting for `user` (or for nobody).
    pub fn new(agent: NetConfig, user: Option<Arc<UserGrant>>) -> Self {
        NetScope {
            agent: agent.grant,
            user,
            tls: agent.tls,
        }
    }

    /// The TLS client configuration of this scope's `https` requests.
    pub fn tls(&self) -> Arc<ClientConfig> {
        self.tls.clone()
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
            send::send_checked(request, options, &grant, &kill, &secrets, cpu).await
        }))
    }
}
